"""GradNet's gradient-consistency loss."""
from basicsr.losses.loss_util import weight_reduce_loss
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from gradnet_arch.archs.sobel import Sobel
from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.registry import register

_REDUCTIONS = ('none', 'mean', 'sum')


@register(LOSS_REGISTRY)
class GradientConsistencyLoss(nn.Module):
    """L1 distance between the signed Sobel responses of prediction and target.

    L_g = |G_H(pred) - G_H(target)| + |G_V(pred) - G_V(target)|, per pixel and channel, then reduced. With the
    default mean reduction this equals mean|dG_H| + mean|dG_V|. The paper (released code) sums instead of
    averaging and uses lambda = 0.1; the option files keep `loss_weight: 0.1` with the mean reduction, which weighs
    the term against BasicSR's mean L1 pixel loss exactly as the paper weighs the sums.

    Args:
        loss_weight (float): Multiplier (lambda). Default: 1.0 (BasicSR's convention; GradNet's YAMLs set 0.1).
        reduction (str): 'none' | 'mean' | 'sum'. Default: 'mean'.
    """

    def __init__(self, loss_weight=1.0, reduction='mean'):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise OptionError(f'GradientConsistencyLoss: unsupported reduction {reduction!r}; '
                              f'use one of {", ".join(_REDUCTIONS)}.')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.sobel = Sobel()

    def forward(self, pred, target, weight=None, **kwargs):
        """
        Args:
            pred (Tensor): (N, C, H, W) prediction.
            target (Tensor): (N, C, H, W) ground truth.
            weight (Tensor, optional): (N, C, H, W) or (N, 1, H, W) element-wise weights. Default: None.

        Returns:
            Tensor: Scalar for 'mean'/'sum'; (N, C, H, W) for 'none'.
        """
        if pred.shape != target.shape:
            raise DataError(f'GradientConsistencyLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} '
                            f'must have the same shape.')
        pred_h, pred_v = self.sobel.responses(pred)
        target_h, target_v = self.sobel.responses(target)
        loss = (pred_h - target_h).abs() + (pred_v - target_v).abs()
        return self.loss_weight * weight_reduce_loss(loss, weight, self.reduction)
