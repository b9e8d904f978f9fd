"""GlobalAvgPool2d: nn.AdaptiveAvgPool2d(1)'s function and gradient in every layout and dtype, its gradient an
expanded view, and GradNet's channel attention built on it with the same state dict and outputs."""
import pytest
import torch
from torch import nn

from gradnet_arch import GradNet
from gradnet_arch.archs.mskresnet_arch import ChannelAttention
from gradnet_arch.archs.pooling import GlobalAvgPool2d
from gradnet_arch.pretrained.description import ModelDescription

CL = torch.channels_last
# bf16 (unit roundoff 2**-8): ATen's mean rounds a float32 sum once, the batched product its 1 / (H * W) weight and
# its result once each, so the two differ by at most 3 * 2**-8 of the mean.
TOLERANCE = {torch.float32: 1e-6, torch.bfloat16: 3 * 2**-8}


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('layout', [CL, torch.contiguous_format])
@pytest.mark.parametrize('shape', [(2, 35, 9, 7), (3, 67, 16, 16), (1, 3, 1, 1)])
def test_same_values_and_gradient_as_adaptive_avg_pool(dtype, layout, shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) + 2).to(dtype).contiguous(memory_format=layout)
    grad = torch.randn(shape[0], shape[1], 1, 1).to(dtype)
    ref_x, x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref, out = nn.AdaptiveAvgPool2d(1)(ref_x), GlobalAvgPool2d()(x)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.allclose(out.float(), ref.float(), rtol=TOLERANCE[dtype], atol=0)
    ref.backward(grad)
    out.backward(grad)
    assert torch.equal(x.grad, ref_x.grad)  # the same division, of the same values
    with torch.no_grad():  # the path without autograd gives the forward's values
        assert torch.equal(GlobalAvgPool2d()(x), out.detach())


def test_unbatched_input_is_pooled_as_torch_pools_it():
    x = torch.randn(35, 9, 7)
    assert torch.equal(GlobalAvgPool2d()(x), nn.AdaptiveAvgPool2d(1)(x))


def test_gradient_is_an_expanded_view_not_a_materialised_tensor():
    x = torch.randn(2, 35, 8, 8).to(memory_format=CL).requires_grad_(True)
    (grad, ) = torch.autograd.grad(GlobalAvgPool2d()(x), x, torch.ones(2, 35, 1, 1))
    assert grad.stride() == (35, 1, 0, 0) and torch.all(grad == 1 / 64)


def test_under_autocast_it_keeps_the_input_dtype_as_mean_does():
    x = torch.randn(2, 35, 8, 8).to(memory_format=CL)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert GlobalAvgPool2d()(x).dtype == torch.float32  # bmm alone would have been cast to bf16
        assert GlobalAvgPool2d()(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_it_is_an_adaptive_avg_pool_for_code_that_looks_for_global_pooling():
    pool = GlobalAvgPool2d()
    assert isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size == 1 and not pool.state_dict()
    net = GradNet(num_feat=8, num_modules=1, num_units=1, gradient_source='noisy')
    assert any(isinstance(m.body[0], GlobalAvgPool2d) for m in net.modules() if isinstance(m, ChannelAttention))
    assert ModelDescription.of(net).tiling == 'approximate'  # tiles see part of what the attention pools


def test_attention_outputs_and_state_dict_match_torch_pooling():
    torch.manual_seed(0)
    new = ChannelAttention(35, 16)
    old = ChannelAttention(35, 16)
    old.body[0] = nn.AdaptiveAvgPool2d(1)
    old.load_state_dict(new.state_dict())
    assert list(old.state_dict()) == list(new.state_dict())
    x = torch.randn(2, 35, 12, 12).to(memory_format=CL)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = old(xa), new(xb)
    assert torch.allclose(ya, yb, atol=1e-6)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.allclose(xa.grad, xb.grad, atol=1e-6)
    for pa, pb in zip(old.parameters(), new.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5)


def test_compiled_attention_matches_eager():
    torch.manual_seed(0)
    attention = ChannelAttention(35, 16)
    x = torch.randn(2, 35, 8, 8).to(memory_format=CL)
    compiled = torch.compile(attention)
    assert torch.allclose(compiled(x), attention(x), atol=1e-5)
