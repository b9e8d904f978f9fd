"""`ModelDescription`: what the tools ask of a loaded network, read from it once.

`load_pretrained` (and so `load_model`, the tools' loader) attaches one to every network it returns; `describe(net)`
returns it, or reads one from a network that was built elsewhere. `gradnet-denoise`, `gradnet-benchmark`,
`gradnet-submit`, `gradnet-export` and the spandrel integration ask it instead of reading the network themselves.
"""
import dataclasses
from torch import nn

from gradnet_arch.errors import OptionError
from gradnet_arch.precision import PRECISIONS, resolve_precision

ATTRIBUTE = 'model_description'
# Attributes BasicSR's archs name their image channels with.
CHANNEL_ATTRIBUTES = ('num_in_ch', 'in_channels', 'in_nc', 'in_chans')
# Layers whose output at a pixel depends on the whole input: tiles see only part of it, so tiled results differ.
GLOBAL_POOLING = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """A network as the tools see it.

    Attributes:
        arch (str): The network's class name (GradNet, MSKResNet, RIDNet, ...).
        input_channels (int | None): Image channels it takes (its `num_in_ch` / `in_channels` / `in_nc` /
            `in_chans`, else its first convolution's); None when neither tells (the forward pass will).
        size_multiple (int): Its input sides must be multiples of this: the largest integer `window_size` of its
            modules (window attention), else 1.
        precisions (tuple[str]): The precisions it may run in (`gradnet_arch.precision`: fp32, bf16, fp16; the
            device decides which of them it runs natively). All three for a convolutional network: autocast keeps
            the reductions in float32, and on the shipped GradNets bf16 / fp16 stay within 1.4 / 0.2 levels of 8-bit
            output (tests/unit/integrations/test_spandrel.py).
        tiling (str): 'approximate' when a layer pools over the whole input (GradNet's channel attention): tiles
            change the result slightly (docs/model_cards, speed/bench_tiling.py); 'exact' otherwise: tiles
            whose overlap covers the receptive field give the whole-image result.
        has_gradient (bool): It computes a gradient map from a `sobel` module (a GradNet with gradient_source
            'denoised' or 'noisy'), which `gradnet-denoise --save-gradient` can write.
        parameters (int): Its parameter count (for a network with BatchNorm folded, the trained network's).
    """

    arch: str
    input_channels: int = None
    size_multiple: int = 1
    precisions: tuple = PRECISIONS
    tiling: str = 'exact'
    has_gradient: bool = False
    parameters: int = 0

    @classmethod
    def of(cls, net, parameters=None):
        """Read the description of the network `net`.

        Args:
            net (nn.Module): The network.
            parameters (int | None): Its parameter count when it differs from the module's own (a network whose
                BatchNorm layers were folded); None counts the module's. Default: None.
        """
        modules = list(net.modules())
        windows = [m.window_size for m in modules if isinstance(getattr(m, 'window_size', None), int)]
        return cls(
            arch=type(net).__name__,
            input_channels=_input_channels(net, modules),
            size_multiple=max(windows, default=1),
            tiling='approximate' if any(isinstance(m, GLOBAL_POOLING) for m in modules) else 'exact',
            has_gradient=getattr(net, 'gradient_source', 'none') != 'none' and getattr(net, 'sobel', None) is not None,
            parameters=sum(p.numel() for p in net.parameters()) if parameters is None else int(parameters))

    def channels(self):
        """`input_channels`, or an OptionError when the network does not tell."""
        if self.input_channels is None:
            raise OptionError(f'Cannot tell how many image channels {self.arch} takes (no num_in_ch attribute and no '
                              f'convolution).')
        return self.input_channels

    def precision(self, precision, device):
        """`precision` ('auto', 'fp32', 'bf16', 'fp16') resolved for `device` and checked against `precisions`."""
        precision = resolve_precision(precision, device)
        if precision not in self.precisions:
            raise OptionError(f'{self.arch} does not run in {precision}; use one of {", ".join(self.precisions)}.')
        return precision


def describe(net):
    """The ModelDescription of `net`: the one `load_pretrained` attached, else one read from the network now."""
    description = getattr(net, ATTRIBUTE, None)
    return description if isinstance(description, ModelDescription) else ModelDescription.of(net)


def attach(net, parameters=None):
    """Read `net`'s description once and keep it on the network (what `describe` returns from then on)."""
    description = ModelDescription.of(net, parameters)
    setattr(net, ATTRIBUTE, description)
    return description


def _input_channels(net, modules):
    for name in CHANNEL_ATTRIBUTES:
        value = getattr(net, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    conv = next((m for m in modules if isinstance(m, nn.modules.conv._ConvNd)), None)
    return conv.in_channels if conv is not None else None
