"""MSKResNet and GradNet: sizes, shapes, the frozen pre-denoiser, gradient sources, fusion, checkpoints, registry."""
import importlib
import numpy as np
import pytest
import re
import torch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY, Registry
from scipy import ndimage
from torch import nn

import gradnet_arch
import gradnet_arch.archs.gradnet_arch as gradnet_module
import gradnet_arch.archs.mskresnet_arch as mskresnet_module
from gradnet_arch.archs import GradNet, MSKResNet
from gradnet_arch.registry import register

TINY = dict(num_feat=8, num_modules=1, num_units=1, reduction=2)
SOBEL_H = np.array([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
FUSIONS = ('I', 'II', 'III', 'IV')
SOURCES = ('denoised', 'noisy', 'none')


def tiny_pre(num_in_ch=3, **kwargs):
    return dict(type='MSKResNet', num_in_ch=num_in_ch, **TINY, **kwargs)


def tiny_gradnet(seed=0, num_in_ch=3, gradient_source='denoised', predenoiser=None, **kwargs):
    torch.manual_seed(seed)
    if gradient_source == 'denoised' and predenoiser is None:
        predenoiser = tiny_pre(num_in_ch)
    opts = dict(TINY, **kwargs)
    return GradNet(num_in_ch=num_in_ch, gradient_source=gradient_source, predenoiser=predenoiser, **opts)


def count(params):
    return sum(p.numel() for p in params)


def ref_sobel_magnitude(x):
    """Per-channel Sobel magnitude with zero padding, computed with scipy (independent of the plugin's Sobel)."""
    arr = x.detach().double().cpu().numpy()
    out = np.zeros_like(arr)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            g_h = ndimage.correlate(arr[n, c], SOBEL_H, mode='constant', cval=0.)
            g_v = ndimage.correlate(arr[n, c], SOBEL_H.T, mode='constant', cval=0.)
            out[n, c] = np.sqrt(g_h**2 + g_v**2)
    return out


def save_stage1(path, seed=1, wrap=True, **kwargs):
    """Train-free stage-1 checkpoint of a tiny MSKResNet; returns its state dict."""
    torch.manual_seed(seed)
    opts = dict(TINY, **kwargs)
    state = MSKResNet(**opts).state_dict()
    torch.save({'params': state} if wrap else state, str(path))
    return state


def assert_state_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


# ---------------------------------------------------------------------------------------------------------------------
# parameter counts


@pytest.mark.parametrize('options, gradnet_params, mskresnet_params', [
    ({}, 1626561, 1484688),
    ({
        'num_in_ch': 1
    }, 1528937, 1482384),
    ({
        'batch_norm': False,
        'reduction': 2
    }, 1640077, 1497088),
])
def test_paper_size_parameter_counts(options, gradnet_params, mskresnet_params):
    c = options.get('num_in_ch', 3)
    net = GradNet(predenoiser=tiny_pre(c), **options)
    assert count(net.own_parameters()) == gradnet_params
    # own_parameters is everything except the pre-denoiser
    assert count(net.parameters()) - count(net.own_parameters()) == count(net.predenoiser.parameters())
    assert count(MSKResNet(**options).parameters()) == mskresnet_params
    # the ablations: Sobel of the noisy input has the same size; no gradient at all is a plain MSKResNet
    assert count(GradNet(gradient_source='noisy', **options).parameters()) == gradnet_params
    assert count(GradNet(gradient_source='none', **options).parameters()) == mskresnet_params


def test_own_parameters_exclude_predenoiser():
    net = tiny_gradnet()
    own = {id(p) for p in net.own_parameters()}
    pre = {id(p) for p in net.predenoiser.parameters()}
    assert own and pre
    assert not own & pre
    assert own | pre == {id(p) for p in net.parameters()}


@pytest.mark.parametrize('options', [TINY, dict(TINY, batch_norm=False), dict(TINY, num_in_ch=1, num_units=2)])
def test_gradient_source_none_is_plain_mskresnet(options):
    net = GradNet(gradient_source='none', **options)
    plain = MSKResNet(**options)
    assert count(net.parameters()) == count(plain.parameters())
    assert [tuple(v.shape) for v in net.state_dict().values()] == [tuple(v.shape) for v in plain.state_dict().values()]


# ---------------------------------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize('gradient_source', SOURCES)
@pytest.mark.parametrize('fusion', FUSIONS)
def test_output_shape_equals_input_shape(fusion, gradient_source):
    net = tiny_gradnet(fusion=fusion, gradient_source=gradient_source, global_residual=True).eval()
    for batch in (1, 2, 3):
        for height, width in ((7, 9), (11, 5)):
            x = torch.rand(batch, 3, height, width)
            with torch.no_grad():
                out = net(x)
            assert out.shape == x.shape
            assert torch.isfinite(out).all()


@pytest.mark.parametrize('gradient_source', SOURCES)
@pytest.mark.parametrize('fusion', FUSIONS)
def test_output_shape_under_bfloat16_autocast(fusion, gradient_source):
    net = tiny_gradnet(fusion=fusion, gradient_source=gradient_source).eval()
    x = torch.rand(2, 3, 9, 7)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        out = net(x)
    assert out.shape == x.shape
    assert torch.isfinite(out.float()).all()


def test_grey_shapes_and_mskresnet_shapes():
    net = tiny_gradnet(num_in_ch=1).eval()
    x = torch.rand(2, 1, 9, 13)
    with torch.no_grad():
        assert net(x).shape == x.shape
        assert MSKResNet(num_in_ch=1, **TINY)(x).shape == x.shape
        assert MSKResNet(**TINY)(torch.rand(3, 3, 5, 7)).shape == (3, 3, 5, 7)


# ---------------------------------------------------------------------------------------------------------------------
# the frozen pre-denoiser


def test_predenoiser_is_frozen_and_stays_in_eval():
    net = tiny_gradnet()
    assert all(not p.requires_grad for p in net.predenoiser.parameters())
    assert all(p.requires_grad for p in net.own_parameters())
    net.train()
    assert net.training and net.head.training
    assert not any(m.training for m in net.predenoiser.modules())
    net.eval()
    net.train(True)
    assert not any(m.training for m in net.predenoiser.modules())


def test_optimizer_step_moves_own_weights_only():
    net = tiny_gradnet().train()
    pre_before = {k: v.clone() for k, v in net.predenoiser.state_dict().items()}
    own_before = [p.detach().clone() for p in net.own_parameters()]
    optimizer = torch.optim.Adam(net.own_parameters(), lr=1e-2)
    x, target = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    loss = (net(x) - target).abs().mean()
    loss.backward()
    assert all(p.grad is None for p in net.predenoiser.parameters())
    grads = [p.grad for p in net.own_parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert net.head[0].weight.grad.abs().sum() > 0 and net.tail.weight.grad.abs().sum() > 0
    optimizer.step()
    assert_state_equal(net.predenoiser.state_dict(), pre_before)
    assert any(not torch.equal(p, q) for p, q in zip(net.own_parameters(), own_before))


def test_predenoiser_batchnorm_statistics_never_move():
    net = tiny_gradnet().train()
    pre_buffers = {k: v.clone() for k, v in net.predenoiser.named_buffers()}
    own_bn = net.body.blocks[0].units[0].bn
    own_mean = own_bn.running_mean.clone()
    assert any('running_mean' in k for k in pre_buffers)
    for _ in range(3):
        net(torch.rand(2, 3, 10, 10) * 2)
    for key, value in net.predenoiser.named_buffers():
        assert torch.equal(value, pre_buffers[key]), key
    # the same forward passes do move GradNet's own BatchNorm statistics (so the check above could fail)
    assert not torch.equal(own_bn.running_mean, own_mean)


def test_one_state_dict_restores_both_stages():
    net_a = tiny_gradnet(seed=0).eval()
    state = net_a.state_dict()
    pre_keys = {'predenoiser.' + k for k in net_a.predenoiser.state_dict()}
    assert pre_keys and pre_keys <= set(state)
    for key in pre_keys:
        assert torch.equal(state[key], net_a.predenoiser.state_dict()[key[len('predenoiser.'):]])
    assert not any('sobel' in k for k in state)

    net_b = tiny_gradnet(seed=123).eval()  # fresh random pre-denoiser and GradNet weights
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        assert not torch.allclose(net_a.gradient_map(x), net_b.gradient_map(x))
        assert not torch.allclose(net_a(x), net_b(x))
        net_b.load_state_dict(state)
        assert torch.equal(net_a.gradient_map(x), net_b.gradient_map(x))
        assert torch.equal(net_a(x), net_b(x))
    assert not net_b.predenoiser.training
    assert all(not p.requires_grad for p in net_b.predenoiser.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# gradient sources and fusion


def test_gradient_map_denoised_is_sobel_of_predenoiser_output():
    net = tiny_gradnet().eval()
    x = torch.rand(2, 3, 8, 10)
    with torch.no_grad():
        denoised = net.predenoiser(x)
        grad = net.gradient_map(x)
    assert grad.shape == x.shape
    np.testing.assert_allclose(grad.double().numpy(), ref_sobel_magnitude(denoised), rtol=1e-5, atol=1e-5)
    # and it is not simply the Sobel of the noisy input
    assert np.abs(grad.double().numpy() - ref_sobel_magnitude(x)).max() > 1e-3


def test_gradient_map_noisy_and_none():
    x = torch.rand(2, 3, 8, 10)
    noisy = tiny_gradnet(gradient_source='noisy').eval()
    assert noisy.predenoiser is None
    np.testing.assert_allclose(noisy.gradient_map(x).double().numpy(), ref_sobel_magnitude(x), rtol=1e-5, atol=1e-5)
    assert tiny_gradnet(gradient_source='none').gradient_map(x) is None


def test_output_depends_on_predenoiser_weights():
    net = tiny_gradnet(seed=0).eval()
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        before = net(x)
        torch.manual_seed(99)
        net.predenoiser.load_state_dict(MSKResNet(**TINY).state_dict())
        after = net(x)
    assert not torch.allclose(before, after)


def test_fusion_iv_multiplies_with_the_gradient():
    net = tiny_gradnet(gradient_source='noisy', fusion='IV', global_residual=False).eval()
    x = torch.full((2, 3, 9, 11), 0.6)
    with torch.no_grad():
        out = net(x)
        grad = net.gradient_map(x)
    assert torch.equal(grad[..., 1:-1, 1:-1], torch.zeros_like(grad[..., 1:-1, 1:-1]))
    assert torch.equal(out[..., 1:-1, 1:-1], torch.zeros_like(out[..., 1:-1, 1:-1]))
    assert out.abs().sum() > 0  # the zero-padded border has a gradient, so the output is not 0 there
    # with the input added back, the interior is the input
    net.global_residual = True
    with torch.no_grad():
        assert torch.allclose(net(x)[..., 1:-1, 1:-1], x[..., 1:-1, 1:-1])
    # a concatenating fusion does not zero the output where the gradient is 0
    other = tiny_gradnet(gradient_source='noisy', fusion='II', global_residual=False).eval()
    with torch.no_grad():
        assert other(x)[..., 1:-1, 1:-1].abs().sum() > 0


def test_fusion_is_case_insensitive():
    assert tiny_gradnet(fusion='iii').fusion == 'III'


# ---------------------------------------------------------------------------------------------------------------------
# loading the stage-1 checkpoint


def test_predenoiser_loads_basicsr_checkpoint(tmp_path):
    path = tmp_path / 'net_g_latest.pth'
    state = save_stage1(path)
    net = tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path)))
    assert_state_equal(net.predenoiser.state_dict(), state)
    assert net.predenoiser_path == str(path)
    assert not net.predenoiser.training
    assert all(not p.requires_grad for p in net.predenoiser.parameters())


def test_predenoiser_loads_bare_state_dict_and_ddp_prefix(tmp_path):
    bare = tmp_path / 'bare.pth'
    state = save_stage1(bare, wrap=False)
    assert_state_equal(tiny_gradnet(predenoiser=tiny_pre(pretrained=str(bare))).predenoiser.state_dict(), state)
    ddp = tmp_path / 'ddp.pth'
    torch.save({'params': {'module.' + k: v for k, v in state.items()}}, str(ddp))
    assert_state_equal(tiny_gradnet(predenoiser=tiny_pre(pretrained=str(ddp))).predenoiser.state_dict(), state)


def test_predenoiser_prefers_params_ema_and_honours_param_key(tmp_path):
    torch.manual_seed(1)
    params = MSKResNet(**TINY).state_dict()
    torch.manual_seed(2)
    params_ema = MSKResNet(**TINY).state_dict()
    path = tmp_path / 'net_g_ema.pth'
    torch.save({'params': params, 'params_ema': params_ema}, str(path))
    assert_state_equal(tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path))).predenoiser.state_dict(), params_ema)
    net = tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path), param_key='params'))
    assert_state_equal(net.predenoiser.state_dict(), params)
    net = tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path), param_key='params_ema'))
    assert_state_equal(net.predenoiser.state_dict(), params_ema)


def test_predenoiser_missing_checkpoint(tmp_path):
    path = tmp_path / 'nowhere' / 'net_g_latest.pth'
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path)))


def test_predenoiser_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / 'garbage.pth'
    path.write_bytes(b'this is not a pytorch checkpoint\x00\x01\x02' * 10)
    with pytest.raises(RuntimeError, match=re.escape(str(path))):
        tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path)))


def test_predenoiser_missing_param_key(tmp_path):
    path = tmp_path / 'net_g.pth'
    save_stage1(path)
    with pytest.raises(KeyError) as info:
        tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path), param_key='params_ema'))
    message = str(info.value)
    assert 'params_ema' in message and "'params'" in message and str(path) in message


@pytest.mark.parametrize('stage1_options, net_options, expected', [
    (dict(num_feat=4), {}, [r'shape mismatch', r'attention\.body\.3\.bias: checkpoint \(4,\) vs net \(8,\)']),
    (dict(batch_norm=True), dict(batch_norm=False), [r'not in the net', r'blocks\.0\.units\.0\.bn\.running_mean']),
    (dict(batch_norm=False), dict(batch_norm=True), [r'missing', r'blocks\.0\.units\.0\.bn\.weight']),
    (dict(num_modules=2), {}, [r'not in the net', r'body\.blocks\.1\.']),
])
def test_predenoiser_mismatched_arch(tmp_path, stage1_options, net_options, expected):
    path = tmp_path / 'stage1.pth'
    save_stage1(path, **stage1_options)
    with pytest.raises(ValueError) as info:
        tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path), **net_options))
    message = str(info.value)
    assert str(path) in message
    for pattern in expected:
        assert re.search(pattern, message), (pattern, message)


def test_predenoiser_non_strict_loading_skips_extra_keys(tmp_path):
    path = tmp_path / 'stage1.pth'
    state = save_stage1(path, num_modules=2)
    net = tiny_gradnet(predenoiser=tiny_pre(pretrained=str(path), strict=False))
    loaded = net.predenoiser.state_dict()
    assert loaded and all(torch.equal(loaded[k], state[k]) for k in loaded)


# ---------------------------------------------------------------------------------------------------------------------
# option errors


@pytest.mark.parametrize('build, hint', [
    (lambda: GradNet(gradient_source='none', num_feats=8), "did you mean 'num_feat'"),
    (lambda: GradNet(gradient_source='none', fusions='II'), "did you mean 'fusion'"),
    (lambda: MSKResNet(batchnorm=False), "did you mean 'batch_norm'"),
    (lambda: GradNet(predenoiser=dict(type='MSKResNet', num_featt=8)), "did you mean 'num_feat'"),
    (lambda: build_network(dict(type='GradNet', gradient_source='noisy', redution=2)), "did you mean 'reduction'"),
])
def test_unknown_options_raise_type_error_with_hint(build, hint):
    with pytest.raises(TypeError, match=re.escape(hint)):
        build()


@pytest.mark.parametrize('grad_ch, pre_options', [
    (3, dict(num_in_ch=1)),
    (1, dict(num_in_ch=3)),
    (3, dict(num_out_ch=1, global_residual=False)),
])
def test_predenoiser_channel_mismatch(grad_ch, pre_options):
    with pytest.raises(ValueError, match='num_in_ch'):
        GradNet(num_in_ch=grad_ch, predenoiser=dict(type='MSKResNet', **TINY, **pre_options), **TINY)


def test_predenoiser_channels_default_to_gradnet_channels():
    """A predenoiser dict without num_in_ch gets GradNet's channel count (not MSKResNet's colour default)."""
    net = GradNet(num_in_ch=1, predenoiser=dict(type='MSKResNet', **TINY), **TINY).eval()
    assert net.predenoiser.num_in_ch == 1
    with torch.no_grad():
        assert net(torch.rand(1, 1, 8, 8)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize('net', [
    lambda: tiny_gradnet(),
    lambda: tiny_gradnet(gradient_source='noisy'),
    lambda: MSKResNet(**TINY),
])
def test_wrong_input_channels(net):
    net = net().eval()
    with pytest.raises(ValueError, match='num_in_ch'):
        net(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match='num_in_ch'):
        net(torch.rand(3, 8, 8))


@pytest.mark.parametrize('options', [
    dict(fusion='V'),
    dict(fusion='2'),
    dict(gradient_source='clean'),
    dict(num_in_ch=2),
    dict(gradient_source='denoised', predenoiser=None),
    dict(gradient_source='noisy', predenoiser=dict(type='MSKResNet')),
    dict(predenoiser=dict(type='NoSuchArch')),
    dict(predenoiser=dict(num_in_ch=3)),
    dict(predenoiser=dict(type='GradNet', gradient_source='none')),
])
def test_invalid_options_raise_value_error(options):
    options = dict(dict(TINY, predenoiser=tiny_pre()), **options)
    with pytest.raises(ValueError):
        GradNet(**options)


# ---------------------------------------------------------------------------------------------------------------------
# registry


def test_registered_and_buildable_from_options():
    assert ARCH_REGISTRY.get('GradNet') is GradNet
    assert ARCH_REGISTRY.get('MSKResNet') is MSKResNet
    net = build_network(dict(type='GradNet', fusion='III', predenoiser=tiny_pre(), **TINY))
    assert isinstance(net, GradNet) and isinstance(net.predenoiser, MSKResNet)
    assert net.fusion == 'III'
    plain = build_network(dict(type='MSKResNet', num_in_ch=1, **TINY))
    assert isinstance(plain, MSKResNet) and plain.num_in_ch == 1
    with torch.no_grad():
        assert net.eval()(torch.rand(1, 3, 7, 7)).shape == (1, 3, 7, 7)


def test_import_twice_and_reload_are_idempotent():
    importlib.import_module('gradnet_arch')
    importlib.import_module('gradnet_arch.archs')
    saved = {mod: dict(vars(mod)) for mod in (gradnet_module, mskresnet_module)}
    try:
        importlib.reload(mskresnet_module)
        importlib.reload(gradnet_module)
    finally:  # keep the original classes for the rest of the session
        for mod, namespace in saved.items():
            vars(mod).update(namespace)
    assert ARCH_REGISTRY.get('GradNet') is gradnet_arch.GradNet
    assert ARCH_REGISTRY.get('MSKResNet') is gradnet_arch.MSKResNet


def test_register_own_class_twice_is_skipped():
    registry = Registry('TEST')
    register(registry)(GradNet)
    register(registry)(GradNet)
    assert registry.get('GradNet') is GradNet


def _foreign_class(name):
    return type(name, (nn.Module, ), {'__module__': 'some_other_plugin.archs'})


def test_register_under_name_of_foreign_class_raises():
    registry = Registry('TEST')
    foreign = _foreign_class('GradNet')
    registry.register(foreign)
    with pytest.raises(RuntimeError, match='GradNet'):
        register(registry)(GradNet)
    assert registry.get('GradNet') is foreign


def test_register_foreign_class_under_plugin_name_raises():
    registry = Registry('TEST')
    register(registry)(GradNet)
    with pytest.raises(RuntimeError, match='GradNet'):
        register(registry)(_foreign_class('GradNet'))
    assert registry.get('GradNet') is GradNet


# ---------------------------------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_forward_on_cuda():
    net = tiny_gradnet().eval()
    x = torch.rand(2, 3, 17, 15)
    with torch.no_grad():
        expected = net(x)
        net = net.cuda()
        out = net(x.cuda())
    assert out.device.type == 'cuda' and out.shape == x.shape
    assert net.sobel.kernel.device.type == 'cuda'
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-2, atol=1e-2)
