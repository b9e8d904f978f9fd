"""Models: importing this package registers GradNetModel in BasicSR's MODEL_REGISTRY."""
from gradnet_arch.models.gradnet_model import GradNetModel

__all__ = ['GradNetModel']
