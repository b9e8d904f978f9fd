"""Does bf16 training change what the demo learns? Both demo stages trained in float32 and in bf16 + channels_last
for the same iterations, over several seeds, validated the way `python -m gradnet_arch.demo` validates.

    python speed/demo_precision.py [--seeds 10 11 12] [--work-dir experiments_demo_precision]

For each seed and precision it writes the two demo option files (options/demo/) with that `manual_seed`, `amp` and
`channels_last` and its own run names (the stage-2 file points to its own stage 1), trains them with `gradnet-train`
(BasicSR's loop), and evaluates each final net on the validation photo in the precision it was trained in. It prints
one row per run and, per stage, the mean bf16 - fp32 difference with the spread of that difference over seeds next
to the spread between seeds of one precision: a precision effect is only seen where it stands out of the seed
spread. Runs that finished are not trained again (their `net_g_latest.pth` is read), so an interrupted study resumes.
"""
import argparse
import os
import statistics
import sys
import yaml

STAGES = ('train_demo_stage1_mskresnet.yml', 'train_demo_stage2_gradnet.yml')
PRECISIONS = (('fp32', False), ('bf16', 'bf16'))


def run_options(opt_dir, seed, amp):
    """The two demo option dicts for one seed and precision, stage 2 reading this run's stage 1."""
    from gradnet_arch.option_check import plain_options, read_option_file

    tag = f'{"bf16" if amp else "fp32"}_seed{seed}'
    opts = [plain_options(read_option_file(os.path.join(opt_dir, name))) for name in STAGES]
    for opt in opts:
        opt['name'] = f'{opt["name"]}_{tag}'
        opt['manual_seed'] = seed
        opt['amp'] = amp
        opt['channels_last'] = bool(amp)
    opts[1]['network_g']['predenoiser']['pretrained'] = os.path.join('experiments', opts[0]['name'], 'models',
                                                                     'net_g_latest.pth')
    return opts


def train_and_evaluate(work_dir, opt_dir, seed, amp):
    """PSNR/SSIM rows of `gradnet_arch.demo.evaluate` for one seed and precision (training what is not done)."""
    from gradnet_arch import train
    from gradnet_arch.atomic_io import atomic_open
    from gradnet_arch.demo import evaluate

    opts = run_options(opt_dir, seed, amp)
    cwd = os.getcwd()
    os.chdir(work_dir)  # gradnet-train writes, and the demo's evaluate reads, experiments/ under the current folder
    try:
        for opt in opts:
            if not os.path.isfile(f'{opt["name"]}.yml'):
                with atomic_open(f'{opt["name"]}.yml', overwrite=False) as f:
                    f.write(yaml.safe_dump(opt, sort_keys=False).encode())
            if not os.path.isfile(os.path.join('experiments', opt['name'], 'models', 'net_g_latest.pth')):
                print(f'[demo_precision] training {opt["name"]}', file=sys.stderr, flush=True)
                train.main(['-opt', f'{opt["name"]}.yml', '--auto_resume'])
        return evaluate([f'{opt["name"]}.yml' for opt in opts], amp)[1:]  # without the noisy-input row
    finally:
        os.chdir(cwd)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=int, nargs='+', default=[10, 11, 12])
    parser.add_argument('--opt-dir', default=os.path.join('options', 'demo'))
    parser.add_argument(
        '--work-dir',
        default='experiments_demo_precision',
        help='folder for option files and runs (the demo photos are linked in as datasets/)')
    args = parser.parse_args(argv)
    import gradnet_arch  # noqa: F401  (registers the plugin)
    from gradnet_arch.demo import write_photos

    missing = [name for name in STAGES if not os.path.isfile(os.path.join(args.opt_dir, name))]
    if missing:
        raise SystemExit(f'demo_precision: {", ".join(missing)} not found in --opt-dir {args.opt_dir}; run from the '
                         f'repository root or pass the folder of the demo option files.')
    os.makedirs(args.work_dir, exist_ok=True)
    write_photos(os.path.join(args.work_dir, 'datasets', 'skimage_demo'))
    opt_dir = os.path.abspath(args.opt_dir)
    psnr = {}  # (precision, seed) -> [stage 1, stage 2]
    print('| seed | precision | stage 1 PSNR / SSIM | stage 2 (GradNet) PSNR / SSIM |\n|---|---|---|---|')
    for seed in args.seeds:
        for label, amp in PRECISIONS:
            rows = train_and_evaluate(args.work_dir, opt_dir, seed, amp)
            psnr[label, seed] = [r[1] for r in rows]
            print(f'| {seed} | {label} | ' + ' | '.join(f'{r[1]:.3f} / {r[2]:.4f}' for r in rows) + ' |', flush=True)
    print('\n| stage | fp32 mean (seed SD) | bf16 mean (seed SD) | bf16 - fp32: mean (SD over seeds) |\n'
          '|---|---|---|---|')
    for stage, name in enumerate(('stage 1 (MSKResNet)', 'stage 2 (GradNet)')):
        fp32 = [psnr['fp32', s][stage] for s in args.seeds]
        bf16 = [psnr['bf16', s][stage] for s in args.seeds]
        diff = [b - f for b, f in zip(bf16, fp32)]
        sd = (lambda v: statistics.stdev(v) if len(v) > 1 else float('nan'))
        print(f'| {name} | {statistics.mean(fp32):.3f} ({sd(fp32):.3f}) | {statistics.mean(bf16):.3f} '
              f'({sd(bf16):.3f}) | {statistics.mean(diff):+.3f} ({sd(diff):.3f}) |')


if __name__ == '__main__':
    main()
