#!/usr/bin/env python
"""The CPU ablation of GradNet (docs/ablation.md): every variant with several seeds, tested on all of CBSD68.

    python scripts/run_ablation.py                     # train + test what is missing (resumes), then the report
    python scripts/run_ablation.py --report-only       # only the report from the finished runs

Run from a folder holding `datasets/CBSD432` and `datasets/CBSD68` (docs/datasets.md). Every run uses the same data,
network size, iterations and frozen pre-denoiser: stage 1 of the shipped `gradnet_color_sigma25` (its `predenoiser.`
weights, the EMA weights of 5,000 iterations of MSKResNet, written once to
`experiments/gradnet_ablation_cpu_predenoiser/net_g_stage1.pth`), so no stage 1 has to be trained. A run is one
variant (`options/ablation_cpu/train_gradnet_ablation_cpu_<variant>.yml`) with one seed: its option file is that file
with `name` and `manual_seed` changed (written to `ablation/options/`), trained by `gradnet-train --auto_resume` (an
interrupted study continues where it stopped) and tested by `gradnet-benchmark` on CBSD68 at sigma 25 (noise seeded
per image: identical noisy images for every run). Per-seed runs see identical batches and start from identical
weights wherever their shapes agree.

Outputs: `ablation/eval/<run>.csv` (one benchmark table per run), `ablation/logs/<run>.out` (console), the training
logs under `experiments/<run>/`, and with --report the files of docs/ablation/ (runs.csv, summary.md, plot, logs).
"""
import argparse
import csv
import glob
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the report (ablation_report.py) sits beside it

# The variants of issue #15, in the order of the report: (name, what changes against the method).
VARIANTS = (
    ('gradnet', 'the method: gradient of the pre-denoised image, fused after the shallow conv (II), gradient loss'),
    ('no_gradient', 'no gradient at all (MSKResNet, L1 only)'),
    ('noisy_gradient', 'gradient of the noisy input'),
    ('no_gradient_loss', 'L1 only, no gradient-consistency loss'),
    ('fusion_I', 'gradient concatenated with the input image (I)'),
    ('fusion_III', 'gradient concatenated before the last conv (III)'),
    ('fusion_IV', 'output multiplied by the gradient (IV)'),
)
CORE = ('gradnet', 'no_gradient', 'noisy_gradient', 'no_gradient_loss')
PREDENOISER = os.path.join('experiments', 'gradnet_ablation_cpu_predenoiser', 'net_g_stage1.pth')
SHIPPED = 'gradnet_color_sigma25'
STAGE1_LABEL = 'stage1'
TEST_SET = ('CBSD68', os.path.join('datasets', 'CBSD68'))
SIGMA = 25


def base_option_path(variant):
    return os.path.join(REPO, 'options', 'ablation_cpu', f'train_gradnet_ablation_cpu_{variant}.yml')


def run_name(variant, seed):
    return f'gradnet_ablation_cpu_{variant}_seed{seed}'


def plan(seeds, fusion_seeds):
    """(variant, seed) pairs, seed by seed, so that an interrupted study has whole seeds first."""
    runs = []
    for i, seed in enumerate(seeds):
        for variant, _ in VARIANTS:
            if variant in CORE or i < fusion_seeds:
                runs.append((variant, seed))
    return runs


def write_predenoiser(source=SHIPPED):
    """The frozen stage 1 of a GradNet (`source`: a shipped name or a GradNet checkpoint file; default the shipped
    colour model) as a BasicSR checkpoint (`params_ema`, with its network options)."""
    if os.path.isfile(PREDENOISER):
        return
    from gradnet_arch.pretrained import model_info, read_checkpoint, save_checkpoint

    info = model_info(source) or ({'path': source} if os.path.isfile(source) else None)
    if info is None:
        sys.exit(f'--stage1-from {source}: neither a shipped model nor a checkpoint file.')
    ckpt = read_checkpoint(info['path'])  # a shipped file's size and SHA-256 are checked
    prefix = 'predenoiser.'
    state = {k[len(prefix):]: v for k, v in ckpt['params'].items() if k.startswith(prefix)}
    network = {
        k: v
        for k, v in ckpt['network_g']['predenoiser'].items() if k not in ('pretrained', 'param_key', 'strict')
    }
    os.makedirs(os.path.dirname(PREDENOISER), exist_ok=True)
    save_checkpoint(
        PREDENOISER,
        params=state,
        params_ema=state,
        network_opt=network,
        meta={'source': f'{source} (predenoiser.* weights: stage 1 EMA weights)'})
    print(f'wrote {PREDENOISER} from {source}', flush=True)


def write_run_options(variant, seed):
    """The run's option file: the variant's file with name and manual_seed changed; an existing different one stops."""
    import yaml

    from gradnet_arch.atomic_io import atomic_open
    from gradnet_arch.option_check import plain_options, read_option_file

    opt = read_option_file(base_option_path(variant))
    opt['name'] = run_name(variant, seed)
    opt['manual_seed'] = seed
    text = (f'# {run_name(variant, seed)}: {base_option_path(variant)[len(REPO) + 1:]} with seed {seed} '
            f'(written by scripts/run_ablation.py)\n' + yaml.safe_dump(plain_options(opt), sort_keys=False, width=120))
    path = os.path.join('ablation', 'options', f'{run_name(variant, seed)}.yml')
    if os.path.isfile(path):
        with open(path, encoding='utf-8') as f:
            if f.read() != text:
                sys.exit(f'{path} exists with other options (an older study?): move ablation/ and experiments/'
                         f'{run_name(variant, seed)}/ away, or delete them, to start this run afresh.')
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_open(path, overwrite=False) as f:
        f.write(text.encode('utf-8'))
    return path


def trained(name):
    logs = glob.glob(os.path.join('experiments', name, 'train_*.log'))
    done = any('End of training' in open(log, encoding='utf-8', errors='replace').read() for log in logs)
    return done and os.path.isfile(os.path.join('experiments', name, 'models', 'net_g_latest.pth'))


def eval_csv(name):
    return os.path.join('ablation', 'eval', f'{name}.csv')


def benchmark_command(label, spec, csv_path):
    return [
        sys.executable, '-m', 'gradnet_arch.benchmark', '--model', f'{label}={spec}', '--set',
        f'{TEST_SET[0]}={TEST_SET[1]}', '--sigma',
        str(SIGMA), '--csv', csv_path, '--quiet'
    ]


def run_one(variant, seed, env):
    """Train (resuming) and test one run; returns its name. Output goes to ablation/logs/<run>.out."""
    name = run_name(variant, seed)
    opt_path = write_run_options(variant, seed)
    os.makedirs(os.path.join('ablation', 'logs'), exist_ok=True)
    os.makedirs(os.path.join('ablation', 'eval'), exist_ok=True)
    with open(os.path.join('ablation', 'logs', f'{name}.out'), 'a', encoding='utf-8') as log:
        if not trained(name):
            _say(f'train {name}')
            cmd = [sys.executable, '-m', 'gradnet_arch.train', '-opt', opt_path, '--auto_resume']
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0 or not trained(name):
                raise RuntimeError(f'training {name} failed: see ablation/logs/{name}.out')
        if not os.path.isfile(eval_csv(name)):
            _say(f'test {name}')
            spec = f'{opt_path}@' + os.path.join('experiments', name, 'models', 'net_g_latest.pth')
            cmd = benchmark_command(name, spec, eval_csv(name))
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                raise RuntimeError(f'testing {name} failed: see ablation/logs/{name}.out')
    _say(f'done {name}')
    return name


def test_predenoiser(env):
    path = eval_csv(STAGE1_LABEL)
    if not os.path.isfile(path):
        _say('test the frozen pre-denoiser (stage 1)')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(benchmark_command(STAGE1_LABEL, PREDENOISER, path), check=True, env=env)


def _say(text):
    print(f'[{time.strftime("%H:%M:%S")}] {text}', flush=True)


def read_eval(path):
    with open(path, newline='', encoding='utf-8') as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1:
        raise ValueError(f'{path}: expected one result row, found {len(rows)}')
    return rows[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=int, nargs='+', default=[10, 11, 12], help='seeds of every core variant')
    parser.add_argument('--fusion-seeds', type=int, default=1, help='how many of the seeds the fusion variants get')
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time')
    parser.add_argument('--threads', type=int, default=1, help='threads per run (small nets use 2 cores poorly)')
    parser.add_argument('--report-only', action='store_true', help='only write the report from the finished runs')
    parser.add_argument(
        '--stage1-from',
        default=SHIPPED,
        help=f'GradNet whose frozen stage 1 every run shares: a shipped name or a checkpoint (default {SHIPPED}; the '
        f'published study used its first release, see docs/ablation.md)')
    parser.add_argument('--no-report', action='store_true', help='train and test only')
    parser.add_argument('--docs', default=os.path.join(REPO, 'docs', 'ablation'), help='folder of the report')
    args = parser.parse_args(argv)
    if not os.path.isdir(TEST_SET[1]) or not os.path.isdir(os.path.join('datasets', 'CBSD432')):
        sys.exit('run from a folder holding datasets/CBSD432 and datasets/CBSD68 (docs/datasets.md)')
    runs = plan(args.seeds, args.fusion_seeds)
    if not args.report_only:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        write_predenoiser(args.stage1_from)
        test_predenoiser(env)
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            failures = []
            for future in [pool.submit(run_one, variant, seed, env) for variant, seed in runs]:
                try:
                    future.result()
                except RuntimeError as error:
                    failures.append(str(error))
            if failures:
                sys.exit('\n'.join(failures))
    if not args.no_report:
        from ablation_report import write_report

        write_report(runs, args.docs)


if __name__ == '__main__':
    main()
