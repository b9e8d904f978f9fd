"""Command line of the benchmark submissions: `gradnet-submit` or `python -m gradnet_arch.submit`.

    python -m gradnet_arch.submit sidd --model gradnet_sidd.pth --noisy BenchmarkNoisyBlocksSrgb.mat -o SubmitSrgb.mat
    python -m gradnet_arch.submit dnd --model gradnet_sidd.pth --dnd-root dnd_2017 -o dnd_submission
    python -m gradnet_arch.submit sidd --from-folder results/<name>/visualization/SIDD_benchmark \
        --noisy BenchmarkNoisyBlocksSrgb.mat --time-mp 0.35 -o SubmitSrgb.mat
    python -m gradnet_arch.submit dnd --from-folder results/<name>/visualization/DND --dnd-root dnd_2017 -o dnd_sub

Mistakes in the inputs or options end the command with exit status 2 and a one-line message; nothing is written then.
"""
import argparse
import sys
import warnings

from gradnet_arch.errors import OptionError, user_errors
from gradnet_arch.precision import add_precision_argument

_EPILOG = ('MODEL is a shipped model name, a checkpoint (.pth/.safetensors) with embedded network options (or give '
           'them with --network-opt), or a BasicSR option YAML (its network_g and path.pretrain_network_g). '
           'Outputs appear only when complete and are replaced only with --overwrite.')


def _add_source(parser, inputs_help):
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--model', metavar='MODEL', help='denoise the benchmark with this model (see below)')
    source.add_argument(
        '--from-folder',
        metavar='DIR',
        help=f'bundle results already saved as PNGs in DIR, named {inputs_help} (8 or 16 bit; a _SUFFIX after the '
        f'key, as gradnet-test adds, is allowed)')
    parser.add_argument(
        '--suffix',
        help='with --from-folder: take only the PNGs with this suffix after the key (\'\' for none) when DIR holds '
        'several runs')
    parser.add_argument(
        '--device', default='auto', help='where the model runs: auto (cuda if available), cpu, cuda, cuda:N')
    add_precision_argument(parser, 'the model')
    parser.add_argument(
        '--network-opt',
        metavar='YAML',
        help='network options (a BasicSR option YAML\'s network_g) for a checkpoint '
        'that does not embed them')
    parser.add_argument('--param-key', help='state-dict key in the checkpoint (default: params_ema, else params)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing outputs')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def build_parser():
    """The argparse parser of both commands."""
    parser = argparse.ArgumentParser(
        prog='gradnet-submit',
        description='Write benchmark submissions: SIDD\'s SubmitSrgb.mat and DND\'s per-image .mat bundles.',
        epilog=_EPILOG)
    commands = parser.add_subparsers(dest='benchmark', metavar='benchmark', required=True)

    cmd = commands.add_parser(
        'sidd',
        help='BenchmarkNoisyBlocksSrgb.mat -> SubmitSrgb.mat',
        description='Denoise the SIDD sRGB benchmark blocks (or bundle saved results) into SubmitSrgb.mat: '
        'DenoisedBlocksSrgb (40x32 cell of uint8 256x256x3), TimeMPSrgb (seconds per megapixel, measured) and '
        'OptionalData.',
        epilog=_EPILOG)
    _add_source(cmd, '{ii:02d}_{bb:02d}.png (1-based, as `prep sidd-benchmark` names the inputs)')
    cmd.add_argument(
        '--noisy',
        metavar='MAT',
        help='BenchmarkNoisyBlocksSrgb.mat (MATLAB v5 or v7.3); needed with --model, and with --from-folder it '
        'checks that every block has a result of its size')
    cmd.add_argument(
        '--variable',
        default='BenchmarkNoisyBlocksSrgb',
        help='variable of the noisy blocks in --noisy (default '
        'BenchmarkNoisyBlocksSrgb)')
    cmd.add_argument(
        '-o',
        '--output',
        default='SubmitSrgb.mat',
        help='the .mat file to write, or a folder for SubmitSrgb.mat in '
        'it (default ./SubmitSrgb.mat)')
    cmd.add_argument(
        '--time-mp',
        type=float,
        metavar='SECONDS',
        help='with --from-folder: TimeMPSrgb, seconds per megapixel measured when the PNGs were made (default 0, '
        'with a warning)')
    cmd.add_argument('--method-name', help='OptionalData.MethodName (default: GradNet, or the model\'s class name)')
    cmd.add_argument('--authors', help='OptionalData.Authors (default: GradNet\'s authors for a GradNet)')
    cmd.add_argument('--paper-title', help='OptionalData.PaperTitle (default: GradNet\'s for a GradNet)')
    cmd.add_argument('--venue', help='OptionalData.Venue (default: GradNet\'s for a GradNet)')

    cmd = commands.add_parser(
        'dnd',
        help='DND images + info.mat -> OUTDIR/0001.mat ...',
        description='Denoise the 20 crops of every DND sRGB image (or bundle saved results) into one .mat per '
        'image: Idenoised (1x20 cell of float32 HxWx3 in [0,1]), israw false, eval_version \'1.0\'. Zip the '
        '.mat files for the DND site.',
        epilog=_EPILOG)
    _add_source(cmd, '{image:04d}_{box:02d}.png (1-based, as `prep dnd` names the inputs)')
    cmd.add_argument(
        '--dnd-root',
        metavar='DIR',
        help='the DND folder with info.mat and images_srgb/; needed with --model, and with --from-folder it checks '
        'that every box has a result of its size')
    cmd.add_argument('-o', '--output', required=True, metavar='OUTDIR', help='folder for 0001.mat ... (created)')
    return parser


def _check_combinations(args):
    """OptionError for options that do not fit the chosen source."""
    if args.model is not None:
        needed = '--noisy' if args.benchmark == 'sidd' else '--dnd-root'
        if (args.noisy if args.benchmark == 'sidd' else args.dnd_root) is None:
            raise OptionError(f'{args.benchmark} --model needs {needed} (the benchmark\'s noisy input).')
        unused = ['--suffix'] if args.suffix is not None else []
        unused += ['--time-mp'] if getattr(args, 'time_mp', None) is not None else []
        if unused:
            raise OptionError(f'{" and ".join(unused)} apply to --from-folder only; TimeMPSrgb is measured when '
                              f'--model runs.')
    else:
        unused = [
            name for name, value in (('--network-opt', args.network_opt), ('--param-key', args.param_key),
                                     ('--device', None if args.device == 'auto' else args.device),
                                     ('--precision', None if args.precision == 'auto' else args.precision))
            if value is not None
        ]
        if unused:
            raise OptionError(f'{", ".join(unused)} apply to --model only; --from-folder runs no model.')


def run(args):
    """Run the parsed command; returns its SubmitReport."""
    from gradnet_arch.submit import dnd, sidd

    _check_combinations(args)
    if args.model is not None:  # a precision the device cannot run is a usage error before any slow work
        from gradnet_arch.common.devices import resolve_device
        from gradnet_arch.precision import resolve_precision

        resolve_precision(args.precision, resolve_device(args.device))
    common = dict(overwrite=args.overwrite, quiet=args.quiet)
    model = dict(device=args.device, network_opt=args.network_opt, param_key=args.param_key, precision=args.precision)
    if args.benchmark == 'sidd':
        method = dict(MethodName=args.method_name, Authors=args.authors, PaperTitle=args.paper_title, Venue=args.venue)
        if args.model is not None:
            return sidd.submit_sidd(
                args.model, args.noisy, args.output, method=method, variable=args.variable, **model, **common)
        return sidd.bundle_sidd_folder(
            args.from_folder,
            args.output,
            noisy_mat=args.noisy,
            time_mp=args.time_mp,
            suffix=args.suffix,
            method=method,
            variable=args.variable,
            **common)
    if args.model is not None:
        return dnd.submit_dnd(args.model, args.dnd_root, args.output, **model, **common)
    return dnd.bundle_dnd_folder(args.from_folder, args.output, dnd_root=args.dnd_root, suffix=args.suffix, **common)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f'Warning: {message}', file=sys.stderr, flush=True)


def main(argv=None):
    """Entry point; exit status 0 on success, 2 (with a one-line message) for mistakes in inputs or options."""
    args = build_parser().parse_args(argv)
    with user_errors(leading_newline=False, interrupt_message='Interrupted; no output was written.'):
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one plain line, not Python's file:line form
            report = run(args)
    print(report.summary(), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
