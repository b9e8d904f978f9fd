"""Global average pooling for the channel attention, with a backward that does not materialise its gradient.

nn.AdaptiveAvgPool2d(1) on the CPU runs as `mean` over H and W, whose backward writes the (N, C, 1, 1) gradient out
to a full NCHW tensor; autograd then adds that to the channels_last gradient from the attention's product, a
mixed-layout addition 3-4x slower than a same-layout one (bf16, GradNet's widths; speed/bench_training.py
--modules-ab times the bf16 step with and without this module). Here the backward returns the pooled gradient
as an expanded view, which the addition reads as a broadcast vector. On the CPU, channels_last inputs are averaged
as a batched matrix product with a row of 1 / (H * W), faster than ATen's reduction over the strided H and W at these
widths (oneDNN accumulates in float32, as `mean` does; in bf16 the weight, when H * W is not a power of two, and the
result are rounded once each: within two bf16 roundings of the float32 mean, against `mean`'s one).
"""
import torch
from torch import nn

from gradnet_arch.precision import compiling


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d(1) (its subclass, so code that looks for global pooling finds it; no parameters, no
    state): the average over H and W, as (N, C, 1, 1), with the backward and CPU forward above."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        if x.dim() != 4:  # unbatched (C, H, W): torch's own
            return super().forward(x)
        if compiling():  # inductor fuses the reduction and its backward itself
            return x.mean((2, 3), keepdim=True)
        if torch.is_grad_enabled() and x.requires_grad:
            return _GlobalMean.apply(x)
        return _global_mean(x)


def _global_mean(x):
    n, c, h, w = x.shape
    if x.device.type != 'cpu' or not x.is_contiguous(memory_format=torch.channels_last) or h * w == 1:
        return x.mean((2, 3), keepdim=True)
    rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view: NHWC is (N, H*W, C) row-major
    weights = x.new_full((n, 1, h * w), 1.0 / (h * w))
    with torch.autocast('cpu', enabled=False):  # in x's own dtype, as mean would be
        pooled = torch.bmm(weights, rows)
    return pooled.view(n, 1, 1, c).permute(0, 3, 1, 2)


class _GlobalMean(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return _global_mean(x)

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = ctx.shape
        return (grad / (h * w)).expand(n, c, h, w)
