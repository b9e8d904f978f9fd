"""Architectures: importing this package registers MSKResNet and GradNet in BasicSR's ARCH_REGISTRY."""
from gradnet_arch.archs.gradnet_arch import GradNet
from gradnet_arch.archs.mskresnet_arch import MSKResNet
from gradnet_arch.archs.sobel import Sobel

__all__ = ['GradNet', 'MSKResNet', 'Sobel']
