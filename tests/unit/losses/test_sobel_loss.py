"""The Sobel operator and the gradient-consistency loss, against values computed by hand."""
import math
import numpy as np
import pytest
import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import LOSS_REGISTRY

from gradnet_arch.archs import GradNet
from gradnet_arch.archs.sobel import Sobel
from gradnet_arch.losses import GradientConsistencyLoss

K_H = np.array([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
K_V = K_H.T


def correlate3x3(img, kernel):
    """Hand-written 3x3 cross-correlation (what conv2d computes) with zero padding 1, in float64."""
    h, w = img.shape
    padded = np.pad(np.asarray(img, np.float64), 1)
    out = np.zeros((h, w))
    for di in range(3):
        for dj in range(3):
            out += kernel[di, dj] * padded[di:di + h, dj:dj + w]
    return out


def ref_responses(x):
    """G_H and G_V of an (N, C, H, W) tensor, per channel, as float64 numpy arrays."""
    arr = x.detach().double().numpy()
    g_h, g_v = np.zeros_like(arr), np.zeros_like(arr)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            g_h[n, c] = correlate3x3(arr[n, c], K_H)
            g_v[n, c] = correlate3x3(arr[n, c], K_V)
    return g_h, g_v


def ref_loss_map(pred, target):
    p_h, p_v = ref_responses(pred)
    t_h, t_v = ref_responses(target)
    return np.abs(p_h - t_h) + np.abs(p_v - t_v)


def as4d(img):
    return torch.as_tensor(np.asarray(img, np.float32))[None, None]


# ---------------------------------------------------------------------------------------------------------------------
# Sobel


def test_horizontal_ramp():
    a = 0.1
    ramp = np.tile(a * np.arange(7), (6, 1))  # x[i, j] = a * j
    g_h, g_v = Sobel().responses(as4d(ramp))
    g_h, g_v = g_h[0, 0].numpy(), g_v[0, 0].numpy()
    # interior: (1 + 2 + 1) * (a (j + 1) - a (j - 1)) = 8a; no vertical change
    np.testing.assert_allclose(g_h[1:-1, 1:-1], 8 * a, rtol=1e-6)
    np.testing.assert_allclose(g_v[1:-1, 1:-1], 0, atol=1e-6)
    # top row, interior columns: the zero-padded row above drops the first kernel row: (2 + 1) * 2a = 6a
    np.testing.assert_allclose(g_h[0, 1:-1], 6 * a, rtol=1e-6)
    # top row: G_V = a (j - 1) + 2 a j + a (j + 1) - 0 = 4 a j
    np.testing.assert_allclose(g_v[0, 1:-1], 4 * a * np.arange(1, 6), rtol=1e-6)
    # left column, interior rows: (1 + 2 + 1) * (a * 1 - 0) = 4a
    np.testing.assert_allclose(g_h[1:-1, 0], 4 * a, rtol=1e-6)


def test_vertical_step_edge():
    step = np.zeros((5, 6))
    step[:, 3:] = 1.
    g_h, g_v = Sobel().responses(as4d(step))
    g_h, g_v = g_h[0, 0].numpy(), g_v[0, 0].numpy()
    # interior rows: G_H = 4 (x[j + 1] - x[j - 1]); the last column sees zero padding on its right
    np.testing.assert_array_equal(g_h[1:-1], np.tile([0., 0., 4., 4., 0., -4.], (3, 1)))
    # top/bottom rows: only two kernel rows (weights 2, 1) see the image
    np.testing.assert_array_equal(g_h[0], [0., 0., 3., 3., 0., -3.])
    np.testing.assert_array_equal(g_h[-1], [0., 0., 3., 3., 0., -3.])
    # G_V: zero inside; at the top row x[1, j - 1] + 2 x[1, j] + x[1, j + 1], at the bottom its negative
    np.testing.assert_array_equal(g_v[1:-1], np.zeros((3, 6)))
    np.testing.assert_array_equal(g_v[0], [0., 0., 1., 3., 4., 3.])
    np.testing.assert_array_equal(g_v[-1], [0., 0., -1., -3., -4., -3.])
    magnitude = Sobel()(as4d(step))[0, 0].numpy()
    np.testing.assert_allclose(magnitude[2], [0., 0., 4., 4., 0., 4.], rtol=1e-6)
    np.testing.assert_allclose(magnitude[0, 3], math.sqrt(3**2 + 3**2), rtol=1e-6)
    np.testing.assert_allclose(magnitude[0, 4], 4., rtol=1e-6)


def test_constant_image_zero_padding_at_the_border():
    g_h, g_v = Sobel().responses(torch.ones(1, 1, 5, 6))
    g_h, g_v = g_h[0, 0], g_v[0, 0]
    # top-left corner: G_H sees the right column at rows 0, 1 (weights 2, 1); G_V the row below at cols 0, 1
    assert g_h[0, 0].item() == 3. and g_v[0, 0].item() == 3.
    assert g_h[0, -1].item() == -3. and g_v[0, -1].item() == 3.
    assert g_h[-1, 0].item() == 3. and g_v[-1, 0].item() == -3.
    assert g_h[-1, -1].item() == -3. and g_v[-1, -1].item() == -3.
    # left / right border away from the corners: 1 + 2 + 1
    assert torch.equal(g_h[1:-1, 0], torch.full((3, ), 4.)) and torch.equal(g_h[1:-1, -1], torch.full((3, ), -4.))
    assert torch.equal(g_v[0, 1:-1], torch.full((4, ), 4.)) and torch.equal(g_v[-1, 1:-1], torch.full((4, ), -4.))
    assert torch.equal(g_h[1:-1, 1:-1], torch.zeros(3, 4)) and torch.equal(g_v[1:-1, 1:-1], torch.zeros(3, 4))
    magnitude = Sobel()(torch.ones(1, 1, 5, 6))[0, 0]
    assert magnitude[0, 0].item() == pytest.approx(3 * math.sqrt(2))
    assert magnitude[2, 0].item() == pytest.approx(4.)
    assert torch.equal(magnitude[1:-1, 1:-1], torch.zeros(3, 4))


def test_responses_and_magnitude_match_reference_on_random_images():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 9, 11)
    sobel = Sobel()
    g_h, g_v = sobel.responses(x)
    ref_h, ref_v = ref_responses(x)
    np.testing.assert_allclose(g_h.numpy(), ref_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_v.numpy(), ref_v, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sobel(x).numpy(), np.sqrt(ref_h**2 + ref_v**2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sobel.magnitude(x), torch.sqrt(g_h**2 + g_v**2))
    # bounded by 4 * sqrt(2) on [0, 1] images
    assert sobel(torch.bernoulli(torch.full((4, 3, 16, 16), 0.5))).max() <= 4 * math.sqrt(2) + 1e-5


def test_per_channel_independence():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 8, 9)
    sobel = Sobel()
    full = sobel(x)
    for c in range(3):
        torch.testing.assert_close(full[:, c:c + 1], sobel(x[:, c:c + 1]))
    changed = x.clone()
    changed[:, 0] = torch.rand(2, 8, 9)
    out = sobel(changed)
    assert not torch.allclose(out[:, 0], full[:, 0])
    assert torch.equal(out[:, 1:], full[:, 1:])
    assert sobel(torch.rand(1, 5, 6, 6)).shape == (1, 5, 6, 6)


@pytest.mark.parametrize('value', [0., 0.7])
def test_magnitude_has_a_finite_gradient_at_flat_regions(value):
    x = torch.full((1, 2, 6, 7), value, requires_grad=True)
    magnitude = Sobel()(x)
    assert torch.isfinite(magnitude).all()
    magnitude.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if value == 0.:  # flat everywhere including the border: a zero (not NaN) gradient
        assert torch.equal(x.grad, torch.zeros_like(x))


def test_magnitude_gradient_is_correct_where_defined():
    torch.manual_seed(2)
    x = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Sobel(), (x, ))


def test_kernels_are_not_in_state_dict_but_follow_dtype():
    sobel = Sobel()
    assert sobel.state_dict() == {}
    assert GradientConsistencyLoss().state_dict() == {}
    net = GradNet(gradient_source='noisy', num_feat=8, num_modules=1, num_units=1)
    assert not any('sobel' in k for k in net.state_dict())
    sobel = sobel.double()
    assert sobel.kernel.dtype == torch.float64
    assert sobel(torch.rand(1, 1, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_sobel_rejects_non_4d_input():
    with pytest.raises(ValueError):
        Sobel()(torch.rand(3, 8, 8))


# ---------------------------------------------------------------------------------------------------------------------
# GradientConsistencyLoss


def test_loss_ramp_against_zeros_exact_value():
    a = 0.05
    ramp = torch.tensor(np.tile(a * np.arange(8), (2, 3, 6, 1)), dtype=torch.float32)  # (2, 3, 6, 8), x = a * j
    zeros = torch.zeros_like(ramp)
    # By hand, per 6x8 channel. |G_H|: 4 interior rows 4a + 6 * 8a + 4 * 6a = 76a, top and bottom rows
    # 3a + 6 * 6a + 3 * 6a = 57a, total 418a. |G_V|: interior rows 0, top row a + 4a (1 + ... + 6) + (6a + 2 * 7a)
    # = 105a, bottom row the same, total 210a.
    hand = (418 * a + 210 * a) / 48
    ref_h, ref_v = ref_responses(ramp)
    assert np.abs(ref_h).mean() + np.abs(ref_v).mean() == pytest.approx(hand, rel=1e-6)
    assert GradientConsistencyLoss()(ramp, zeros).item() == pytest.approx(hand, rel=1e-5)
    assert GradientConsistencyLoss(reduction='sum')(ramp, zeros).item() == pytest.approx(hand * 2 * 3 * 48, rel=1e-5)
    # symmetric in its arguments
    assert GradientConsistencyLoss()(zeros, ramp).item() == pytest.approx(hand, rel=1e-5)


def test_loss_matches_reference_for_all_reductions():
    torch.manual_seed(3)
    pred, target = torch.rand(2, 3, 7, 9), torch.rand(2, 3, 7, 9)
    ref = ref_loss_map(pred, target)
    assert GradientConsistencyLoss()(pred, target).item() == pytest.approx(ref.mean(), rel=1e-5)
    assert GradientConsistencyLoss(reduction='sum')(pred, target).item() == pytest.approx(ref.sum(), rel=1e-5)
    none = GradientConsistencyLoss(reduction='none')(pred, target)
    assert none.shape == (2, 3, 7, 9)
    np.testing.assert_allclose(none.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_loss_uses_signed_responses_not_magnitude():
    torch.manual_seed(4)
    x = torch.rand(1, 3, 8, 8)
    sobel = Sobel()
    torch.testing.assert_close(sobel(x), sobel(-x))  # same magnitude ...
    ref_h, ref_v = ref_responses(x)
    expected = 2 * (np.abs(ref_h).mean() + np.abs(ref_v).mean())
    assert GradientConsistencyLoss()(x, -x).item() == pytest.approx(expected, rel=1e-5)  # ... different signs


def test_loss_weight_scales():
    torch.manual_seed(5)
    pred, target = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    base = GradientConsistencyLoss()(pred, target)
    assert base.item() > 0
    torch.testing.assert_close(GradientConsistencyLoss(loss_weight=0.1)(pred, target), 0.1 * base)
    torch.testing.assert_close(
        GradientConsistencyLoss(loss_weight=2.5, reduction='sum')(pred, target),
        2.5 * GradientConsistencyLoss(reduction='sum')(pred, target))


def test_loss_zero_for_equal_inputs():
    x = torch.rand(2, 1, 9, 9)
    for reduction in ('mean', 'sum'):
        assert GradientConsistencyLoss(reduction=reduction)(x, x.clone()).item() == 0.
    assert torch.equal(GradientConsistencyLoss(reduction='none')(x, x), torch.zeros_like(x))
    # a constant offset has the same interior gradient: only the zero-padded border differs
    shifted = GradientConsistencyLoss(reduction='none')(x, x + 0.3)
    assert torch.allclose(shifted[..., 1:-1, 1:-1], torch.zeros(2, 1, 7, 7), atol=1e-5)
    assert shifted.sum() > 0


def test_loss_weight_map():
    torch.manual_seed(6)
    pred, target = torch.rand(2, 3, 5, 6), torch.rand(2, 3, 5, 6)
    ref = ref_loss_map(pred, target)
    weight = (torch.rand(2, 1, 5, 6) > 0.5).float()
    w = weight.double().numpy()
    # BasicSR's weight_reduce_loss: mean = sum(loss * w) / (sum(w) * C) for a single-channel weight
    mean = GradientConsistencyLoss()(pred, target, weight=weight)
    assert mean.item() == pytest.approx((ref * w).sum() / (w.sum() * 3), rel=1e-5)
    total = GradientConsistencyLoss(reduction='sum')(pred, target, weight=weight)
    assert total.item() == pytest.approx((ref * w).sum(), rel=1e-5)
    none = GradientConsistencyLoss(reduction='none')(pred, target, weight=weight)
    np.testing.assert_allclose(none.numpy(), ref * w, rtol=1e-5, atol=1e-6)
    # a full-channel weight map divides by its own sum
    weight_c = torch.rand(2, 3, 5, 6)
    w_c = weight_c.double().numpy()
    mean_c = GradientConsistencyLoss(loss_weight=0.5)(pred, target, weight=weight_c)
    assert mean_c.item() == pytest.approx(0.5 * (ref * w_c).sum() / w_c.sum(), rel=1e-5)


def test_loss_invalid_reduction():
    with pytest.raises(ValueError, match='reduction'):
        GradientConsistencyLoss(reduction='average')


def test_loss_shape_mismatch():
    with pytest.raises(ValueError):
        GradientConsistencyLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError):
        GradientConsistencyLoss()(torch.rand(1, 3, 8, 8), torch.rand(1, 1, 8, 8))


def test_loss_gradients_flow_to_pred():
    torch.manual_seed(7)
    pred = torch.rand(1, 2, 6, 7, requires_grad=True)
    target = torch.rand(1, 2, 6, 7)
    GradientConsistencyLoss()(pred, target).backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert target.grad is None
    pred64 = pred.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: GradientConsistencyLoss()(p, target.double()), (pred64, ))


def test_loss_registered_and_buildable():
    assert LOSS_REGISTRY.get('GradientConsistencyLoss') is GradientConsistencyLoss
    loss = build_loss({'type': 'GradientConsistencyLoss', 'loss_weight': 0.1})
    assert isinstance(loss, GradientConsistencyLoss)
    assert loss.loss_weight == 0.1 and loss.reduction == 'mean'
    torch.manual_seed(8)
    pred, target = torch.rand(1, 3, 6, 6), torch.rand(1, 3, 6, 6)
    assert loss(pred, target).item() == pytest.approx(0.1 * ref_loss_map(pred, target).mean(), rel=1e-5)
