"""Command line of the data preparation: `python -m gradnet_arch.prep <command> ...`.

    python -m gradnet_arch.prep sidd-train SIDD_Medium_Srgb --out datasets/SIDD/train
    python -m gradnet_arch.prep sidd-val --noisy ValidationNoisyBlocksSrgb.mat --gt ValidationGtBlocksSrgb.mat \
        --out datasets/SIDD/val
    python -m gradnet_arch.prep sidd-benchmark --noisy BenchmarkNoisyBlocksSrgb.mat \
        --out datasets/SIDD/benchmark/input_blocks
    python -m gradnet_arch.prep dnd dnd_2017 --out datasets/DND/crops
    python -m gradnet_arch.prep crops ../shared/data/train/CBSD432 --crop-size 240 --step 120 --thresh-size 24 \
        --out datasets/CBSD432/CBSD432_sub.lmdb
    python -m gradnet_arch.prep paired --lq ../shared/data/real/PolyU --lq-suffix _real --gt-suffix _mean \
        --val-count 20 --crop-size 256 --out datasets/PolyU

Give each the output path that docs/datasets.md lists: the option files expect it there.

Mistakes in the input or the options end the command with exit status 2 and a one-line message; nothing is written
then (see stamps for the atomicity and re-run rules).
"""
import argparse
import os
import sys

from gradnet_arch.errors import user_errors
from gradnet_arch.prep import dnd, folders, sidd

_EPILOG = ('Outputs appear only when complete. Re-running a command on unchanged inputs does nothing; an output built '
           'from other inputs or settings is replaced only with --overwrite.')


def _add_common(parser, workers=True, skip_bad=True):
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='replace existing outputs (the old ones stay until '
        'the new ones are complete)')
    parser.add_argument(
        '--compress-level',
        type=int,
        default=1,
        metavar='N',
        help='PNG compression 0-9 (default 1, as BasicSR\'s LMDB scripts)')
    if workers:
        parser.add_argument(
            '--workers',
            type=int,
            default=min(4,
                        os.cpu_count() or 1),
            metavar='N',
            help='processes reading and encoding images (default: min(4, CPU cores))')
    if skip_bad:
        parser.add_argument(
            '--skip-bad',
            action='store_true',
            help='skip unpaired, unreadable, size-mismatched '
            'or too small images (each reported, counted at the end) instead of stopping')


def _add_crops(parser, crop_size, step, step_help):
    parser.add_argument(
        '--crop-size', type=int, default=crop_size, metavar='N', help=f'crop size in pixels (default {crop_size})')
    parser.add_argument('--step', type=int, default=step, metavar='N', help=step_help)
    parser.add_argument(
        '--thresh-size',
        type=int,
        default=0,
        metavar='N',
        help='a border strip up to N pixels wide gets no extra crop flush with the border (default '
        '0: every pixel is covered)')


def build_parser():
    """The argparse parser of all commands."""
    parser = argparse.ArgumentParser(
        prog='python -m gradnet_arch.prep',
        description='Prepare SIDD, DND and image folders as BasicSR LMDBs (data.mdb, lock.mdb, meta_info.txt with '
        'PNG-encoded BGR images) or PNG folders.',
        epilog=_EPILOG)
    commands = parser.add_subparsers(dest='command', metavar='command', required=True)

    cmd = commands.add_parser(
        'sidd-train',
        help='SIDD-Medium sRGB -> gt_crops.lmdb, input_crops.lmdb',
        description='Cut the GT/NOISY pairs of SIDD-Medium sRGB (Data/<scene>/*_GT_SRGB_*.PNG and '
        '*_NOISY_SRGB_*.PNG) into crops; keys {scene}_{capture}_s{index:03d}.',
        epilog=_EPILOG)
    cmd.add_argument('root', help='SIDD_Medium_Srgb folder (or its Data folder)')
    cmd.add_argument('--out', required=True, help='output folder, e.g. datasets/SIDD/train')
    _add_crops(cmd, 512, 384, 'distance between crops (default 384)')
    _add_common(cmd)

    cmd = commands.add_parser(
        'sidd-val',
        help='SIDD validation .mat -> gt_crops.lmdb, input_crops.lmdb',
        description='Store the SIDD validation blocks (RGB in the .mat files, BGR PNG in the LMDBs); keys '
        '{image:02d}_{block:02d}, 1-based.',
        epilog=_EPILOG)
    cmd.add_argument('--noisy', required=True, metavar='MAT', help='ValidationNoisyBlocksSrgb.mat')
    cmd.add_argument('--gt', required=True, metavar='MAT', help='ValidationGtBlocksSrgb.mat')
    cmd.add_argument('--out', required=True, help='output folder, e.g. datasets/SIDD/val')
    _add_common(cmd, skip_bad=False)

    cmd = commands.add_parser(
        'sidd-benchmark',
        help='SIDD benchmark .mat -> folder of noisy PNGs',
        description='Write the SIDD benchmark blocks as {image:02d}_{block:02d}.png (1-based; the result for '
        'ii_bb goes into DenoisedBlocksSrgb{ii,bb} of the submission).',
        epilog=_EPILOG)
    cmd.add_argument('--noisy', required=True, metavar='MAT', help='BenchmarkNoisyBlocksSrgb.mat')
    cmd.add_argument('--out', required=True, help='output folder of PNGs, e.g. datasets/SIDD/benchmark/input_blocks')
    _add_common(cmd, workers=False, skip_bad=False)

    cmd = commands.add_parser(
        'dnd',
        help='DND sRGB -> folder of 16-bit PNG crops',
        description='Cut the 20 boxes of each DND sRGB image (info.mat, images_srgb/NNNN.mat) into '
        '{image:04d}_{box:02d}.png, 1-based. 16-bit PNGs: BasicSR\'s own reader decodes them to 8 bit.',
        epilog=_EPILOG)
    cmd.add_argument('root', help='DND folder with info.mat and images_srgb/')
    cmd.add_argument('--out', required=True, help='output folder of PNGs, e.g. datasets/DND/crops')
    cmd.add_argument('--bits', type=int, choices=(8, 16), default=16, help='PNG bit depth (default 16)')
    _add_common(cmd, skip_bad=False)

    cmd = commands.add_parser(
        'crops',
        help='clean image folders -> one crops LMDB',
        description='Cut the images of one or more folders into crops (keys {stem}_s{index:03d}) for '
        'GaussianNoiseDataset with io_backend lmdb.',
        epilog=_EPILOG)
    cmd.add_argument('folders', nargs='+', metavar='FOLDER', help='folders of clean images')
    cmd.add_argument('--out', required=True, help='the LMDB to write, ending in .lmdb')
    _add_crops(cmd, 480, 240, 'distance between crops (default 240)')
    cmd.add_argument('--color', choices=folders.COLORS, default='rgb', help='rgb (stored BGR) or gray (default rgb)')
    cmd.add_argument('--recursive', action='store_true', help='include images in sub-folders')
    cmd.add_argument(
        '--folder-prefix',
        action='store_true',
        help='start keys with the folder name (for folders '
        'whose file names clash)')
    _add_common(cmd)

    cmd = commands.add_parser(
        'paired',
        help='paired noisy/clean folders -> train/{gt,lq}.lmdb, val/{gt,lq}.lmdb',
        description='Pair noisy and clean images by name (NAME+lq-suffix.* with NAME+gt-suffix.*), hold out a '
        'seeded random validation set of whole images, and optionally crop the training pairs.',
        epilog=_EPILOG)
    cmd.add_argument('--lq', required=True, metavar='FOLDER', help='folder of noisy images')
    cmd.add_argument('--gt', metavar='FOLDER', help='folder of clean images (default: the --lq folder)')
    cmd.add_argument(
        '--lq-suffix', default='', help='noisy file names end with this before the extension (PolyU: '
        '_real)')
    cmd.add_argument('--gt-suffix', default='', help='clean file names end with this (PolyU: _mean)')
    cmd.add_argument('--out', required=True, help='output folder for train/ and val/')
    split = cmd.add_mutually_exclusive_group()
    split.add_argument('--val-count', type=int, metavar='N', help='pairs held out for validation (default 0)')
    split.add_argument('--val-fraction', type=float, metavar='F', help='fraction of pairs held out for validation')
    cmd.add_argument('--seed', type=int, default=0, help='seed of the validation draw (default 0)')
    cmd.add_argument('--crop-size', type=int, metavar='N', help='crop the training pairs (default: whole images)')
    cmd.add_argument('--step', type=int, metavar='N', help='distance between crops (default crop size / 2)')
    cmd.add_argument(
        '--thresh-size',
        type=int,
        default=0,
        metavar='N',
        help='a border strip up to N pixels wide gets no extra crop (default 0)')
    cmd.add_argument('--color', choices=folders.COLORS, default='rgb', help='rgb (stored BGR) or gray (default rgb)')
    cmd.add_argument('--recursive', action='store_true', help='include images in sub-folders')
    _add_common(cmd)
    return parser


def run(args):
    """Run the parsed command; returns its PrepReport."""
    common = dict(compress_level=args.compress_level, overwrite=args.overwrite)
    if args.command == 'sidd-train':
        return sidd.prepare_sidd_train(
            args.root,
            args.out,
            args.crop_size,
            args.step,
            args.thresh_size,
            workers=args.workers,
            skip_bad=args.skip_bad,
            **common)
    if args.command == 'sidd-val':
        return sidd.prepare_sidd_val(args.noisy, args.gt, args.out, workers=args.workers, **common)
    if args.command == 'sidd-benchmark':
        return sidd.prepare_sidd_benchmark(args.noisy, args.out, **common)
    if args.command == 'dnd':
        return dnd.prepare_dnd(args.root, args.out, bits=args.bits, workers=args.workers, **common)
    if args.command == 'crops':
        return folders.prepare_crops(
            args.folders,
            args.out,
            args.crop_size,
            args.step,
            args.thresh_size,
            args.color,
            args.recursive,
            args.folder_prefix,
            workers=args.workers,
            skip_bad=args.skip_bad,
            **common)
    return folders.prepare_paired(
        args.lq,
        args.out,
        gt_dir=args.gt,
        lq_suffix=args.lq_suffix,
        gt_suffix=args.gt_suffix,
        val_count=args.val_count,
        val_fraction=args.val_fraction,
        seed=args.seed,
        crop_size=args.crop_size,
        step=args.step,
        thresh_size=args.thresh_size,
        color=args.color,
        recursive=args.recursive,
        workers=args.workers,
        skip_bad=args.skip_bad,
        **common)


def main(argv=None):
    """Entry point; exit status 0 on success, 2 (with a one-line message) for mistakes in inputs or options."""
    args = build_parser().parse_args(argv)
    with user_errors(leading_newline=False, interrupt_message='Interrupted; no output was written.'):
        report = run(args)
    print(report.summary(), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
