"""`gradnet-denoise`: denoise photos with a pretrained GradNet (or any BasicSR denoiser checkpoint)."""
import argparse
import glob
import os
import sys
import torch

from gradnet_arch.common.devices import resolve_device
from gradnet_arch.common.images import list_images
from gradnet_arch.denoise.image_io import IMAGE_EXTENSIONS
from gradnet_arch.denoise.runner import (DEFAULT_OVERLAP, DEFAULT_TILE, DEFAULT_TILE_BATCH, denoise_file,
                                         gradient_module, output_paths)
from gradnet_arch.denoise.tiling import check_tiling
from gradnet_arch.errors import MissingFileError, OptionError, OutputExistsError, UserError, user_errors
from gradnet_arch.precision import add_precision_argument, resolve_precision
from gradnet_arch.pretrained.description import describe

DEFAULT_MODEL = 'gradnet_color_sigma25'  # best on real photos with ground truth (PolyU): README, Which model for photos

DESCRIPTION = """Denoise photos with a pretrained GradNet.

Inputs are image files, folders (their images, not sub-folders unless --recursive) or glob patterns; PNG, JPEG,
TIFF and BMP, 8- or 16-bit, grey or colour, with or without alpha. Each output is OUTDIR/<stem>.<input's extension>
(JPEG at quality 95; --format png for PNG), at the input's bit depth, upright (EXIF orientation applied) and without
EXIF; an alpha channel is copied unchanged (the network sees only the colour). Existing outputs are never replaced
without --overwrite (they are reported and skipped), not even one another run writes meanwhile: each output is
written under a temporary name and then created exclusively (with --overwrite, replaced atomically).
"""

EPILOG = f"""models:
  --model takes a shipped model (gradnet_arch.pretrained.list_pretrained() lists them) or a checkpoint. None takes a
  noise level: a non-blind model (such as the default, {DEFAULT_MODEL}) suits noise near the sigma it was trained
  for, a blind one (its manifest's sigma_range: gradnet_color_blind covers sigma 0-55) the levels of its range.

channels:
  A colour model on a grey photo denoises the grey copied to R, G and B and writes back one channel (the mean of the
  three outputs). A grey model refuses colour photos; --per-channel denoises R, G and B separately with it.

large photos:
  The network runs on tiles of --tile pixels overlapping by --tile-overlap, blended with smooth weights (no seams),
  so memory grows with the tile, not the photo; --tile 0 runs each photo whole (needs the most memory; the reference
  result). Tiled and whole results differ slightly because the network's channel attention averages over the tile.
  With --save-gradient the gradient map is taken per tile from the network itself and blended the same way.
  A photo that needs more than one forward pass gets a second progress bar, of its tiles.

speed:
  --precision auto (the default) runs bf16 autocast where the device computes bf16 natively (CPUs with AVX512-BF16
  or AMX, Ampere and later GPUs), fp16 on older GPUs and fp32 elsewhere; the network runs on channels_last tensors
  with its BatchNorm folded into the convolutions. --precision fp32 gives float32 results.

inputs are never replaced:
  Not even with --overwrite: an input is refused if one of its outputs would be an input file, its own or another's
  (a.jpg with --format png next to a.png, -o the input folder). Two inputs whose outputs share a name (a.png and
  a.jpg with --format png; photo.png and photo.jpg with --save-gradient) are both refused and neither is written;
  denoise them into different folders.

exit status:
  0 all inputs denoised (or skipped because their output exists), 1 some input failed (unreadable, corrupt, wrong
  channels, refused as above, or an output that cannot be written: read-only or full disk, a folder in the way; each
  is reported on stderr in one line and the others still run), 2 usage error (bad option, unknown model, no input),
  130 interrupted (Ctrl-C; the outputs written so far are complete).

python:
  from gradnet_arch.denoise import denoise_image
  from gradnet_arch.pretrained import load_pretrained
  net = load_pretrained('{DEFAULT_MODEL}'); out = denoise_image(net, img)   # img: numpy, RGB, uint8/uint16/float
"""


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gradnet-denoise',
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('inputs', nargs='+', metavar='INPUT', help='image files, folders or glob patterns')
    parser.add_argument('-o', '--output', required=True, metavar='OUTDIR', help='output folder (created if needed)')
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        '--model', metavar='NAME', help=f'shipped model name (default {DEFAULT_MODEL}) or a checkpoint path')
    source.add_argument('--weights', metavar='FILE', help='checkpoint file (.pth in BasicSR format or .safetensors)')
    parser.add_argument(
        '--opt',
        metavar='YAML',
        help='BasicSR option file describing the network (its network_g); needed only for checkpoints that do not '
        'embed their options; alone, it also names the checkpoint (path.pretrain_network_g)')
    parser.add_argument(
        '--param-key', help='state dict in the checkpoint (default: params_ema if present, else params)')
    parser.add_argument('--recursive', action='store_true', help='also read sub-folders (outputs keep the layout)')
    parser.add_argument('--format', choices=('same', 'png'), default='same', help='output format (default: same)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    parser.add_argument(
        '--per-channel', action='store_true', help='grey model on colour photos: denoise R, G, B separately')
    parser.add_argument(
        '--tile', type=int, default=DEFAULT_TILE, help=f'tile side in pixels, 0 = whole photo (default {DEFAULT_TILE})')
    parser.add_argument(
        '--tile-overlap',
        type=int,
        default=DEFAULT_OVERLAP,
        help=f'pixels shared by neighbouring tiles (default {DEFAULT_OVERLAP})')
    parser.add_argument(
        '--tile-batch',
        type=int,
        default=DEFAULT_TILE_BATCH,
        help=f'tiles per forward pass (default {DEFAULT_TILE_BATCH})')
    add_precision_argument(parser)
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda if available, else cpu)')
    parser.add_argument(
        '--save-gradient',
        action='store_true',
        help='also write <stem>_gradient.png: the Sobel gradient map the GradNet was given (scaled for viewing)')
    parser.add_argument(
        '--side-by-side',
        action='store_true',
        help='also write <stem>_compare.png: input | denoised | gradient (the last for GradNets with a gradient)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    return parser


def is_image(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def folder_images(folder, recursive):
    """(path, sub-folder relative to `folder`) of the images in `folder`, sorted (common.images.list_images)."""
    return [(os.path.join(folder, rel), os.path.dirname(rel))
            for rel in list_images(folder, recursive, extensions=IMAGE_EXTENSIONS)]


def collect_inputs(patterns, recursive=False):
    """Expand the command line's inputs.

    Args:
        patterns (list[str]): Files, folders or glob patterns.
        recursive (bool): Descend into sub-folders (and let `**` match across folders).

    Returns:
        tuple[list[tuple[str, str]], list[str]]: (input path, output sub-folder) pairs without duplicates, and one
        problem message per input that matched nothing usable.
    """
    jobs, problems, seen = [], [], set()

    def add(path, rel):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            jobs.append((path, rel))

    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if os.path.isdir(pattern):
            found = folder_images(pattern, recursive)
            if not found:
                problems.append(f'{pattern}: no {"/".join(IMAGE_EXTENSIONS)} images in this folder'
                                f'{"" if recursive else " (--recursive for sub-folders)"}')
            for path, rel in found:
                add(path, rel)
        elif os.path.isfile(pattern):
            if is_image(pattern):
                add(pattern, '')
            else:
                problems.append(f'{pattern}: not a supported image file (extensions {", ".join(IMAGE_EXTENSIONS)})')
        elif glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=recursive))
            files = [m for m in matches if os.path.isfile(m) and is_image(m)]
            for folder in (m for m in matches if os.path.isdir(m)):
                files += [path for path, _ in folder_images(folder, recursive)]
            if not files:
                problems.append(f'{pattern}: no image matches this pattern')
            for path in files:
                add(path, '')
        else:
            problems.append(f'{pattern}: no such file or folder')
    return jobs, problems


def _file_identity(path):
    """(device, inode) of an existing file, None otherwise: equal for two names of one file (links, aliases)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _output_key(path):
    """One key per place on disk an output name refers to (its folder with links resolved)."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.normcase(os.path.join(os.path.realpath(folder), name))


def plan_outputs(jobs, outdir, out_format, save_gradient=False, compare=False):
    """(input, output path) pairs to denoise, and (input, problem) pairs for the inputs that are refused.

    No input is ever replaced: an input is refused if one of its outputs (image, gradient map, comparison) is any
    input, its own or another's (compared by real path and by file identity, so links count). Two inputs whose
    outputs share a name (`a.png` and `a.jpg` with --format png, or `a.jpg` and `a.png` with --save-gradient) are
    both refused and neither is written, so that no result replaces another.
    """
    inputs = {}
    for src, _ in jobs:
        inputs[os.path.realpath(src)] = src
        identity = _file_identity(src)
        if identity is not None:
            inputs[identity] = src
    outputs, owners = [], {}
    for src, rel in jobs:
        stem, ext = os.path.splitext(os.path.basename(src))
        dest = os.path.join(outdir, rel, stem + ('.png' if out_format == 'png' else ext))
        paths = output_paths(dest, save_gradient, compare)  # photo.jpg and photo.png share photo_gradient.png
        outputs.append((src, dest, paths))
        for path in paths:
            owners.setdefault(_output_key(path), []).append(src)
    planned, problems = [], []
    for src, dest, paths in outputs:
        replaced = [(path, inputs.get(os.path.realpath(path)) or inputs.get(_file_identity(path))) for path in paths]
        replaced = [(path, other) for path, other in replaced if other is not None]
        shared = [(path, owners[_output_key(path)]) for path in paths if len(owners[_output_key(path)]) > 1]
        if replaced:
            path, other = replaced[0]
            what = 'the input itself' if other == src else f'the input {other}'
            problems.append((src, f'its output {path} is {what}, which is never replaced; choose another output '
                             f'folder'))
        elif shared:
            path, names = shared[0]
            others = ', '.join(name for name in names if name != src)
            problems.append((src, f'its output {path} is also an output of {others}; neither is written: rename one '
                             f'of them or denoise them into different folders'))
        else:
            planned.append((src, dest))
    return planned, problems


def load_model(args, device):
    """The network of --weights / --model (default DEFAULT_MODEL) with --opt and --param-key."""
    from gradnet_arch.pretrained import load_model as load

    source = args.weights or args.model
    if source is None and args.opt is None:
        source = DEFAULT_MODEL
    return load(source, device=device, param_key=args.param_key, network_opt=args.opt, options_flag='--opt')


class TileProgress:
    """The second progress bar: the tiles of the photo being denoised, shown only for photos that need more than one
    forward pass (more than `tile_batch` tiles). A `denoise_image` progress callback; a context manager that closes
    the bar at the end.

    Args:
        tile_batch (int): Tiles per forward pass.
        disable (bool): Show nothing (--quiet).
    """

    def __init__(self, tile_batch, disable=False):
        self.tile_batch = tile_batch
        self.disable = disable
        self.bar = None

    def __call__(self, done, total):
        if self.disable or total <= self.tile_batch:
            return
        if self.bar is not None and (total != self.bar.total or done <= self.bar.n):
            self.close()  # a new photo (the last one failed before its last tile)
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc='tiles', unit='tile', leave=False, position=1, file=sys.stderr, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def report(message, bar=None):
    """One line on stderr, printed above the progress bar when there is one."""
    message = ' '.join(str(message).split())  # one line whatever the error text holds
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def run(args):
    """Denoise everything `args` names; returns the exit status (0 all done, 1 some input failed)."""
    from tqdm import tqdm

    check_tiling(args.tile, args.tile_overlap)
    if args.tile_batch < 1:
        raise OptionError(f'--tile-batch must be >= 1, got {args.tile_batch}.')
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise OptionError(f'the output folder {args.output} is a file; give a folder with -o.')
    jobs, problems = collect_inputs(args.inputs, args.recursive)
    if not jobs:
        raise MissingFileError('no input images found:\n  ' + '\n  '.join(problems))
    net = load_model(args, device)
    if args.save_gradient and gradient_module(net) is None:
        raise OptionError(f'--save-gradient needs a GradNet with a gradient branch; this model is '
                          f'{type(net).__name__}{" without one" if type(net).__name__ == "GradNet" else ""}.')
    if args.per_channel and describe(net).input_channels != 1:
        raise OptionError('--per-channel is for grey models; this model is colour (it denoises colour photos '
                          'directly).')
    planned, clashes = plan_outputs(jobs, args.output, args.format, args.save_gradient, args.side_by_side)
    for line in problems + [f'{src}: {why}' for src, why in clashes]:
        report(f'error: {line}')
    failed = len(problems) + len(clashes)
    tiles = TileProgress(args.tile_batch, disable=args.quiet)
    options = dict(
        tile=args.tile,
        overlap=args.tile_overlap,
        tile_batch=args.tile_batch,
        precision=precision,
        per_channel=args.per_channel,
        progress=tiles)
    done, skipped = 0, 0
    with tiles, tqdm(
            planned, desc='denoise', unit='image', disable=args.quiet, file=sys.stderr, dynamic_ncols=True) as bar:
        for src, dest in bar:
            try:
                denoise_file(
                    net,
                    src,
                    dest,
                    overwrite=args.overwrite,
                    save_gradient=args.save_gradient,
                    compare=args.side_by_side,
                    **options)
            except OutputExistsError as error:  # found before any work, or written by another run meanwhile
                report(f'skipped: {src}: {error}', bar)
                skipped += 1
                continue
            except UserError as error:  # unreadable or unsuitable input, or an output that cannot be written
                failed += 1
                message = str(error)  # most messages name the file already
                report(f'error: {message}' if src in message else f'error: {src}: {message}', bar)
                continue
            except (MemoryError, RuntimeError) as error:
                if not isinstance(error, MemoryError) and 'out of memory' not in str(error).lower() and \
                        "can't allocate memory" not in str(error).lower():
                    raise
                failed += 1
                report(
                    f'error: {src}: out of memory; lower --tile (now {args.tile}) or --tile-batch '
                    f'(now {args.tile_batch})', bar)
                if device.type == 'cuda':
                    torch.cuda.empty_cache()
                continue
            done += 1
    print(
        f'gradnet-denoise: {done} denoised, {skipped} skipped (output exists), {failed} failed; outputs in '
        f'{args.output}',
        flush=True)
    return 1 if failed else 0


def main(argv=None):
    """Entry point of `gradnet-denoise`: exit 0 all done, 1 some input failed, 2 usage error."""
    args = build_parser().parse_args(argv)
    try:
        from cv2.utils import logging as cv2_logging
    except ImportError:  # pragma: no cover - OpenCV builds without the logging module
        cv2_logging = None
    if cv2_logging is not None:
        # OpenCV's own log lines about odd files would interleave with the progress bar; this command reports each
        # problem itself, one line per file
        log_level = cv2_logging.getLogLevel()
        cv2_logging.setLogLevel(cv2_logging.LOG_LEVEL_SILENT)
    try:
        with user_errors(interrupt_message='Interrupted; the outputs written so far are complete, the one in '
                         'progress was not written.'):
            status = run(args)
    finally:
        if cv2_logging is not None:
            cv2_logging.setLogLevel(log_level)
    raise SystemExit(status)
