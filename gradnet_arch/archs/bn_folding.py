"""BatchNorm folded into the convolution before it, for inference: one convolution instead of a convolution and a
normalisation per layer, with the same outputs (torch's `fuse_conv_bn_eval`; eval-mode BatchNorm is an affine map).

Only rewrites that are safe without knowing an arch's forward are made:

- GradNet's / MSKResNet's `ResUnit` (conv1 -> bn -> ReLU -> conv2), the frozen pre-denoiser inside a GradNet too;
- a Conv2d directly followed by a BatchNorm2d inside a plain `nn.Sequential` (DnCNN-style archs), whose forward runs
  its children in order, so the convolution's output goes nowhere but into the BatchNorm.

Everything else is left alone: transposed or custom convolutions, BatchNorm without running statistics (it
normalises with batch statistics even in eval mode), layers with hooks, layers used in more than one place.
"""
from collections import Counter
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from gradnet_arch.archs.batch_norm import FastBatchNorm2d
from gradnet_arch.archs.mskresnet_arch import ResUnit

_BATCH_NORMS = (nn.BatchNorm2d, FastBatchNorm2d, nn.SyncBatchNorm)  # eval forward: the BatchNorm affine map


def fold_batchnorm(net):
    """Fold every safely foldable BatchNorm into the convolution before it, in place (see the module docstring).

    The folded BatchNorm is replaced by `nn.Identity` (so the other layers keep their names and Sequential indices)
    and the convolution by the fused one, with a bias. The result is for inference only: it has no BatchNorm left to
    train, and its state dict no longer fits the arch's unfolded layout (load with fold_batchnorm=False to fine-tune
    or export weights).

    Args:
        net (nn.Module): The network, in eval mode.

    Returns:
        int: How many BatchNorm layers were folded.
    """
    uses = Counter(id(module) for _, module in net.named_modules(remove_duplicate=False))
    pairs = []  # (parent, conv attribute / index, bn attribute / index), collected first: the walk must not see edits
    for module in net.modules():
        if type(module).forward is ResUnit.forward:  # a subclass with its own forward may use conv1 differently
            pairs.append((module, 'conv1', 'bn'))
        elif type(module) is nn.Sequential:
            children = list(module)
            pairs += [(module, i, i + 1) for i in range(len(children) - 1)]
    folded = 0
    for parent, conv_key, bn_key in pairs:
        conv, bn = _child(parent, conv_key), _child(parent, bn_key)
        if not _foldable(conv, bn, uses):
            continue
        if conv.training or bn.training:
            raise ValueError('fold_batchnorm is for inference: call net.eval() first (training-mode BatchNorm '
                             'normalises with batch statistics, which cannot be folded).')
        fused = fuse_conv_bn_eval(conv, bn)
        fused.requires_grad_(conv.weight.requires_grad)
        _set_child(parent, conv_key, fused)
        _set_child(parent, bn_key, nn.Identity())
        folded += 1
    return folded


def _foldable(conv, bn, uses):
    """True for a plain Conv2d and an eval-foldable BatchNorm of matching width, each used once and without hooks."""
    if type(conv) is not nn.Conv2d or type(bn) not in _BATCH_NORMS:
        return False
    if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
        return False
    if uses[id(conv)] != 1 or uses[id(bn)] != 1:
        return False
    return not any(module._forward_hooks or module._forward_pre_hooks for module in (conv, bn))


def _child(parent, key):
    return parent[key] if isinstance(key, int) else getattr(parent, key)


def _set_child(parent, key, module):
    if isinstance(key, int):
        parent[key] = module
    else:
        setattr(parent, key, module)
