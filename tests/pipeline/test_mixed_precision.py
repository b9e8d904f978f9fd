"""GradNetModel's `amp` and `channels_last` options: BasicSR's real training / test loops in bf16 + NHWC against fp32.

Tolerances (tiny nets, a few iterations, inputs in [0, 1]): bf16 autocast rounds convolution inputs to 8 significant
bits, so per-iteration losses stay within 2% of the fp32 run's and validation PSNR within 0.1 dB; fp32 channels_last
only reorders the arithmetic (1e-5 on outputs).
"""
import glob
import os
import pytest
import re
import sys
import torch
from conftest import run_python
from tiny_options import gradnet_network, make_test_options, make_train_options, stage1_checkpoint, write_yaml

from gradnet_arch.precision import amp_precision, cpu_has_native_bf16

NATIVE_BF16 = cpu_has_native_bf16()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason='this CPU has no native bf16 (amp: bf16 falls back to fp32)')
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _losses(log):
    return {int(i): float(v) for i, v in re.findall(r'iter:\s+(\d+), lr:.*?l_total: ([\d.e+-]+)', log)}


def _psnr(log):
    return [float(v) for v in re.findall(r'# psnr: ([\d.]+)', log)]


def _train(work, opt, *flags):
    opt_file = write_yaml(opt, os.path.join(work, 'options', f'{opt["name"]}.yml'))
    proc = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file, *flags], cwd=work)
    logs = sorted(glob.glob(os.path.join(work, 'experiments', opt['name'], 'train_*.log')), key=os.path.getmtime)
    return proc, (open(logs[-1]).read() if logs else '')


@pytest.fixture(scope='module')
def stage1(tmp_path_factory):
    """A stage-1 checkpoint with non-trivial BatchNorm statistics."""
    return stage1_checkpoint(tmp_path_factory.mktemp('stage1') / 'stage1.pth')


def _options(name, dirs, stage1, amp, channels_last, **kwargs):
    opt = make_train_options(name, dirs, gradnet_network(stage1), ema_decay=0.5, gradient_loss=True, **kwargs)
    opt['amp'], opt['channels_last'] = amp, channels_last
    return opt


@pytest.mark.slow
@needs_bf16
def test_bf16_channels_last_training_tracks_fp32(image_dirs, stage1, tmp_path):
    """Same seed and data: bf16 + NHWC losses and validation follow fp32's; checkpoints stay fp32 NCHW and load into
    an ordinary NCHW net through BasicSR's builder."""
    from basicsr.archs import build_network

    runs = {}
    for amp, channels_last in ((False, False), ('bf16', True)):
        opt = _options(f'run_{amp}', image_dirs, stage1, amp, channels_last)
        proc, log = _train(str(tmp_path), opt)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[amp] = (log, tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth')
    fp32_log, bf16_log = runs[False][0], runs['bf16'][0]
    assert 'Precision: float32 (amp off); memory format: contiguous (NCHW).' in fp32_log
    assert 'Precision: bf16 autocast' in bf16_log and 'memory format: channels_last (NHWC)' in bf16_log
    ref, got = _losses(fp32_log), _losses(bf16_log)
    assert sorted(ref) == sorted(got) == list(range(1, 7))
    for iteration in ref:
        assert got[iteration] == pytest.approx(ref[iteration], rel=0.02), iteration
    assert ref != got  # bf16 really ran: the arithmetic differs
    assert len(_psnr(bf16_log)) == len(_psnr(fp32_log)) >= 2
    for a, b in zip(_psnr(bf16_log), _psnr(fp32_log)):
        assert abs(a - b) < 0.1

    ckpt = torch.load(runs['bf16'][1], map_location='cpu', weights_only=True)
    for key in ('params', 'params_ema'):
        for name, tensor in ckpt[key].items():
            assert tensor.is_contiguous(), (key, name)
            assert tensor.dtype in (torch.float32, torch.int64), (key, name, tensor.dtype)
    network = gradnet_network(None)
    network['predenoiser']['pretrained'] = None
    net = build_network(network).eval()
    net.load_state_dict(ckpt['params'])
    x = torch.rand(1, 3, 20, 22)
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()


@pytest.mark.slow
@needs_bf16
def test_gradnet_test_in_bf16_matches_fp32(image_dirs, stage1, tmp_path):
    """`gradnet-test` with amp: bf16 + channels_last gives the fp32 metrics to within 0.05 dB / 0.002 SSIM."""
    from gradnet_arch import GradNet

    network = gradnet_network(stage1)
    torch.manual_seed(1)
    net = GradNet(**{k: v for k, v in network.items() if k != 'type'})
    ckpt = str(tmp_path / 'gradnet.pth')
    torch.save({'params': net.state_dict()}, ckpt)
    network['predenoiser']['pretrained'] = None
    results = {}
    for amp in (False, 'bf16'):
        opt = make_test_options(f'test_{amp}', image_dirs['val'], network, ckpt)
        opt['amp'], opt['channels_last'] = amp, bool(amp)
        opt_file = write_yaml(opt, tmp_path / f'test_{amp}.yml')
        proc = run_python(['-m', 'gradnet_arch.test', '-opt', opt_file], cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = open(glob.glob(str(tmp_path / 'results' / opt['name'] / 'test_*.log'))[0]).read()
        results[amp] = dict((k, float(v)) for k, v in re.findall(r'# (psnr|ssim): ([\d.]+)', log))
    assert abs(results['bf16']['psnr'] - results[False]['psnr']) < 0.05
    assert abs(results['bf16']['ssim'] - results[False]['ssim']) < 0.002


@pytest.mark.slow
@pytest.mark.parametrize('amp, expected', [('fp16', 'fp16 runs on CUDA GPUs only'), ('bf17', 'amp')])
def test_amp_option_errors_exit_2(image_dirs, stage1, tmp_path, amp, expected):
    opt = _options(f'bad_{amp}', image_dirs, stage1, amp, True)
    proc, _ = _train(str(tmp_path), opt)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert expected in proc.stderr and 'Traceback' not in proc.stderr
    assert not glob.glob(str(tmp_path / 'experiments' / opt['name'] / 'models' / '*.pth'))


def test_bf16_falls_back_to_fp32_without_native_bf16(monkeypatch):
    """A CPU without native bf16 would emulate it (slower than fp32): amp: bf16 trains in fp32 and says why."""
    import gradnet_arch.precision as precision

    monkeypatch.setattr(precision, 'cpu_has_native_bf16', lambda: False)
    resolved, message = amp_precision('bf16', 'cpu')
    assert resolved == 'fp32' and 'no native bf16' in message
    monkeypatch.setattr(precision, 'cpu_has_native_bf16', lambda: True)
    assert amp_precision('bf16', 'cpu') == ('bf16', None)
    assert amp_precision(False, 'cpu') == ('fp32', None) and amp_precision(None, 'cpu') == ('fp32', None)


def _in_process_model(opt, tmp_path, monkeypatch):
    """Build GradNetModel in this process as BasicSR's train pipeline does (parse_options, make_exp_dirs)."""
    from basicsr.models import build_model
    from basicsr.utils import make_exp_dirs
    from basicsr.utils.options import parse_options

    opt['path']['experiments_root'] = str(tmp_path / 'experiments' / opt['name'])
    opt_file = write_yaml(opt, tmp_path / f'{opt["name"]}.yml')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', opt_file])
    parsed, _ = parse_options(str(tmp_path), is_train=True)
    make_exp_dirs(parsed)
    return build_model(parsed), parsed


def _batch(channels=3, size=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, channels, size, size, generator=generator)
    return {'lq': gt + 0.1 * torch.randn(gt.shape, generator=generator), 'gt': gt}


@needs_bf16
def test_training_step_bf16_channels_last(image_dirs, stage1, tmp_path, monkeypatch):
    """One real optimize_parameters step: NHWC weights and inputs, a float32 output and loss, float32 gradients."""
    model, _ = _in_process_model(_options('step', image_dirs, stage1, 'bf16', True), tmp_path, monkeypatch)
    net = model.get_bare_model(model.net_g)
    assert net.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.net_g_ema.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    model.feed_data(_batch())
    assert model.lq.is_contiguous(memory_format=torch.channels_last)
    before = net.tail.weight.detach().clone()
    model.optimize_parameters(1)
    assert model.output.dtype == torch.float32
    assert model.log_dict['l_total'] > 0
    grads = [p.grad for p in net.own_parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert not torch.equal(before, net.tail.weight)
    assert all(p.grad is None for p in net.predenoiser.parameters())  # still frozen
    model.test()
    assert model.output.dtype == torch.float32 and model.output.is_contiguous()


def test_grad_scaler_state_round_trip(image_dirs, stage1, tmp_path, monkeypatch):
    """The fp16 gradient scaler's state goes into the resume state and comes back on resume.

    fp16 itself is CUDA-only (test_fp16_training_on_cuda); here a real torch GradScaler on the CPU goes through the
    model's real save_training_state, the plugin's resume-state loader and resume_training.
    """
    from gradnet_arch.compat import load_resume_state

    model, opt = _in_process_model(_options('scaler', image_dirs, stage1, False, False), tmp_path, monkeypatch)
    model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    model.grad_scaler.scale(torch.ones(()))  # what a training step starts with
    model.grad_scaler.update(new_scale=256.)  # as after two overflowing steps
    model.save(epoch=0, current_iter=3)  # net_g_3.pth and 3.state, as BasicSR's loop saves them
    opt['auto_resume'] = True
    state = load_resume_state(opt)
    assert state['iter'] == 3 and state['grad_scaler']['scale'] == 256.

    fresh, _ = _in_process_model(_options('scaler', image_dirs, stage1, False, False), tmp_path, monkeypatch)
    fresh.grad_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    fresh.resume_training(state)
    assert fresh.grad_scaler.get_scale() == 256.


@needs_cuda
def test_fp16_training_on_cuda(image_dirs, stage1, tmp_path, monkeypatch):
    """fp16 autocast with a gradient scaler on a GPU: float32 weights and output, the scaler saved for resume."""
    opt = _options('fp16', image_dirs, stage1, 'fp16', True)
    opt['num_gpu'] = 1
    model, _ = _in_process_model(opt, tmp_path, monkeypatch)
    assert model.grad_scaler is not None
    model.feed_data(_batch())
    model.optimize_parameters(1)
    assert model.output.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())
    model.save_training_state(epoch=0, current_iter=1)
    state = torch.load(tmp_path / 'experiments' / 'fp16' / 'training_states' / '1.state', weights_only=True)
    assert 'grad_scaler' in state


@needs_cuda
def test_bf16_on_cuda_matches_fp32(stage1):
    """bf16 / fp16 autocast on the GPU against fp32 for the same net and input (max abs difference 0.02)."""
    from gradnet_arch import GradNet
    from gradnet_arch.precision import autocast, bf16_supported

    network = gradnet_network(stage1)
    net = GradNet(**{k: v for k, v in network.items() if k != 'type'}).eval().cuda()
    x = torch.rand(1, 3, 40, 44, device='cuda')
    with torch.no_grad():
        ref = net(x)
        for precision in ('fp16', 'bf16') if bf16_supported('cuda') else ('fp16', ):
            with autocast(precision, 'cuda'):
                out = net(x.contiguous(memory_format=torch.channels_last)).float()
            assert (out - ref).abs().max() < 0.02, precision


# ---------------------------------------------------------------------------------------------------------------------
# compile: torch.compile of the training step


@pytest.mark.slow
def test_compiled_training_matches_eager(image_dirs, stage1, tmp_path):
    """compile: true runs BasicSR's loop through inductor: the losses and validation PSNR of the eager fp32 run (1e-3
    relative: the generated kernels sum in another order), and checkpoints with exactly the eager run's keys that load
    into a plain net, so nothing downstream sees the wrapper."""
    from basicsr.archs import build_network

    runs = {}
    for compile_net in (False, True):
        opt = _options(f'compile_{compile_net}', image_dirs, stage1, False, False)
        opt['compile'] = compile_net
        proc, log = _train(str(tmp_path), opt)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[compile_net] = (log, tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth')
    assert 'torch.compile:' in runs[True][0] and 'torch.compile:' not in runs[False][0]
    ref, got = _losses(runs[False][0]), _losses(runs[True][0])
    assert sorted(ref) == sorted(got) == list(range(1, 7))
    for iteration in ref:
        assert got[iteration] == pytest.approx(ref[iteration], rel=1e-3), iteration
    for a, b in zip(_psnr(runs[True][0]), _psnr(runs[False][0])):
        assert abs(a - b) < 0.01
    eager, compiled = (torch.load(runs[c][1], map_location='cpu', weights_only=True) for c in (False, True))
    for key in ('params', 'params_ema'):
        assert list(compiled[key]) == list(eager[key])
    network = gradnet_network(None)
    network['predenoiser']['pretrained'] = None
    build_network(network).load_state_dict(compiled['params'])


@pytest.mark.slow
def test_compile_option_must_be_a_boolean(image_dirs, stage1, tmp_path):
    opt = _options('bad_compile', image_dirs, stage1, False, False)
    opt['compile'] = 'yes'
    proc, _ = _train(str(tmp_path), opt)
    assert proc.returncode == 2 and 'compile' in proc.stderr and 'Traceback' not in proc.stderr


def test_compile_without_a_cxx_compiler_is_a_clear_error(image_dirs, stage1, tmp_path, monkeypatch):
    import shutil

    from gradnet_arch.errors import OptionError

    monkeypatch.setattr(shutil, 'which', lambda name: None)
    opt = _options('no_cxx', image_dirs, stage1, False, False)
    opt['compile'] = True
    with pytest.raises(OptionError, match='needs a C.. compiler'):
        _in_process_model(opt, tmp_path, monkeypatch)
