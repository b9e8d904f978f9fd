"""Texture / smooth-region PSNR: masks and values on images with known edges, and use from a BasicSR option file."""
import cv2
import glob
import importlib
import math
import numpy as np
import os
import pytest
import re
import skimage.data
import torch
from basicsr.archs import build_network
from basicsr.metrics import calculate_metric, calculate_psnr
from basicsr.utils.registry import METRIC_REGISTRY
from conftest import run_python, write_images
from tiny_options import TINY_NET, make_test_options, write_yaml

import gradnet_arch  # noqa: F401  (registers the metrics)
from gradnet_arch.errors import OptionError
from gradnet_arch.metrics import calculate_psnr_region, calculate_psnr_smooth, calculate_psnr_texture, texture_mask


def step_image(height=12, width=16, column=8, low=40, high=120, channels=3, edge_channels=(0, 1, 2)):
    """Flat `low` everywhere; columns >= `column` are `high` in `edge_channels` (a vertical step edge)."""
    img = np.full((height, width, channels), low, np.uint8)
    for c in edge_channels:
        img[:, column:, c] = high
    return img


def psnr_of_mse(mse):
    return 10 * math.log10(255.**2 / mse)


def test_step_edge_mask_is_the_dilated_edge_band():
    # Sobel magnitude at the two columns beside the step: 4 * 80 / 255 = 1.25 (>= 0.5 and 1, < 1.5)
    img = step_image(column=8, low=40, high=120)
    expected = np.zeros(img.shape[:2], bool)
    expected[:, 6:10] = True  # columns 7 and 8 respond, grown by one pixel on each side
    for eps in (0.5, 1.0):
        np.testing.assert_array_equal(texture_mask(img, eps), expected)
    assert not texture_mask(img, 1.5).any()
    # the image border is no edge: a flat bright image has no texture (edge-replicated, not zero-padded)
    assert not texture_mask(np.full((9, 9, 3), 250, np.uint8), 0.5).any()
    # CHW gives the same mask; a (H, W) grey image too
    np.testing.assert_array_equal(texture_mask(img.transpose(2, 0, 1), 1.0, input_order='CHW'), expected)
    np.testing.assert_array_equal(texture_mask(img[..., 0], 1.0), expected)


def test_colour_edge_in_one_channel_marks_all_channels():
    gt = step_image(column=8, edge_channels=(2, ))  # the edge is in one channel only
    mask = texture_mask(gt, 1.0)
    assert mask[:, 6:10].all() and mask.sum() == 4 * gt.shape[0]
    out = gt.copy()
    out[mask, 0] += 6  # error in a channel without the edge, inside the texture band
    out[~mask, 1] += 3  # and another error in the smooth part
    # MSE per region averages over that region's pixels and all channels: 6^2 / 3 and 3^2 / 3
    assert calculate_psnr_texture(out, gt, crop_border=0) == pytest.approx(psnr_of_mse(36 / 3), abs=1e-10)
    assert calculate_psnr_smooth(out, gt, crop_border=0) == pytest.approx(psnr_of_mse(9 / 3), abs=1e-10)


def test_psnr_by_hand_and_mask_from_ground_truth():
    gt = step_image(height=10, width=16, column=8, channels=1, edge_channels=(0, ))[..., 0]
    out = gt.astype(np.int32)
    out[:, 6:10] += 10  # texture band: MSE 100
    out[:, :6] += 2  # smooth left part: 6 columns of error 2, the 6 right columns exact -> MSE 4 * 6 / 12 = 2
    out = out.astype(np.uint8)
    assert calculate_psnr_texture(out, gt, 0) == pytest.approx(psnr_of_mse(100), abs=1e-10)
    assert calculate_psnr_smooth(out, gt, 0) == pytest.approx(psnr_of_mse(2), abs=1e-10)
    # the region comes from img2 (the GT): a flat GT has no texture, whatever the output shows
    flat = np.full_like(gt, 40)
    with pytest.warns(RuntimeWarning, match='no texture pixels'):
        assert math.isnan(calculate_psnr_texture(gt, flat, 0))
    assert calculate_psnr_smooth(gt, flat, 0) == pytest.approx(calculate_psnr(gt, flat, 0), abs=1e-10)
    # eps too high for this edge: no texture -> NaN, smooth = the whole image
    with pytest.warns(RuntimeWarning):
        assert math.isnan(calculate_psnr_texture(out, gt, 0, eps=1.5))
    assert calculate_psnr_smooth(out, gt, 0, eps=1.5) == pytest.approx(calculate_psnr(out, gt, 0), abs=1e-10)
    # perfect match in a non-empty region: inf, as BasicSR's calculate_psnr
    assert calculate_psnr_texture(gt, gt, 0) == float('inf')


def test_regions_partition_the_image_mse():
    gt = cv2.cvtColor(skimage.data.astronaut()[100:164, 180:260], cv2.COLOR_RGB2BGR)
    rng = np.random.RandomState(0)
    out = np.clip(gt + rng.normal(0, 8, gt.shape), 0, 255).round().astype(np.uint8)
    mask = texture_mask(gt, 1.0)
    assert 0.1 < mask.mean() < 0.9  # both regions are substantial in a photo
    psnr_t, mse_t, n_t = calculate_psnr_region(out, gt, 0, 'texture', return_mse=True)
    psnr_s, mse_s, n_s = calculate_psnr_region(out, gt, 0, 'smooth', return_mse=True)
    assert n_t + n_s == mask.size and n_t == mask.sum()
    total = (mse_t * n_t + mse_s * n_s) / mask.size
    assert psnr_of_mse(total) == pytest.approx(calculate_psnr(out, gt, 0), abs=1e-9)
    assert psnr_t == pytest.approx(psnr_of_mse(mse_t)) and psnr_s == pytest.approx(psnr_of_mse(mse_s))
    # crop_border crops the whole-image mask; the Y-channel variant runs with the same mask
    cropped = calculate_psnr_region(out, gt, 4, 'texture', return_mse=True)
    assert cropped[2] == mask[4:-4, 4:-4].sum()
    assert np.isfinite(calculate_psnr_texture(out, gt, 0, test_y_channel=True))
    # eps monotonicity: a lower threshold marks at least as many pixels
    assert texture_mask(gt, 0.5).sum() >= mask.sum() >= texture_mask(gt, 1.5).sum()


def test_registered_in_basicsr_and_idempotent():
    gt = step_image()
    out = gt.copy()
    out[0, 0, 0] += 5
    data = {'img': out, 'img2': gt}
    value = calculate_metric(data, {'type': 'calculate_psnr_smooth', 'crop_border': 0, 'eps': 1.0})
    assert value == pytest.approx(psnr_of_mse(25 / (gt.size - 3 * 4 * 12)), abs=1e-10)
    assert math.isinf(calculate_metric(data, {'type': 'calculate_psnr_texture', 'crop_border': 0}))
    module = importlib.import_module('gradnet_arch.metrics.region_psnr')
    importlib.reload(module)  # a second registration of our own functions is skipped, not an error
    assert METRIC_REGISTRY.get('calculate_psnr_texture').__module__ == module.__name__
    with pytest.raises(OptionError, match='eps must be a number >= 0'):
        calculate_psnr_texture(out, gt, 0, eps=-1)
    with pytest.raises(OptionError, match='eps'):
        calculate_psnr_texture(out, gt, 0, eps='high')


def test_basicsr_test_pipeline_logs_region_psnr(tmp_path):
    """An option file's val.metrics can name the metrics; BasicSR's test pipeline logs the mean over images."""
    work = str(tmp_path)
    val = write_images(os.path.join(work, 'val'), 2, seed=100, height=32, width=36)
    torch.manual_seed(0)
    network = dict(TINY_NET, type='MSKResNet')
    ckpt = os.path.join(work, 'msk.pth')
    torch.save({'params': build_network(dict(network)).state_dict()}, ckpt)
    opt = make_test_options('region_test', val, network, ckpt)
    opt['val']['metrics']['psnr_texture'] = {'type': 'calculate_psnr_texture', 'crop_border': 0, 'eps': 1.0}
    opt['val']['metrics']['psnr_smooth'] = {'type': 'calculate_psnr_smooth', 'crop_border': 0, 'eps': 1.0}
    opt_file = write_yaml(opt, os.path.join(work, 'options', 'region_test.yml'))
    proc = run_python(['-m', 'gradnet_arch.test', '-opt', opt_file], cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = open(glob.glob(os.path.join(work, 'results', 'region_test', 'test_*.log'))[0]).read()
    logged = {name: float(re.search(rf'# {name}: ([\d.]+)', log).group(1)) for name in ('psnr_texture', 'psnr_smooth')}
    # recompute from the saved outputs (8-bit, as BasicSR's validation evaluates them) and the clean images
    expected = {'psnr_texture': [], 'psnr_smooth': []}
    for gt_path in sorted(glob.glob(os.path.join(val, '*.png'))):
        stem = os.path.splitext(os.path.basename(gt_path))[0]
        out = cv2.imread(
            os.path.join(work, 'results', 'region_test', 'visualization', 'tiny_val', f'{stem}_region_test.png'))
        gt = cv2.imread(gt_path)
        expected['psnr_texture'].append(calculate_psnr_texture(out, gt, 0, eps=1.0))
        expected['psnr_smooth'].append(calculate_psnr_smooth(out, gt, 0, eps=1.0))
    for name, values in expected.items():
        assert logged[name] == pytest.approx(np.mean(values), abs=1e-4), name
    assert logged['psnr_texture'] != logged['psnr_smooth']
