"""GradNet's init_from_predenoiser: starts as exactly its stage-1 MSKResNet, and the gradient can still enter."""
import pytest
import torch
from basicsr.archs import build_network
from tiny_options import TINY_NET, gradnet_network, stage1_checkpoint

from gradnet_arch import MSKResNet
from gradnet_arch.errors import OptionError


@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
    path = stage1_checkpoint(tmp_path_factory.mktemp('stage1') / 'net_g_latest.pth', seed=3)
    net = MSKResNet(**{k: v for k, v in TINY_NET.items() if k != 'type'})
    net.load_state_dict(torch.load(path, weights_only=True)['params'])
    return path, net.eval()


@pytest.mark.parametrize('fusion', ['I', 'II', 'III'])
def test_starts_as_exactly_the_predenoiser(stage1, fusion):
    path, reference = stage1
    net = build_network(gradnet_network(path, fusion=fusion, init_from_predenoiser=True)).eval()
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        assert torch.allclose(net(x), reference(x), atol=1e-5)
        # the paper's recipe (off) starts from random weights: not the pre-denoiser
        plain = build_network(gradnet_network(path, fusion=fusion)).eval()
        assert (plain(x) - reference(x)).abs().max() > 1e-2


@pytest.mark.parametrize('fusion', ['I', 'II', 'III'])
def test_weights_reading_the_gradient_start_at_zero_and_learn(stage1, fusion):
    path, _ = stage1
    net = build_network(gradnet_network(path, fusion=fusion, init_from_predenoiser=True)).train()
    c, f = 3, TINY_NET['num_feat']
    first = {'I': net.head[0], 'II': net.body.blocks[0].units[0].conv1, 'III': net.tail}[fusion]
    start = {'I': c, 'II': f, 'III': f}[fusion]
    assert first.weight[:, start:start + c].abs().max() == 0
    x, gt = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    torch.nn.functional.l1_loss(net(x), gt).backward()
    assert first.weight.grad[:, start:start + c].abs().max() > 0  # the gradient's weights learn from the first step
    assert all(p.grad is None for p in net.predenoiser.parameters())  # stage 1 stays frozen


@pytest.mark.parametrize('change,message', [
    ({
        'fusion': 'IV'
    }, 'fusion I, II or III'),
    ({
        'num_feat': 12
    }, 'differ in num_feat 12 vs 8'),
    ({
        'global_residual': False
    }, 'global_residual'),
    ({
        'init_from_predenoiser': 'yes'
    }, 'must be true or false'),
])
def test_clear_errors_where_no_copy_is_exact(stage1, change, message):
    opt = gradnet_network(stage1[0], init_from_predenoiser=True)
    opt.update(change)
    with pytest.raises(OptionError, match=message):
        build_network(opt)


def test_needs_a_predenoiser():
    opt = dict(TINY_NET, type='GradNet', gradient_source='noisy', init_from_predenoiser=True)
    with pytest.raises(OptionError, match='init_from_predenoiser copies the pre-denoiser'):
        build_network(opt)


@pytest.mark.parametrize('fusion', ['I', 'II', 'III'])
def test_exact_with_several_modules_and_a_wider_attention(tmp_path, fusion):
    """2 x 2 modules/units; reduction 3 gives GradNet's attention (11 // 3 = 3) one more hidden unit than stage 1's."""
    size = dict(TINY_NET, num_modules=2, num_units=2, reduction=3)
    torch.manual_seed(1)
    reference = MSKResNet(**{k: v for k, v in size.items() if k != 'type'}).train()
    for _ in range(3):
        reference(torch.rand(4, 3, 16, 16))  # BatchNorm statistics that are not the initial ones
    torch.save({'params': reference.state_dict()}, tmp_path / 'stage1.pth')
    opt = dict(
        size,
        type='GradNet',
        global_residual=True,
        fusion=fusion,
        init_from_predenoiser=True,
        predenoiser=dict(size, type='MSKResNet', pretrained=str(tmp_path / 'stage1.pth')))
    net = build_network(opt).eval()
    x = torch.rand(1, 3, 17, 23)
    with torch.no_grad():
        assert torch.allclose(net(x), reference.eval()(x), atol=1e-5)
