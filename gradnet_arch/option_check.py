"""Early, readable checks of an option YAML before BasicSR's pipeline starts working on it."""
import argparse
import difflib
import os

from gradnet_arch.errors import MissingFileError, OptionError

KNOWN_TOP_LEVEL = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train',
                   'val', 'logger', 'dist_params', 'find_unused_parameters')
# BasicSR datasets that read opt['scale'] (BasicSR's parse_options copies the top-level key into each dataset).
SCALED_DATASETS = ('PairedImageDataset', 'RealESRGANPairedDataset')
REQUIRED = ('name', 'model_type', 'num_gpu', 'datasets', 'network_g', 'path')


def _suggest(key, choices):
    match = difflib.get_close_matches(key, choices, n=1, cutoff=0.75)
    return match[0] if match else None


def check_options(opt, path='<options>'):
    """Check an option dict (as loaded from YAML) for the mistakes that otherwise surface as deep tracebacks.

    Args:
        opt (dict): The options.
        path (str): The file name, for messages.

    Raises:
        OptionError: Naming the file, the key and how to fix it.
    """
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, MODEL_REGISTRY

    if not isinstance(opt, dict):
        raise OptionError(f'{path} does not hold a YAML mapping of options.')
    for key in opt:
        hint = _suggest(key, KNOWN_TOP_LEVEL) if key not in KNOWN_TOP_LEVEL else None
        if hint:
            raise OptionError(f'{path}: unknown top-level key {key!r}; did you mean {hint!r}?')
    missing = [key for key in REQUIRED if key not in opt]
    if missing:
        raise OptionError(f'{path}: missing required key(s): {", ".join(missing)}.')
    _check_registered(path, 'model_type', opt['model_type'], MODEL_REGISTRY)
    if not isinstance(opt['network_g'], dict) or 'type' not in opt['network_g']:
        raise OptionError(f'{path}: network_g must be a mapping with a `type` (e.g. GradNet).')
    _check_registered(path, 'network_g.type', opt['network_g']['type'], ARCH_REGISTRY)
    if not isinstance(opt['datasets'], dict) or not opt['datasets']:
        raise OptionError(f'{path}: datasets must map phases (train, val, test_1, ...) to dataset options.')
    for phase, dataset in opt['datasets'].items():
        if not isinstance(dataset, dict) or 'type' not in dataset:
            raise OptionError(f'{path}: datasets.{phase} needs a `type` (e.g. GaussianNoiseDataset).')
        _check_registered(path, f'datasets.{phase}.type', dataset['type'], DATASET_REGISTRY)
        if dataset['type'] in SCALED_DATASETS and 'scale' not in opt:
            raise OptionError(f'{path}: datasets.{phase} ({dataset["type"]}) reads the top-level `scale`; add '
                              f'`scale: 1` for denoising.')


def _check_registered(path, where, name, registry):
    if name not in registry:
        names = [n for n, _ in registry]
        hint = _suggest(name, names)
        raise OptionError(f'{path}: {where} {name!r} is not registered in BasicSR\'s {registry._name} registry' +
                          (f'; did you mean {hint!r}?' if hint else '.'))


def check_option_file(argv):
    """Find `-opt FILE` in a BasicSR command line and check the file; BasicSR itself parses it afterwards."""
    from basicsr.utils.options import yaml_load

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt')
    args, _ = parser.parse_known_args(argv)
    if args.opt is None:
        return  # BasicSR's own parser reports the missing flag
    if not os.path.isfile(args.opt):
        raise MissingFileError(f'option file not found: {args.opt}')
    try:
        opt = yaml_load(args.opt)
    except Exception as error:
        raise OptionError(f'cannot parse {args.opt} as YAML: {error}') from error
    check_options(opt, args.opt)
