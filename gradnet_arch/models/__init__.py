"""Models: importing this package registers GradNetModel in BasicSR's MODEL_REGISTRY.

`GradNetModel` (gradnet_model.py) is the method; `RobustSRModel` (robust_sr_model.py), its unregistered base, is the
infrastructure (atomic checkpoints, safe resume, CPU DDP, sharded validation, EMA statistics, amp, channels_last).
"""
from gradnet_arch.models.gradnet_model import GradNetModel
from gradnet_arch.models.robust_sr_model import RobustSRModel

__all__ = ['GradNetModel', 'RobustSRModel']
