"""MSKResNet, the "multiple skip-connection residual network" of GradNet, and its building blocks."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights

from gradnet_arch.archs.batch_norm import FastBatchNorm2d
from gradnet_arch.archs.pooling import GlobalAvgPool2d
from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.registry import register, reject_unknown_options


class ResUnit(nn.Module):
    """conv3x3 -> [BN] -> ReLU -> conv3x3, plus the unit's input, then ReLU.

    Attribute `fold_frozen_bn` (default False; GradNet sets it in its frozen pre-denoiser): in eval mode with
    gradients off, conv1 and the BatchNorm run as one convolution whose weights are folded anew on every call
    (torch's `fuse_conv_bn_weights`; the same outputs, never stale after a weight load).

    Args:
        channels (int): Input and output channels.
        batch_norm (bool): BatchNorm after the first conv (the released code has it; the paper's figure does not);
            nn.BatchNorm2d's layout, with a faster bf16 channels_last backward on the CPU (archs/batch_norm.py).
    """

    def __init__(self, channels, batch_norm=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.bn = FastBatchNorm2d(channels) if batch_norm else nn.Identity()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fold_frozen_bn = False

    def forward(self, x):
        out = self.conv2(self.relu(self._conv_bn(x)))
        return self.relu(out + x)

    def _conv_bn(self, x):
        bn = self.bn
        if (self.fold_frozen_bn and not torch.is_grad_enabled() and isinstance(bn, nn.BatchNorm2d) and not bn.training
                and bn.running_mean is not None):
            weight, bias = fuse_conv_bn_weights(self.conv1.weight, self.conv1.bias, bn.running_mean, bn.running_var,
                                                bn.eps, bn.weight, bn.bias)
            return F.conv2d(x, weight, bias, 1, 1)
        return bn(self.conv1(x))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 conv down by `reduction` + ReLU, 1x1 conv up + sigmoid.

    The pool is nn.AdaptiveAvgPool2d(1)'s function with a cheaper backward (archs/pooling.py); no state either way.

    Args:
        channels (int): Channels of the features to reweight.
        reduction (int): Channel reduction of the bottleneck (hidden = max(1, channels // reduction)).
    """

    def __init__(self, channels, reduction=16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.body = nn.Sequential(GlobalAvgPool2d(), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.body(x)


class MSKModule(nn.Module):
    """Module M_i: residual units, concat with the module input, conv3x3 back to `channels`, attention.

    Args:
        channels (int): Feature channels.
        num_units (int): ResUnits in the module (4 in the paper).
        batch_norm (bool): BatchNorm inside the ResUnits.
        reduction (int): Attention reduction.
    """

    def __init__(self, channels, num_units=4, batch_norm=True, reduction=16):
        super().__init__()
        self.units = nn.Sequential(*[ResUnit(channels, batch_norm) for _ in range(num_units)])
        self.fuse = nn.Conv2d(2 * channels, channels, 3, 1, 1)
        self.attention = ChannelAttention(channels, reduction)

    def forward(self, x):
        return self.attention(self.fuse(torch.cat([x, self.units(x)], dim=1)))


class MSKBody(nn.Module):
    """The denoise block: `num_modules` modules in a row plus a long skip from the body input.

    Args:
        channels (int): Feature channels (F for MSKResNet, F + C for GradNet at fusion position II).
        num_modules (int): Modules (4 in the paper).
        num_units (int): ResUnits per module.
        batch_norm (bool): BatchNorm inside the ResUnits.
        reduction (int): Attention reduction.
    """

    def __init__(self, channels, num_modules=4, num_units=4, batch_norm=True, reduction=16):
        super().__init__()
        self.blocks = nn.Sequential(
            *[MSKModule(channels, num_units, batch_norm, reduction) for _ in range(num_modules)])

    def forward(self, x):
        return self.blocks(x) + x


@register(ARCH_REGISTRY)
class MSKResNet(nn.Module):
    """Plain MSKResNet denoiser: conv3x3 (no bias) + ReLU, MSK body, conv3x3 (no bias), plus the input.

    Also the usual naive denoise block (stage 1) of GradNet. Defaults are the released-code configuration
    (1,484,688 parameters in colour); `batch_norm=False, reduction=2` is the network as drawn in the paper.

    Args:
        num_in_ch (int): Image channels, 1 (grey) or 3 (colour). Default: 3.
        num_out_ch (int): Output channels; None means num_in_ch. Default: None.
        num_feat (int): Feature channels F. Default: 64.
        num_modules (int): Modules in the body. Default: 4.
        num_units (int): ResUnits per module. Default: 4.
        batch_norm (bool): BatchNorm in the ResUnits. Default: True.
        reduction (int): Channel-attention reduction r. Default: 16.
        global_residual (bool): Add the input to the output (predict the noise residual). Default: True.
    """

    def __init__(self,
                 num_in_ch=3,
                 num_out_ch=None,
                 num_feat=64,
                 num_modules=4,
                 num_units=4,
                 batch_norm=True,
                 reduction=16,
                 global_residual=True,
                 **unknown):
        super().__init__()
        reject_unknown_options('MSKResNet', unknown, MSKResNet.__init__)
        num_out_ch = num_in_ch if num_out_ch is None else num_out_ch
        if global_residual and num_out_ch != num_in_ch:
            raise OptionError(f'MSKResNet: global_residual needs num_out_ch == num_in_ch, got {num_in_ch} -> '
                              f'{num_out_ch}. Set global_residual: false or make the channel counts equal.')
        self.num_in_ch = num_in_ch
        self.global_residual = global_residual
        self.head = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, 1, 1, bias=False), nn.ReLU(inplace=True))
        self.body = MSKBody(num_feat, num_modules, num_units, batch_norm, reduction)
        self.tail = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1, bias=False)

    def forward(self, x):
        check_input_channels(self, x)
        out = self.tail(self.body(self.head(x)))
        return out + x if self.global_residual else out


def check_input_channels(net, x):
    """Clear error for a batch whose channel count does not match the net (grey data into a colour net...)."""
    if x.dim() != 4 or x.shape[1] != net.num_in_ch:
        raise DataError(f'{type(net).__name__} was built for {net.num_in_ch}-channel images (num_in_ch) but got '
                        f'input of shape {tuple(x.shape)}. Make the dataset\'s colour mode and the network\'s '
                        f'num_in_ch agree (1 = grey, 3 = colour).')
