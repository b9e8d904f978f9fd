"""Turn a trained BasicSR checkpoint into a shipped model: `gradnet_arch/pretrained/weights/<name>.pth` + manifest.

    python scripts/package_weights.py --opt options/pretrained/train_gradnet_cbsd432_sigma25_cpu.yml \
        --checkpoint experiments/gradnet_color_sigma25_stage2_cpu/models/net_g_latest.pth \
        --name gradnet_color_sigma25 --color rgb --sigma 25 --description "GradNet, colour, AWGN sigma 25"

The written file holds `params_ema` (the EMA weights, or the training weights when the run had no EMA), `network_g`
(the YAML's, with `predenoiser.pretrained` cleared: the pre-denoiser's weights are inside the GradNet state dict) and
`meta`. Its `params` key holds the same tensors as `params_ema` (stored once, so it costs no space), so that BasicSR's
own loaders, whose default param_key is `params`, read the shipped weights too; `--keep-params` stores the source's
training weights there instead. The manifest gets the file's size and SHA-256.
"""
import argparse
import datetime
import os
import re
import sys
import torch

from gradnet_arch.errors import OptionError, UserError
from gradnet_arch.pretrained import zoo
from gradnet_arch.pretrained.checkpoint_io import read_checkpoint, save_checkpoint, select_state_dict
from gradnet_arch.pretrained.loader import build_from_options, load_network_state, load_pretrained, network_options
from gradnet_arch.version import __version__

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--opt', required=True, help='The train or test option YAML of the run (its network_g).')
    parser.add_argument('--checkpoint', required=True, help='The run\'s network checkpoint (models/net_g_*.pth).')
    parser.add_argument('--name', required=True, help='Model name, e.g. gradnet_color_sigma25 (also the file name).')
    parser.add_argument('--color', required=True, choices=('rgb', 'gray'), help='Image colour the model denoises.')
    parser.add_argument('--sigma', required=True, type=float, help='AWGN level (0-255 scale) it was trained for.')
    parser.add_argument('--description', required=True, help='One line for list_pretrained().')
    parser.add_argument('--card', default=None, help='Model card path (default docs/model_cards/<name>.md).')
    parser.add_argument('--keep-params', action='store_true', help='Also store the training (non-EMA) weights.')
    parser.add_argument(
        '--source-key',
        default=None,
        help='The state dict of --checkpoint to ship (default params_ema if present, else params). With params, '
        'the file holds the training weights under `params` only.')
    iterations_help = ('Training iterations (default: from the file name net_g_<iter>.pth, or from the newest '
                       'training_states/<iter>.state of the run for net_g_latest.pth).')
    parser.add_argument('--iterations', type=int, default=None, help=iterations_help)
    parser.add_argument(
        '--weights-dir',
        help='Output folder (default $GRADNET_WEIGHTS_DIR, else the package\'s '
        'gradnet_arch/pretrained/weights).')
    parser.add_argument('--force', action='store_true', help='Replace an existing weight file / manifest entry.')
    return parser.parse_args(argv)


def package(args):
    """Write the weight file and its manifest entry; returns (path, manifest entry)."""
    if not NAME_PATTERN.match(args.name):
        raise OptionError(f'--name {args.name!r} must be letters, digits, "_", "-" or "." (it becomes a file name).')
    directory = zoo.weights_dir(args.weights_dir)
    file_name = f'{args.name}.pth'
    path = os.path.join(directory, file_name)
    models = zoo.read_manifest(directory)
    if not args.force and (os.path.exists(path) or args.name in models):
        raise OptionError(f'{path} or its manifest entry already exists; pass --force to replace it.')
    network_g, _ = network_options(args.opt)
    if isinstance(network_g.get('predenoiser'), dict):
        network_g['predenoiser']['pretrained'] = None
    channels = network_g.get('num_in_ch', network_g.get('in_channels'))
    expected = {'rgb': 3, 'gray': 1}[args.color]
    if channels is not None and channels != expected:
        raise OptionError(f'--color {args.color} means {expected} channel(s) but network_g in {args.opt} has '
                          f'{channels}. Fix --color or --opt.')

    ckpt = read_checkpoint(args.checkpoint)
    source_key, weights = select_state_dict(ckpt, args.checkpoint, args.source_key)  # default: params_ema if kept
    net = build_from_options(network_g)
    # Load once here so that a checkpoint that does not fit the YAML is never shipped.
    load_network_state(net, weights, args.checkpoint, strict=True, from_file=False)
    params = weights
    if args.keep_params and 'params' in ckpt and source_key != 'params':
        _, params = select_state_dict(ckpt, args.checkpoint, 'params')

    sigma = int(args.sigma) if float(args.sigma).is_integer() else args.sigma
    meta = {
        'name':
        args.name,
        'color':
        args.color,
        'sigma':
        sigma,
        'iterations':
        args.iterations if args.iterations is not None else iterations_of(args.checkpoint),
        'source':
        _display_path(args.checkpoint),
        'source_param_key':
        source_key,
        'params': ('training weights' if params is not weights else
                   'training weights (no EMA shipped)' if source_key == 'params' else 'same tensors as params_ema'),
        'gradnet_basicsr_version':
        __version__,
        'torch_version':
        torch.__version__.split('+')[0],
        'date':
        datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d'),
    }
    ema = None if source_key == 'params' else weights  # never label training weights as EMA ones
    save_checkpoint(path, params=params, params_ema=ema, network_opt=network_g, meta=meta)
    card = args.card or f'docs/model_cards/{args.name}.md'
    entry = {
        'file': file_name,
        'sha256': zoo.sha256_of(path),
        'size': os.path.getsize(path),
        'description': args.description,
        'color': args.color,
        'sigma': sigma,
        'card': card,
    }
    models[args.name] = entry
    zoo.write_manifest(models, directory)
    # The round trip a user makes: by name, checksum verified, options from the file.
    load_pretrained(args.name, weights_dir=directory)
    return path, entry


def iterations_of(checkpoint):
    """Training iterations from BasicSR's file names: net_g_<iter>.pth, or the newest <iter>.state of the run."""
    match = re.search(r'_(\d+)\.pth$', os.path.basename(checkpoint))
    if match:
        return int(match.group(1))
    states = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint))), 'training_states')
    if os.path.basename(checkpoint).endswith('_latest.pth') and os.path.isdir(states):
        iters = [int(name[:-6]) for name in os.listdir(states) if re.fullmatch(r'\d+\.state', name)]
        if iters:
            return max(iters)
    return None


def _display_path(path):
    """The path relative to the current folder when inside it, so no home-directory layout ends up in the file."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel.startswith('..') else rel


def main(argv=None):
    args = parse_args(argv)
    try:
        path, entry = package(args)
    except UserError as error:
        print(f'Error: {error}', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print(f'Wrote {path} ({entry["size"]} bytes, sha256 {entry["sha256"]}) and its manifest entry {args.name!r}.')
    if not os.path.isfile(os.path.join(REPO, entry['card'])):
        print(f'Note: the model card {entry["card"]} does not exist yet; write it before shipping.')


if __name__ == '__main__':
    main()
