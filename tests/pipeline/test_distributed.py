"""Distributed runs on CPU (gloo): sharded validation, kill + auto-resume with identical losses, NaN stop; in fp32 and
with GradNetModel's bf16 autocast + channels_last."""
import cv2
import glob
import numpy as np
import os
import pytest
import re
import signal
import subprocess
import sys
import time
import torch
from conftest import run_python, write_images
from tiny_options import (gradnet_network, make_test_options, make_train_options, stage1_checkpoint, stage1_network,
                          write_yaml)

from gradnet_arch.precision import cpu_has_native_bf16

pytestmark = pytest.mark.slow
PORTS = iter(range(29811, 29899))
ENV = {'OMP_NUM_THREADS': '1'}  # the same arithmetic in every process, so runs compare bit for bit
NEEDS_BF16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason='no native bf16 on this CPU (amp falls back to fp32)')


def fast(procs):
    """A (procs, fast=True) parameter: bf16 autocast + channels_last."""
    return pytest.param(procs, True, id=f'{procs}-bf16_channels_last', marks=NEEDS_BF16)


def fast_path(opt, on):
    """`opt` with GradNetModel's bf16 autocast + channels_last switched on when `on`."""
    if on:
        opt.update(amp='bf16', channels_last=True)
    return opt


def command(opt_file, procs, *flags, module='gradnet_arch.train'):
    if procs == 1:
        return ['-m', module, '-opt', opt_file, *flags]
    return [
        '-m', 'torch.distributed.run', f'--nproc_per_node={procs}', f'--master_port={next(PORTS)}', '-m', module,
        '-opt', opt_file, '--launcher', 'pytorch', *flags
    ]


def metrics(log_text):
    return re.findall(r'# (psnr|ssim): ([\d.]+)', log_text)


def losses(log_text):
    """{iteration: 'l_pix ... l_total ...'} from BasicSR's training log lines."""
    return {int(i): rest for i, rest in re.findall(r'iter:\s+(\d+), lr:.*?\] (l_pix: .*)', log_text)}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    return {
        'train': write_images(root / 'train', 4, height=56, width=60),
        'val': write_images(root / 'val', 5, seed=50, height=30, width=34)
    }


@pytest.fixture(scope='module')
def gradnet_checkpoint(tmp_path_factory):
    """A GradNet checkpoint with non-trivial BatchNorm statistics, and its network options."""
    from gradnet_arch import GradNet

    root = tmp_path_factory.mktemp('ckpt')
    network = gradnet_network(stage1_checkpoint(root / 'stage1.pth', seed=0))
    net = GradNet(**{k: v for k, v in network.items() if k != 'type'}).train()
    net(torch.rand(4, 3, 24, 24))
    torch.save({'params': net.state_dict()}, root / 'gradnet.pth')
    network['predenoiser']['pretrained'] = None
    return str(root / 'gradnet.pth'), network, str(root / 'stage1.pth')


@pytest.mark.parametrize('procs, use_fast', [(2, False), (3, False), fast(2)])
def test_sharded_validation_equals_single_process(procs, use_fast, data, gradnet_checkpoint, tmp_path):
    """The test pipeline on 5 images: 1 process vs 2 or 3 (uneven shards) give the same metrics and images."""
    ckpt, network, _ = gradnet_checkpoint
    results = {}
    for n in (1, procs):
        opt = fast_path(make_test_options(f'shard{n}', data['val'], network, ckpt), use_fast)
        opt_file = write_yaml(opt, tmp_path / f'test{n}.yml')
        proc = run_python(command(opt_file, n, module='gradnet_arch.test'), cwd=str(tmp_path), env=ENV)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        log = open(glob.glob(str(tmp_path / 'results' / f'shard{n}' / 'test_*.log'))[0]).read()
        images = sorted(glob.glob(str(tmp_path / 'results' / f'shard{n}' / 'visualization' / 'tiny_val' / '*.png')))
        results[n] = (metrics(log), [cv2.imread(p) for p in images])
    assert len(results[1][0]) == 2 and results[procs][0] == results[1][0]
    assert len(results[procs][1]) == 5
    for single, sharded in zip(results[1][1], results[procs][1]):
        assert np.array_equal(single, sharded)


def _descendants(pid):
    """Child processes, recursively (torchrun puts its workers in sessions of their own, out of reach of killpg)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_and_resume(opt, procs, workdir, kill_after_state):
    """Start training, SIGKILL every process once `kill_after_state` exists, then --auto_resume to the end."""
    opt_file = write_yaml(opt, os.path.join(workdir, 'opt.yml'))
    states = os.path.join(workdir, 'experiments', opt['name'], 'training_states')
    env = dict(os.environ, PYTHONUNBUFFERED='1', **ENV)
    proc = subprocess.Popen(
        [sys.executable] + command(opt_file, procs),
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.time() + 300
    while not os.path.isfile(os.path.join(states, kill_after_state)):
        assert proc.poll() is None, 'training ended before it could be killed'
        assert time.time() < deadline
        time.sleep(0.01)
    for pid in [proc.pid] + _descendants(proc.pid):  # like a scheduler killing the job: every process at once
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    models = os.path.join(workdir, 'experiments', opt['name'], 'models')
    assert not os.path.isfile(os.path.join(models, 'net_g_latest.pth')), 'the run finished before the kill'
    resumed_from = max(int(f.split('.')[0]) for f in os.listdir(states) if f.endswith('.state'))
    logs_before = set(glob.glob(os.path.join(workdir, 'experiments', opt['name'], 'train_*.log')))
    done = run_python(command(opt_file, procs, '--auto_resume'), cwd=workdir, env=ENV)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    new_log = (set(glob.glob(os.path.join(workdir, 'experiments', opt['name'], 'train_*.log'))) - logs_before).pop()
    return resumed_from, open(new_log).read()


@pytest.mark.parametrize('procs, use_fast', [(1, False), (2, False), fast(2)])
def test_killed_run_resumes_with_identical_losses(procs, use_fast, data, gradnet_checkpoint, tmp_path):
    """SIGKILL mid-run, --auto_resume: same final iteration, and every loss after the resume point equals the
    uninterrupted run's (same seed), because data order, crops and noise are tied to the sample, not the process."""
    _, _, stage1 = gradnet_checkpoint
    network = gradnet_network(stage1)
    network['num_feat'] = 16  # a little more work per iteration, so the kill lands mid-run
    opt = fast_path(
        make_train_options(
            'killme', data, network, total_iter=40, checkpoint_freq=3, ema_decay=0.5, gradient_loss=True), use_fast)
    opt['datasets']['train'].update(gt_size=40, batch_size_per_gpu=2, num_worker_per_gpu=1, dataset_enlarge_ratio=5)
    opt['val']['val_freq'] = 1000  # validation only at the end
    opt['train']['scheduler']['milestones'] = [10, 25]

    reference = tmp_path / 'reference'
    reference.mkdir()
    ref_file = write_yaml(opt, reference / 'opt.yml')
    ref = run_python(command(ref_file, procs), cwd=str(reference), env=ENV)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_log = open(glob.glob(str(reference / 'experiments' / 'killme' / 'train_*.log'))[0]).read()
    ref_losses = losses(ref_log)
    assert sorted(ref_losses) == list(range(1, 41))

    workdir = tmp_path / 'killed'
    workdir.mkdir()
    resumed_from, log = _kill_and_resume(opt, procs, str(workdir), '6.state')
    assert resumed_from >= 6 and resumed_from % 3 == 0
    assert f'iter: {resumed_from}.' in log
    after = losses(log)
    assert sorted(after) == list(range(resumed_from + 1, 41))
    for iteration, values in after.items():
        assert values == ref_losses[iteration], (iteration, values, ref_losses[iteration])
    assert metrics(log) == metrics(ref_log)  # the final validation too
    final = torch.load(workdir / 'experiments' / 'killme' / 'models' / 'net_g_latest.pth', weights_only=True)
    expected = torch.load(reference / 'experiments' / 'killme' / 'models' / 'net_g_latest.pth', weights_only=True)
    for key in ('params', 'params_ema'):
        assert all(torch.equal(final[key][k], expected[key][k]) for k in expected[key])


def test_no_torn_checkpoint_files(data, tmp_path):
    """Checkpoints are written to .tmp then renamed: auto-resume ignores a leftover .tmp from a killed write."""
    opt = make_train_options('torn', data, stage1_network(), total_iter=4, checkpoint_freq=2)
    opt_file = write_yaml(opt, tmp_path / 'opt.yml')
    assert run_python(command(opt_file, 1), cwd=str(tmp_path), env=ENV).returncode == 0
    states = tmp_path / 'experiments' / 'torn' / 'training_states'
    (states / '6.state.tmp').write_bytes(b'half a file')  # what a kill during a write leaves
    opt['train']['total_iter'] = 6
    write_yaml(opt, tmp_path / 'opt.yml')
    proc = run_python(command(opt_file, 1, '--auto_resume'), cwd=str(tmp_path), env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = sorted(glob.glob(str(tmp_path / 'experiments' / 'torn' / 'train_*.log')), key=os.path.getmtime)[-1]
    assert 'iter: 4.' in open(log).read()
    assert not glob.glob(str(tmp_path / 'experiments' / 'torn' / 'models' / '*.tmp'))


@pytest.mark.parametrize('procs, use_fast', [(1, False), (2, False), fast(1)])
def test_non_finite_loss_stops_with_intact_checkpoints(procs, use_fast, data, tmp_path):
    opt = fast_path(make_train_options('nan', data, stage1_network(), total_iter=50, checkpoint_freq=1), use_fast)
    opt['train']['optim_g']['lr'] = 1e30  # the weights explode within a few steps
    opt['val']['val_freq'] = 1000
    opt_file = write_yaml(opt, tmp_path / 'opt.yml')
    proc = run_python(command(opt_file, procs), cwd=str(tmp_path), env=ENV)
    assert proc.returncode != 0
    match = re.search(r'The loss is not finite at iteration (\d+)', proc.stderr)
    assert match, proc.stderr[-3000:]
    models = tmp_path / 'experiments' / 'nan' / 'models'
    assert not (models / 'net_g_latest.pth').exists()
    saved = sorted(models.glob('net_g_*.pth'))
    assert len(saved) == int(match.group(1)) - 1
    for path in saved:
        assert all(torch.isfinite(v).all() for v in torch.load(path, weights_only=True)['params'].values())


def test_upstream_script_with_torchrun_on_cpu(data, gradnet_checkpoint, tmp_path):
    """`torchrun ... <installed basicsr>/train.py -opt X --launcher pytorch` on a machine without CUDA: the plugin
    gives upstream's parse_options a gloo fallback (on CUDA machines upstream's NCCL init is left alone)."""
    import basicsr

    _, _, stage1 = gradnet_checkpoint
    opt = make_train_options(
        'upstream_ddp', data, gradnet_network(stage1), total_iter=2, checkpoint_freq=2, gradient_loss=True)
    opt['path']['experiments_root'] = str(tmp_path / 'experiments')
    opt_file = write_yaml(opt, tmp_path / 'opt.yml')
    train_py = os.path.join(os.path.dirname(basicsr.__file__), 'train.py')
    cmd = [
        '-m', 'torch.distributed.run', '--nproc_per_node=2', f'--master_port={next(PORTS)}', train_py, '-opt', opt_file,
        '--launcher', 'pytorch'
    ]
    proc = run_python(cmd, cwd=str(tmp_path), env=ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'experiments' / 'upstream_ddp' / 'train_*.log'))[0]).read()
    assert 'World size (gpu number): 2' in log and re.search(r'# psnr: [\d.]+', log)
    assert 'Pre-denoiser identical on all 2 ranks' in log


def test_compiled_training_under_ddp_matches_eager(data, gradnet_checkpoint, tmp_path):
    """compile: true with 2 processes (gloo): torch.compile of the DDP-wrapped net trains and validates as eager DDP
    does (losses to 1e-3 relative, the generated kernels sum in another order; the same validation metrics to 0.01)."""
    _, _, stage1 = gradnet_checkpoint
    runs = {}
    for compile_net in (False, True):
        opt = make_train_options(f'ddp_compile_{compile_net}', data, gradnet_network(stage1), gradient_loss=True)
        opt['compile'] = compile_net
        work = tmp_path / str(compile_net)
        work.mkdir()
        done = run_python(command(write_yaml(opt, work / 'opt.yml'), 2), cwd=str(work), env=ENV)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[compile_net] = open(glob.glob(str(work / 'experiments' / opt['name'] / 'train_*.log'))[0]).read()
    ref, got = losses(runs[False]), losses(runs[True])
    assert sorted(ref) == sorted(got) == list(range(1, 7))
    for iteration in ref:
        expected = [float(v) for v in re.findall(r': ([\d.e+-]+)', ref[iteration])]
        values = [float(v) for v in re.findall(r': ([\d.e+-]+)', got[iteration])]
        assert values == pytest.approx(expected, rel=1e-3), iteration
    assert [name for name, _ in metrics(runs[True])] == [name for name, _ in metrics(runs[False])]
    for (_, a), (_, b) in zip(metrics(runs[True]), metrics(runs[False])):
        assert abs(float(a) - float(b)) < 0.01
