"""Cost of a network: parameter count, FLOPs per pixel, and wall-clock time per megapixel."""
import statistics
import time
import torch
from torch import nn

PROBE_SIZE = 64  # side of the probe image for FLOP counting: a multiple of the usual window / downsampling factors


def count_parameters(net):
    """All parameters of the trained network, frozen ones included (a GradNet's pre-denoiser is part of what runs).

    A network from `load_pretrained` has its BatchNorm folded into the convolutions, which drops each BatchNorm's
    weight and bias; its count is the one `load_pretrained` took before folding (`pretrained_info['parameters']`), so
    reports show the trained network's size. Other networks are counted as they are.
    """
    recorded = (getattr(net, 'pretrained_info', None) or {}).get('parameters')
    return int(recorded) if recorded is not None else sum(p.numel() for p in net.parameters())


def _macs_of(module, inputs, output):
    """Multiply-accumulates of one call of a Conv/ConvTranspose/Linear layer (bias additions not counted)."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        # every input element is multiplied with a (C_out / groups, *kernel) slice of the weight
        x = inputs[0]
        per_element = module.weight.shape[1] * module.weight[0, 0].numel()
        return x.numel() * per_element
    if isinstance(module, nn.modules.conv._ConvNd):
        # every output element is a dot product over (C_in / groups, *kernel)
        return output.numel() * module.weight[0].numel()
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def flops_per_pixel(net, channels, device='cpu', size=PROBE_SIZE):
    """FLOPs per input pixel of one forward pass, counted as 2 x multiply-accumulates of the learned layers.

    Forward hooks on every Conv1d/2d/3d, ConvTranspose and Linear layer sum their multiply-accumulates on a
    (1, channels, size, size) probe; the total is divided by size^2. Elementwise work (activations, normalization,
    attention's softmax and matrix products outside Linear layers, the functional Sobel filter, residual additions)
    and bias additions are not counted: for convolutional denoisers they are a small share.

    Args:
        net (nn.Module): The network, in eval mode.
        channels (int): Image channels of its input.
        device (str | torch.device): Where to run the probe. Default: 'cpu'.
        size (int): Side of the probe image. Default: 64.

    Returns:
        float: FLOPs per pixel.
    """
    total = [0]

    def hook(module, inputs, output):
        total[0] += _macs_of(module, inputs, output)

    handles = [
        module.register_forward_hook(hook) for module in net.modules()
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return 2. * total[0] / (size * size)


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
