"""Training throughput on this machine: BasicSR's loop (1 and 2 processes) against a bare PyTorch loop.

    python speed/bench_training.py [--preset cpu|demo|paper] [--amp bf16|false] [--compile] [--iters 60]
                                   [--repeats 3] [--device cpu|cuda]
    python speed/bench_training.py --interleaved [--preset cpu|demo|paper] [--device cpu|cuda] [--rounds 8]
    python speed/bench_training.py --interleaved-loops [--preset cpu|demo|paper] [--device cpu|cuda] [--rounds 8]
    python speed/bench_training.py --conv-ceiling
    python speed/bench_training.py --modules-ab [--preset cpu|demo|paper] [--rounds 8]

Every row trains the same GradNet (`--preset cpu`: the shipped models' CPU preset, 32 features, 2 modules x 2 units,
batch 8 of 64x64 crops; `demo`: the same net, batch 16 of 48x48 as `make demo`; `paper`: 64 features, 4 x 4, batch 8
of 64x64; a frozen pre-denoiser of the same size) on the same data (GaussianNoiseDataset, sigma 25, one loader worker
per process, `cache_images: true` as in the shipped presets) with L1 + 0.1 * gradient loss and Adam, in float32 NCHW
(`--amp false`) or with bf16 autocast + channels_last (`--amp bf16`, GradNetModel's `amp` / `channels_last`), eager
or through torch.compile (`--compile`, GradNetModel's `compile`; the bare loop compiles its net the same way).
Throughput is measured between iteration `warmup` and the last one (start-up and warm-up excluded): from the
timestamps of BasicSR's log lines for the BasicSR rows, with a timer for the bare loop. The median over `repeats` runs
is printed, as a Markdown table. speed/bench_fast_path.py uses these functions for its training table.

Runs in separate processes minutes apart see this shared VM's speed drift (10-30 %); `--interleaved` times the bare
training step of fp32 NCHW, bf16 + channels_last and bf16 + channels_last + compile alternately in one process, which
gives their speed ratios free of that drift (the step only: no data loading, no BasicSR loop). `--interleaved-loops`
does the same for whole iterations of BasicSR's loop (its prefetcher, GradNetModel, timers and logger, on a model and
data loader built by BasicSR's own functions) and of the bare loop, data loading included: the loop's cost and each
mode's speed-up as `gradnet-train` sees them, in one process. `--modules-ab` times the bf16 step as it is against
the same net with torch's BatchNorm2d and AdaptiveAvgPool2d and the unfolded pre-denoiser (what FastBatchNorm2d,
GlobalAvgPool2d and the fold give; before GlobalAvgPool2d this was `--batchnorm-ab`, without the pooling).
"""
import argparse
import datetime
import functools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import yaml

CPU_NET = {'num_in_ch': 3, 'num_feat': 32, 'num_modules': 2, 'num_units': 2}
PRESETS = {
    'demo': {  # `make demo`'s batch
        'net': CPU_NET,
        'batch': 16,
        'crop': 48
    },
    'cpu': {  # the shipped models' CPU preset (options/pretrained/train_gradnet_*_cpu.yml)
        'net': CPU_NET,
        'batch': 8,
        'crop': 64
    },
    'paper': {
        'net': {
            'num_in_ch': 3,
            'num_feat': 64,
            'num_modules': 4,
            'num_units': 4
        },
        'batch': 8,
        'crop': 64
    },
}
WARMUP = 10
BLOCK = 3  # iterations timed in a row per case and round by the interleaved timings


def write_images(folder, count=8):
    import cv2
    import numpy as np

    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.randint(0, 256, (160, 160, 3)).astype(np.uint8), (0, 0), 2 + i % 3)
        cv2.imwrite(os.path.join(folder, f'{i:02d}.png'), img)
    return folder


def dataset_opt(folder, preset):
    return {
        'name': 'bench',
        'type': 'GaussianNoiseDataset',
        'dataroot_gt': folder,
        'color': 'rgb',
        'sigma': 25,
        'gt_size': PRESETS[preset]['crop'],
        'use_hflip': True,
        'use_rot': True,
        'cache_images': True,  # as the shipped CPU presets and the demo
        'io_backend': {
            'type': 'disk'
        },
        'num_worker_per_gpu': 1,
        'batch_size_per_gpu': PRESETS[preset]['batch'],
        'dataset_enlarge_ratio': 1000,
        'prefetch_mode': None,
        'phase': 'train'
    }


def stage1_checkpoint(root, preset):
    import torch

    from gradnet_arch import MSKResNet

    path = os.path.join(root, f'stage1_{preset}.pth')
    torch.save({'params': MSKResNet(**PRESETS[preset]['net']).state_dict()}, path)
    return path


def network(stage1, preset):
    net = PRESETS[preset]['net']
    return dict(net, type='GradNet', global_residual=True, predenoiser=dict(net, type='MSKResNet', pretrained=stage1))


def train_options(name, folder, stage1, iters, device, preset, amp, compile_net, print_freq=1):
    """The option dict of the BasicSR rows (what `gradnet-train -opt` reads)."""
    opt = {
        'name': name,
        'model_type': 'GradNetModel',
        'num_gpu': 1 if device == 'cuda' else 0,
        'manual_seed': 1,
        'amp': amp,
        'channels_last': bool(amp),
        'compile': compile_net,
        'datasets': {
            'train': dict(dataset_opt(folder, preset))
        },
        'network_g': network(stage1, preset),
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
            'print_freq': print_freq,
            'save_checkpoint_freq': 10**9,
            'use_tb_logger': False
        }
    }
    del opt['datasets']['train']['phase']
    return opt


def write_train_options(root, name, *args, **kwargs):
    """Write `train_options(name, ...)` to `root/name.yml`; returns the path."""
    path = os.path.join(root, f'{name}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(train_options(name, *args, **kwargs), f)
    return path


def basicsr_run(root, folder, stage1, procs, iters, device, preset='demo', amp=False, warmup=WARMUP, compile_net=False):
    """iterations/s of `gradnet-train` (BasicSR's loop) with `procs` processes."""
    name = f'bench_{preset}_{amp}_{procs}p_{time.monotonic_ns()}'
    opt_file = write_train_options(root, name, folder, stage1, iters, device, preset, amp, compile_net)
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
    return (iters - warmup) / (stamps[iters] - stamps[warmup]).total_seconds()


def bare_run(folder, stage1, iters, device, preset='demo', amp=False, warmup=WARMUP, compile_net=False):
    """iterations/s of the bare loop (`bare_loop`), in a fresh process like `gradnet-train`'s, so both start alike."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--bare-worker', folder, stage1, '--iters',
        str(iters), '--device', device, '--preset', preset, '--amp',
        str(amp).lower(), '--warmup',
        str(warmup)
    ] + (['--compile'] if compile_net else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def bare_step(stage1, preset, amp, compile_net, device, torch_modules=False):
    """The bare loop's training step: `step(lq, gt)` on a fresh net (seed 1) with L1 + 0.1 * gradient loss and Adam,
    in `amp`'s precision and memory format, eager or through torch.compile; `torch_modules`: the net as it was
    before FastBatchNorm2d, GlobalAvgPool2d and the per-call pre-denoiser fold (`use_torch_modules`)."""
    import torch
    from basicsr.archs import build_network

    from gradnet_arch import GradientConsistencyLoss
    from gradnet_arch.precision import amp_precision, autocast, memory_format, to_memory_format

    precision, _ = amp_precision(amp, device)
    torch.manual_seed(1)
    net = build_network(network(stage1, preset)).to(device, memory_format=memory_format(bool(amp))).train()
    if torch_modules:
        use_torch_modules(net)
    optimizer = torch.optim.Adam(net.own_parameters(), lr=1e-3)
    forward = torch.compile(net) if compile_net else net
    grad_loss = GradientConsistencyLoss(loss_weight=0.1).to(device)

    def step(lq, gt):
        lq, gt = (to_memory_format(t.to(device), bool(amp)) for t in (lq, gt))
        with autocast(precision, device):
            out = forward(lq)
        out = out.float()
        loss = (out - gt).abs().mean() + grad_loss(out, gt)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == 'cuda':
            torch.cuda.synchronize()

    return step


def use_torch_modules(net):
    """In place: every ResUnit's FastBatchNorm2d becomes torch's nn.BatchNorm2d (same state), every channel
    attention's GlobalAvgPool2d torch's nn.AdaptiveAvgPool2d(1), and the frozen pre-denoiser stops folding its
    BatchNorm per call: the training path before those three changes."""
    import torch

    from gradnet_arch.archs.mskresnet_arch import ChannelAttention, ResUnit

    for module in list(net.modules()):  # a list: children are replaced on the way
        if isinstance(module, ChannelAttention):
            module.body[0] = torch.nn.AdaptiveAvgPool2d(1)
        elif isinstance(module, ResUnit):
            module.fold_frozen_bn = False
            if isinstance(module.bn, torch.nn.BatchNorm2d):
                plain = torch.nn.BatchNorm2d(module.bn.num_features).to(module.bn.weight.device)
                plain.load_state_dict(module.bn.state_dict())
                module.bn = plain.train(module.bn.training)
    return net


def fixed_batch(preset):
    """The one (noisy, clean) batch of the step-only timings: the preset's random crops, AWGN sigma 25, seed 0."""
    import torch

    batch, crop = PRESETS[preset]['batch'], PRESETS[preset]['crop']
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, PRESETS[preset]['net']['num_in_ch'], crop, crop, generator=generator)
    return clean + 25 / 255 * torch.randn(clean.shape, generator=generator), clean


def modules_ab(stage1, preset, rounds=8, steps=BLOCK, device='cpu'):
    """Seconds per bf16 + channels_last training step with FastBatchNorm2d, GlobalAvgPool2d and the per-call
    pre-denoiser fold ('now') and with torch's modules and no fold ('torch modules', `use_torch_modules`), as
    `interleaved_steps` times its modes: `round_robin_times` output, one fixed batch, no data loading."""
    noisy, clean = fixed_batch(preset)
    runs = {
        label: functools.partial(bare_step(stage1, preset, 'bf16', False, device, torch_modules=plain), noisy, clean)
        for label, plain in (('now', False), ('torch modules', True))
    }
    return round_robin_times(runs, rounds, per_round=steps, warmup=2)


def bare_iteration(folder, stage1, preset, amp, compile_net, device):
    """A callable that runs one iteration of the bare loop (`bare_loop`): the next batch of its DataLoader, then
    `bare_step`."""
    import torch
    from basicsr.data import build_dataset

    step = bare_step(stage1, preset, amp, compile_net, device)
    dataset = build_dataset(dataset_opt(folder, preset))
    batch_size = PRESETS[preset]['batch']
    # endless random samples, as BasicSR's enlarged sampler gives its loop (a new pass would start a new worker)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10**6 * batch_size)
    batches = iter(torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler, num_workers=1, drop_last=True))

    def iteration():
        batch = next(batches)
        step(batch['lq'], batch['gt'])

    return iteration


def bare_loop(folder, stage1, iters, device, preset='demo', amp=False, warmup=WARMUP, compile_net=False):
    """The same net, data, losses and optimizer in a plain PyTorch loop (no BasicSR model, logger or prefetcher):
    `bare_iteration` `iters` times; iterations/s after the first `warmup`."""
    iteration = bare_iteration(folder, stage1, preset, amp, compile_net, device)
    for _ in range(warmup):
        iteration()
    start = time.perf_counter()  # bare_step synchronises CUDA at the end of each step
    for _ in range(iters - warmup):
        iteration()
    return (iters - warmup) / (time.perf_counter() - start)


def round_robin_times(cases, rounds, per_round=1, warmup=1):
    """Seconds of each callable in `cases` (a dict) per call, in call order, after `warmup` untimed calls each, timed
    `per_round` times in a row, round robin over the cases for `rounds` rounds, every other round in reverse order: a
    drift of the machine's speed hits every case alike."""
    for run in cases.values():
        for _ in range(warmup):
            run()
    times = {key: [] for key in cases}
    for round_index in range(rounds):
        order = list(cases.items())
        for key, run in order[::-1] if round_index % 2 else order:  # ABBA order: a steady drift cancels out
            for _ in range(per_round):
                start = time.perf_counter()
                run()
                times[key].append(time.perf_counter() - start)
    return times


def round_robin_medians(cases, rounds, per_round=1, warmup=1):
    """Median seconds of each case of `round_robin_times`."""
    return {
        key: statistics.median(values)
        for key, values in round_robin_times(cases, rounds, per_round, warmup).items()
    }


def paired_ratio(times, numerator, denominator, per_round):
    """Median over rounds of the time ratio of two cases of `round_robin_times` within a round (their blocks ran
    minutes or less apart, so this ratio is the least touched by drift)."""
    num, den = times[numerator], times[denominator]
    blocks = range(0, len(num), per_round)
    return statistics.median(sum(num[b:b + per_round]) / sum(den[b:b + per_round]) for b in blocks)


INTERLEAVED_MODES = (('fp32 NCHW', False, False), ('bf16 + channels_last', 'bf16', False),
                     ('bf16 + channels_last + compile', 'bf16', True))


def interleaved_steps(stage1, preset, rounds=8, steps=BLOCK, device='cpu'):
    """Median seconds per training step of each mode in INTERLEAVED_MODES, all in this process, timed in blocks of
    `steps` steps round robin over the modes for `rounds` rounds, so a drift of the machine's speed (minutes) hits
    every mode alike. Each mode has its own net (same seed), Adam and one fixed batch; no data loading, no BasicSR.
    Compiling and two warm-up steps per mode come first and are not timed."""
    noisy, clean = fixed_batch(preset)
    steps_of = {
        label: bare_step(stage1, preset, amp, compile_net, device)
        for label, amp, compile_net in INTERLEAVED_MODES
    }
    runs = {label: functools.partial(step, noisy, clean) for label, step in steps_of.items()}
    return round_robin_medians(runs, rounds, per_round=steps, warmup=2)


def basicsr_iteration(root, folder, stage1, preset, amp, compile_net, device, print_freq=100):
    """A callable that runs one iteration of BasicSR's training loop as `basicsr.train.train_pipeline` runs it: the
    next batch from its CPUPrefetcher (the next epoch when one ends), `update_learning_rate`, `feed_data`,
    `optimize_parameters`, its two AvgTimers and, every `print_freq` iterations, the MessageLogger line. Options, data
    loader and GradNetModel are what BasicSR's own parse_options, create_train_val_dataloader and build_model make of
    the option file `basicsr_run` gives `gradnet-train`; only the loop body is repeated here, so that it can be timed
    an iteration at a time (validation and checkpoints are off in these options, as in `basicsr_run`)."""
    import torch
    from basicsr.data.prefetch_dataloader import CPUPrefetcher
    from basicsr.models import build_model
    from basicsr.train import create_train_val_dataloader
    from basicsr.utils import AvgTimer, MessageLogger, get_root_logger, make_exp_dirs
    from basicsr.utils.options import parse_options

    from gradnet_arch.option_check import safe_option_loading

    name = f'interleaved_{preset}_{amp}_{compile_net}_{time.monotonic_ns()}'
    opt_file = write_train_options(root, name, folder, stage1, 10**9, device, preset, amp, compile_net, print_freq)
    saved_argv, sys.argv = sys.argv, ['train.py', '-opt', opt_file]  # BasicSR's parse_options reads sys.argv
    try:
        with safe_option_loading():
            opt, _ = parse_options(root, is_train=True)
    finally:
        sys.argv = saved_argv
    make_exp_dirs(opt)
    logger = get_root_logger()
    train_loader, train_sampler, _, _, _ = create_train_val_dataloader(opt, logger)
    model = build_model(opt)
    msg_logger = MessageLogger(opt, 0, None)
    prefetcher = CPUPrefetcher(train_loader)
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    state = {'epoch': 0, 'iter': 0}

    def iteration():
        batch = prefetcher.next()
        if batch is None:
            state['epoch'] += 1
            train_sampler.set_epoch(state['epoch'])
            prefetcher.reset()
            batch = prefetcher.next()
        data_timer.record()
        state['iter'] += 1
        model.update_learning_rate(state['iter'], warmup_iter=-1)
        model.feed_data(batch)
        model.optimize_parameters(state['iter'])
        iter_timer.record()
        if state['iter'] % print_freq == 0:
            log_vars = {'epoch': state['epoch'], 'iter': state['iter'], 'lrs': model.get_current_learning_rate()}
            log_vars.update({'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()})
            log_vars.update(model.get_current_log())
            msg_logger(log_vars)
        data_timer.start()
        iter_timer.start()
        if device == 'cuda':
            torch.cuda.synchronize()

    iteration.model, iteration.state = model, state  # for tests and callers that read the model
    return iteration


def interleaved_loops(root, preset, rounds=8, steps=BLOCK, device='cpu'):
    """Seconds per iteration of BasicSR's loop (`basicsr_iteration`) and of the bare loop (`bare_iteration`),
    each with its own data loader (one worker), in every mode of INTERLEAVED_MODES, all in this process and timed in
    blocks of `steps` iterations round robin over the six cases for `rounds` rounds: the loop cost and the speed-up of
    each mode over fp32 free of the machine's drift. Compiling and three warm-up iterations per case are not timed.
    Returns {(mode label, 'bare' | 'BasicSR'): [seconds per iteration]} (`round_robin_times`)."""
    folder = write_images(os.path.join(root, 'images'))
    stage1 = stage1_checkpoint(root, preset)
    cases = {}
    for label, amp, compile_net in INTERLEAVED_MODES:
        cases[(label, 'bare')] = bare_iteration(folder, stage1, preset, amp, compile_net, device)
        cases[(label, 'BasicSR')] = basicsr_iteration(root, folder, stage1, preset, amp, compile_net, device)
    return round_robin_times(cases, rounds, per_round=steps, warmup=3)


def conv_training_ceiling(widths=(32, 35, 64, 67), batch=8, side=64, rounds=8):
    """Milliseconds of one 3x3 convolution's forward + backward (input, weight and bias gradients) at each channel
    width, fp32 NCHW and bf16 channels_last, timed alternately in one process: the most a training step made of such
    convolutions can gain from bf16 (GradNet's bodies are F + C wide: 35 for the CPU preset, 67 for the paper size)."""
    import torch

    cases = {}
    for width in widths:
        for label, dtype, layout in (('fp32 NCHW', torch.float32, torch.contiguous_format),
                                     ('bf16 channels_last', torch.bfloat16, torch.channels_last)):
            weight = torch.randn(width, width, 3, 3, dtype=dtype).contiguous(memory_format=layout)
            x = torch.randn(batch, width, side, side, dtype=dtype).contiguous(memory_format=layout)
            grad = torch.randn(batch, width, side, side, dtype=dtype).contiguous(memory_format=layout)
            bias = torch.randn(width, dtype=dtype)

            def run(x=x, weight=weight, grad=grad, bias=bias, width=width):
                torch.nn.functional.conv2d(x, weight, bias, 1, 1)
                torch.ops.aten.convolution_backward(grad, x, weight, [width], [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                    [True, True, True])

            cases[(width, label)] = run
    return round_robin_medians(cases, rounds, per_round=2)


def batchnorm_cost(widths=(32, 35, 64, 67), batch=8, side=64, rounds=8):
    """Milliseconds of a training-mode bf16 BatchNorm's forward + backward at each channel width: torch's
    nn.BatchNorm2d on channels_last and on NCHW tensors, and the ResUnits' FastBatchNorm2d on channels_last, timed
    alternately in one process (torch's channels_last kernel is slow at widths that are not a multiple of its vector
    length, such as GradNet's 35 and 67; FastBatchNorm2d's line-wise backward is for those)."""
    import torch

    from gradnet_arch.archs.batch_norm import FastBatchNorm2d

    kinds = [
        ('channels_last', torch.channels_last, torch.nn.BatchNorm2d),
        ('NCHW', torch.contiguous_format, torch.nn.BatchNorm2d),
        ('FastBatchNorm2d', torch.channels_last, FastBatchNorm2d),
    ]
    cases = {}
    for width in widths:
        for label, layout, kind in kinds:
            x = torch.randn(batch, width, side, side, dtype=torch.bfloat16).contiguous(memory_format=layout)
            x.requires_grad_()
            grad = torch.randn_like(x)
            bn = kind(width).train()

            def run(x=x, grad=grad, bn=bn):
                bn(x).backward(grad)

            cases[(width, label)] = run
    return round_robin_medians(cases, rounds)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--preset', default='demo', choices=sorted(PRESETS))
    parser.add_argument('--amp', default='false', choices=['false', 'bf16', 'fp16'])
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--warmup', type=int, default=WARMUP, help='iterations before the clock starts')
    parser.add_argument('--compile', action='store_true', help='torch.compile the training step (option `compile`)')
    modes = parser.add_mutually_exclusive_group()  # each of these runs instead of the default table
    modes.add_argument(
        '--conv-ceiling',
        action='store_true',
        help='instead: fp32 vs bf16 of one convolution\'s forward + backward (conv_training_ceiling) and the cost '
        'of BatchNorm by layout (batchnorm_cost)')
    modes.add_argument(
        '--interleaved',
        action='store_true',
        help='instead: the training step of each mode (fp32, bf16, bf16 + compile) timed alternately in '
        'one process (interleaved_steps)')
    modes.add_argument(
        '--interleaved-loops',
        action='store_true',
        help='instead: BasicSR\'s loop and the bare loop, with data loading, in each mode, timed alternately in one '
        'process (interleaved_loops)')
    modes.add_argument(
        '--modules-ab',
        action='store_true',
        help='instead: the bf16 training step with FastBatchNorm2d, GlobalAvgPool2d and the per-call pre-denoiser '
        'fold against torch\'s BatchNorm2d and AdaptiveAvgPool2d without the fold, timed alternately in one process '
        '(modules_ab)')
    parser.add_argument(
        '--rounds', type=int, default=8, help='rounds of --interleaved, --interleaved-loops and --modules-ab')
    parser.add_argument('--bare-worker', nargs=2, metavar=('FOLDER', 'STAGE1'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f'--rounds must be at least 1, got {args.rounds}')
    import torch

    amp = False if args.amp == 'false' else args.amp
    if args.bare_worker:  # one bare-loop run in this fresh process; prints its iterations/s
        print(bare_loop(*args.bare_worker, args.iters, args.device, args.preset, amp, args.warmup, args.compile))
        return
    if args.conv_ceiling:
        seconds = conv_training_ceiling()
        print(f'\nOne 3x3 convolution, forward + backward, batch 8 of 64x64, one process, torch {torch.__version__}, '
              f'{torch.get_num_threads()} threads, medians\n')
        print('| channels | fp32 NCHW, ms | bf16 channels_last, ms | bf16 vs fp32 |\n|---|---:|---:|---:|')
        for width in sorted({w for w, _ in seconds}):
            fp32, bf16 = seconds[(width, 'fp32 NCHW')], seconds[(width, 'bf16 channels_last')]
            print(f'| {width} | {1e3 * fp32:.2f} | {1e3 * bf16:.2f} | {fp32 / bf16:.2f}x |')
        seconds = batchnorm_cost()
        print('\nbf16 BatchNorm (training mode), forward + backward, same shape\n')
        print(
            '| channels | nn.BatchNorm2d channels_last, ms | nn.BatchNorm2d NCHW, ms | FastBatchNorm2d channels_last, '
            'ms |\n|---|---:|---:|---:|')
        for width in sorted({w for w, _ in seconds}):
            row = (seconds[(width, label)] for label in ('channels_last', 'NCHW', 'FastBatchNorm2d'))
            print(f'| {width} | ' + ' | '.join(f'{1e3 * value:.2f}' for value in row) + ' |')
        return
    if args.interleaved:
        with tempfile.TemporaryDirectory() as root:
            seconds = interleaved_steps(
                stage1_checkpoint(root, args.preset), args.preset, rounds=args.rounds, device=args.device)
        fp32 = seconds[INTERLEAVED_MODES[0][0]]
        batch, crop = PRESETS[args.preset]['batch'], PRESETS[args.preset]['crop']
        print(f'\nGradNet {args.preset} size, batch {batch} x {crop}x{crop}, one process, steps timed alternately '
              f'({args.rounds} rounds of {BLOCK} per mode), device {args.device}, torch {torch.__version__}, '
              f'{torch.get_num_threads()} threads, medians\n')
        print('| training step | s | speed vs fp32 NCHW |\n|---|---:|---:|')
        for label, value in seconds.items():
            print(f'| {label} | {value:.4f} | {fp32 / value:.2f}x |')
        return
    if args.modules_ab:
        with tempfile.TemporaryDirectory() as root:
            times = modules_ab(stage1_checkpoint(root, args.preset), args.preset, args.rounds, device=args.device)
        batch, crop = PRESETS[args.preset]['batch'], PRESETS[args.preset]['crop']
        print(f'\nGradNet {args.preset} size, bf16 + channels_last training step, batch {batch} x {crop}x{crop}, one '
              f'process, steps timed alternately ({args.rounds} rounds of {BLOCK}), device {args.device}, torch '
              f'{torch.__version__}, {torch.get_num_threads()} threads; medians, and [median over rounds of the ratio '
              f'within a round]\n')
        print('| modules | s per step | speed vs torch modules |\n|---|---:|---:|')
        base = statistics.median(times['torch modules'])
        for label, values in times.items():
            ratio = paired_ratio(times, 'torch modules', label, BLOCK)
            print(f'| {label} | {statistics.median(values):.4f} | {base / statistics.median(values):.2f}x '
                  f'[{ratio:.2f}x] |')
        return
    if args.interleaved_loops:
        with tempfile.TemporaryDirectory() as root:
            times = interleaved_loops(root, args.preset, rounds=args.rounds, device=args.device)
        batch, crop = PRESETS[args.preset]['batch'], PRESETS[args.preset]['crop']
        print(f'\nGradNet {args.preset} size, batch {batch} x {crop}x{crop}, data loading included (one worker per '
              f'loop), one process, iterations timed alternately ({args.rounds} rounds of {BLOCK} per case), device '
              f'{args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; medians of the '
              f'iterations, and [medians over rounds of the ratio within a round]\n')
        print('| mode | bare loop, s/it | BasicSR loop, s/it | BasicSR / bare time | bare vs fp32 | BasicSR vs fp32 |')
        print('|---|---:|---:|---:|---:|---:|')
        fp32 = INTERLEAVED_MODES[0][0]
        med = {key: statistics.median(values) for key, values in times.items()}
        for label, _, _ in INTERLEAVED_MODES:
            bare, loop = (label, 'bare'), (label, 'BasicSR')
            cells = [
                f'{med[bare]:.4f}', f'{med[loop]:.4f}',
                f'{med[loop] / med[bare]:.3f} [{paired_ratio(times, loop, bare, BLOCK):.3f}]'
            ]
            for kind in ('bare', 'BasicSR'):
                cells.append(f'{med[(fp32, kind)] / med[(label, kind)]:.2f}x '
                             f'[{paired_ratio(times, (fp32, kind), (label, kind), BLOCK):.2f}x]')
            print(f'| {label} | ' + ' | '.join(cells) + ' |')
        return
    kwargs = dict(preset=args.preset, amp=amp, warmup=args.warmup, compile_net=args.compile)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        folder = write_images(os.path.join(root, 'images'))
        stage1 = stage1_checkpoint(root, args.preset)
        cases = [('bare PyTorch loop', 1, lambda: bare_run(folder, stage1, args.iters, args.device, **kwargs)),
                 ('BasicSR loop (gradnet-train)', 1,
                  lambda: basicsr_run(root, folder, stage1, 1, args.iters, args.device, **kwargs))]
        if args.device == 'cpu' or torch.cuda.device_count() > 1:
            cases.append(('BasicSR loop, torchrun DDP', 2,
                          lambda: basicsr_run(root, folder, stage1, 2, args.iters, args.device, **kwargs)))
        for label, procs, fn in cases:
            speeds = [fn() for _ in range(args.repeats)]
            rows.append((label, procs, statistics.median(speeds)))
            print(f'[bench] {label}: {", ".join(f"{s:.2f}" for s in speeds)} it/s', file=sys.stderr, flush=True)
    bare = rows[0][2]
    batch, crop = PRESETS[args.preset]['batch'], PRESETS[args.preset]['crop']
    print(f'\nGradNet {args.preset} size, batch {batch} x {crop}x{crop} per process, amp {args.amp}, compile '
          f'{args.compile}, device '
          f'{args.device}, torch {torch.__version__}, {os.cpu_count()} CPU cores, median of {args.repeats}\n')
    print('| loop | processes | iterations/s | images/s | time per image vs bare loop |\n|---|---|---|---|---|')
    for label, procs, speed in rows:
        images = speed * batch * procs
        print(f'| {label} | {procs} | {speed:.2f} | {images:.1f} | {bare * batch / images:.2f}x |')


if __name__ == '__main__':
    main()
