"""Cost of a network: parameter count, FLOPs per pixel, and wall-clock time per megapixel."""
import statistics
import time
import torch
from torch.utils.flop_counter import FlopCounterMode

PROBE_SIZE = 64  # side of the probe image for FLOP counting: a multiple of the usual window / downsampling factors


def count_parameters(net):
    """All parameters of the trained network, frozen ones included (a GradNet's pre-denoiser is part of what runs).

    A network from `load_pretrained` has its BatchNorm folded into the convolutions, which drops each BatchNorm's
    weight and bias; its count is the one `load_pretrained` took before folding (`pretrained_info['parameters']`), so
    reports show the trained network's size. Other networks are counted as they are.
    """
    recorded = (getattr(net, 'pretrained_info', None) or {}).get('parameters')
    return int(recorded) if recorded is not None else sum(p.numel() for p in net.parameters())


def count_flops(net, inputs):
    """FLOPs of one forward pass `net(inputs)`, as `torch.utils.flop_counter.FlopCounterMode` counts them.

    FlopCounterMode counts 2 FLOPs per multiply-accumulate of the matrix and convolution operators PyTorch dispatches
    (`aten.convolution` for every Conv / ConvTranspose layer and every functional `F.conv2d`, such as GradNet's Sobel
    filter; `mm` / `addmm` / `bmm` for Linear layers and matrix products; scaled dot-product attention). Bias additions
    and elementwise work (activations, BatchNorm, attention gates, softmax, residual additions) are not counted: for
    convolutional denoisers they are a small share. Only shapes matter, so the values of `inputs` do not.

    Args:
        net (nn.Module): The network, in eval mode.
        inputs (Tensor): Its input.

    Returns:
        int: FLOPs.
    """
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(inputs)
    return counter.get_total_flops()


def flops_per_pixel(net, channels, device='cpu', size=PROBE_SIZE):
    """FLOPs per input pixel of one forward pass (2 x multiply-accumulates, see `count_flops`).

    The forward pass runs on a (1, channels, size, size) probe; its FLOPs are divided by size^2.

    Args:
        net (nn.Module): The network, in eval mode.
        channels (int): Image channels of its input.
        device (str | torch.device): Where to run the probe. Default: 'cpu'.
        size (int): Side of the probe image. Default: 64.

    Returns:
        float: FLOPs per pixel.
    """
    return count_flops(net, torch.zeros(1, channels, size, size, device=device)) / (size * size)


def synchronize(device):
    """Wait for queued CUDA work, so that wall-clock time covers the computation itself."""
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(function, device, *args):
    """Run `function(*args)` and return (result, seconds), synchronizing CUDA before and after."""
    synchronize(device)
    start = time.perf_counter()
    result = function(*args)
    synchronize(device)
    return result, time.perf_counter() - start


def median_seconds_per_megapixel(seconds, pixels):
    """Median over images of seconds / megapixels (None when nothing was timed)."""
    rates = [s / (p / 1e6) for s, p in zip(seconds, pixels) if p]
    return statistics.median(rates) if rates else None
