"""`ModelDescription`: what the tools ask of a loaded network, read from it once.

`load_pretrained` (and so `load_model`, the tools' loader) attaches one to every network it returns; `describe(net)`
returns it, or reads one from a network that was built elsewhere. `gradnet-denoise`, `gradnet-benchmark`,
`gradnet-submit`, `gradnet-export` and the spandrel integration ask it instead of reading the network themselves.

`training_noise` reads the noise a model was trained for from a manifest entry or a checkpoint's `meta`: `sigma` (a
number, a non-blind model) or `sigma_range` ([low, high], a blind model, with `sigma` null), on the 0-255 scale.
"""
import dataclasses
import math
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
        sigma (float | None): The AWGN level (0-255 scale) a non-blind model was trained for, from its checkpoint's
            `meta`; None for a blind model or when the file does not say.
        sigma_range (tuple[float, float] | None): (low, high) of the AWGN levels a blind model was trained for; None
            for a non-blind model or when the file does not say. Neither kind needs a noise level to run.
    """

    arch: str
    input_channels: int = None
    size_multiple: int = 1
    precisions: tuple = PRECISIONS
    tiling: str = 'exact'
    has_gradient: bool = False
    parameters: int = 0
    sigma: float = None
    sigma_range: tuple = None

    @classmethod
    def of(cls, net, parameters=None, meta=None):
        """Read the description of the network `net`.

        Args:
            net (nn.Module): The network.
            parameters (int | None): Its parameter count when it differs from the module's own (a network whose
                BatchNorm layers were folded); None counts the module's. Default: None.
            meta (dict | None): Its checkpoint's `meta` (the training noise: `sigma` or `sigma_range`); a value that
                is not a valid noise level counts as unknown. Default: None.
        """
        modules = list(net.modules())
        windows = [m.window_size for m in modules if isinstance(getattr(m, 'window_size', None), int)]
        try:
            sigma, sigma_range = training_noise(meta or {})
        except OptionError:
            sigma, sigma_range = None, None
        return cls(
            arch=type(net).__name__,
            input_channels=_input_channels(net, modules),
            size_multiple=max(windows, default=1),
            tiling='approximate' if any(isinstance(m, GLOBAL_POOLING) for m in modules) else 'exact',
            has_gradient=getattr(net, 'gradient_source', 'none') != 'none' and getattr(net, 'sobel', None) is not None,
            parameters=sum(p.numel() for p in net.parameters()) if parameters is None else int(parameters),
            sigma=sigma,
            sigma_range=sigma_range)

    @property
    def blind(self):
        """True for a model trained on a range of noise levels (`sigma_range`)."""
        return self.sigma_range is not None

    def noise(self):
        """The training noise in words ('AWGN sigma 25', 'blind, AWGN sigma 0-55'), None when unknown."""
        return noise_text(self.sigma, self.sigma_range)

    def fits_sigma(self, sigma):
        """Whether AWGN of level `sigma` is what the model was trained for: its sigma, or inside its blind range.
        None when the training noise is unknown."""
        if self.sigma_range is not None:
            return self.sigma_range[0] <= float(sigma) <= self.sigma_range[1]
        if self.sigma is not None:
            return math.isclose(float(sigma), self.sigma)
        return None

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


def training_noise(record):
    """The training noise of a manifest entry or a checkpoint's `meta`.

    Args:
        record (dict): Holds `sigma` (a number >= 0: a non-blind model) or `sigma_range` ([low, high] with
            0 <= low <= high: a blind model; `sigma` then absent or null), or neither (unknown).

    Returns:
        tuple[float | None, tuple[float, float] | None]: (sigma, sigma_range); (None, None) when unknown.

    Raises:
        OptionError: A value that is no noise level, or both given.
    """
    sigma, sigma_range = record.get('sigma'), record.get('sigma_range')
    if sigma_range is not None:
        if (not isinstance(sigma_range, (list, tuple)) or len(sigma_range) != 2 or not all(map(_is_level, sigma_range))
                or sigma_range[0] > sigma_range[1]):
            raise OptionError(f'sigma_range must be [low, high] with 0 <= low <= high (0-255 scale), got '
                              f'{sigma_range!r}.')
        if sigma is not None:
            raise OptionError(f'give sigma (a non-blind model) or sigma_range (a blind one), not both: sigma '
                              f'{sigma!r}, sigma_range {sigma_range!r}.')
        return None, (float(sigma_range[0]), float(sigma_range[1]))
    if sigma is not None:
        if not _is_level(sigma):
            raise OptionError(f'sigma must be a number >= 0 (0-255 scale), got {sigma!r}.')
        return float(sigma), None
    return None, None


def noise_text(sigma, sigma_range):
    """'AWGN sigma 25', 'blind, AWGN sigma 0-55', or None when neither is known."""
    if sigma_range is not None:
        return f'blind, AWGN sigma {sigma_range[0]:g}-{sigma_range[1]:g}'
    return None if sigma is None else f'AWGN sigma {sigma:g}'


def describe(net):
    """The ModelDescription of `net`: the one `load_pretrained` attached, else one read from the network now."""
    description = getattr(net, ATTRIBUTE, None)
    return description if isinstance(description, ModelDescription) else ModelDescription.of(net)


def attach(net, parameters=None, meta=None):
    """Read `net`'s description once and keep it on the network (what `describe` returns from then on)."""
    description = ModelDescription.of(net, parameters, meta)
    setattr(net, ATTRIBUTE, description)
    return description


def _input_channels(net, modules):
    for name in CHANNEL_ATTRIBUTES:
        value = getattr(net, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    conv = next((m for m in modules if isinstance(m, nn.modules.conv._ConvNd)), None)
    return conv.in_channels if conv is not None else None


def _is_level(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
