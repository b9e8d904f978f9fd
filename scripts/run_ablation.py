#!/usr/bin/env python
"""The CPU ablation of GradNet (docs/ablation.md): train every run of options/ablation_cpu/, then compare them.

    python scripts/run_ablation.py --jobs 2            # train what is missing (resumes), then benchmark
    python scripts/run_ablation.py --skip-training     # only the comparison table

Run from a folder holding `datasets/CBSD432` and `datasets/CBSD68` (docs/datasets.md) and the shipped colour model's
stage 1 (`experiments/gradnet_color_sigma25_stage1_cpu/models/net_g_latest.pth`, trained by
`gradnet-train -opt options/pretrained/train_mskresnet_cbsd432_sigma25_cpu.yml`): it is the frozen pre-denoiser of every
GradNet run. Finished runs (their net_g_latest.pth exists and the log reports the end of training) are not trained
again. The comparison is `python -m gradnet_arch.benchmark` on CBSD68 at sigma 25 (noise seeded per image), with the
texture/smooth-region PSNR of the spec.
"""
import argparse
import glob
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = ('method', 'grad_none', 'grad_noisy', 'fusion1', 'fusion3', 'fusion4', 'no_grad_loss')
STAGE1_OPT = 'options/pretrained/train_mskresnet_cbsd432_sigma25_cpu.yml'
STAGE1_CKPT = 'experiments/gradnet_color_sigma25_stage1_cpu/models/net_g_latest.pth'


def option_path(tag):
    return os.path.join(REPO, 'options', 'ablation_cpu', f'train_gradnet_ablation_cpu_{tag}.yml')


def checkpoint_path(tag):
    return os.path.join('experiments', f'gradnet_ablation_cpu_{tag}', 'models', 'net_g_latest.pth')


def finished(tag):
    logs = glob.glob(os.path.join('experiments', f'gradnet_ablation_cpu_{tag}', 'train_*.log'))
    done = any('End of training' in open(log, encoding='utf-8', errors='replace').read() for log in logs)
    return done and os.path.isfile(checkpoint_path(tag))


def train(tags, jobs, threads):
    """Train the runs `jobs` at a time, each single- or few-threaded (small nets use 2 cores poorly)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    pending = [tag for tag in tags if not finished(tag)]
    running = []
    while pending or running:
        while pending and len(running) < jobs:
            tag = pending.pop(0)
            log = open(f'ablation_{tag}.out', 'a')
            cmd = [sys.executable, '-m', 'gradnet_arch.train', '-opt', option_path(tag), '--auto_resume']
            print(f'[{time.strftime("%H:%M:%S")}] start {tag}: {" ".join(cmd)}', flush=True)
            running.append((tag, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        time.sleep(5)
        for item in list(running):
            tag, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f'[{time.strftime("%H:%M:%S")}] {tag} exited with {proc.returncode}', flush=True)
                if proc.returncode != 0:
                    sys.exit(f'run {tag} failed: see ablation_{tag}.out')


def compare(tags, max_images, out_prefix):
    models = [f'stage1_predenoiser={os.path.join(REPO, STAGE1_OPT)}@{STAGE1_CKPT}']
    models += [f'{tag}={option_path(tag)}@{checkpoint_path(tag)}' for tag in tags]
    cmd = [
        sys.executable, '-m', 'gradnet_arch.benchmark', '--set', 'CBSD68=datasets/CBSD68', '--sigma', '25', '--csv',
        f'{out_prefix}.csv', '--plot', f'{out_prefix}.png'
    ]
    for model in models:
        cmd += ['--model', model]
    if max_images:
        cmd += ['--max-images', str(max_images)]
    print(' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--runs', nargs='+', default=list(RUNS), choices=RUNS, help='runs to train and compare')
    parser.add_argument('--jobs', type=int, default=2, help='trainings at a time')
    parser.add_argument('--threads', type=int, default=1, help='threads per training')
    parser.add_argument('--skip-training', action='store_true', help='only compare the finished runs')
    parser.add_argument('--skip-compare', action='store_true', help='only train')
    parser.add_argument('--max-images', type=int, default=0, help='compare on the first N CBSD68 images (0: all)')
    parser.add_argument('--out', default='ablation_results', help='prefix of the CSV and PNG written')
    args = parser.parse_args(argv)
    if not os.path.isfile(STAGE1_CKPT):
        sys.exit(f'{STAGE1_CKPT} is missing: train the pre-denoiser first with gradnet-train -opt {STAGE1_OPT}')
    if not args.skip_training:
        train(args.runs, args.jobs, args.threads)
    if not args.skip_compare:
        compare(args.runs, args.max_images, args.out)


if __name__ == '__main__':
    main()
