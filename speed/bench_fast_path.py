"""The fast path against today's fp32 NCHW path and against the machine's own ceiling, in one run (tables, not tests).

    python speed/bench_fast_path.py [--device cpu|cuda] [--repeats 5] [--skip-inference] [--skip-training]
                                    [--train-in one|processes] [--skip-photo]
                                    [--psnr-set gradnet_color_sigma25=CBSD68_DIR ...] [--json out.json]

Sections, each printed as a Markdown table (medians over `--repeats`; one process, other work should be stopped):

1. Ceiling: GFLOP/s of one 64->64 3x3 convolution on a 256x256 image in each mode (fp32 NCHW, fp32 channels_last,
   bf16 autocast NCHW, bf16 autocast + channels_last; fp16 on CUDA).
2. Inference of the paper-size two-stage GradNet (random weights, BatchNorm with non-trivial statistics), the shipped
   models and BasicSR's stock RIDNet (built by BasicSR's `build_network`, 64 features): GFLOP per image (256x256
   for the paper-size net and RIDNet, as the issue compares them; 512x512, the default tile, for the shipped models)
   (`gradnet_arch.benchmark.cost.count_flops`: FlopCounterMode, 2 FLOPs per multiply-accumulate), seconds per
   megapixel and the share of the ceiling in each mode, timed round robin over the modes. Modes: `fp32 NCHW` is
   today's path; the precision / memory-format modes leave BatchNorm in; `default` is what `load_pretrained` +
   `denoise_image` now do (BatchNorm folded, channels_last, precision 'auto').
3. Training: iterations/s of `gradnet-train` (BasicSR's loop, GradNetModel) and of a bare PyTorch loop, fp32 NCHW,
   bf16 + channels_last and bf16 + channels_last + torch.compile (`compile: true`; compiling is excluded by the
   warm-up, like start-up), paper size (batch 8 of 64x64) and the shipped models' CPU preset (32 features, 2 x 2;
   batch 8 of 64x64): speed/bench_training.py's loops, by default all in this process, timed alternately in blocks
   of 3 iterations (`--train-in one`, `interleaved_loops`: free of the machine's drift), or each run in a fresh
   process (`--train-in processes`).
4. A 12-megapixel photo (4000x3000, synthetic) through `gradnet-denoise` with its defaults, in a fresh process: wall
   time and peak resident memory.
5. With `--psnr-set MODEL=DIR`: mean PSNR of a shipped model on a test set (AWGN sigma 25, seed 0 per image, as
   gradnet-benchmark) in fp32 NCHW and each reduced precision (fp16 emulated on a CPU with AVX512-FP16, as a proxy
   for its numerics on older GPUs), and the difference: the evidence for precision 'auto'.
"""
import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_training  # noqa: E402  (this folder; standard library and PyYAML only at import)

PAPER = {'num_in_ch': 3, 'num_feat': 64, 'num_modules': 4, 'num_units': 4}
PROBE = 256  # side of the conv probe and of the paper-size / RIDNet comparison image (the comparison)
PHOTO_TILE = 512  # the shipped models are timed on one 512x512 image: gradnet-denoise's default tile, photo-sized


def log(message):
    print(f'[bench] {message}', file=sys.stderr, flush=True)


def median_time(fn, repeats, device, warmup=2):
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def modes(device):
    """(label, precision, channels_last) of the timed modes on `device`."""
    from gradnet_arch.precision import bf16_supported

    rows = [('fp32 NCHW', 'fp32', False), ('fp32 channels_last', 'fp32', True)]
    if bf16_supported(device):
        rows += [('bf16 NCHW', 'bf16', False), ('bf16 channels_last', 'bf16', True)]
    if device.type == 'cuda':
        rows += [('fp16 channels_last', 'fp16', True)]
    return rows


def ceiling(device, repeats):
    """{mode label: GFLOP/s} of a 64->64 3x3 convolution on a 256x256 image."""
    import torch

    from gradnet_arch.precision import autocast, to_memory_format

    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(device).eval()
    x = torch.rand(1, 64, PROBE, PROBE, device=device)
    flops = 2 * 64 * 64 * 9 * PROBE * PROBE
    result = {}
    for label, precision, channels_last in modes(device):
        layer = conv.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        inp = to_memory_format(x, channels_last)

        def run():
            with torch.no_grad(), autocast(precision, device):
                layer(inp)

        result[label] = flops / median_time(run, repeats, device) / 1e9
    return result


def paper_gradnet():
    """The paper-size two-stage GradNet (released-code configuration), BatchNorm statistics made non-trivial."""
    import torch
    from basicsr.archs import build_network

    torch.manual_seed(0)
    net = build_network(dict(PAPER, type='GradNet', predenoiser=dict(PAPER, type='MSKResNet')))
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2)
    return net.eval()


def ridnet():
    from basicsr.archs import build_network

    return build_network({'type': 'RIDNet', 'in_channels': 3, 'mid_channels': 64, 'out_channels': 3}).eval()


def models():
    """[(label, factory of a fresh unfolded NCHW fp32 net, channels, side of the timed image)]."""
    from gradnet_arch.pretrained import list_pretrained, load_pretrained

    rows = [('GradNet paper size (two stages)', paper_gradnet, 3, PROBE), ('BasicSR RIDNet (stock)', ridnet, 3, PROBE)]
    for name in sorted(list_pretrained()):

        def load(name=name):
            return load_pretrained(name, fold_batchnorm=False, channels_last=False)

        rows.append((f'shipped {name}', load, load().num_in_ch, PHOTO_TILE))
    return rows


def gflop_per_image(net, channels, device, side):
    """GFLOP of one forward pass on a (1, channels, side, side) image, counted as gradnet-benchmark counts them."""
    import torch

    from gradnet_arch.benchmark.cost import count_flops

    return count_flops(net, torch.zeros(1, channels, side, side, device=device)) / 1e9


def inference(device, repeats, ceilings):
    """Rows of section 2: per model, GFLOP per image and s/MP + share of the ceiling per mode."""
    import torch

    from gradnet_arch.archs.bn_folding import fold_batchnorm
    from gradnet_arch.precision import auto_precision, to_memory_format

    auto = auto_precision(device)
    default = f'default ({auto}, channels_last, BN folded)'
    plan = [(mode, precision, channels_last, False) for mode, precision, channels_last in modes(device)]
    plan.append((default, auto, True, True))
    rows = []
    for label, factory, channels, side in models():
        x = torch.rand(1, channels, side, side, device=device)
        runs = {}
        for mode, precision, channels_last, fold in plan:
            net = factory().to(device)
            if fold:
                fold_batchnorm(net)
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            runs[mode] = _forward(net, to_memory_format(x, channels_last), precision, device)
        gflop = gflop_per_image(factory().to(device), channels, device, side)
        # round robin over the modes, so that drifts of the machine's speed spread over all of them alike
        seconds = {mode: [] for mode in runs}
        for fn in runs.values():
            fn()
            fn()
        for _ in range(repeats):
            for mode, fn in runs.items():
                seconds[mode].append(median_time(fn, 1, device, warmup=0))
        timings = {}
        for mode, precision, _, _ in plan:
            median = statistics.median(seconds[mode])
            ceiling_mode = mode if mode != default else f'{precision} channels_last'
            timings[mode] = {
                'seconds': median,
                's_per_mp': median / (side * side / 1e6),
                'share_of_ceiling': gflop / median / ceilings[ceiling_mode]
            }
            log(f'{label} / {mode}: {median:.3f} s per {side}x{side} ({", ".join(f"{t:.3f}" for t in seconds[mode])})')
        rows.append({'model': label, 'side': side, 'gflop_per_image': gflop, 'modes': timings})
    return rows


def _forward(net, inp, precision, device):
    import torch

    from gradnet_arch.precision import autocast

    def run():
        with torch.inference_mode(), autocast(precision, device):
            net(inp)

    return run


# the modes of speed/bench_training.py's INTERLEAVED_MODES, under the short names of this script's rows and JSON
TRAINING_MODES = tuple(
    (name, amp, compile_net)
    for name, (_, amp, compile_net) in zip(('fp32', 'bf16', 'bf16 + compile'), bench_training.INTERLEAVED_MODES))


def training_row(preset, mode, bare, basicsr, basicsr_over_bare_paired, over_fp32_paired, bare_runs, basicsr_runs):
    """One row of section 3: iterations/s of both loops (medians) and the paired ratios (see the two callers)."""
    return {
        'preset': preset,
        'mode': mode[0],
        'amp': mode[1] or 'fp32',
        'compile': mode[2],
        'bare': bare,
        'basicsr': basicsr,
        'basicsr_over_bare_paired': basicsr_over_bare_paired,
        'over_fp32_paired': over_fp32_paired,
        'runs': {
            'bare': bare_runs,
            'basicsr': basicsr_runs
        }
    }


def training_interleaved(device, rounds):
    """Rows of section 3 from speed/bench_training.py's `interleaved_loops`: whole iterations of BasicSR's loop and of
    the bare loop in each mode, all in this process, timed in blocks round robin; the ratios in brackets are medians
    over rounds of the ratio within a round. Same row format as `training`; `runs` holds seconds per iteration."""
    rows = []
    for preset in ('paper', 'cpu'):
        with tempfile.TemporaryDirectory() as root:
            times = bench_training.interleaved_loops(root, preset, rounds=rounds, device=device.type)
        fp32 = (bench_training.INTERLEAVED_MODES[0][0], 'BasicSR')
        paired = functools.partial(bench_training.paired_ratio, times, per_round=bench_training.BLOCK)
        for mode, (label, _, _) in zip(TRAINING_MODES, bench_training.INTERLEAVED_MODES):
            bare, basicsr = (label, 'bare'), (label, 'BasicSR')
            rows.append(
                training_row(preset, mode, 1 / statistics.median(times[bare]), 1 / statistics.median(times[basicsr]),
                             1 / paired(basicsr, bare), paired(fp32, basicsr), times[bare], times[basicsr]))
            log(f'training {preset} {mode[0]}: bare {rows[-1]["bare"]:.3f}, BasicSR {rows[-1]["basicsr"]:.3f} it/s')
    return rows


def training(device, repeats):
    """Rows of section 3 (speed/bench_training.py's runs, each in a fresh process), round robin over the six
    (mode, loop) cases of a preset so that drifts of the machine's speed spread over all of them alike."""
    rows = []
    plan = (('paper', 25, 5), ('cpu', 70, 10))  # (preset, iterations, warm-up iterations; compiling is iteration 1)
    loops = {'bare': bench_training.bare_run, 'basicsr': functools.partial(bench_training.basicsr_run, procs=1)}
    with tempfile.TemporaryDirectory() as root:
        folder = bench_training.write_images(os.path.join(root, 'images'))
        for preset, iters, warmup in plan:
            stage1 = bench_training.stage1_checkpoint(root, preset)
            runs = {(mode, loop): [] for mode in TRAINING_MODES for loop in loops}
            for _ in range(repeats):
                for ((_, amp, compile_net), loop), speeds in runs.items():
                    kwargs = dict(preset=preset, amp=amp, warmup=warmup, compile_net=compile_net)
                    if loop == 'basicsr':
                        kwargs['root'] = root
                    speeds.append(loops[loop](folder=folder, stage1=stage1, iters=iters, device=device.type, **kwargs))
            for ((label, _, _), loop), speeds in runs.items():
                log(f'training {preset} {label} {loop}: {", ".join(f"{r:.3f}" for r in speeds)} it/s')
            fp32 = runs[(TRAINING_MODES[0], 'basicsr')]
            for mode in TRAINING_MODES:
                bare, basicsr = runs[(mode, 'bare')], runs[(mode, 'basicsr')]
                # ratios of runs of the same repeat (minutes apart), less exposed to the machine's drift
                rows.append(
                    training_row(preset, mode, statistics.median(bare), statistics.median(basicsr),
                                 statistics.median(b / a for a, b in zip(bare, basicsr)),
                                 statistics.median(b / a for a, b in zip(fp32, basicsr)), bare, basicsr))
    return rows


def photo(device):
    """Section 4: a 12-megapixel photo through `gradnet-denoise` (defaults) in a fresh process."""
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory() as root:
        rng = np.random.RandomState(0)
        small = cv2.resize(rng.randint(0, 256, (300, 400, 3)).astype(np.uint8), (4000, 3000), cv2.INTER_CUBIC)
        noisy = np.clip(small + rng.normal(0, 25, small.shape), 0, 255).astype(np.uint8)
        src = os.path.join(root, 'photo_12mp.png')
        cv2.imwrite(src, noisy)
        cmd = [sys.executable, '-m', 'gradnet_arch.denoise', src, '-o', os.path.join(root, 'out'), '--quiet']
        if device.type == 'cuda':
            cmd += ['--device', 'cuda']
        # a fresh parent for the command: RUSAGE_CHILDREN then covers this command alone, not the earlier runs
        wrapper = ('import resource, subprocess, sys, time; start = time.perf_counter(); '
                   'subprocess.run(sys.argv[1:], check=True, capture_output=True); '
                   'print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)')
        out = subprocess.run([sys.executable, '-c', wrapper] + cmd, check=True, capture_output=True, text=True).stdout
        wall, peak_kib = (float(v) for v in out.split())
    return {'megapixels': 12.0, 'wall_s': wall, 'peak_rss_mib': peak_kib / 1024.}


def psnr_rows(sets, device):
    """Section 5: mean PSNR per precision of each `MODEL=DIR` pair (a shipped model on a folder of clean images)."""
    import numpy as np
    from basicsr.metrics import calculate_psnr

    from gradnet_arch.data import GaussianNoiseDataset
    from gradnet_arch.precision import bf16_supported
    from gradnet_arch.pretrained import list_pretrained, load_pretrained

    precisions = ['bf16'] if bf16_supported(device) else []
    if device.type == 'cuda' or _cpu_fp16():
        precisions.append('fp16')
    rows = []
    for spec in sets:
        name, folder = spec.split('=', 1)
        if name not in list_pretrained():
            raise SystemExit(f'--psnr-set {spec}: {name} is not a shipped model ({", ".join(list_pretrained())})')
        set_name = os.path.basename(os.path.normpath(folder))
        reference = load_pretrained(name, device=device, fold_batchnorm=False, channels_last=False)
        fast = load_pretrained(name, device=device)
        color = 'rgb' if reference.num_in_ch == 3 else 'gray'
        dataset = GaussianNoiseDataset({
            'name': set_name,
            'dataroot_gt': folder,
            'io_backend': {
                'type': 'disk'
            },
            'color': color,
            'sigma': 25,
            'noise_seed': 0,
            'phase': 'val'
        })
        scores = {p: [] for p in ['fp32 NCHW'] + precisions}
        for item in dataset:
            gt = _to_uint8(item['gt'].numpy().transpose(1, 2, 0))
            for label in scores:
                net, precision = (reference, 'fp32') if label == 'fp32 NCHW' else (fast, label)
                out = _whole_image(net, item['lq'], precision, label != 'fp32 NCHW', device)
                scores[label].append(calculate_psnr(_to_uint8(out), gt, crop_border=0))
        means = {label: float(np.mean(values)) for label, values in scores.items()}
        rows.append({'set': set_name, 'images': len(dataset), 'model': name, 'psnr': means})
        log(f'PSNR {set_name} {name}: {means}')
    return rows


def _to_uint8(img):
    import numpy as np

    return (np.clip(img, 0, 1) * 255.).round().astype(np.uint8)


def _cpu_fp16():
    """True where oneDNN runs fp16 on this CPU (AVX512-FP16 / AMX-FP16): only then is fp16 measured on the CPU."""
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_fp16_supported())


def _whole_image(net, lq, precision, channels_last, device):
    """The net on one whole (C, H, W) image, as denoise_image runs it untiled; (H, W, C) float32 out.

    Called directly rather than through denoise_image, which refuses fp16 on the CPU: here fp16 autocast on the CPU
    only measures fp16's numerics.
    """
    import torch

    from gradnet_arch.precision import to_memory_format

    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        out = net(to_memory_format(lq[None].to(device), channels_last)).float()
    return out[0].cpu().numpy().transpose(1, 2, 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--train-repeats', type=int, default=3, help='with --train-in processes: runs per case')
    parser.add_argument('--train-rounds', type=int, default=8, help='with --train-in one: rounds of timing')
    parser.add_argument(
        '--train-in',
        default='one',
        choices=['one', 'processes'],
        help='training section: all loops timed alternately in one process (default, free of the machine\'s drift) '
        'or each run in a fresh gradnet-train / bare-loop process')
    parser.add_argument('--skip-inference', action='store_true', help='skip sections 1 and 2')
    parser.add_argument('--skip-training', action='store_true')
    parser.add_argument('--skip-photo', action='store_true')
    parser.add_argument(
        '--psnr-set', action='append', default=[], metavar='MODEL=DIR', help='a shipped model and a clean test set')
    parser.add_argument('--json', help='also write every figure to this JSON file')
    args = parser.parse_args()
    if args.train_rounds < 1:
        parser.error(f'--train-rounds must be at least 1, got {args.train_rounds}')
    import torch

    import gradnet_arch  # noqa: F401  (registers the plugin)

    device = torch.device(args.device)
    report = {
        'machine':
        f'{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, '
        f'{torch.get_num_threads()} threads, '
        f'{torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU used"}'
    }
    if not args.skip_inference:
        report['ceiling'] = ceiling(device, args.repeats)
        report['inference'] = inference(device, args.repeats, report['ceiling'])
    if not args.skip_training:
        if args.train_in == 'one':
            report['training'] = training_interleaved(device, args.train_rounds)
        else:
            report['training'] = training(device, args.train_repeats)
        report['training_in'] = args.train_in
    if not args.skip_photo:
        report['photo'] = photo(device)
    if args.psnr_set:
        report['psnr'] = psnr_rows(args.psnr_set, device)
    print_tables(report)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)


def print_tables(report):
    print(f'\nMachine: {report["machine"]}. Medians.\n')
    if 'inference' in report:
        print_inference(report)
    print_training_and_rest(report)


def print_inference(report):
    print('| conv 64->64 3x3, 256x256 | GFLOP/s |\n|---|---:|')
    for mode, value in report['ceiling'].items():
        print(f'| {mode} | {value:.0f} |')
    mode_names = list(report['inference'][0]['modes'])
    print('\nInference, one image: s per megapixel (share of the ceiling of that mode)\n')
    print('| model | image | GFLOP / image | ' + ' | '.join(mode_names) + ' |\n|---|---|---:|' +
          '---:|' * len(mode_names))
    for row in report['inference']:
        cells = [f'{m["s_per_mp"]:.2f} ({100 * m["share_of_ceiling"]:.0f}%)' for m in row['modes'].values()]
        print(f'| {row["model"]} | {row["side"]}x{row["side"]} | {row["gflop_per_image"]:.1f} | ' + ' | '.join(cells) +
              ' |')
    by_model = {row['model']: row['modes'] for row in report['inference']}
    default = mode_names[-1]
    ridnet_fp32 = by_model['BasicSR RIDNet (stock)']['fp32 NCHW']['seconds']
    paper = by_model['GradNet paper size (two stages)']
    print(f'\nPaper-size GradNet, {default}: {paper[default]["seconds"]:.3f} s per {PROBE}x{PROBE} vs stock RIDNet '
          f'fp32 NCHW {ridnet_fp32:.3f} s: ratio {paper[default]["seconds"] / ridnet_fp32:.2f} (<= 1 is no slower).')
    for row in report['inference']:
        if row['model'].startswith('shipped'):
            speedup = row['modes']['fp32 NCHW']['seconds'] / row['modes'][default]['seconds']
            print(f'{row["model"]}: default is {speedup:.2f}x faster than fp32 NCHW.')


def print_training_and_rest(report):
    if 'training' in report:
        print('\nTraining, iterations/s (gradnet-train = BasicSR\'s loop with GradNetModel)\n')
        if report.get('training_in') == 'one':
            print(f'All loops in one process, timed in blocks of {bench_training.BLOCK} iterations round robin (data '
                  'loading included). Ratios: of the medians, and [median over rounds of the ratio within a round].\n')
        else:
            print('Each run in a fresh process. Ratios: of the medians, and [median of the ratios of runs of the same '
                  'repeat].\n')
        print('| preset | mode | bare loop | gradnet-train | gradnet-train / bare | gradnet-train / its fp32 NCHW |\n'
              '|---|---|---:|---:|---:|---:|')
        for row in report['training']:
            fp32 = next(r for r in report['training'] if r['preset'] == row['preset'] and r['mode'] == 'fp32')
            print(f'| {row["preset"]} | {row["mode"]} | {row["bare"]:.3f} | {row["basicsr"]:.3f} | '
                  f'{row["basicsr"] / row["bare"]:.3f} [{row["basicsr_over_bare_paired"]:.3f}] | '
                  f'{row["basicsr"] / fp32["basicsr"]:.2f}x [{row["over_fp32_paired"]:.2f}x] |')
    if 'photo' in report:
        photo_row = report['photo']
        print(f'\n12-megapixel photo, gradnet-denoise defaults: {photo_row["wall_s"]:.1f} s wall, peak RSS '
              f'{photo_row["peak_rss_mib"]:.0f} MiB.')
    if 'psnr' in report:
        print('\nMean PSNR (dB), AWGN sigma 25, seed 0 per image, whole images\n')
        labels = list(report['psnr'][0]['psnr'])
        print('| set | model | ' + ' | '.join(labels) + ' | ' + ' | '.join(f'{p} - fp32' for p in labels[1:]) +
              ' |\n|---|---|' + '---:|' * (2 * len(labels) - 1))
        for row in report['psnr']:
            values = row['psnr']
            diffs = [values[p] - values['fp32 NCHW'] for p in labels[1:]]
            print(f'| {row["set"]} ({row["images"]}) | {row["model"]} | ' +
                  ' | '.join(f'{values[p]:.3f}' for p in labels) + ' | ' + ' | '.join(f'{d:+.3f}'
                                                                                      for d in diffs) + ' |')


if __name__ == '__main__':
    main()
