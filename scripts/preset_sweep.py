#!/usr/bin/env python
"""Which CPU preset learns fastest: stage-1 MSKResNet candidates trained for the same wall time (issue 11).

    python scripts/preset_sweep.py --seconds 240 --jobs 2        # train every candidate, then the report
    python scripts/preset_sweep.py --report-only                 # the report from the finished runs

Run from a folder holding `datasets/CBSD432` (docs/datasets.md). Every candidate is the shipped colour stage-1 file
(`options/pretrained/train_mskresnet_cbsd432_sigma25_cpu.yml`) with one change of size, patch, batch or learning
rate; it trains from scratch on the 416 training images of CBSD432's split (`options/pretrained/meta/`) and is
validated every `--val-freq` iterations on the 16 held-out CBSD432 images (sigma 25, noise seeded per image), never on
a test set. Each run is stopped after `--seconds` of wall time; the report gives the held-out PSNR of its last
validation, so candidates compare at (nearly) equal wall time on this machine, not at equal iterations.

Outputs: `sweep/options/<candidate>.yml`, `experiments/sweep_<candidate>/` (BasicSR's logs) and with --docs the
report `summary.md` + `runs.csv`.
"""
import argparse
import csv
import datetime
import glob
import io
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(REPO, 'options', 'pretrained', 'train_mskresnet_cbsd432_sigma25_cpu.yml')
META = os.path.join(REPO, 'options', 'pretrained', 'meta')

# name -> (what changes, option overrides as dotted keys). `base` is the shipped stage-1 preset.
CANDIDATES = (
    ('base', 'shipped preset: 32 features, 2x2, batch 16 of 48x48, lr 1e-3', {}),
    ('wide48', '48 features', {
        'network_g.num_feat': 48
    }),
    ('wide64', '64 features (the paper\'s width)', {
        'network_g.num_feat': 64
    }),
    ('deep3x3', '3 modules x 3 units', {
        'network_g.num_modules': 3,
        'network_g.num_units': 3
    }),
    ('patch64_b8', 'batch 8 of 64x64 (same pixels per step)', {
        'datasets.train.gt_size': 64,
        'datasets.train.batch_size_per_gpu': 8
    }),
    ('lr2e-3', 'lr 2e-3', {
        'train.optim_g.lr': 2e-3
    }),
)
DONE_MARK = 'sweep stopped at the time limit'


def candidate_options(overrides, name, val_freq):
    from gradnet_arch.option_check import plain_options, read_option_file

    opt = plain_options(read_option_file(BASE))
    opt['name'] = f'sweep_{name}'
    train = opt['datasets']['train']
    train['meta_info_file'] = os.path.join(META, 'cbsd432_train416.txt')
    val = opt['datasets']['val']
    val.update(
        name='CBSD432_holdout16',
        dataroot_gt=train['dataroot_gt'],
        meta_info_file=os.path.join(META, 'cbsd432_holdout16.txt'))
    opt['train'].update(ema_decay=0, total_iter=1000000)
    opt['train']['scheduler'].update(milestones=[1000000])  # constant lr: the runs are cut by time
    opt['val']['val_freq'] = val_freq
    opt['logger'].update(print_freq=100, save_checkpoint_freq=1000000)
    for key, value in overrides.items():
        node = opt
        *parents, leaf = key.split('.')
        for part in parents:
            node = node[part]
        node[leaf] = value
    return opt


def write_options(name, what, overrides, val_freq):
    import yaml

    from gradnet_arch.atomic_io import atomic_open

    path = os.path.join('sweep', 'options', f'{name}.yml')
    text = (f'# preset sweep candidate {name}: {what} (written by scripts/preset_sweep.py)\n' +
            yaml.safe_dump(candidate_options(overrides, name, val_freq), sort_keys=False, width=120))
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() == text:
                return path
        sys.exit(f'{path} exists with other options: move sweep/ and experiments/sweep_* away to start afresh.')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_open(path, overwrite=False) as f:
        f.write(text.encode('utf-8'))
    return path


def run_one(name, what, overrides, args, env):
    path = write_options(name, what, overrides, args.val_freq)
    out = os.path.join('sweep', f'{name}.out')
    if os.path.isfile(out) and DONE_MARK in open(out, encoding='utf-8').read():
        return name
    with open(out, 'w', encoding='utf-8') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'gradnet_arch.train', '-opt', path],
                                stdout=log,
                                stderr=subprocess.STDOUT,
                                env=env)
        try:
            proc.wait(timeout=args.seconds)
            raise RuntimeError(f'{name} ended before the time limit: see {out}')
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        log.write(f'\n{DONE_MARK} ({args.seconds} s)\n')
    print(f'[{time.strftime("%H:%M:%S")}] done {name}', flush=True)
    return name


STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: (.*)$')


def read_curve(name):
    """[(seconds since training started, iteration, held-out PSNR)] from the run's BasicSR log."""
    logs = sorted(glob.glob(os.path.join('experiments', f'sweep_{name}', 'train_*.log')))
    if not logs:
        return [], 0
    start, it, curve, params = None, 0, [], 0
    lines = open(logs[-1], encoding='utf-8').read().splitlines()
    for i, line in enumerate(lines):
        match = STAMP.match(line)
        if 'with parameters:' in line:
            params = int(line.rsplit(':', 1)[1].replace(',', '').strip())
        if not match:
            continue
        when = datetime.datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S,%f')
        text = match.group(2)
        if text.startswith('Start training'):
            start = when
        found = re.search(r'iter:\s*([\d,]+)', text)
        if found:
            it = int(found.group(1).replace(',', ''))
        if text.startswith('Validation') and start is not None:
            psnr = next(float(ln.split(':')[1].split()[0]) for ln in lines[i + 1:i + 4] if '# psnr' in ln)
            curve.append(((when - start).total_seconds(), it, psnr))
    return curve, params


def report(docs):
    from gradnet_arch.atomic_io import atomic_open

    rows = []
    for name, what, _ in CANDIDATES:
        curve, params = read_curve(name)
        if not curve:
            continue
        seconds, it, psnr = curve[-1]
        rows.append(
            dict(
                candidate=name,
                change=what,
                parameters=params,
                seconds=round(seconds),
                iterations=it,
                s_per_iter=round(seconds / max(it, 1), 3),
                heldout_psnr=round(psnr, 3),
                curve=' '.join(f'{s:.0f}s:{p:.2f}' for s, _, p in curve)))
    if not rows:
        sys.exit('no finished sweep runs under experiments/sweep_*')
    os.makedirs(docs, exist_ok=True)
    with atomic_open(os.path.join(docs, 'runs.csv')) as f:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), quoting=csv.QUOTE_NONNUMERIC, lineterminator='\n')
        text.write(','.join(rows[0]) + '\n')  # a plain header line, strings quoted below
        writer.writerows(rows)
        f.write(text.getvalue().encode('utf-8'))
    best = max(rows, key=lambda r: r['heldout_psnr'])
    lines = [
        '| candidate | change | parameters | wall s | iterations | s / iteration | held-out PSNR (dB) |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: |'
    ]
    lines += [
        f'| {r["candidate"]} | {r["change"]} | {r["parameters"]:,} | {r["seconds"]} | {r["iterations"]:,} | '
        f'{r["s_per_iter"]} | {r["heldout_psnr"]:.3f}{" (best)" if r is best else ""} |' for r in rows
    ]
    with atomic_open(os.path.join(docs, 'summary.md')) as f:
        f.write(('\n'.join(lines) + '\n').encode('utf-8'))
    print('\n'.join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=int, default=240, help='wall time of every candidate')
    parser.add_argument('--val-freq', type=int, default=250, help='held-out validation every this many iterations')
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time')
    parser.add_argument('--threads', type=int, default=1, help='threads per run')
    parser.add_argument('--only', nargs='+', help='candidates to run (default: all)')
    parser.add_argument('--report-only', action='store_true')
    parser.add_argument('--docs', default=os.path.join('sweep', 'report'), help='folder of the report')
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join('datasets', 'CBSD432')):
        sys.exit('run from a folder holding datasets/CBSD432 (docs/datasets.md)')
    if not args.report_only:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        todo = [c for c in CANDIDATES if not args.only or c[0] in args.only]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(run_one, *c, args, env) for c in todo]:
                future.result()
    report(args.docs)


if __name__ == '__main__':
    main()
