"""Building GradNet's frozen naive denoise block (stage 1) from an option dict.

Its stage-1 checkpoint is loaded by the weights layer, through gradnet_arch.registry's `load_weights` hook: archs
open no files.
"""
import copy
import inspect

from gradnet_arch.errors import OptionError
from gradnet_arch.registry import load_weights

# Keys of the `predenoiser` option dict that are not arch options.
LOAD_KEYS = ('pretrained', 'param_key', 'strict')
MISSING_HINT = 'Train stage 1 first (its models/ folder holds net_g_latest.pth) or fix the path.'


def build_predenoiser(opt, num_in_ch):
    """Build the pre-denoiser from options and have its checkpoint loaded into it.

    Args:
        opt (dict): `type` names any arch in BasicSR's ARCH_REGISTRY (MSKResNet, RIDNet, ...); the other keys are
            that arch's options, plus:
            pretrained (str | None): Stage-1 checkpoint (BasicSR format, or a bare state dict). None leaves the
                weights random, which is right only when a full GradNet checkpoint (which contains them) is loaded
                next. Default: None.
            param_key (str | None): Key of the state dict inside the checkpoint. None picks `params_ema`, then
                `params`, then the only state dict (a bare state dict counts as `params`). Default: None.
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
        strict = True if load['strict'] is None else load['strict']
        load_weights(
            net, path, param_key=load['param_key'], strict=strict, what='pre-denoiser checkpoint', hint=MISSING_HINT)
    for param in net.parameters():
        param.requires_grad_(False)
    return net.eval(), path
