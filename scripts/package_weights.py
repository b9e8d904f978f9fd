"""Turn a trained BasicSR checkpoint into a shipped model: `<name>.safetensors` + `<name>.pth` + its manifest entry.

A model trained with `gradnet-train` (a non-blind one, and the blind colour model: AWGN sigma drawn from [0, 55]):

    python scripts/package_weights.py --opt options/pretrained/train_gradnet_cbsd432_sigma25_cpu.yml \\
        --checkpoint experiments/gradnet_color_sigma25_stage2_cpu/models/net_g_latest.pth --source-key params \\
        --name gradnet_color_sigma25 --color rgb --sigma 25 \\
        --description "GradNet, colour AWGN sigma 25, CPU preset (32 features, 2x2), CBSD432" --force
    python scripts/package_weights.py --opt options/pretrained/train_gradnet_cbsd432_blind_cpu.yml \\
        --checkpoint experiments/gradnet_color_blind_stage2_cpu/models/net_g_latest.pth \\
        --name gradnet_color_blind --color rgb --sigma-range 0 55 \\
        --description "GradNet, colour blind AWGN sigma 0-55, CPU preset (32 features, 2x2), CBSD432"

An already shipped model into this layout again (from its own `.pth`, which embeds its options, so no --opt; its
training provenance in `meta` is kept):

    python scripts/package_weights.py --checkpoint gradnet_arch/pretrained/weights/gradnet_color_sigma25.pth \\
        --name gradnet_color_sigma25 --color rgb --sigma 25 \\
        --description "GradNet, colour AWGN sigma 25, CPU preset (32 features, 2x2), CBSD432" --force

Both files hold the same tensors: the whole network's state dict (a GradNet's frozen pre-denoiser under
`predenoiser.*`), `--source-key` of the checkpoint (default `params_ema` if present, else `params`):

- `<name>.safetensors`: tensors only; `network_g` (the option file's, `predenoiser.pretrained` cleared and
  `init_from_predenoiser` dropped: the pre-denoiser's weights are inside), `meta` (JSON) and a copy of each meta field
  (name, description, color, sigma or sigma_range, iterations, source, versions, date) in its string metadata. What
  `load_pretrained(NAME)` and the tools read.
- `<name>.pth`: BasicSR's layout, the same state dict under `params` (plus `network_g` and `meta`), which BasicSR's
  own `build_network` + `load_network(net, path, param_key='params')` and `options/pretrained/test_*.yml` read.

The manifest entry gets each file's size and SHA-256 (layout: gradnet_arch/pretrained/zoo.py). The two files and the
manifest are written as one unit (gradnet_arch.atomic_io.write_files): all of them or none; existing weight files or
an existing entry are replaced only with --force. Both files are then read back by name, checksums verified, and
compared with the checkpoint tensor by tensor.
"""
import argparse
import datetime
import os
import re
import sys
import torch

from gradnet_arch.atomic_io import make_folder, write_files
from gradnet_arch.errors import BadFileError, OptionError, UserError
from gradnet_arch.pretrained import zoo
from gradnet_arch.pretrained.checkpoint_io import checkpoint_bytes, read_checkpoint, select_state_dict
from gradnet_arch.pretrained.description import training_noise
from gradnet_arch.pretrained.loader import build_from_options, load_network_state, load_pretrained, network_options
from gradnet_arch.version import __version__

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
# Fields of a packaged file's meta that this run sets; the rest of it (training provenance) a re-packaging keeps.
DESCRIPTIVE = ('name', 'description', 'color', 'sigma', 'sigma_range')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--opt',
        default=None,
        help='The train or test option YAML of the run (its network_g); may be left out for a checkpoint that embeds '
        'its options (a shipped .pth).')
    parser.add_argument('--checkpoint', required=True, help='The run\'s network checkpoint (models/net_g_*.pth).')
    parser.add_argument('--name', required=True, help='Model name, e.g. gradnet_color_sigma25 (also the file names).')
    parser.add_argument('--color', required=True, choices=('rgb', 'gray'), help='Image colour the model denoises.')
    noise = parser.add_mutually_exclusive_group(required=True)
    noise.add_argument('--sigma', type=float, help='AWGN level (0-255 scale) a non-blind model was trained for.')
    noise.add_argument(
        '--sigma-range',
        type=float,
        nargs=2,
        metavar=('LOW', 'HIGH'),
        help='AWGN levels (0-255 scale) a blind model was trained for, e.g. --sigma-range 0 55.')
    parser.add_argument('--description', required=True, help='One line for list_pretrained().')
    parser.add_argument('--card', default=None, help='Model card path (default docs/model_cards/<name>.md).')
    parser.add_argument(
        '--source-key',
        default=None,
        help='The state dict of --checkpoint to ship (default params_ema if present, else params).')
    iterations_help = ('Training iterations (default: from the file name net_g_<iter>.pth, or from the newest '
                       'training_states/<iter>.state of the run for net_g_latest.pth).')
    parser.add_argument('--iterations', type=int, default=None, help=iterations_help)
    parser.add_argument(
        '--weights-dir',
        help='Output folder (default $GRADNET_WEIGHTS_DIR, else the package\'s '
        'gradnet_arch/pretrained/weights).')
    parser.add_argument('--force', action='store_true', help='Replace existing weight files / manifest entry.')
    return parser.parse_args(argv)


def package(args):
    """Write the two weight files and the manifest entry; returns ({'safetensors': path, 'pth': path}, entry)."""
    if not NAME_PATTERN.match(args.name):
        raise OptionError(f'--name {args.name!r} must be letters, digits, "_", "-" or "." (it becomes a file name).')
    sigma, sigma_range = noise_of(args)
    directory = zoo.weights_dir(args.weights_dir)
    names = {'safetensors': f'{args.name}.safetensors', 'pth': f'{args.name}.pth'}
    paths = {kind: os.path.join(directory, name) for kind, name in names.items()}
    models = zoo.read_manifest(directory)
    existing = [path for path in paths.values() if os.path.lexists(path)]
    if not args.force and (existing or args.name in models):
        what = ', '.join(existing) if existing else f'the manifest entry {args.name!r}'
        raise OptionError(f'{what} already exists; pass --force to replace it.')

    ckpt = read_checkpoint(args.checkpoint)
    network_g = network_of(args, ckpt)
    source_key, weights = select_state_dict(ckpt, args.checkpoint, args.source_key)  # default: params_ema if kept
    net = build_from_options(network_g)
    # Load once here so that a checkpoint that does not fit the options is never shipped.
    load_network_state(net, weights, args.checkpoint, strict=True, from_file=args.opt is None)

    meta = meta_of(args, ckpt['meta'], source_key, sigma, sigma_range)
    data = {
        kind: checkpoint_bytes(path, params=weights, network_opt=network_g, meta=meta)
        for kind, path in paths.items()
    }
    entry = zoo.file_record(names['safetensors'], data['safetensors'])
    entry.update({
        'basicsr': zoo.file_record(names['pth'], data['pth']),
        'description': args.description,
        'color': args.color,
        'sigma': sigma,
    })
    if sigma_range is not None:
        entry['sigma_range'] = sigma_range
    entry['card'] = args.card or f'docs/model_cards/{args.name}.md'
    models[args.name] = entry
    make_folder(directory)
    # one unit: both weight files (created exclusively unless --force) and the manifest (always replaced)
    write_files([(paths['safetensors'], data['safetensors'], args.force), (paths['pth'], data['pth'], args.force),
                 (os.path.join(directory, zoo.MANIFEST), zoo.manifest_bytes(models), True)])
    check_written(args.name, directory, weights)
    return paths, entry


def noise_of(args):
    """(sigma, sigma_range) for the manifest and meta: a number (int when whole) and None, or None and [low, high]."""
    if args.sigma_range is not None:
        sigma, sigma_range = None, [_plain(value) for value in args.sigma_range]
    else:
        sigma, sigma_range = _plain(args.sigma), None
    try:
        training_noise({'sigma': sigma, 'sigma_range': sigma_range})
    except OptionError as error:
        flag = '--sigma-range' if sigma_range is not None else '--sigma'
        raise OptionError(f'{flag}: {error}') from None
    return sigma, sigma_range


def network_of(args, ckpt):
    """The network options: --opt's network_g, else the checkpoint's own; `predenoiser.pretrained` cleared and
    `init_from_predenoiser` dropped."""
    if args.opt is not None:
        network_g, _ = network_options(args.opt)
    elif ckpt['network_g'] is not None:
        network_g = dict(ckpt['network_g'])
    else:
        raise OptionError(f'{args.checkpoint} does not embed its network options (a training checkpoint); pass --opt '
                          f'with the option YAML of its run.')
    if isinstance(network_g.get('predenoiser'), dict):
        network_g['predenoiser'] = dict(network_g['predenoiser'], pretrained=None)
    # how training started, not what the network computes: the shipped state dict holds every weight
    network_g.pop('init_from_predenoiser', None)
    channels = network_g.get('num_in_ch', network_g.get('in_channels'))
    expected = {'rgb': 3, 'gray': 1}[args.color]
    if channels is not None and channels != expected:
        source = args.opt if args.opt is not None else args.checkpoint
        raise OptionError(f'--color {args.color} means {expected} channel(s) but network_g in {source} has '
                          f'{channels}. Fix --color or --opt.')
    return network_g


def meta_of(args, old, source_key, sigma, sigma_range):
    """The files' meta: the descriptive fields of this run, then the training provenance.

    A file that this script wrote before (its meta names a `source`) is being re-packaged: its provenance (source,
    iterations, versions, date, ...) is kept, so that the shipped record still says where the weights came from.
    """
    meta = {'name': args.name, 'description': args.description, 'color': args.color, 'sigma': sigma}
    if sigma_range is not None:
        meta['sigma_range'] = sigma_range
    if old.get('source'):
        meta.update({key: value for key, value in old.items() if key not in DESCRIPTIVE})
        if args.iterations is not None:
            meta['iterations'] = args.iterations
        return meta
    meta.update({
        'iterations': args.iterations if args.iterations is not None else iterations_of(args.checkpoint),
        'source': _display_path(args.checkpoint),
        'source_param_key': source_key,
        'gradnet_basicsr_version': __version__,
        'torch_version': torch.__version__.split('+')[0],
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d'),
    })
    return meta


def check_written(name, directory, weights):
    """Read both files back as users do (by name, checksums verified) and compare them with `weights`."""
    load_pretrained(name, weights_dir=directory)  # the .safetensors, with the options from its metadata
    for basicsr in (False, True):
        path = zoo.shipped_path(name, directory, basicsr=basicsr)
        _, state = select_state_dict(read_checkpoint(path), path, 'params')
        if state.keys() != weights.keys() or not all(torch.equal(state[k], weights[k]) for k in weights):
            raise BadFileError(f'{path} does not hold the tensors of the checkpoint it was made from.')


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


def _plain(value):
    """A whole float as an int (25.0 -> 25), so the manifest and metadata read as written on the command line."""
    return int(value) if float(value).is_integer() else value


def _display_path(path):
    """The path relative to the current folder when inside it, so no home-directory layout ends up in the file."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel.startswith('..') else rel


def main(argv=None):
    args = parse_args(argv)
    try:
        paths, entry = package(args)
    except UserError as error:
        print(f'Error: {error}', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    pth = entry['basicsr']
    print(f'Wrote {paths["safetensors"]} ({entry["size"]} bytes, sha256 {entry["sha256"]}), {paths["pth"]} '
          f'({pth["size"]} bytes, sha256 {pth["sha256"]}) and the manifest entry {args.name!r}.')
    if not os.path.isfile(os.path.join(REPO, entry['card'])):
        print(f'Note: the model card {entry["card"]} does not exist yet; write it before shipping.')


if __name__ == '__main__':
    main()
