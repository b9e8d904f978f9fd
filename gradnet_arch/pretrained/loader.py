"""`load_pretrained`: a ready-to-run network from a shipped model name or a checkpoint file; `load_model`, the
tools' loader, which also takes a BasicSR option YAML."""
import copy
import difflib
import os
import torch

from gradnet_arch.archs import bn_folding
from gradnet_arch.common.devices import resolve_device
from gradnet_arch.errors import BadFileError, CheckpointKeyError, MissingFileError, OptionError, UserError
from gradnet_arch.pretrained import description, zoo
from gradnet_arch.pretrained.checkpoint_io import load_state, read_checkpoint, select_state_dict

YAML_EXTENSIONS = ('.yml', '.yaml')


def load_pretrained(name_or_path=None,
                    device='cpu',
                    param_key=None,
                    network_opt=None,
                    strict=True,
                    weights_dir=None,
                    fold_batchnorm=True,
                    channels_last=True):
    """Build a network and load its weights, ready for inference.

    By default the network is also laid out for fast inference: BatchNorm folded into the convolution before it
    (`gradnet_arch.archs.bn_folding`: same outputs to 1e-5 in float32, fewer layers to run) and the weights in
    channels_last (NHWC) memory format, which oneDNN's and cuDNN's fast convolutions use (the runners in
    `gradnet_arch.denoise`, `.benchmark` and `.submit` also give the network channels_last inputs).

    Args:
        name_or_path (str | None): A shipped model name (see `list_pretrained()`) or a checkpoint file: `.pth` in
            BasicSR's format (`params` / `params_ema`, a bare state dict also works) or `.safetensors`, or a folder
            that `gradnet-export` wrote (Hugging Face layout: its `model.safetensors`). None takes the checkpoint
            from the option YAML given as `network_opt` (its `path.pretrain_network_g`).
        device (str | torch.device): 'cpu', 'cuda', 'cuda:1', ... Default: 'cpu'.
        param_key (str | None): The state dict to load; None picks `params_ema` if present, else `params`.
        network_opt (dict | str | None): The network's options: a dict like a YAML's `network_g` (any arch in
            BasicSR's ARCH_REGISTRY), or the path of a BasicSR option YAML (its `network_g`, and its
            `path.pretrain_network_g` / `path.param_key_g` when `name_or_path` is None). Needed only when the file
            does not embed its options (files written by `save_checkpoint` and the shipped models do); it overrides
            embedded ones. For a GradNet, `predenoiser.pretrained` is ignored: the pre-denoiser's weights are part of
            the GradNet state dict. Default: None.
        strict (bool): Require the file's keys to match the network's exactly (shapes must match either way).
        weights_dir (str | None): Folder of the shipped models' manifest; default $GRADNET_WEIGHTS_DIR or the
            package's own. Default: None.
        fold_batchnorm (bool): Fold BatchNorm layers into their convolutions (inference only). Pass False for the
            training layout: to fine-tune (BasicSR's training expects the BatchNorm layers), or to export or compare
            a state dict with the checkpoint's keys. Default: True.
        channels_last (bool): Weights in channels_last memory format; False keeps PyTorch's default (NCHW). Either
            way the network computes the same function. Default: True.

    Returns:
        nn.Module: The network on `device`, in eval mode, with `requires_grad_(False)` (also with fold_batchnorm=False:
        call `net.train().requires_grad_(True)` to fine-tune). Its attribute `pretrained_info` holds `source` (file),
        `name` (shipped name or None), `param_key`, `network_g`, `meta`, `parameters` (the trained network's
        parameter count, taken before folding), `batchnorm_folded` (how many BatchNorm layers were folded) and
        `channels_last`; its ModelDescription (what the tools ask: channels, size multiple, precisions, tiling) is
        `gradnet_arch.pretrained.describe(net)`.
    """
    device = resolve_device('cpu' if device is None else device, option='device')
    net_opt, yaml_path = network_options(network_opt)
    if name_or_path is None:
        name_or_path = yaml_path.get('pretrain_network_g')
        if name_or_path is None:
            raise OptionError('load_pretrained needs a shipped model name or a checkpoint path (or an option YAML as '
                              'network_opt whose path.pretrain_network_g names the checkpoint).')
        yaml_key = yaml_path.get('param_key_g')
    else:
        yaml_key = None
    name, path = _resolve_source(name_or_path, weights_dir)
    ckpt = read_checkpoint(path)
    if param_key is None and yaml_key is not None:
        param_key = yaml_key
        if yaml_key not in ckpt and 'params' in ckpt:  # BasicSR's rule for an option file's key: fall back to params
            param_key = 'params'
    param_key, state = select_state_dict(ckpt, path, param_key)
    from_file = net_opt is None
    if from_file:
        net_opt = ckpt['network_g']
        if net_opt is None:
            raise OptionError(f'Checkpoint {path} does not embed its network options (no network_g); pass '
                              f'network_opt= a dict like a YAML\'s network_g (e.g. {{"type": "GradNet", "num_in_ch": '
                              f'3, ...}}) or the path of the option YAML it was trained with.')
    net = build_from_options(net_opt)
    load_network_state(net, state, path, strict, from_file)
    net.requires_grad_(False)
    net.eval()
    net.to(device)
    # counted before folding: folding drops each BatchNorm's weight and bias, but reports should show the trained net
    parameters = sum(p.numel() for p in net.parameters())
    folded = bn_folding.fold_batchnorm(net) if fold_batchnorm else 0
    if channels_last:
        net.to(memory_format=torch.channels_last)
    net.pretrained_info = {
        'source': path,
        'name': name,
        'param_key': param_key,
        'network_g': copy.deepcopy(net_opt),
        'meta': ckpt['meta'],
        'parameters': parameters,
        'batchnorm_folded': folded,
        'channels_last': bool(channels_last),
    }
    description.attach(net, parameters, ckpt['meta'])
    return net


def load_model(spec=None, device='cpu', param_key=None, network_opt=None, options_flag='network_opt', **kwargs):
    """The tools' one loader: the network a model SPEC names, with its ModelDescription, through `load_pretrained`.

    Args:
        spec (str | None): A shipped model name, a checkpoint (`.pth` / `.safetensors`, or a gradnet-export
            folder), or a BasicSR option YAML (its network_g and path.pretrain_network_g / path.param_key_g). None:
            the checkpoint of the option YAML given as `network_opt`.
        device (str | torch.device): 'cpu', 'cuda', 'cuda:N', ... Default: 'cpu'.
        param_key (str | None): The state dict to load (None: params_ema if present, else params).
        network_opt (str | dict | None): Network options (a YAML's path or a network_g dict) for a checkpoint that
            does not embed them; not with an option YAML as `spec`, which names its network itself.
        options_flag (str): How the caller names `network_opt` ('--opt', '--network-opt'), for that error.
        **kwargs: Further `load_pretrained` arguments (strict, weights_dir, fold_batchnorm, channels_last).

    Returns:
        nn.Module: `load_pretrained`'s network; `describe(net)` is its ModelDescription.
    """
    if isinstance(spec, (str, os.PathLike)) and os.fspath(spec).lower().endswith(YAML_EXTENSIONS):
        if network_opt is not None:
            raise OptionError(f'{os.fspath(spec)} is an option YAML, which already names the network; drop '
                              f'{options_flag}.')
        spec, network_opt = None, spec
    return load_pretrained(spec, device=device, param_key=param_key, network_opt=network_opt, **kwargs)


def build_from_options(opt):
    """Build any registered arch from its option dict (`type` + options), with a GradNet's pre-denoiser left
    unloaded (its weights come with the GradNet state dict)."""
    from basicsr.utils.registry import ARCH_REGISTRY

    import gradnet_arch.archs  # noqa: F401  (registers GradNet and MSKResNet)

    if not isinstance(opt, dict) or 'type' not in opt:
        raise OptionError(f'network_opt must be an option dict with a `type` naming a registered arch (a YAML\'s '
                          f'network_g), got {str(opt)[:200]}.')
    opt = copy.deepcopy(dict(opt))
    arch = opt.pop('type')
    if arch not in ARCH_REGISTRY:
        names = sorted(name for name, _ in ARCH_REGISTRY)
        close = difflib.get_close_matches(str(arch), names, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise OptionError(f'network type {arch!r} is not a registered arch.{hint} Registered: {", ".join(names)}.')
    if isinstance(opt.get('predenoiser'), dict):
        opt['predenoiser']['pretrained'] = None
    try:
        return ARCH_REGISTRY.get(arch)(**opt)
    except UserError:
        raise
    except TypeError as error:  # another arch's constructor given an option it does not take
        raise OptionError(f'Cannot build {arch} from the options {opt}: {error}.') from None


def network_options(network_opt):
    """(network_g dict or None, the YAML's `path` section or {}) from `network_opt`."""
    if network_opt is None:
        return None, {}
    if isinstance(network_opt, dict):
        opt = copy.deepcopy(dict(network_opt))
        if 'type' not in opt and isinstance(opt.get('network_g'), dict):  # a whole option dict
            return opt['network_g'], dict(opt.get('path') or {})
        return opt, {}
    if not isinstance(network_opt, (str, os.PathLike)):
        raise OptionError(f'network_opt must be a dict (a YAML\'s network_g) or an option YAML path, got '
                          f'{type(network_opt).__name__}.')
    import yaml

    path = os.path.expanduser(str(network_opt))
    if not os.path.isfile(path):
        raise MissingFileError(f'Option file not found: {path}. Pass an existing BasicSR option YAML or a dict.')
    try:
        with open(path, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise BadFileError(f'Cannot read option file {path}: {error}') from None
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
        raise OptionError(f'Option file {path} has no network_g section (the network\'s options).')
    return opt['network_g'], dict(opt.get('path') or {})


def _resolve_source(name_or_path, weights_dir):
    """(shipped name or None, checkpoint path); a shipped file is checked against its manifest checksum."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise OptionError(f'name_or_path must be a model name or a file path, got {type(name_or_path).__name__}.')
    text = str(name_or_path)
    if zoo.model_info(text, weights_dir) is not None:
        return text, zoo.shipped_path(text, weights_dir)
    path = os.path.expanduser(text)
    if os.path.isdir(path):  # a Hugging Face-style folder (gradnet-export): its weights carry the network options
        weights = os.path.join(path, 'model.safetensors')
        if not os.path.isfile(weights):
            raise MissingFileError(f'Folder {path} has no model.safetensors, so it is not a model folder; pass a '
                                   f'checkpoint file or a folder written by gradnet-export.')
        return None, weights
    if not os.path.isfile(path):
        raise MissingFileError(zoo.unknown_name_message(text, weights_dir))
    return None, path


def load_network_state(net, state, path, strict, from_file):
    """`load_state` for a whole network: a GradNet must get its pre-denoiser's weights too, and a mismatch is the
    file's fault when its own embedded options were used (BadFileError), else the options' (CheckpointKeyError)."""
    if getattr(net, 'predenoiser', None) is not None and not any(key.startswith('predenoiser.') for key in state):
        raise CheckpointKeyError(
            f'Checkpoint {path} holds no pre-denoiser weights (keys predenoiser.*), so it is not a full GradNet '
            f'checkpoint: a GradNet loaded from it would run a random pre-denoiser. A stage-1 checkpoint loads with '
            f'network_opt type MSKResNet; a GradNet needs its stage-2 checkpoint (net_g_*.pth of the GradNet run).')
    try:
        load_state(net, state, path, strict=strict, what='network checkpoint')
    except OptionError as error:
        if from_file:
            raise BadFileError(f'{error}\nThe network options embedded in the file (network_g) do not fit its '
                               f'weights; pass network_opt= with the right ones.') from None
        raise CheckpointKeyError(str(error)) from None
