"""Losses: importing this package registers them in BasicSR's LOSS_REGISTRY."""
from gradnet_arch.losses.gradient_loss import GradientConsistencyLoss

__all__ = ['GradientConsistencyLoss']
