"""The report of scripts/run_ablation.py: runs.csv, the summary tables, the plot and the training logs.

    python scripts/run_ablation.py --report-only      # from the folder the study ran in

Statistics: per variant the mean and the sample standard deviation over seeds; against the method, the per-seed
paired difference (same seed: same data order, noise draws and initial weights where shapes agree) with its mean,
standard deviation and a 95% t-interval (scipy's t quantile; none with one seed). The pre-denoiser's row is the frozen
stage 1 every GradNet run uses, tested the same way.
"""
import csv
import glob
import io
import math
import os
import shutil
import statistics
import sys

RUN_COLUMNS = ('variant', 'seed', 'iterations', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth')
METRICS = ('psnr', 'ssim', 'psnr_texture', 'psnr_smooth')
OFF_SCALE = 1.5  # dB below the method: drawn as text, not as a point


def collect(runs):
    """One row per finished and tested run (RUN_COLUMNS), in the order of `runs`; the names of the missing ones."""
    import run_ablation as study

    from gradnet_arch.option_check import read_option_file

    rows, missing = [], []
    for variant, seed in runs:
        name = study.run_name(variant, seed)
        path = study.eval_csv(name)
        if not os.path.isfile(path):
            missing.append(name)
            continue
        result = study.read_eval(path)
        iterations = read_option_file(os.path.join('ablation', 'options', f'{name}.yml'))['train']['total_iter']
        rows.append({
            'variant': variant,
            'seed': seed,
            'iterations': iterations,
            **{
                key: float(result[key])
                for key in METRICS
            }
        })
    return rows, missing


def mean_spread(values):
    """(mean, sample std or nan, half-width of the 95% t-interval or nan)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    std = statistics.stdev(values)
    return mean, std, t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))


def _fmt(value, digits=2, sign=False):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '--'
    return f'{value:+.{digits}f}' if sign else f'{value:.{digits}f}'


def summary_tables(rows, stage1, descriptions):
    """Markdown: per-variant mean/spread, and paired differences to the method per seed."""
    by_variant = {}
    for row in rows:
        by_variant.setdefault(row['variant'], {})[row['seed']] = row
    lines = [
        '| variant | what changes | seeds | PSNR mean (dB) | PSNR std | SSIM mean | texture PSNR | smooth PSNR |',
        '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for variant, seeds in by_variant.items():
        psnr = mean_spread([r['psnr'] for r in seeds.values()])
        lines.append(
            f'| {variant} | {descriptions[variant]} | {len(seeds)} | {_fmt(psnr[0], 3)} | {_fmt(psnr[1], 3)} | '
            f'{_fmt(statistics.fmean(r["ssim"] for r in seeds.values()), 4)} | '
            f'{_fmt(statistics.fmean(r["psnr_texture"] for r in seeds.values()))} | '
            f'{_fmt(statistics.fmean(r["psnr_smooth"] for r in seeds.values()))} |')
    if stage1 is not None:
        lines.append(f'| (stage 1) | the frozen pre-denoiser of every GradNet run | -- | {_fmt(stage1["psnr"])} | -- | '
                     f'{_fmt(stage1["ssim"], 4)} | {_fmt(stage1["psnr_texture"])} | {_fmt(stage1["psnr_smooth"])} |')
    lines += [
        '', 'Paired difference to the method (variant - gradnet, same seed), in dB: mean, std and 95% '
        't-interval over the seeds both have; per seed in brackets.', '',
        '| variant | seeds | PSNR diff | std | 95% CI | texture diff | smooth diff | per seed (PSNR) |',
        '| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |'
    ]
    method = by_variant.get('gradnet', {})
    for variant, seeds in by_variant.items():
        if variant == 'gradnet':
            continue
        common = sorted(set(seeds) & set(method))
        if not common:
            continue
        diff = {key: [seeds[s][key] - method[s][key] for s in common] for key in METRICS}
        psnr = mean_spread(diff['psnr'])
        interval = '--' if math.isnan(psnr[2]) else f'[{psnr[0] - psnr[2]:+.3f}, {psnr[0] + psnr[2]:+.3f}]'
        per_seed = ', '.join(f'{s}: {d:+.3f}' for s, d in zip(common, diff['psnr']))
        lines.append(f'| {variant} | {len(common)} | {_fmt(psnr[0], 3, sign=True)} | {_fmt(psnr[1], 3)} | {interval} | '
                     f'{_fmt(statistics.fmean(diff["psnr_texture"]), 3, sign=True)} | '
                     f'{_fmt(statistics.fmean(diff["psnr_smooth"]), 3, sign=True)} | {per_seed} |')
    if stage1 is not None and method:
        diff = [r['psnr'] - stage1['psnr'] for r in method.values()]
        texture = [r['psnr_texture'] - stage1['psnr_texture'] for r in method.values()]
        smooth = [r['psnr_smooth'] - stage1['psnr_smooth'] for r in method.values()]
        lines += [
            '', f'The method against its own frozen pre-denoiser: {_fmt(statistics.fmean(diff), 3, sign=True)} dB '
            f'PSNR (texture {_fmt(statistics.fmean(texture), 3, sign=True)}, smooth '
            f'{_fmt(statistics.fmean(smooth), 3, sign=True)}; per seed ' + ', '.join(f'{d:+.3f}' for d in diff) + ').'
        ]
    return '\n'.join(lines) + '\n'


def write_plot(rows, stage1, path):
    """PSNR per run (a dot per seed, a bar for the mean) and the paired texture / smooth differences to the method."""
    try:
        import matplotlib
    except ImportError:
        print('matplotlib is not installed: no plot (pip install matplotlib)', file=sys.stderr)
        return
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    method = {r['seed']: r for r in rows if r['variant'] == 'gradnet'}
    reference = statistics.fmean(r['psnr'] for r in method.values()) if method else max(r['psnr'] for r in rows)
    # A variant that did not train to a usable denoiser (more than OFF_SCALE dB below the method) would squash the
    # scale of the others: it is named in the panel with its value instead of drawn.
    means = {
        v: statistics.fmean(r['psnr'] for r in rows if r['variant'] == v)
        for v in dict.fromkeys(r['variant'] for r in rows)
    }
    variants = [v for v, m in means.items() if m >= reference - OFF_SCALE]
    off_scale = [f'{v}: {m:.2f} dB' for v, m in means.items() if m < reference - OFF_SCALE]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={'width_ratios': [3, 2]})
    for i, variant in enumerate(variants):
        values = [r['psnr'] for r in rows if r['variant'] == variant]
        left.scatter([i] * len(values), values, color='tab:blue', zorder=3, s=18)
        left.hlines(means[variant], i - 0.3, i + 0.3, color='black')
    if stage1 is not None:
        left.axhline(stage1['psnr'], color='tab:red', linestyle='--', label=f'frozen stage 1 ({stage1["psnr"]:.2f} dB)')
        left.legend(loc='best')
    if off_scale:
        left.text(0.99, 0.98, 'off scale: ' + ', '.join(off_scale), transform=left.transAxes, ha='right', va='top')
    left.set_xticks(range(len(variants)), variants, rotation=30, ha='right')
    left.set_ylabel('PSNR on CBSD68, sigma 25 (dB)')
    left.set_title('every run (dots: seeds, line: mean)')
    left.grid(axis='y', alpha=0.3)
    others = [v for v in variants if v != 'gradnet']
    for j, (key, colour) in enumerate((('psnr_texture', 'tab:green'), ('psnr_smooth', 'tab:orange'))):
        diffs = []
        for variant in others:
            paired = [r[key] - method[r['seed']][key] for r in rows if r['variant'] == variant and r['seed'] in method]
            diffs.append(statistics.fmean(paired) if paired else math.nan)
        right.barh([k + 0.2 * (1 - 2 * j) for k in range(len(others))],
                   diffs,
                   height=0.4,
                   color=colour,
                   label=key.replace('psnr_', '') + ' pixels')
    right.axvline(0, color='black', linewidth=0.8)
    right.set_yticks(range(len(others)), others)
    right.invert_yaxis()
    right.set_xlabel('variant - gradnet, paired by seed, mean (dB)')
    right.set_title('texture vs smooth regions')
    right.legend(loc='best')
    right.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    from gradnet_arch.atomic_io import atomic_open

    with atomic_open(path) as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)


def _write(path, text):
    """Whole or not at all, through the project's one staged writer."""
    from gradnet_arch.atomic_io import atomic_open

    with atomic_open(path) as f:
        f.write(text.encode('utf-8'))


def write_report(runs, docs):
    """Write docs/ablation/{runs.csv, summary.md, ablation.png, logs/} from the finished runs of `runs`."""
    import run_ablation as study

    rows, missing = collect(runs)
    if missing:
        print(f'not finished yet ({len(missing)}): {", ".join(missing)}', file=sys.stderr)
    if not rows:
        sys.exit('no finished runs to report')
    os.makedirs(os.path.join(docs, 'logs'), exist_ok=True)
    table = io.StringIO(newline='')
    writer = csv.DictWriter(table, fieldnames=RUN_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f'{row[k]:.4f}' if k in METRICS else row[k]) for k in RUN_COLUMNS})
    _write(os.path.join(docs, 'runs.csv'), table.getvalue())
    stage1_csv = study.eval_csv(study.STAGE1_LABEL)
    stage1 = None
    if os.path.isfile(stage1_csv):
        stage1 = {key: float(value) for key, value in study.read_eval(stage1_csv).items() if key in METRICS}
    descriptions = dict(study.VARIANTS)
    text = summary_tables(rows, stage1, descriptions)
    _write(os.path.join(docs, 'summary.md'), '# Ablation summary (written by scripts/run_ablation.py)\n\n' + text)
    write_plot(rows, stage1, os.path.join(docs, 'ablation.png'))
    for row in rows:
        name = study.run_name(row['variant'], row['seed'])
        logs = sorted(glob.glob(os.path.join('experiments', name, 'train_*.log')))
        for log in logs:  # every log of the run (an interrupted run has one per start)
            shutil.copy2(log, os.path.join(docs, 'logs', os.path.basename(log)))
    print(text)
