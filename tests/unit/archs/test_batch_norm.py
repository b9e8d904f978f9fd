"""FastBatchNorm2d: torch's BatchNorm2d forward, statistics and state dict, with a line-wise bf16 channels_last backward
whose gradients are as close to float32 as ATen's own bf16 backward; and the pre-denoiser's per-call BatchNorm fold."""
import pytest
import torch
from torch import nn

from gradnet_arch import GradNet
from gradnet_arch.archs.batch_norm import FastBatchNorm2d
from gradnet_arch.archs.mskresnet_arch import ResUnit

CL = torch.channels_last


def _pair(channels, momentum=0.1, seed=0):
    torch.manual_seed(seed)
    ref = nn.BatchNorm2d(channels, momentum=momentum).train()
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-1, 1)
    fast = FastBatchNorm2d(channels, momentum=momentum).train()
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _batch(channels, n=4, side=16, offset=0.0, seed=1):
    """bf16 channels_last input (per-channel offsets of `offset` spreads) and an upstream gradient."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, side, side, generator=g) + offset * torch.randn(1, channels, 1, 1, generator=g)
    grad = torch.randn(n, channels, side, side, generator=g)
    return x.to(torch.bfloat16).contiguous(memory_format=CL), grad.to(torch.bfloat16).contiguous(memory_format=CL)


def _run(module, x, grad):
    x = x.clone().requires_grad_(True)
    module.weight.grad = module.bias.grad = None
    out = module(x)
    out.backward(grad.to(out.dtype))
    return out, x.grad.float(), module.weight.grad.clone(), module.bias.grad.clone()


def _mean_rel(a, ref):
    return ((a.float() - ref).abs().mean() / ref.abs().mean()).item()


@pytest.mark.parametrize('channels', [35, 51, 11])
def test_forward_and_running_statistics_are_torchs(channels):
    for momentum in (0.1, None):  # None: BatchNorm's cumulative average, counted by num_batches_tracked
        ref, fast = _pair(channels, momentum)
        for seed in range(3):
            x, grad = _batch(channels, seed=seed)
            out_ref, out_fast = _run(ref, x, grad)[0], _run(fast, x, grad)[0]
            assert out_fast.grad_fn.name().startswith('_ChannelsLastBatchNorm')  # the fast backward ran
            assert torch.equal(out_ref, out_fast)
            assert out_fast.is_contiguous(memory_format=CL)
        for key, value in ref.state_dict().items():
            assert torch.equal(fast.state_dict()[key], value), key


@pytest.mark.parametrize('channels,offset', [(35, 0.0), (51, 0.0), (35, 30.0), (51, 5.0)])
def test_gradients_within_bf16_resolution_of_float32(channels, offset):
    """Tolerances, as mean relative error against float32 BatchNorm on the same bf16 values:
    - input gradient: at most 2x that of ATen's bf16 backward, plus 1e-3 (both round it to bf16);
    - weight and bias gradients: at most 2**-8, bf16's resolution (ATen sums them in float32, exactly here; this
      backward sums bf16 lines, the precision the bf16 convolutions' own weight gradients have under autocast).
    Large per-channel means (offset: mean / spread up to 30), where a plain a*g + b*x + c form loses precision, too."""
    ref, fast = _pair(channels)
    x, grad = _batch(channels, offset=offset)
    ref32 = nn.BatchNorm2d(channels).train()
    ref32.load_state_dict(ref.state_dict())
    _, gx32, gw32, gb32 = _run(ref32, x.float(), grad.float())
    _, gx_ref, _, _ = _run(ref, x, grad)
    _, gx_fast, gw_fast, gb_fast = _run(fast, x, grad)
    assert _mean_rel(gx_fast, gx32) <= 2 * _mean_rel(gx_ref, gx32) + 1e-3
    assert gw_fast.dtype == gb_fast.dtype == torch.float32
    assert _mean_rel(gw_fast, gw32) <= 2**-8
    assert _mean_rel(gb_fast, gb32) <= 2**-8


def test_other_cases_are_torchs_own_batchnorm():
    """fp32, NCHW, widths a multiple of 16 or 64 and wider, batches that fill no whole line, eval and no-grad runs all
    take nn.BatchNorm2d's path."""
    fast = FastBatchNorm2d(35).train()
    x, _ = _batch(35)
    assert fast(x.float().requires_grad_(True)).grad_fn.name() == 'NativeBatchNormBackward0'
    assert fast(x.contiguous().requires_grad_(True)).grad_fn.name() == 'NativeBatchNormBackward0'
    for width in (48, 67):  # a multiple of 16; 64 and wider (measured no faster there)
        wide = FastBatchNorm2d(width).train()
        assert wide(_batch(width)[0].requires_grad_(True)).grad_fn.name() == 'NativeBatchNormBackward0'
    ragged = _batch(35, n=1, side=5)[0].requires_grad_(True)  # 25 pixels: no whole line of 32 rows
    assert fast(ragged).grad_fn.name() == 'NativeBatchNormBackward0'
    with pytest.raises(ValueError, match='more than 1 value per channel'):  # torch's own check still applies
        fast(_batch(35, n=1, side=1)[0].requires_grad_(True))
    with torch.no_grad():
        before = fast.num_batches_tracked.item()
        fast(x)
        assert fast.num_batches_tracked.item() == before + 1  # still trains the statistics, as torch's does
    fast.eval()
    assert fast(x.requires_grad_(True)).grad_fn.name() == 'NativeBatchNormBackward0'


def _fill_statistics(net, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def _unfolded_gradient_map(net, x):
    units = [m for m in net.predenoiser.modules() if isinstance(m, ResUnit)]
    for unit in units:
        unit.fold_frozen_bn = False
    try:
        return net.gradient_map(x)
    finally:
        for unit in units:
            unit.fold_frozen_bn = True


def test_predenoiser_batchnorm_folded_per_call_exact_and_never_stale():
    net_opt = {'num_in_ch': 3, 'num_feat': 8, 'num_modules': 1, 'num_units': 2}
    net = GradNet(**net_opt, predenoiser=dict(net_opt, type='MSKResNet')).train()
    units = [m for m in net.predenoiser.modules() if isinstance(m, ResUnit)]
    assert len(units) == 2 and all(unit.fold_frozen_bn for unit in units)
    assert not any(m.fold_frozen_bn for m in net.body.modules() if isinstance(m, ResUnit))  # GradNet's own trains
    _fill_statistics(net.predenoiser)
    x = torch.rand(2, 3, 20, 24)
    calls = []
    hook = units[0].bn.register_forward_hook(lambda *args: calls.append(1))
    folded = net.gradient_map(x)
    assert not calls  # conv1 and the BatchNorm ran as one convolution
    unfolded = _unfolded_gradient_map(net, x)
    assert calls  # and the reference did run the BatchNorm
    hook.remove()
    assert torch.allclose(folded, unfolded, atol=1e-5)
    # New statistics loaded into the pre-denoiser are used at once: the fold is recomputed on every call.
    state = net.predenoiser.state_dict()
    state = {k: v * 1.5 if k.endswith('running_var') else v for k, v in state.items()}
    net.predenoiser.load_state_dict(state)
    refolded = net.gradient_map(x)
    assert (refolded - folded).abs().max() > 1e-3
    assert torch.allclose(refolded, _unfolded_gradient_map(net, x), atol=1e-5)


def test_gradnet_body_trains_through_the_fast_backward_in_bf16():
    """A bf16 channels_last GradNet step (body F + C = 11 wide) runs its ResUnits' BatchNorm through the line-wise
    backward, and its parameter gradients are as close to the float32 step's as those of the same net with torch's
    BatchNorm2d (mean relative error at most 1.5x, plus 1e-3). Not compared: the bias of each conv1, whose gradient
    is zero by construction (the BatchNorm after it cancels any shift); what either bf16 backward leaves there is
    rounding noise, and it must stay an order of magnitude below conv1's weight gradient."""
    import copy

    net_opt = {'num_in_ch': 3, 'num_feat': 8, 'num_modules': 1, 'num_units': 2}
    torch.manual_seed(0)
    fast = GradNet(**net_opt, predenoiser=dict(net_opt, type='MSKResNet')).train().to(memory_format=CL)
    plain = copy.deepcopy(fast)
    for unit in plain.body.modules():
        if isinstance(unit, ResUnit):
            swapped = nn.BatchNorm2d(unit.bn.num_features)
            swapped.load_state_dict(unit.bn.state_dict())
            unit.bn = swapped
    exact = copy.deepcopy(plain)
    seen = []
    for unit in fast.body.modules():
        if isinstance(unit, ResUnit):
            unit.bn.register_forward_hook(lambda module, args, out: seen.append(out.grad_fn.name()))
    x = torch.rand(2, 3, 32, 32).contiguous(memory_format=CL)
    gt = torch.rand(2, 3, 32, 32).contiguous(memory_format=CL)
    grads = []
    for net, dtype in ((fast, torch.bfloat16), (plain, torch.bfloat16), (exact, None)):
        with torch.autocast('cpu', dtype or torch.bfloat16, enabled=dtype is not None):
            out = net(x)
        nn.functional.l1_loss(out.float(), gt).backward()
        grads.append({name: p.grad for name, p in net.named_parameters() if p.grad is not None})
    assert seen and all(name.startswith('_ChannelsLastBatchNorm') for name in seen)
    assert grads[0].keys() == grads[1].keys() == grads[2].keys()
    for name, grad in grads[2].items():
        if not grad.any():  # a dead ReLU in the tiny attention bottleneck: nothing reaches these weights
            assert not grads[0][name].any(), name
        elif name.endswith('conv1.bias'):
            weight_grad = grads[0][name.replace('.bias', '.weight')]
            assert grads[0][name].abs().mean() < 0.1 * weight_grad.abs().mean(), name
        else:
            assert _mean_rel(grads[0][name], grad) <= 1.5 * _mean_rel(grads[1][name], grad) + 1e-3, name
