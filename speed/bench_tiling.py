"""Tiled against whole-image denoising: PSNR difference, time and peak memory per tile size and overlap.

    python speed/bench_tiling.py --model gradnet_color_sigma25 --folder /work/shared/data/val/CBSD68 \\
        --tiles 0 128 256 --overlap 32 [--tile-batch 4] [--device cuda] [--precision auto] [--json results.json]

Noisy inputs are exactly those of the project's validation: GaussianNoiseDataset in its validation phase (AWGN
sigma 25 on the [0, 1] float image from numpy's RandomState(0) for every image, not clipped), so the whole-image row
reproduces `gradnet-test`'s PSNR. Each output is rounded to 8 bits like BasicSR's tensor2img and scored with
`basicsr.metrics.calculate_psnr` (crop 0, RGB; grey for a grey model). `gradnet_arch.denoise.denoise_image` runs the
network with the given tiling, so the numbers are those of `gradnet-denoise` (its defaults: precision auto, which
is bf16 autocast where the device has native bf16, channels_last inputs, BatchNorm folded at load; --precision fp32
for float32).

Every (folder, setting) pair runs in its own Python process, so its peak memory is its own: peak resident memory
(`resource.getrusage` max RSS, which includes the interpreter, PyTorch and the model: compare it with the RSS
after loading, also printed) and, on CUDA, `torch.cuda.max_memory_allocated`. Time is the sum over images of the
`denoise_image` calls after one untimed warm-up call. The whole-image setting (tile 0) is always run as the reference.
Output: a Markdown table with the mean PSNR, the mean and largest per-image PSNR difference to the whole-image run.
"""
import argparse
import json
import os
import subprocess
import sys

MARK = 'BENCH_RESULT '


def worker(args):
    """Denoise one folder with one setting; print the results as one JSON line."""
    import numpy as np
    import resource
    import time
    import torch
    from basicsr.metrics import calculate_psnr

    from gradnet_arch.common.devices import resolve_device
    from gradnet_arch.data import GaussianNoiseDataset
    from gradnet_arch.denoise.runner import denoise_image
    from gradnet_arch.pretrained import describe, load_pretrained

    def rss_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.  # KiB on Linux

    def to_uint8(chw):  # BasicSR's tensor2img: clamp to [0, 1], scale, round
        img = np.clip(np.asarray(chw, np.float32), 0, 1).transpose(1, 2, 0)
        return (img * 255.).round().astype(np.uint8)

    from gradnet_arch.precision import resolve_precision

    device = resolve_device(args.device)
    args.precision = resolve_precision(args.precision, device)
    net = load_pretrained(args.model, device=device, network_opt=args.opt)
    color = 'rgb' if describe(net).input_channels == 3 else 'gray'
    dataset = GaussianNoiseDataset({
        'name': 'bench_tiling',
        'type': 'GaussianNoiseDataset',
        'phase': 'val',
        'dataroot_gt': args.folder,
        'color': color,
        'sigma': args.sigma,
        'noise_seed': 0,
        'io_backend': {
            'type': 'disk'
        }
    })
    count = len(dataset) if args.max_images is None else min(args.max_images, len(dataset))
    options = dict(tile=args.tile, overlap=args.overlap, tile_batch=args.tile_batch, precision=args.precision)
    first = dataset[0]['lq'].numpy().transpose(1, 2, 0)
    denoise_image(net, first[:64, :64], **options)  # warm-up: allocator, kernels, autocast caches
    rss_loaded = rss_mib()
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    names, psnrs, seconds, pixels = [], [], 0., 0
    for index in range(count):
        item = dataset[index]
        lq = item['lq'].numpy().transpose(1, 2, 0)
        start = time.perf_counter()
        out = denoise_image(net, lq, **options)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        pixels += lq.shape[0] * lq.shape[1]
        psnrs.append(float(calculate_psnr(to_uint8(out.transpose(2, 0, 1)), to_uint8(item['gt']), crop_border=0)))
        names.append(os.path.basename(item['gt_path']))
    result = {
        'names': names,
        'psnr': psnrs,
        'seconds': seconds,
        'megapixels': pixels / 1e6,
        'rss_loaded_mib': rss_loaded,
        'rss_peak_mib': rss_mib(),
        'cuda_peak_mib': torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else None,
        'precision': args.precision,
    }
    print(MARK + json.dumps(result), flush=True)


def run_setting(args, folder, tile, overlap):
    """Run `worker` in a fresh interpreter; returns its result dict."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__), '--worker', '--model', args.model, '--folder', folder, '--tile',
        str(tile), '--overlap',
        str(overlap), '--tile-batch',
        str(args.tile_batch), '--precision', args.precision, '--sigma',
        str(args.sigma)
    ]
    for flag, value in (('--device', args.device), ('--opt', args.opt), ('--max-images', args.max_images)):
        if value is not None:
            cmd += [flag, str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f'bench_tiling: the run with tile {tile}, overlap {overlap} on {folder} failed '
                         f'(exit {proc.returncode}).')
    return json.loads(lines[-1][len(MARK):])


def table(rows):
    """Markdown table of (folder, tile, overlap, result, reference result) rows."""
    lines = [
        '| folder | tile | overlap | images | mean PSNR (dB) | mean ΔPSNR vs whole (dB) | max abs ΔPSNR (dB) | '
        'time (s) | s / MPix | peak RSS (MiB) | RSS after load (MiB) | CUDA peak (MiB) |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for folder, tile, overlap, res, ref in rows:
        diffs = [a - b for a, b in zip(res['psnr'], ref['psnr'])]
        mean = sum(res['psnr']) / len(res['psnr'])
        cuda = '-' if res['cuda_peak_mib'] is None else f'{res["cuda_peak_mib"]:.0f}'
        lines.append(f'| {os.path.basename(os.path.normpath(folder))} | {tile or "whole"} | '
                     f'{overlap if tile else "-"} | {len(diffs)} | {mean:.3f} | {sum(diffs) / len(diffs):+.4f} | '
                     f'{max(abs(d) for d in diffs):.4f} | {res["seconds"]:.2f} | '
                     f'{res["seconds"] / max(res["megapixels"], 1e-9):.2f} | {res["rss_peak_mib"]:.0f} | '
                     f'{res["rss_loaded_mib"]:.0f} | {cuda} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='gradnet_color_sigma25', help='shipped model name or checkpoint path')
    parser.add_argument('--opt', help='option YAML for checkpoints that do not embed their network options')
    parser.add_argument('--folder', nargs='+', required=True, help='folder(s) of clean images')
    parser.add_argument('--tiles', nargs='+', type=int, default=[0, 128, 256], help='tile sizes; 0 = whole image')
    parser.add_argument('--overlap', nargs='+', type=int, default=[32], help='tile overlap(s)')
    parser.add_argument('--tile-batch', type=int, default=4)
    parser.add_argument('--precision', default='auto', choices=('auto', 'fp32', 'bf16', 'fp16'))
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda if available)')
    parser.add_argument('--sigma', type=float, default=25.)
    parser.add_argument('--max-images', type=int, help='only the first N images of each folder')
    parser.add_argument('--json', help='also write all per-image results to this JSON file')
    parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--tile', type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.folder, args.overlap = args.folder[0], args.overlap[0]
        return worker(args)

    settings = [(0, 0)] + [(tile, overlap) for tile in args.tiles if tile > 0 for overlap in args.overlap]
    rows, raw = [], []
    for folder in args.folder:
        results = {}
        for tile, overlap in settings:
            print(f'[bench_tiling] {folder}: tile {tile or "whole"}, overlap {overlap}', file=sys.stderr, flush=True)
            results[tile, overlap] = run_setting(args, folder, tile, overlap)
            raw.append(dict(folder=folder, tile=tile, overlap=overlap, **results[tile, overlap]))
        rows += [(folder, tile, overlap, results[tile, overlap], results[0, 0]) for tile, overlap in settings]
    ran = sorted({result['precision'] for _, _, _, result, _ in rows})
    print(f'\nModel {args.model}, AWGN sigma {args.sigma:g} (seed 0 per image), precision {args.precision} '
          f'(ran as {", ".join(ran)}), tile batch '
          f'{args.tile_batch}, device {args.device or "auto"}; ΔPSNR = tiled - whole, per image.\n')
    print(table(rows))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(raw, f, indent=1)


if __name__ == '__main__':
    main()
