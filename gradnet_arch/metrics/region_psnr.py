"""PSNR over the texture or the smooth region of the clean image (the paper's texture-vs-smooth claim).

A pixel is "texture" where the clean image's Sobel magnitude (the `Sobel` module GradNet itself uses, on the [0, 1]
scale) reaches `eps`, grown by one pixel (3x3 dilation); every other pixel is "smooth". Conventions:

- The mask always comes from `img2`, the ground truth (BasicSR calls metrics with `img=output, img2=gt`).
- Colour: a pixel is texture if the magnitude of *any* channel reaches `eps` (an edge in one channel is an edge),
  and the mask then selects all channels of that pixel. With `test_y_channel` the mask is still the colour one.
- The image is edge-replicated before the Sobel filter, so the image border is not mistaken for an edge (the
  net's Sobel pads with zeros, which would mark the whole border of a bright image as texture).
- The mask is computed on the whole image; `crop_border` then crops image and mask alike.
- PSNR = 10 log10(255^2 / MSE) with the MSE averaged over the region's pixels and channels only (the released
  code averaged over all pixels, which inflates the figure). Identical images in a non-empty region give inf, as
  BasicSR's `calculate_psnr`; an empty region (no texture in a flat image, no smooth pixel in pure noise) has no
  PSNR: the result is NaN with a RuntimeWarning. Average per-image values with `np.nanmean` to skip such images
  (BasicSR's validation loop sums plainly, so one NaN makes that average NaN: visible, not silently wrong).
"""
import numbers
import numpy as np
import torch
import warnings
from basicsr.metrics.metric_util import reorder_image, to_y_channel
from basicsr.utils.registry import METRIC_REGISTRY
from torch.nn import functional as F

from gradnet_arch.archs.sobel import Sobel
from gradnet_arch.errors import OptionError
from gradnet_arch.registry import register

EPS_CHOICES = (0.5, 1.0, 1.5)  # the thresholds of the field (any eps >= 0 is accepted)
REGIONS = ('texture', 'smooth')


def _check_eps(eps):
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise OptionError(f'Texture/smooth PSNR: eps must be a number >= 0 on the [0, 1] Sobel-magnitude scale '
                          f'(usually one of {", ".join(map(str, EPS_CHOICES))}), got {eps!r}.')
    return float(eps)


def texture_mask(img, eps=1.0, input_order='HWC', data_range=255.):
    """Boolean (H, W) mask of the texture pixels of a clean image.

    Args:
        img (ndarray): Clean image, (H, W), (H, W, C) or (C, H, W) with values in [0, data_range].
        eps (float): Threshold on the Sobel magnitude of the image scaled to [0, 1]. Default: 1.0.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        data_range (float): Value of white: 255 for 8-bit images. Default: 255.

    Returns:
        ndarray: bool, shape (H, W); True where any channel's magnitude >= eps, dilated by one pixel (3x3).
    """
    eps = _check_eps(eps)
    img = reorder_image(np.asarray(img), input_order=input_order)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float64) / float(data_range))[None]
    with torch.no_grad():
        padded = F.pad(x, (1, 1, 1, 1), mode='replicate')  # border pixels see copies of themselves, not zeros
        magnitude = Sobel().to(torch.float64)(padded)[..., 1:-1, 1:-1]
        core = (magnitude >= eps).any(dim=1, keepdim=True).to(torch.float64)
        dilated = F.max_pool2d(core, kernel_size=3, stride=1, padding=1)  # max-pool pads with -inf: no border effect
    return dilated[0, 0].numpy() > 0


def calculate_psnr_region(img,
                          img2,
                          crop_border,
                          region,
                          input_order='HWC',
                          test_y_channel=False,
                          eps=1.0,
                          mask=None,
                          return_mse=False):
    """PSNR of `img` against the ground truth `img2` over one region of `img2`.

    Args:
        img (ndarray): Output image, range [0, 255].
        img2 (ndarray): Ground truth, range [0, 255]; the region comes from it.
        crop_border (int): Pixels cropped at each edge (after the mask is computed on the whole image).
        region (str): 'texture' or 'smooth'.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        test_y_channel (bool): Compare the Y channel of YCbCr (the mask stays the colour one). Default: False.
        eps (float): Texture threshold on the [0, 1] scale. Default: 1.0.
        mask (ndarray | None): A precomputed `texture_mask(img2, eps, input_order)` (saves recomputing it for
            both regions). Default: None.
        return_mse (bool): Return (psnr, mse, pixel count) instead of the PSNR alone. Default: False.

    Returns:
        float: PSNR in dB; inf for a perfect match, NaN (with a RuntimeWarning) for an empty region.
    """
    if region not in REGIONS:
        raise OptionError(f'Region PSNR: region must be one of {REGIONS}, got {region!r}.')
    if img.shape != img2.shape:
        raise ValueError(f'Image shapes are different: {img.shape}, {img2.shape}.')
    if mask is None:
        mask = texture_mask(img2, eps, input_order)
    img = reorder_image(img, input_order=input_order)
    img2 = reorder_image(img2, input_order=input_order)
    if mask.shape != img2.shape[:2]:
        raise ValueError(f'Mask shape {mask.shape} does not match the image {img2.shape[:2]}.')
    if crop_border != 0:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
        mask = mask[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    selected = mask if region == 'texture' else ~mask
    count = int(selected.sum())
    if count == 0:
        warnings.warn(
            f'{region} PSNR: the ground truth has no {region} pixels (eps={eps}); returning NaN.',
            RuntimeWarning,
            stacklevel=2)
        return (float('nan'), float('nan'), 0) if return_mse else float('nan')
    diff = img.astype(np.float64)[selected] - img2.astype(np.float64)[selected]  # (count, C)
    mse = float(np.mean(diff**2))
    psnr = float('inf') if mse == 0 else float(10. * np.log10(255. * 255. / mse))
    return (psnr, mse, count) if return_mse else psnr


@register(METRIC_REGISTRY)
def calculate_psnr_texture(img, img2, crop_border, input_order='HWC', test_y_channel=False, eps=1.0, **kwargs):
    """PSNR over the texture pixels of the ground truth (Sobel magnitude >= eps, dilated by one pixel).

    Use in a BasicSR option file as `psnr_texture: {type: calculate_psnr_texture, crop_border: 0, eps: 1.0}`.

    Args:
        img (ndarray): Output image, range [0, 255].
        img2 (ndarray): Ground truth, range [0, 255]; the mask comes from it.
        crop_border (int): Pixels cropped at each edge.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        test_y_channel (bool): Compare the Y channel. Default: False.
        eps (float): Threshold on the [0, 1] scale (0.5, 1 or 1.5 in the literature). Default: 1.0.

    Returns:
        float: PSNR in dB (inf for a perfect match, NaN with a warning when the image has no texture).
    """
    return calculate_psnr_region(img, img2, crop_border, 'texture', input_order, test_y_channel, eps)


@register(METRIC_REGISTRY)
def calculate_psnr_smooth(img, img2, crop_border, input_order='HWC', test_y_channel=False, eps=1.0, **kwargs):
    """PSNR over the smooth pixels of the ground truth (everything that `calculate_psnr_texture` does not cover).

    Use in a BasicSR option file as `psnr_smooth: {type: calculate_psnr_smooth, crop_border: 0, eps: 1.0}`.

    Args:
        img (ndarray): Output image, range [0, 255].
        img2 (ndarray): Ground truth, range [0, 255]; the mask comes from it.
        crop_border (int): Pixels cropped at each edge.
        input_order (str): 'HWC' or 'CHW'. Default: 'HWC'.
        test_y_channel (bool): Compare the Y channel. Default: False.
        eps (float): Threshold on the [0, 1] scale (0.5, 1 or 1.5 in the literature). Default: 1.0.

    Returns:
        float: PSNR in dB (inf for a perfect match, NaN with a warning when the image has no smooth pixel).
    """
    return calculate_psnr_region(img, img2, crop_border, 'smooth', input_order, test_y_channel, eps)
