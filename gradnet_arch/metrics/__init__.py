"""Metrics registered into BasicSR's METRIC_REGISTRY: PSNR over the texture and the smooth region of the GT."""
from gradnet_arch.metrics.region_psnr import (calculate_psnr_region, calculate_psnr_smooth, calculate_psnr_texture,
                                              texture_mask)

__all__ = ['calculate_psnr_texture', 'calculate_psnr_smooth', 'calculate_psnr_region', 'texture_mask']
