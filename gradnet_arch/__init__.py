"""GradNet image denoising as a BasicSR plugin.

Importing this package registers into BasicSR's registries:
    ARCH_REGISTRY: MSKResNet, GradNet        LOSS_REGISTRY: GradientConsistencyLoss
    MODEL_REGISTRY: GradNetModel             DATASET_REGISTRY: GaussianNoiseDataset
    METRIC_REGISTRY: calculate_psnr_texture, calculate_psnr_smooth
Pretrained models: `load_pretrained('gradnet_color_sigma25')` (gradnet_arch.pretrained).
With the package installed, this happens automatically whenever `basicsr` is imported (gradnet_basicsr_autoload).
"""
try:
    import basicsr  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'gradnet-basicsr needs BasicSR. Install it with `pip install "gradnet-basicsr[basicsr]"` '
        '(BasicSR master with the torchvision fix) or install your own BasicSR checkout first.') from error

from gradnet_arch import compat  # noqa: E402
from gradnet_arch.archs import GradNet, MSKResNet, Sobel  # noqa: E402
from gradnet_arch.data import GaussianNoiseDataset  # noqa: E402
from gradnet_arch.losses import GradientConsistencyLoss  # noqa: E402
from gradnet_arch.metrics import region_psnr  # noqa: E402,F401  (METRIC_REGISTRY: calculate_psnr_texture/_smooth)
from gradnet_arch.models import GradNetModel  # noqa: E402
from gradnet_arch.pretrained import load_pretrained  # noqa: E402
from gradnet_arch.version import __version__  # noqa: E402

# Only where BasicSR's own train.py / test.py is this process's main program, on a machine without CUDA: gloo for
# its `--launcher pytorch`. Anywhere else, importing the plugin changes nothing in BasicSR.
compat.install_upstream_script_fixes()

__all__ = [
    'GradNet', 'MSKResNet', 'Sobel', 'GradientConsistencyLoss', 'GradNetModel', 'GaussianNoiseDataset',
    'load_pretrained', '__version__'
]
