"""Start GradNet from its own stage-1 MSKResNet, function-preserving (GradNet's `init_from_predenoiser` option).

GradNet at fusion I, II or III is an MSKResNet of the same size plus C gradient channels at one place. Copying the
stage-1 weights into the matching slices and giving every weight that reads a gradient channel the value zero makes
the new net compute exactly the pre-denoiser's output (eval mode: BatchNorm statistics are copied too), so training
starts from stage 1's quality and can only add to it. The zero weights still receive gradients (their inputs, the
gradient channels, are non-zero), which is how the gradient enters.

Layout at fusion II: body channels [0, F) are stage 1's features, [F, F + C) carry the gradient. Inside the body the
gradient channels pass through each module unchanged in value (ResUnits leave them to their skip connection; each
module's fuse conv copies them through with an identity kernel; the attention never mixes them into the features),
so every module can learn to use them.
"""
import inspect
import torch
from torch import nn

from gradnet_arch.archs.mskresnet_arch import MSKResNet
from gradnet_arch.errors import OptionError

# GradNet options that must equal stage 1's for the embedding to be exact
SAME_SIZE_KEYS = ('num_feat', 'num_modules', 'num_units', 'batch_norm', 'reduction', 'global_residual')


def check_embeddable(gradnet_opts, predenoiser_opts, fusion):
    """Raise OptionError unless a GradNet with `gradnet_opts` can start from an MSKResNet with `predenoiser_opts`."""
    if fusion not in ('I', 'II', 'III'):
        raise OptionError(f'GradNet: init_from_predenoiser needs fusion I, II or III (the gradient concatenated); at '
                          f'fusion {fusion} the output is multiplied by the gradient, which no copy of stage 1 '
                          f'reproduces. Set init_from_predenoiser: false.')
    if predenoiser_opts.get('type') != 'MSKResNet':
        raise OptionError(f'GradNet: init_from_predenoiser copies an MSKResNet pre-denoiser, got '
                          f'{predenoiser_opts.get("type")!r}. Set init_from_predenoiser: false.')
    defaults = {k: p.default for k, p in inspect.signature(MSKResNet).parameters.items() if k in SAME_SIZE_KEYS}
    stage1 = {key: predenoiser_opts.get(key, defaults[key]) for key in SAME_SIZE_KEYS}
    differ = [
        f'{key} {gradnet_opts[key]} vs {stage1[key]}' for key in SAME_SIZE_KEYS if gradnet_opts[key] != stage1[key]
    ]
    if differ:
        raise OptionError(
            'GradNet: init_from_predenoiser needs GradNet and its MSKResNet pre-denoiser to have the same '
            f'size and residual; they differ in {", ".join(differ)} (GradNet vs predenoiser).')


@torch.no_grad()
def embed_predenoiser(gradnet):
    """Copy `gradnet.predenoiser` (an MSKResNet of the same size) into GradNet's own layers, function-preserving."""
    source, fusion, f = gradnet.predenoiser, gradnet.fusion, gradnet.head[0].out_channels
    _conv(gradnet.head[0], source.head[0], in_map=range(source.head[0].in_channels))
    if fusion == 'II':
        _body(gradnet.body, source.body, f)
    else:
        gradnet.body.load_state_dict(source.body.state_dict())
    _conv(gradnet.tail, source.tail, in_map=range(f))


def _conv(target, source, in_map, out_map=None):
    """target = 0, then target[out_map[o], in_map[i]] = source[o, i] (bias likewise)."""
    out_map = list(range(source.out_channels)) if out_map is None else list(out_map)
    target.weight.zero_()
    target.weight[torch.tensor(out_map)[:, None], torch.tensor(list(in_map))[None, :]] = source.weight
    if target.bias is not None:
        target.bias.zero_()
        target.bias[out_map] = source.bias


def _identity(conv, pairs):
    """Copy input channel i to output channel o through the kernel's centre tap, for (o, i) in `pairs`."""
    k = conv.kernel_size[0] // 2
    for out_ch, in_ch in pairs:
        conv.weight[out_ch, in_ch, k, k] = 1


def _batch_norm(target, source, f):
    if isinstance(source, nn.Identity):
        return
    target.reset_parameters()  # gradient channels: weight 1, bias 0, running mean 0, var 1
    for name in ('weight', 'bias', 'running_mean', 'running_var'):
        getattr(target, name)[:f] = getattr(source, name)
    target.num_batches_tracked.copy_(source.num_batches_tracked)


def _body(target, source, f):
    """Fusion II: stage 1's body in channels [0, f), the gradient channels [f, f + C) carried through."""
    c = target.blocks[0].fuse.out_channels - f
    grad = range(f, f + c)
    for module, src in zip(target.blocks, source.blocks):
        for unit, src_unit in zip(module.units, src.units):
            _conv(unit.conv1, src_unit.conv1, in_map=range(f))
            _batch_norm(unit.bn, src_unit.bn, f)
            _conv(unit.conv2, src_unit.conv2, in_map=range(f))  # the skip adds the gradient channels back
        # fuse reads cat(x, units(x)): stage 1's [x_F, u_F] sit at [0, f) and [f + c, 2f + c)
        _conv(module.fuse, src.fuse, in_map=list(range(f)) + list(range(f + c, 2 * f + c)))
        _identity(module.fuse, [(g, g) for g in grad])
        down, up = module.attention.body[1], module.attention.body[3]
        _conv(down, src.attention.body[1], in_map=range(f))
        _conv(up, src.attention.body[3], in_map=range(src.attention.body[3].in_channels))
