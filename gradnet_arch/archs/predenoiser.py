"""Building and loading GradNet's frozen naive denoise block (stage 1) from an option dict."""
import copy
import inspect
import os
import torch

from gradnet_arch.errors import BadFileError, CheckpointKeyError, MissingFileError, OptionError
from gradnet_arch.safe_load import safe_torch_load

# Keys of the `predenoiser` option dict that are not arch options.
LOAD_KEYS = ('pretrained', 'param_key', 'strict')


def build_predenoiser(opt, num_in_ch):
    """Build the pre-denoiser from options and load its checkpoint.

    Args:
        opt (dict): `type` names any arch in BasicSR's ARCH_REGISTRY (MSKResNet, RIDNet, ...); the other keys are
            that arch's options, plus:
            pretrained (str | None): Stage-1 checkpoint (BasicSR format, or a bare state dict). None leaves the
                weights random, which is right only when a full GradNet checkpoint (which contains them) is loaded
                next. Default: None.
            param_key (str | None): Key of the state dict inside the checkpoint. None picks `params_ema`, then
                `params`, then treats the file as a bare state dict. Default: None.
            strict (bool): Require the checkpoint's keys to match the arch exactly. Default: True.
        num_in_ch (int): GradNet's image channels; the pre-denoiser must map that many channels to as many.

    Returns:
        tuple[nn.Module, str | None]: The frozen network in eval mode and the checkpoint path it was loaded from.
    """
    from basicsr.archs import build_network
    from basicsr.utils.registry import ARCH_REGISTRY

    if not isinstance(opt, dict) or 'type' not in opt:
        raise OptionError('GradNet: `predenoiser` must be an option dict with a `type` naming a registered arch, e.g. '
                          '{type: MSKResNet, num_in_ch: 3, pretrained: experiments/<stage1>/models/net_g_latest.pth}.')
    opt = copy.deepcopy(dict(opt))
    load = {key: opt.pop(key, None) for key in LOAD_KEYS}
    if opt['type'] == 'GradNet':
        raise OptionError('GradNet: the pre-denoiser cannot itself be a GradNet. Use its stage-1 arch (MSKResNet).')
    if opt['type'] not in ARCH_REGISTRY:
        raise OptionError(f'GradNet: predenoiser type {opt["type"]!r} is not a registered arch. '
                          f'Registered: {", ".join(sorted(name for name, _ in ARCH_REGISTRY))}.')
    for key in ('num_in_ch', 'in_channels', 'in_nc', 'num_out_ch', 'out_channels', 'out_nc'):
        if key in opt and opt[key] is not None and opt[key] != num_in_ch:
            raise OptionError(f'GradNet: predenoiser {key}={opt[key]} but GradNet has num_in_ch={num_in_ch}. '
                              f'The pre-denoiser must map {num_in_ch}-channel images to {num_in_ch} channels.')
    if 'num_in_ch' in inspect.signature(ARCH_REGISTRY.get(opt['type'])).parameters:
        opt.setdefault('num_in_ch', num_in_ch)  # a grey GradNet gets a grey pre-denoiser unless told otherwise
    net = build_network(opt)
    path = load['pretrained']
    if path is not None:
        state = load_state_dict(path, load['param_key'], what='pre-denoiser')
        load_into(net, state, path, strict=True if load['strict'] is None else load['strict'], what='pre-denoiser')
    for param in net.parameters():
        param.requires_grad_(False)
    return net.eval(), path


def load_state_dict(path, param_key=None, what='checkpoint'):
    """Read a state dict from a BasicSR checkpoint with torch's safe (weights_only) loader.

    Args:
        path (str): Checkpoint file.
        param_key (str | None): `params`, `params_ema`, ...; None tries `params_ema`, `params`, then the file itself.
        what (str): Name used in error messages.

    Returns:
        dict[str, Tensor]: The state dict, with DDP's `module.` prefixes removed.
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise MissingFileError(f'{what} checkpoint not found: {path}. Train stage 1 first (its models/ folder holds '
                               f'net_g_latest.pth) or fix the path.')
    if path.endswith('.safetensors'):  # one state dict per file: the key is only checked, not chosen
        from gradnet_arch.pretrained.checkpoint_io import read_checkpoint, select_state_dict
        _, state = select_state_dict(read_checkpoint(path), path, param_key)
        return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}
    ckpt = safe_torch_load(path, f'{what} checkpoint')  # never passes on torch's advice to load unsafely
    if not isinstance(ckpt, dict):
        raise BadFileError(f'{what} checkpoint {path} holds a {type(ckpt).__name__}, not a state dict.')
    if param_key is None:
        param_key = next((k for k in ('params_ema', 'params') if k in ckpt), None)
    if param_key is not None:
        if param_key not in ckpt:
            raise CheckpointKeyError(f'{what} checkpoint {path} has no key {param_key!r}; its top-level keys are '
                                     f'{sorted(ckpt)}. Set param_key to one of them.')
        ckpt = ckpt[param_key]
    if not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise BadFileError(f'{what} checkpoint {path} (key {param_key!r}) is not a state dict of tensors; top-level '
                           f'keys: {sorted(ckpt)[:10]}.')
    return {k[7:] if k.startswith('module.') else k: v for k, v in ckpt.items()}


def load_into(net, state, path, strict=True, what='checkpoint'):
    """`load_state_dict` with an error that names the file, the missing/unexpected keys and shape mismatches."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f'{k}: checkpoint {tuple(state[k].shape)} vs net {tuple(own[k].shape)}' for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        details = []
        if missing:
            details.append(f'missing in the file ({len(missing)}): {", ".join(missing[:8])}')
        if unexpected:
            details.append(f'not in the net ({len(unexpected)}): {", ".join(unexpected[:8])}')
        if shapes:
            details.append(f'shape mismatches ({len(shapes)}): {"; ".join(shapes[:4])}')
        raise OptionError(
            f'{what} checkpoint {path} does not match {type(net).__name__}:\n  ' + '\n  '.join(details) +
            '\nCheck that the arch options (num_in_ch, num_feat, num_modules, batch_norm, reduction, ...) '
            'are the ones the checkpoint was trained with.')
    net.load_state_dict(state, strict=strict)
