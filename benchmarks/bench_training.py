"""Training throughput on this machine: BasicSR's loop (1 and 2 processes) against a bare PyTorch loop.

    python benchmarks/bench_training.py [--iters 60] [--repeats 3] [--device cpu|cuda]

Every row trains the same GradNet (demo size: 32 features, 2 modules x 2 units, frozen pre-denoiser of the same
size) on the same data (GaussianNoiseDataset, sigma 25, 48x48 crops, batch 16 per process, one loader worker per
process) with L1 + 0.1 * gradient loss and Adam. Throughput is measured between iteration 10 and the last one
(start-up and warm-up excluded): from the timestamps of BasicSR's log lines for the BasicSR rows, with a timer for
the bare loop. The median over `repeats` runs is printed, as a Markdown table.
"""
import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import yaml

NET = {'num_in_ch': 3, 'num_feat': 32, 'num_modules': 2, 'num_units': 2}
BATCH, CROP, WARMUP = 16, 48, 10


def write_images(folder, count=8):
    import cv2
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.randint(0, 256, (160, 160, 3)).astype(np.uint8), (0, 0), 2 + i % 3)
        cv2.imwrite(os.path.join(folder, f'{i:02d}.png'), img)
    return folder


def dataset_opt(folder):
    return {
        'name': 'bench',
        'type': 'GaussianNoiseDataset',
        'dataroot_gt': folder,
        'color': 'rgb',
        'sigma': 25,
        'gt_size': CROP,
        'use_hflip': True,
        'use_rot': True,
        'io_backend': {
            'type': 'disk'
        },
        'num_worker_per_gpu': 1,
        'batch_size_per_gpu': BATCH,
        'dataset_enlarge_ratio': 1000,
        'prefetch_mode': None,
        'phase': 'train'
    }


def stage1_checkpoint(root):
    import torch

    from gradnet_arch import MSKResNet

    path = os.path.join(root, 'stage1.pth')
    torch.save({'params': MSKResNet(**NET).state_dict()}, path)
    return path


def network(stage1):
    return dict(NET, type='GradNet', global_residual=True, predenoiser=dict(NET, type='MSKResNet', pretrained=stage1))


def basicsr_run(root, folder, stage1, procs, iters, device):
    name = f'bench_{procs}p_{time.monotonic_ns()}'
    opt = {
        'name': name,
        'model_type': 'GradNetModel',
        'num_gpu': 1 if device == 'cuda' else 0,
        'manual_seed': 1,
        'datasets': {
            'train': dict(dataset_opt(folder), phase=None)
        },
        'network_g': network(stage1),
        'path': {
            'pretrain_network_g': None,
            'resume_state': None
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [10**9]
            },
            'total_iter': iters,
            'pixel_opt': {
                'type': 'L1Loss'
            },
            'gradient_opt': {
                'type': 'GradientConsistencyLoss',
                'loss_weight': 0.1
            }
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 10**9,
            'use_tb_logger': False
        }
    }
    del opt['datasets']['train']['phase']
    opt_file = os.path.join(root, f'{name}.yml')
    with open(opt_file, 'w') as f:
        yaml.safe_dump(opt, f)
    cmd = [sys.executable, '-m', 'gradnet_arch.train', '-opt', opt_file]
    if procs > 1:
        cmd = [
            sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={procs}', '--master_port=29655', '-m',
            'gradnet_arch.train', '-opt', opt_file, '--launcher', 'pytorch'
        ]
    subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    log_dir = os.path.join(root, 'experiments', name)
    log = open(os.path.join(log_dir, [f for f in os.listdir(log_dir) if f.endswith('.log')][0])).read()
    stamps = {
        int(i): datetime.datetime.strptime(t, '%Y-%m-%d %H:%M:%S,%f')
        for t, i in re.findall(r'^(\S+ \S+) INFO: \[.*?iter:\s+(\d+),', log, re.M)
    }
    return (iters - WARMUP) / (stamps[iters] - stamps[WARMUP]).total_seconds()


def bare_run(folder, stage1, iters, device):
    """The same net, data, losses and optimizer in a plain PyTorch loop (no BasicSR model, logger or prefetcher)."""
    import torch
    from basicsr.archs import build_network
    from basicsr.data import build_dataset

    from gradnet_arch import GradientConsistencyLoss

    torch.manual_seed(1)
    net = build_network(network(stage1)).to(device).train()
    optimizer = torch.optim.Adam(net.own_parameters(), lr=1e-3)
    grad_loss = GradientConsistencyLoss(loss_weight=0.1).to(device)
    dataset = build_dataset(dataset_opt(folder))
    # as many random samples as the run needs (BasicSR's enlarged sampler does the same for its loop)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=iters * BATCH)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=1, drop_last=True)

    start = None
    for i, batch in enumerate(loader, 1):
        if i == WARMUP + 1:
            if device == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
        lq, gt = batch['lq'].to(device), batch['gt'].to(device)
        out = net(lq)
        loss = (out - gt).abs().mean() + grad_loss(out, gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == iters:
            break
    if device == 'cuda':
        torch.cuda.synchronize()
    return (iters - WARMUP) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    args = parser.parse_args()
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as root:
        folder = write_images(os.path.join(root, 'images'))
        stage1 = stage1_checkpoint(root)
        cases = [('bare PyTorch loop', 1, lambda: bare_run(folder, stage1, args.iters, args.device)),
                 ('BasicSR loop (gradnet-train)', 1,
                  lambda: basicsr_run(root, folder, stage1, 1, args.iters, args.device))]
        if args.device == 'cpu' or torch.cuda.device_count() > 1:
            cases.append(('BasicSR loop, torchrun DDP', 2,
                          lambda: basicsr_run(root, folder, stage1, 2, args.iters, args.device)))
        for label, procs, fn in cases:
            speeds = [fn() for _ in range(args.repeats)]
            rows.append((label, procs, statistics.median(speeds)))
            print(f'[bench] {label}: {", ".join(f"{s:.2f}" for s in speeds)} it/s', file=sys.stderr, flush=True)
    bare = rows[0][2]
    print(f'\nGradNet demo size, batch {BATCH} x {CROP}x{CROP} per process, device {args.device}, torch '
          f'{torch.__version__}, {os.cpu_count()} CPU cores, median of {args.repeats}\n')
    print('| loop | processes | iterations/s | images/s | time per image vs bare loop |\n|---|---|---|---|---|')
    for label, procs, speed in rows:
        images = speed * BATCH * procs
        print(f'| {label} | {procs} | {speed:.2f} | {images:.1f} | {bare * BATCH / images:.2f}x |')


if __name__ == '__main__':
    main()
