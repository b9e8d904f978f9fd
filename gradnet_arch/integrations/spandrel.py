"""GradNet and MSKResNet as spandrel architectures: detected from a state dict's keys, sized from its shapes.

spandrel (https://github.com/chaiNNer-org/spandrel) is the model loader of chaiNNer, ComfyUI and other restoration
front ends: it reads a `.pth` / `.safetensors` file, finds the architecture from the state dict and returns a model
descriptor. `install()` adds two entries to its `MAIN_REGISTRY`::

    import spandrel
    from gradnet_arch.integrations.spandrel import install

    install()
    model = spandrel.ModelLoader().load_from_file('gradnet_color_sigma25.safetensors')  # ImageModelDescriptor
    out = model(image)  # (1, C, H, W) in [0, 1]

What a state dict tells (every GradNet the options can build is detected, tests/unit/integrations/test_spandrel.py):

- From the shapes: channels (head / tail convs), `num_feat`, `num_modules`, `num_units`, `batch_norm` (BN keys),
  `reduction` (any value giving the attention's hidden width builds the same net; 16 or 2 when they fit), the
  fusion position (I: the head takes 2 C channels, II: the body takes F + C, III: the tail takes F + C) and the
  gradient source (`predenoiser.*` keys: 'denoised'; a fusion I-III net without them: 'noisy'). The pre-denoiser
  must be an MSKResNet (the stage 1 of every option file); another arch there is refused with a clear error.
- Not from the tensors: `global_residual` (GradNet's and the pre-denoiser's) adds no parameter, and
  `GradNet(gradient_source='noisy', fusion='IV')` has exactly the tensors of a plain MSKResNet (its gradient is a
  parameter-free multiplication). `load` settles these by running each candidate once on a fixed synthetic noisy
  image (48 x 48, AWGN sigma 25) and keeping the one whose output is closest to the clean image: for a trained
  denoiser the wrong candidates are far off (they add the image twice, drop it, or skip the gradient product). On
  untrained weights the choice is arbitrary. `infer_options` returns what was chosen, as a BasicSR `network_g`.

A grey MSKResNet with 2 input and 1 output channels (or 6 and 3) and no global residual has the tensors of a
fusion-I GradNet on the noisy gradient; it is read as the GradNet.
"""
import math
import torch

from gradnet_arch.integrations import MissingExtraError
from gradnet_arch.pretrained import build_from_options, describe

try:
    from spandrel import (Architecture, ArchSupport, ImageModelDescriptor, ModelTiling, SizeRequirements,
                          UnsupportedModelError)
    from spandrel.util import KeyCondition, get_seq_len
except ImportError as _error:
    raise MissingExtraError(f'The spandrel integration needs the optional package spandrel, which is not installed '
                            f'({_error}); install it with: pip install "gradnet-basicsr[spandrel]"') from None

PREDENOISER = 'predenoiser.'
# Reductions tried first when several give the attention's hidden width: the released code's and the paper's.
PREFERRED_REDUCTIONS = (16, 2, 4, 8, 1, 32, 64)
PROBE_SIZE = 48
PROBE_SIGMA = 25 / 255.

# Keys every MSK net (MSKResNet, GradNet, a GradNet's pre-denoiser) has, whatever its options.
MSK_KEYS = ('head.0.weight', 'body.blocks.0.units.0.conv1.weight', 'body.blocks.0.units.0.conv1.bias',
            'body.blocks.0.units.0.conv2.weight', 'body.blocks.0.fuse.weight', 'body.blocks.0.attention.body.1.weight',
            'body.blocks.0.attention.body.3.weight', 'tail.weight')
_HAS_MSK_KEYS = KeyCondition.has_all(*MSK_KEYS)


def _shape(state_dict, key):
    value = state_dict.get(key)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def msk_structure(state_dict, prefix=''):
    """The shapes of an MSK net (conv head, MSK body, conv tail) stored under `prefix`.

    Args:
        state_dict (dict[str, Tensor]): A state dict.
        prefix (str): '' for the net itself, 'predenoiser.' for a GradNet's stage 1.

    Returns:
        dict | None: `in_ch`, `feat` (head), `body` (the body's channels), `tail_in`, `out_ch`, `modules`, `units`,
        `batch_norm`, `hidden` (the attention's width); None when the keys or shapes are not those of an MSK net.
    """
    shapes = {key: _shape(state_dict, prefix + key) for key in MSK_KEYS}
    if any(shape is None or len(shape) != (1 if key.endswith('.bias') else 4) for key, shape in shapes.items()):
        return None
    if prefix + 'head.0.bias' in state_dict or prefix + 'tail.bias' in state_dict:  # both convs are bias-free
        return None
    head, tail = shapes['head.0.weight'], shapes['tail.weight']
    fuse, conv1 = shapes['body.blocks.0.fuse.weight'], shapes['body.blocks.0.units.0.conv1.weight']
    down, up = shapes['body.blocks.0.attention.body.1.weight'], shapes['body.blocks.0.attention.body.3.weight']
    channels = fuse[0]
    if shapes['body.blocks.0.units.0.conv1.bias'] != (channels, ):
        return None
    if any(shape[2:] != (3, 3) for shape in (head, tail, fuse, conv1)) or down[2:] != (1, 1) or up[2:] != (1, 1):
        return None
    if fuse[1] != 2 * channels or conv1[:2] != (channels, channels) or down[1] != channels or up != (channels, down[0],
                                                                                                     1, 1):
        return None
    return {
        'in_ch': head[1],
        'feat': head[0],
        'body': channels,
        'tail_in': tail[1],
        'out_ch': tail[0],
        'modules': get_seq_len(state_dict, prefix + 'body.blocks'),
        'units': get_seq_len(state_dict, prefix + 'body.blocks.0.units'),
        'batch_norm': prefix + 'body.blocks.0.units.0.bn.weight' in state_dict,
        'hidden': down[0],
    }


def fusion_of(structure):
    """'I', 'II', 'III' where the shapes show GradNet's gradient channels, 'plain' without them, None if neither."""
    c, f, body, tail_in = structure['out_ch'], structure['feat'], structure['body'], structure['tail_in']
    if structure['in_ch'] == 2 * c and body == f and tail_in == f:
        return 'I'
    if structure['in_ch'] == c and body == f + c and tail_in == body:
        return 'II'
    if structure['in_ch'] == c and body == f and tail_in == f + c:
        return 'III'
    if body == f and tail_in == f:
        return 'plain'
    return None


def _has_predenoiser(state_dict):
    return any(key.startswith(PREDENOISER) for key in state_dict)


def classify(state_dict):
    """'GradNet', 'MSKResNet' or None for a (canonical) state dict, from its keys and shapes alone."""
    if not _HAS_MSK_KEYS(state_dict):
        return None
    structure = msk_structure(state_dict)
    if structure is None:
        return None
    fusion = fusion_of(structure)
    if fusion is None:
        return None
    if _has_predenoiser(state_dict) or fusion != 'plain':
        return 'GradNet' if structure['out_ch'] in (1, 3) else None
    return 'MSKResNet'


def detect_gradnet(state_dict):
    return classify(state_dict) == 'GradNet'


def detect_mskresnet(state_dict):
    return classify(state_dict) == 'MSKResNet'


def reduction_for(channels, hidden):
    """A channel-attention reduction r with max(1, channels // r) == hidden (conventional values first)."""
    for r in PREFERRED_REDUCTIONS:
        if max(1, channels // r) == hidden:
            return r
    return channels // hidden  # floor(c / floor(c / h)) == h for any h that some r produces


def _msk_options(structure):
    return {
        'num_feat': structure['feat'],
        'num_modules': structure['modules'],
        'num_units': structure['units'],
        'batch_norm': structure['batch_norm'],
        'reduction': reduction_for(structure['body'], structure['hidden']),
    }


def structural_options(state_dict):
    """The `network_g` options the shapes fix, without the flags they cannot show (see the module docstring).

    Returns:
        dict: `type` and the arch options; for a GradNet on the denoised gradient, `predenoiser` with its own.

    Raises:
        UnsupportedModelError: Not a GradNet / MSKResNet state dict, or a pre-denoiser that is not an MSKResNet.
    """
    kind = classify(state_dict)
    if kind is None:
        raise UnsupportedModelError('not a GradNet or MSKResNet state dict')
    structure = msk_structure(state_dict)
    if kind == 'MSKResNet':
        return dict(
            type='MSKResNet', num_in_ch=structure['in_ch'], num_out_ch=structure['out_ch'], **_msk_options(structure))
    channels = structure['out_ch']
    fusion = fusion_of(structure)
    opts = dict(type='GradNet', num_in_ch=channels, **_msk_options(structure))
    opts['fusion'] = 'IV' if fusion == 'plain' else fusion
    if _has_predenoiser(state_dict):
        pre = msk_structure(state_dict, PREDENOISER)
        if pre is None or fusion_of(pre) != 'plain' or pre['in_ch'] != channels or pre['out_ch'] != channels:
            raise UnsupportedModelError(
                'GradNet state dict whose pre-denoiser (predenoiser.*) is not an MSKResNet: only MSKResNet '
                'pre-denoisers can be rebuilt from a state dict; load it with gradnet_arch.load_pretrained and its '
                'network options instead.')
        opts['gradient_source'] = 'denoised'
        opts['predenoiser'] = dict(type='MSKResNet', num_in_ch=channels, **_msk_options(pre))
    else:
        opts['gradient_source'] = 'noisy'
    return opts


def probe_images(channels):
    """A fixed clean image and its noisy copy, (1, C, 48, 48) in float32, for choosing undetectable flags."""
    size = PROBE_SIZE
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing='ij')
    planes = []
    for c in range(channels):
        plane = 0.5 + 0.25 * torch.sin(xx / (4. + c)) * torch.cos(yy / (6. + c))
        plane = torch.where((xx > 12) & (xx < 30) & (yy > 20) & (yy < 40), plane * 0.5 + 0.4, plane)  # edges
        planes.append(plane)
    clean = torch.stack(planes).unsqueeze(0)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * PROBE_SIGMA
    return clean, clean + noise


def _build(opts, state_dict):

    net = build_from_options(opts)
    net.load_state_dict(state_dict)
    return net.eval()


def _closest(candidates, state_dict, channels):
    """The candidate option dict whose net, loaded with `state_dict`, best restores the probe image (lowest MSE)."""
    clean, noisy = probe_images(channels)
    best, best_error = None, math.inf
    for opts in candidates:
        with torch.no_grad():
            error = torch.mean((_build(opts, state_dict)(noisy) - clean)**2).item()
        if error < best_error:  # a NaN error never wins
            best, best_error = opts, error
    return candidates[0] if best is None else best


def _with_residual(opts, options):
    return [dict(opts, global_residual=flag) for flag in options]


def infer_options(state_dict):
    """A BasicSR `network_g` that rebuilds the net of `state_dict` (keys as GradNet / MSKResNet save them).

    The shapes give the structure; `global_residual` and, for a net with a plain MSKResNet's tensors, whether it is
    GradNet's noisy-gradient fusion IV, are chosen by restoring a probe image (module docstring).

    Args:
        state_dict (dict[str, Tensor]): A canonical state dict (no `module.` prefix, not wrapped in `params`).

    Returns:
        dict: `type` plus the arch's options, as in an option YAML's `network_g`.
    """
    opts = structural_options(state_dict)
    if opts['type'] == 'MSKResNet':
        channels = opts['num_in_ch']
        equal = opts['num_out_ch'] == channels
        candidates = _with_residual(opts, (True, False) if equal else (False, ))
        if equal and channels in (1, 3):
            gradnet = {key: value for key, value in opts.items() if key != 'num_out_ch'}
            gradnet.update(type='GradNet', gradient_source='noisy', fusion='IV')
            candidates += _with_residual(gradnet, (True, False))
        return _closest(candidates, state_dict, channels)
    channels = opts['num_in_ch']
    if opts['gradient_source'] == 'denoised':
        pre_state = {key[len(PREDENOISER):]: value for key, value in state_dict.items() if key.startswith(PREDENOISER)}
        opts['predenoiser'] = _closest(_with_residual(opts['predenoiser'], (True, False)), pre_state, channels)
    return _closest(_with_residual(opts, (True, False)), state_dict, channels)


def _tags(opts):
    tags = [f'{opts["num_feat"]}nf', f'{opts["num_modules"]}m', f'{opts["num_units"]}u']
    if opts['batch_norm']:
        tags.append('bn')
    if opts['type'] == 'GradNet':
        tags += [f'fusion-{opts["fusion"]}', f'{opts["gradient_source"]}-gradient']
    if opts.get('global_residual'):
        tags.append('residual')
    return tags


class _MSKArchitecture(Architecture[torch.nn.Module]):
    """Shared loading of both entries: options from `infer_options`, the net from BasicSR's registry."""

    kind = None

    def load(self, state_dict):
        opts = infer_options(state_dict)
        net = _build(opts, state_dict)
        net.spandrel_options = opts  # what was inferred, as a network_g dict
        # The probe may find that an MSKResNet-shaped dict is GradNet's noisy-gradient fusion IV.
        architecture = self if opts['type'] == self.kind else _ARCHITECTURES[opts['type']]
        out_ch = opts.get('num_out_ch') or opts['num_in_ch']
        # Measured on the shipped models (CPU, tests/unit/integrations/test_spandrel.py checks it): the largest pixel
        # difference from fp32 on a 37 x 45 uniform-noise image was 8e-4 in fp16 and 5e-3 in bf16 (under 0.2 and 1.4
        # levels of 8-bit output), no NaN or overflow: the Sobel magnitude stays below 4 sqrt(2) on [0, 1] images.
        description = describe(net)
        return ImageModelDescriptor(
            net,
            state_dict,
            architecture=architecture,
            purpose='Restoration',
            tags=_tags(opts),
            supports_half='fp16' in description.precisions,
            supports_bfloat16='bf16' in description.precisions,
            scale=1,
            input_channels=description.channels(),
            output_channels=out_ch,
            # 3x3 convolutions with padding 1 and a global-pool attention: any size, down to 1 x 1.
            size_requirements=SizeRequirements(multiple_of=description.size_multiple),
            # description.tiling is 'approximate': the attention pools over whatever it is given, so tiles change
            # results slightly (measured with speed/bench_tiling.py: +0.005 dB mean, 0.06 dB at most with 256-pixel
            # tiles), and tiling stays supported.
            tiling=ModelTiling.SUPPORTED)


class GradNetArch(_MSKArchitecture):
    """GradNet (Liu et al., CVPR 2020 Workshops), both stages from one state dict."""

    kind = 'GradNet'

    def __init__(self):
        super().__init__(id='GradNet', detect=detect_gradnet)


class MSKResNetArch(_MSKArchitecture):
    """MSKResNet, GradNet's stage-1 "multiple skip-connection residual network"."""

    kind = 'MSKResNet'

    def __init__(self):
        super().__init__(id='MSKResNet', detect=detect_mskresnet)


_ARCHITECTURES = {'GradNet': GradNetArch(), 'MSKResNet': MSKResNetArch()}


def arch_supports():
    """The two registry entries (GradNet, MSKResNet)."""
    return [ArchSupport.from_architecture(arch) for arch in _ARCHITECTURES.values()]


def install(registry=None):
    """Add GradNet and MSKResNet to spandrel's registry (idempotent).

    Args:
        registry (spandrel.ArchRegistry | None): Default: spandrel's `MAIN_REGISTRY`, used by every `ModelLoader()`.

    Returns:
        list[spandrel.ArchSupport]: The entries added now (empty when they were already there).
    """
    if registry is None:
        from spandrel import MAIN_REGISTRY as registry
    return registry.add(*arch_supports(), ignore_duplicates=True)
