"""RobustSRModel, the infrastructure under GradNetModel, on a tiny real MSKResNet built by BasicSR's own option parser:
the training step and its `compute_losses` hook, the NaN stop, amp / channels_last state, atomic saves, safe-loader
resume states, EMA buffers, DDP on the CPU and the validation sharding helpers."""
import collections
import errno
import os
import pytest
import sys
import torch
import torch.distributed as dist
from collections import OrderedDict
from tiny_options import gradnet_network, make_train_options, stage1_checkpoint, stage1_network, write_yaml

from gradnet_arch.errors import NonFiniteLossError, OutputError
from gradnet_arch.models import GradNetModel, RobustSRModel
from gradnet_arch.models.robust_sr_model import average_metrics, merge_shards, plain_scheduler_state, shard_indices
from gradnet_arch.precision import cpu_has_native_bf16

NEEDS_BF16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason='no native bf16 on this CPU (amp falls back to fp32)')


def _options(name, dirs, tmp_path, monkeypatch, network=None, **train):
    """BasicSR's parsed training options (its own parse_options, a real YAML file) with experiment folders made."""
    from basicsr.utils import make_exp_dirs
    from basicsr.utils.options import parse_options

    opt = make_train_options(name, dirs, network or stage1_network(), **train)
    opt['path']['experiments_root'] = str(tmp_path / 'experiments' / name)
    opt_file = write_yaml(opt, tmp_path / f'{name}.yml')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', opt_file])
    parsed, _ = parse_options(str(tmp_path), is_train=True)
    make_exp_dirs(parsed)
    return parsed


def _batch(seed=0, size=24):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, size, size, generator=generator)
    return {'lq': gt + 0.1 * torch.randn(gt.shape, generator=generator), 'gt': gt}


def _params(net):
    return {k: v.detach().clone() for k, v in net.named_parameters()}


class WithExtraLoss(RobustSRModel):
    """A subclass that adds one loss term through the hook (mean output brightness, weighted 0.5)."""

    def compute_losses(self, output, gt):
        l_total, loss_dict = super().compute_losses(output, gt)
        loss_dict['l_extra'] = 0.5 * output.mean()
        return l_total + loss_dict['l_extra'], loss_dict


def test_training_step_runs_the_hook_and_updates_the_weights(image_dirs, tmp_path, monkeypatch):
    opt = _options('step', image_dirs, tmp_path, monkeypatch)
    model = WithExtraLoss(opt)
    net = model.get_bare_model(model.net_g)
    before = _params(net)
    batch = _batch()
    model.feed_data(batch)
    model.optimize_parameters(1)
    logged = model.get_current_log()
    assert list(logged) == ['l_pix', 'l_extra', 'l_total']
    assert logged['l_total'] == pytest.approx(logged['l_pix'] + logged['l_extra'], rel=1e-6)
    # the logged terms are those of the output the step started from
    with torch.no_grad():
        expected_pix = torch.nn.functional.l1_loss(model.output, batch['gt']).item()
    assert logged['l_pix'] == pytest.approx(expected_pix, rel=1e-6)
    assert model.output.dtype == torch.float32
    after = _params(net)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_gradnet_model_adds_the_gradient_loss(image_dirs, tmp_path, monkeypatch):
    """GradNetModel's hook: L = L_p + L_g, both logged; the frozen pre-denoiser gets no gradient."""
    stage1 = stage1_checkpoint(tmp_path / 'stage1.pth')
    opt = _options('gradnet', image_dirs, tmp_path, monkeypatch, gradnet_network(stage1), gradient_loss=True)
    model = GradNetModel(opt)
    model.feed_data(_batch())
    model.optimize_parameters(1)
    logged = model.get_current_log()
    assert list(logged) == ['l_pix', 'l_grad', 'l_total'] and logged['l_grad'] > 0
    assert logged['l_total'] == pytest.approx(logged['l_pix'] + logged['l_grad'], rel=1e-6)
    net = model.get_bare_model(model.net_g)
    assert all(p.grad is None for p in net.predenoiser.parameters())


def test_non_finite_loss_stops_before_the_update(image_dirs, tmp_path, monkeypatch):
    model = RobustSRModel(_options('nan', image_dirs, tmp_path, monkeypatch))
    net = model.get_bare_model(model.net_g)
    before = _params(net)
    batch = _batch()
    batch['lq'][0, 0, 0, 0] = float('nan')
    model.feed_data(batch)
    with pytest.raises(NonFiniteLossError, match='not finite at iteration 5'):
        model.optimize_parameters(5)
    after = _params(net)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize('amp', [False, pytest.param('bf16', marks=NEEDS_BF16)])
def test_channels_last_and_amp_state(amp, image_dirs, tmp_path, monkeypatch):
    """NHWC nets (EMA too) and inputs; float32 weights, outputs and checkpoints, saved in the usual NCHW layout."""
    opt = _options('nhwc', image_dirs, tmp_path, monkeypatch, ema_decay=0.5)
    opt['amp'], opt['channels_last'] = amp, True
    model = RobustSRModel(opt)
    assert model.precision == ('bf16' if amp else 'fp32') and model.grad_scaler is None
    convs = [
        m.weight for net in (model.get_bare_model(model.net_g), model.net_g_ema) for m in net.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)
    ]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    model.feed_data(_batch())
    assert model.lq.is_contiguous(memory_format=torch.channels_last)
    model.optimize_parameters(1)
    assert model.output.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    model.test()
    assert model.output.dtype == torch.float32 and model.output.is_contiguous()
    model.save_network([model.net_g, model.net_g_ema], 'net_g', 1, param_key=['params', 'params_ema'])
    ckpt = torch.load(os.path.join(opt['path']['models'], 'net_g_1.pth'), weights_only=True)
    for key in ('params', 'params_ema'):
        assert all(t.is_contiguous() and t.dtype in (torch.float32, torch.int64) for t in ckpt[key].values())


def test_resume_state_is_safe_loadable_and_restores_scheduler_and_scaler(image_dirs, tmp_path, monkeypatch):
    """MultiStepRestartLR's Counter is saved as a plain dict (torch's weights_only loader reads the state) and comes
    back as a Counter; a GradScaler's state is saved and restored."""
    model = RobustSRModel(_options('state', image_dirs, tmp_path, monkeypatch))
    assert isinstance(model.schedulers[0].milestones, collections.Counter)
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    model.grad_scaler.scale(torch.ones(()))
    model.grad_scaler.update(new_scale=64.)
    for it in range(1, 4):  # as BasicSR's loop: the schedule, then a step
        model.update_learning_rate(it)
        model.feed_data(_batch(seed=it))
        model.optimize_parameters(it)
    model.save_training_state(epoch=0, current_iter=3)
    path = os.path.join(model.opt['path']['training_states'], '3.state')
    state = torch.load(path, weights_only=True)  # no allow-list: plain containers only
    assert state['iter'] == 3 and type(state['schedulers'][0]['milestones']) is dict
    assert not os.path.exists(f'{path}.tmp')

    fresh = RobustSRModel(_options('state', image_dirs, tmp_path, monkeypatch))
    fresh.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    fresh.resume_training(state)
    assert fresh.schedulers[0].milestones == model.schedulers[0].milestones
    assert isinstance(fresh.schedulers[0].milestones, collections.Counter)
    assert fresh.schedulers[0].last_epoch == model.schedulers[0].last_epoch
    assert fresh.grad_scaler.get_scale() == 64.


def test_plain_scheduler_state_leaves_other_states_alone():
    state = {'milestones': collections.Counter({4: 1, 8: 2}), 'gamma': 0.5}
    plain = plain_scheduler_state(state)
    assert type(plain['milestones']) is dict and plain['milestones'] == {4: 1, 8: 2} and plain['gamma'] == 0.5
    assert isinstance(state['milestones'], collections.Counter)  # the scheduler's own state is not changed
    assert plain_scheduler_state({'T_max': 10}) == {'T_max': 10}


def test_failed_save_keeps_the_previous_checkpoint(image_dirs, tmp_path, monkeypatch):
    """A save that fails part-way (a full disk) leaves the earlier file as it was and no temporary file behind."""
    model = RobustSRModel(_options('atomic', image_dirs, tmp_path, monkeypatch))
    models = model.opt['path']['models']
    model.save_network(model.net_g, 'net_g', -1)
    path = os.path.join(models, 'net_g_latest.pth')
    good = open(path, 'rb').read()
    saved_keys = set(torch.load(path, weights_only=True)['params'])
    assert saved_keys == set(model.get_bare_model(model.net_g).state_dict())

    def full_disk(obj, f):
        f.write(b'half a checkpoint')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, 'save', full_disk)
    with pytest.raises(OutputError, match='free some space'):
        model.save_network(model.net_g, 'net_g', -1)
    assert open(path, 'rb').read() == good
    assert os.listdir(models) == ['net_g_latest.pth']


def test_ema_copies_batchnorm_statistics(image_dirs, tmp_path, monkeypatch):
    """BasicSR's EMA averages parameters; the buffers (BatchNorm running statistics) are copied as they are."""
    model = RobustSRModel(_options('ema', image_dirs, tmp_path, monkeypatch, ema_decay=0.5))
    net = model.get_bare_model(model.net_g)
    ema_before = _params(model.net_g_ema)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.25)
        net.train()(torch.rand(2, 3, 16, 16))  # moves the running statistics
    assert any(not torch.equal(b, model.net_g_ema.state_dict()[k]) for k, b in net.named_buffers())
    model.model_ema(0.5)
    ema = dict(model.net_g_ema.named_buffers())
    assert all(torch.equal(buf, ema[name]) for name, buf in net.named_buffers())
    for name, p in net.named_parameters():
        torch.testing.assert_close(dict(model.net_g_ema.named_parameters())[name], 0.5 * ema_before[name] + 0.5 * p)


def test_ddp_training_step_on_the_cpu(image_dirs, tmp_path, monkeypatch):
    """`dist: true` without CUDA: the net is wrapped in DistributedDataParallel on gloo (no device_ids) and trains."""
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "rendezvous"}', rank=0, world_size=1)
    try:
        opt = _options('ddp', image_dirs, tmp_path, monkeypatch)
        opt['dist'] = True
        model = RobustSRModel(opt)
        assert isinstance(model.net_g, DistributedDataParallel) and model.net_g.device_ids is None
        before = _params(model.get_bare_model(model.net_g))
        model.feed_data(_batch())
        model.optimize_parameters(1)
        after = _params(model.get_bare_model(model.net_g))
        assert any(not torch.equal(before[k], after[k]) for k in before)
        model.save_network(model.net_g, 'net_g', 1)
        saved = torch.load(os.path.join(opt['path']['models'], 'net_g_1.pth'), weights_only=True)['params']
        assert saved and not any(k.startswith('module.') for k in saved)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize('length', [1, 5, 7])
@pytest.mark.parametrize('world_size', [1, 2, 3, 4])
def test_shards_cover_every_image_once(length, world_size):
    shards = [shard_indices(length, rank, world_size) for rank in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(length))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_sharded_average_equals_the_single_process_sum():
    """Metrics gathered from uneven shards average exactly (bit for bit) as BasicSR's one-process loop sums them."""
    values = [{'psnr': 30 + 1 / (i + 3), 'ssim': 0.9 - 1e-3 * i * i} for i in range(7)]
    expected = OrderedDict((name, 0) for name in ('psnr', 'ssim'))
    for v in values:  # BasicSR: metric_results[name] += value, then / number of images
        for name in expected:
            expected[name] += v[name]
    expected = {name: total / len(values) for name, total in expected.items()}
    shards = [{i: values[i] for i in shard_indices(len(values), rank, 3)} for rank in (2, 0, 1)]
    assert average_metrics(merge_shards(shards), ['psnr', 'ssim']) == expected
