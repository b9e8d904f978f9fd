"""BatchNorm2d whose training backward is fast for bf16 channels_last tensors on the CPU.

ATen's channels_last BatchNorm backward works along the channel dimension, and at GradNet's body widths (F + C: 35 or
67 channels, not a multiple of the 16 floats of an AVX-512 register) it runs several times slower than at 32 or 64
channels (`python speed/bench_training.py --conv-ceiling` prints both). For widths below 64 that are not a multiple
of 16 (35: the CPU preset and the demo), this backward views the NHWC tensor (N*H*W rows of C values) as lines of
k*C values, k*C a multiple of 32, so each per-channel reduction and each per-channel scale runs over whole vectors,
and folds the k partial sums of a channel at the end. At 67 (the paper size) it measured no faster on the whole, so
there, as in every other case (fp32, NCHW, widths that are a multiple of 16, eval, CUDA, `torch.compile`), torch's
own BatchNorm runs. The forward (ATen's kernel) and the running statistics are always torch's, and the state dict
is nn.BatchNorm2d's.

Accuracy (tests/unit/archs/test_batch_norm.py): against float32 BatchNorm on the same bf16 values, the input
gradient's mean relative error is about 2e-3 (ATen's bf16 backward: 1.4e-3; both round it to bf16), weight and bias
gradients within bf16's resolution (2**-8; ATen sums those in float32).
"""
import math
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from gradnet_arch.precision import compiling

_LANES = 32  # bf16 values in one 512-bit register


class FastBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same arguments, state dict and forward) with the CPU bf16 channels_last backward above.

    Args:
        num_features (int): Channels C of the input.
        eps (float): Added to the variance for numerical stability. Default: 1e-5.
        momentum (float | None): Running-statistics update factor (None: cumulative average). Default: 0.1.
        affine (bool): Learnable per-channel scale and shift. Default: True.
        track_running_stats (bool): Keep running mean / variance for eval mode. Default: True.
    """

    def forward(self, x):
        if not self._fast_backward_applies(x):
            return super().forward(x)
        # nn.BatchNorm2d's running-statistics bookkeeping, then the same ATen forward kernel it calls.
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.running_mean, self.running_var, momentum,
                                            self.eps)

    def _fast_backward_applies(self, x):
        if not (self.training and self.affine and self.track_running_stats and torch.is_grad_enabled()):
            return False
        if compiling():  # inductor generates its own fused BatchNorm
            return False
        if x.device.type != 'cpu' or x.dtype != torch.bfloat16 or x.dim() != 4:
            return False
        if not x.is_contiguous(memory_format=torch.channels_last):
            return False
        n, c, h, w = x.shape
        count, k = n * h * w, _rows_per_line(c)
        # Measured against ATen's kernel (speed/bench_training.py --conv-ceiling and scratch runs, Dec 1-2): faster
        # at 11 and 35 channels (1.1-3x); at 67 0.8-1.3x, and 0.98-1.07x over whole paper-size steps (no gain that
        # holds); slower at multiples of 16 and at 99. Too few values (torch raises for one per channel) or a partial
        # last line: torch's path as well.
        return c % 16 != 0 and c < 64 and count >= k and count % k == 0


def _rows_per_line(channels):
    """How many NHWC rows of `channels` values make a line whose length is a multiple of _LANES."""
    return _LANES // math.gcd(channels, _LANES)


def _per_channel(line_sums, k):
    """Column sums of a (rows, k*C) line matrix folded to C per-channel float32 sums."""
    return line_sums.float().view(k, -1).sum(0)


def _tiled(per_channel, k, dtype):
    """A per-channel vector repeated k times: one value per column of a line matrix."""
    return per_channel.to(dtype).repeat(k)


def _lines(t, k):
    """A channels_last (N, C, H, W) tensor as its (N*H*W / k, k*C) matrix (a view: no copy)."""
    n, c, h, w = t.shape
    return t.permute(0, 2, 3, 1).view(n * h * w // k, k * c)


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch normalisation: ATen's forward, the line-wise backward (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum,
                                                             eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, mean, invstd = ctx.saved_tensors
        channels = x.shape[1]
        k = _rows_per_line(channels)
        count = x.numel() // channels
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        x_lines, g_lines = _lines(x, k), _lines(grad_out, k)
        # bf16 sums accumulate in float32 and round once per column (k columns per channel); ATen's float32-output
        # sum would first copy the whole tensor to float32.
        sum_g = _per_channel(g_lines.sum(0), k)
        # x and g centred on their bf16-rounded means, so every bf16 value below is of the scale of the spread, not
        # of the mean, and the per-channel terms left over are small: the input gradient then sums to zero per
        # channel (as it must) to rounding noise, not to a systematic rounding of a large per-channel constant.
        exact_mean_g = sum_g / count
        mean_x, mean_g = mean.to(x.dtype), exact_mean_g.to(x.dtype)
        centred_x = x_lines - _tiled(mean_x, k, x.dtype)  # x - mean - shift_x
        centred_g = g_lines - _tiled(mean_g, k, x.dtype)  # g - mean(g) - shift_g
        shift_x, shift_g = mean_x.float() - mean, mean_g.float() - exact_mean_g
        grad_x = torch.empty_like(x)
        grad_lines = _lines(grad_x, k)
        torch.mul(centred_g, centred_x, out=grad_lines)  # grad_x's storage as scratch
        # sum((g - mean(g)) * (x - mean)) = sum(g * (x - mean)), the centred sum plus its exact shift corrections
        dot = _per_channel(grad_lines.sum(0), k) - count * shift_g * shift_x
        # grad_x = scale * (g - mean(g) - x_hat * mean(g * x_hat)) = a * centred_g + b * centred_x + c per channel.
        a = weight * invstd
        b = -a * invstd * invstd * dot / count
        c = a * shift_g + b * shift_x
        torch.addcmul(_tiled(c, k, x.dtype), centred_x, _tiled(b, k, x.dtype), out=grad_lines)
        grad_lines.addcmul_(centred_g, _tiled(a, k, x.dtype))
        return grad_x, dot * invstd, sum_g, None, None, None, None
