"""`gradnet-benchmark` (= `python -m gradnet_arch.benchmark`): compare denoisers on the same noisy images.

    python -m gradnet_arch.benchmark \
        --model GradNet=gradnet_color_sigma25 \
        --model RIDNet="{type: RIDNet, in_channels: 3, out_channels: 3}@experiments/ridnet/models/net_g_latest.pth" \
        --classical bm3d --set CBSD68=datasets/CBSD68 --set Kodak24=datasets/Kodak24 --sigma 15 25 50 \
        --pairs SIDDval=datasets/SIDD/val/gt_crops.lmdb,datasets/SIDD/val/input_crops.lmdb \
        --csv results.csv --json results.json --plot psnr_vs_time.png

Per model, set and noise level: PSNR and SSIM as BasicSR's validation computes them (outputs and ground truth turned
into 8-bit images by `tensor2img`, RGB, crop 0, `calculate_psnr` / `calculate_ssim`, mean over images), the
texture / smooth PSNR (`gradnet_arch.metrics`, mean over the images where the region is not empty), the parameter
count, FLOPs per pixel and the median time per megapixel (the forward pass -- with --tile, tiling and transfers
included -- after one untimed warm-up image, CUDA synchronized; BM3D: its call, on the CPU). Synthetic noise is
GaussianNoiseDataset's validation noise, so the numbers equal `gradnet-test`'s (with --precision fp32; the default,
auto, runs bf16 autocast where the device has native bf16). Networks run on channels_last inputs with BatchNorm
folded at load; the precision and memory format of every model are in the table, the CSV and the JSON.
"""
import argparse
import math
import platform
import sys
import torch
import warnings
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from tqdm import tqdm

from gradnet_arch.benchmark.classical import CLASSICAL, build_classical
from gradnet_arch.benchmark.cost import median_seconds_per_megapixel, timed
from gradnet_arch.benchmark.models import load_model, spec_forms
from gradnet_arch.benchmark.report import check_new_outputs, markdown_table, write_csv, write_json, write_plot
from gradnet_arch.benchmark.testsets import build_cases, tensor_sha256
from gradnet_arch.common.devices import resolve_device
from gradnet_arch.errors import DataError, OptionError, user_errors
from gradnet_arch.metrics.region_psnr import calculate_psnr_region, texture_mask
from gradnet_arch.precision import add_precision_argument, resolve_precision

_CHANNEL_COLOR = {1: 'gray', 3: 'rgb'}


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gradnet-benchmark',
        description='Compare denoisers (networks and BM3D) on identical noisy images: PSNR, SSIM, texture/smooth PSNR, '
        'parameters, FLOPs per pixel and time per megapixel.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=spec_forms_text())
    parser.add_argument(
        '--model', action='append', default=[], metavar='LABEL=SPEC', help='a network to test (repeatable)')
    parser.add_argument(
        '--classical',
        action='append',
        default=[],
        choices=CLASSICAL,
        help='a baseline: bm3d (CBM3D for colour, BM3D for grey; needs `pip install bm3d`) or noisy (the noisy '
        'input itself, unchanged)')
    parser.add_argument(
        '--bm3d-sigma',
        type=float,
        default=None,
        metavar='S',
        help='noise level (0-255) BM3D assumes on real-noise sets (--pairs); without it BM3D skips them')
    parser.add_argument(
        '--set',
        action='append',
        default=[],
        metavar='NAME=FOLDER',
        help='clean images (folder or BasicSR LMDB) + '
        'synthetic AWGN at each --sigma (repeatable)')
    parser.add_argument(
        '--pairs',
        action='append',
        default=[],
        metavar='NAME=GT,NOISY',
        help='real noise: clean and noisy images with the same names (folders or LMDBs; repeatable)')
    parser.add_argument(
        '--sigma',
        action='extend',
        nargs='+',
        type=float,
        default=None,
        metavar='S',
        help='AWGN levels on the 0-255 scale for the --set sets (e.g. --sigma 15 25 50; default 25)')
    parser.add_argument(
        '--noise-seed',
        type=int,
        default=0,
        help='seed of the synthetic noise, per image (default 0, '
        'as GaussianNoiseDataset)')
    parser.add_argument(
        '--max-images', type=int, default=None, metavar='N', help='at most N images per set, spread '
        'evenly over it')
    parser.add_argument(
        '--color',
        choices=('auto', 'rgb', 'gray'),
        default='auto',
        help='image colour mode (default: '
        'from the networks\' input channels, rgb without networks)')
    parser.add_argument(
        '--eps',
        type=float,
        default=1.0,
        help='texture threshold of the region PSNR on the [0, 1] '
        'Sobel-magnitude scale (0.5, 1 or 1.5; default 1)')
    parser.add_argument('--device', default='auto', help='auto (CUDA if available), cpu, cuda, cuda:1, ...')
    parser.add_argument(
        '--tile',
        type=int,
        default=None,
        help='tiled inference with this tile side (blended tiles, gradnet_arch.denoise); default: whole images, as '
        'BasicSR validates')
    parser.add_argument('--tile-overlap', type=int, default=32, help='overlap of the tiles (default 32)')
    add_precision_argument(parser, 'the networks (scores are always computed from float32 outputs)')
    parser.add_argument('--csv', default=None, metavar='FILE', help='write the results table as CSV')
    parser.add_argument('--json', default=None, metavar='FILE', help='write results, per-image values and settings')
    parser.add_argument('--plot', default=None, metavar='FILE.png', help='plot PSNR vs time per megapixel')
    parser.add_argument('--overwrite', action='store_true', help='replace existing --csv/--json/--plot files')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def spec_forms_text():
    try:
        return spec_forms()
    except Exception:  # the help must work even if the model zoo cannot be listed
        return 'SPEC: a shipped model name, a checkpoint, a BasicSR option YAML, or ARCH_YAML_OR_INLINE@CHECKPOINT.'


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'cpu ({torch.get_num_threads()} threads)'


def choose_color(requested, nets):
    """The images' colour mode, checked against every network's input channels."""
    channels = sorted({net.channels for net in nets})
    if requested == 'auto':
        if len(channels) > 1:
            raise OptionError(f'The networks take different channel counts ({channels}); benchmark grey and colour '
                              f'models in separate runs.')
        requested = _CHANNEL_COLOR.get(channels[0], 'rgb') if channels else 'rgb'
    wanted = 1 if requested == 'gray' else 3
    for net in nets:
        if net.channels != wanted:
            raise DataError(f'--model {net.label} takes {net.channels}-channel images but the images are {requested} '
                            f'({wanted} channel(s)); set --color to match or test it in a separate run.')
    return requested


class _Region:
    """Per-sample cache of what every model's evaluation shares: the 8-bit ground truth and its texture mask."""

    def __init__(self, sample, eps):
        self.gt8 = tensor2img([sample.gt])
        self.mask = texture_mask(self.gt8, eps)


def evaluate(out, region, eps):
    """BasicSR's PSNR/SSIM (8-bit, RGB, crop 0) and the region PSNRs of one output tensor."""
    out8 = tensor2img([out.detach().float().cpu()])
    gt8 = region.gt8
    values = {
        'psnr': float(calculate_psnr(out8, gt8, crop_border=0, test_y_channel=False)),
        'ssim': float(calculate_ssim(out8, gt8, crop_border=0, test_y_channel=False)),
    }
    with warnings.catch_warnings():  # an empty region is counted in the summary instead
        warnings.simplefilter('ignore', RuntimeWarning)
        for name in ('texture', 'smooth'):
            values[f'psnr_{name}'] = calculate_psnr_region(out8, gt8, 0, name, eps=eps, mask=region.mask)
    return values


def _mean(values):
    return sum(values) / len(values) if values else float('nan')


def summarize(denoiser, case, records, eps, device_label):
    """One result row from the per-image records of a denoiser on a case."""
    texture = [r['psnr_texture'] for r in records if not math.isnan(r['psnr_texture'])]
    smooth = [r['psnr_smooth'] for r in records if not math.isnan(r['psnr_smooth'])]
    pixels = [r['height'] * r['width'] for r in records]
    is_net = denoiser.kind == 'network'
    # classical methods run in numpy's float64 on the CPU: no precision or memory format to report
    return dict(
        model=denoiser.label,
        kind=denoiser.kind,
        set=case.set_name,
        noise=case.noise,
        images=len(records),
        psnr=_mean([r['psnr'] for r in records]),
        ssim=_mean([r['ssim'] for r in records]),
        psnr_texture=_mean(texture),
        psnr_smooth=_mean(smooth),
        texture_images=len(texture),
        smooth_images=len(smooth),
        eps=eps,
        params=denoiser.params,
        flops_per_pixel=denoiser.flops_per_pixel if is_net else None,
        sec_per_mp=(median_seconds_per_megapixel([r['seconds'] for r in records], pixels) if getattr(
            getattr(denoiser, 'method', None), 'timed', True) else None),
        device=device_label if is_net else 'cpu',
        precision=denoiser.precision if is_net else None,
        memory_format=denoiser.memory_format if is_net else None)


class _Classical:
    """A classical method in the benchmark loop (CPU, noise level from the case)."""

    kind = 'classical'
    params = 0
    flops_per_pixel = None

    def __init__(self, method):
        self.method = method
        self.label = method.name
        self.sigma = None

    def run(self, lq):
        return self.method(lq, self.sigma)


def run_benchmark(nets, classical, cases, device, eps=1.0, quiet=False, log=print):
    """Evaluate every denoiser on every case; every denoiser gets a copy of the same noisy tensor.

    Args:
        nets (list[NetDenoiser]): Networks on `device`.
        classical (list[BM3DDenoiser]): Classical methods (CPU).
        cases (list[NoisyCase]): Test sets at their noise levels.
        device (torch.device): Where the networks run.
        eps (float): Texture threshold.
        quiet (bool): No progress bar.
        log (callable): Where notes (skipped combinations) go.

    Returns:
        tuple[list[dict], list[dict]]: Summary rows and per-image records.
    """
    denoisers = list(nets) + [_Classical(method) for method in classical]
    device_label = device_name(device)
    total = len(denoisers) * sum(len(case.samples) for case in cases)
    rows, per_image = [], []
    regions = {}
    with tqdm(total=total, unit='image', disable=quiet, file=sys.stderr) as pbar:
        for case in cases:
            for denoiser in denoisers:
                pbar.set_description(f'{denoiser.label} {case.set_name} {case.noise}')
                run_device = device
                if denoiser.kind == 'classical':
                    run_device = torch.device('cpu')
                    denoiser.sigma = denoiser.method.resolve_sigma(case.sigma)
                    if denoiser.sigma is None:
                        log(f'Note: {denoiser.label} skipped on {case.set_name} (real noise of unknown level); give '
                            f'--bm3d-sigma to run it there.')
                        pbar.update(len(case.samples))
                        continue
                elif case.samples:  # one untimed run: CUDA context, cuDNN autotuning, allocator warm-up
                    denoiser.run(case.samples[0].lq.to(run_device, copy=True))
                records = []
                for sample in case.samples:
                    # a private copy: a network that writes into its input cannot change what the next one gets
                    lq = sample.lq.to(run_device, copy=True)
                    input_hash = tensor_sha256(lq)
                    out, seconds = timed(denoiser.run, run_device, lq)
                    if id(sample) not in regions:
                        regions[id(sample)] = _Region(sample, eps)
                    record = {
                        'model': denoiser.label,
                        'set': case.set_name,
                        'noise': case.noise,
                        'image': sample.name,
                        'height': int(lq.shape[-2]),
                        'width': int(lq.shape[-1]),
                        'seconds': seconds,
                        'input_sha256': input_hash,
                    }
                    record.update(evaluate(out, regions[id(sample)], eps))
                    records.append(record)
                    pbar.update(1)
                per_image += records
                if records:
                    rows.append(summarize(denoiser, case, records, eps, device_label))
    return rows, per_image


def note_untrained_sigmas(nets, sigmas, log=print):
    """One note per network tested at AWGN levels it was not trained for: another sigma than a non-blind model's, or
    one outside a blind model's range (networks whose files do not say are not mentioned)."""
    for net in nets:
        others = [sigma for sigma in sigmas if net.description.fits_sigma(sigma) is False]
        if others:
            log(f'Note: {net.label} was trained for {net.description.noise()}; it is also tested at sigma '
                f'{", ".join(f"{sigma:g}" for sigma in others)}.')


def main(argv=None):
    """Entry point. `argv` defaults to sys.argv[1:]."""
    import gradnet_arch  # noqa: F401  (registers the archs, so that option dicts can name them)

    args = build_parser().parse_args(argv)
    with user_errors(interrupt_message='Interrupted; report files are written at the end, each whole or not at all.'):
        run(args)


def run(args):
    if not args.model and not args.classical:
        raise OptionError('Nothing to benchmark: give --model LABEL=SPEC and/or --classical bm3d.\n' + spec_forms())
    if not args.set and not args.pairs:
        raise OptionError('No test images: give --set NAME=FOLDER (clean images + AWGN) and/or --pairs '
                          'NAME=GT,NOISY (real noise).')
    sigmas = args.sigma or [25.]
    if any(s < 0 for s in sigmas):
        raise OptionError(f'--sigma must be >= 0 (0-255 scale), got {sigmas}.')
    if args.eps < 0:
        raise OptionError(f'--eps must be >= 0, got {args.eps}.')
    if args.tile is not None and args.tile < 8:
        raise OptionError(f'--tile must be at least 8 pixels, got {args.tile}.')
    if args.tile and not 0 <= args.tile_overlap < args.tile:
        raise OptionError(
            f'--tile-overlap must be >= 0 and smaller than --tile ({args.tile}), got {args.tile_overlap}.')
    check_new_outputs([args.csv, args.json, args.plot], args.overwrite, plot=args.plot)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)  # before loading anything: fp16 on a CPU is a usage error
    classical = [build_classical(name, args.bm3d_sigma) for name in dict.fromkeys(args.classical)]
    nets = [load_model(text, device, args.tile, args.tile_overlap, precision) for text in args.model]
    labels = [net.label for net in nets] + [method.name for method in classical]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise OptionError(f'Two models are labelled {duplicates[0]!r}; give each --model its own LABEL=.')
    color = choose_color(args.color, nets)
    cases = build_cases(args.set, args.pairs, sigmas, color, args.max_images, args.noise_seed)
    if args.set:
        note_untrained_sigmas(nets, sigmas, log=lambda text: print(text, file=sys.stderr))
    rows, per_image = run_benchmark(
        nets, classical, cases, device, args.eps, args.quiet, log=lambda text: print(text, file=sys.stderr))
    print(markdown_table(rows))
    print(f'\nPSNR/SSIM: BasicSR (8-bit, RGB, crop 0), mean over images; texture/smooth PSNR with eps {args.eps:g}; '
          f'time: median forward time per megapixel on {device_name(device)}; FLOPs = 2 x multiply-adds of '
          f'convs and matmuls per pixel.' + (f' Networks: {precision}, channels_last inputs, BatchNorm folded at load '
                                             f'(--precision {args.precision}).' if nets else ''))
    if args.csv:
        write_csv(args.csv, rows, overwrite=args.overwrite)
    if args.json:
        settings = {
            'device': device_name(device),
            'precision_requested': args.precision,
            'precision': precision,
            'color': color,
            'eps': args.eps,
            'noise_seed': args.noise_seed,
            'max_images': args.max_images,
            'models': args.model,
            'classical': args.classical,
            'sets': args.set,
            'pairs': args.pairs,
            'sigmas': sigmas,
            'training_noise': {
                net.label: net.description.noise()
                for net in nets
            },
            'torch': torch.__version__,
            'python': platform.python_version(),
        }
        write_json(args.json, rows, per_image, settings, overwrite=args.overwrite)
    if args.plot:
        write_plot(args.plot, rows, device_name(device), overwrite=args.overwrite)
    return rows, per_image
