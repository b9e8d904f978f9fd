"""BasicSR's real training, validation, test and resume loops on tiny configs, on the CPU, in fresh interpreters."""
import basicsr
import cv2
import glob
import numpy as np
import os
import pytest
import re
import shutil
import torch
from conftest import run_python, write_images
from tiny_options import gradnet_network, make_test_options, make_train_options, stage1_network, write_yaml

pytestmark = pytest.mark.slow


def train(workdir, opt, *flags, expect_ok=True):
    """`python -m gradnet_arch.train -opt <opt>` in `workdir`; returns (process, log text of the newest run)."""
    opt_file = write_yaml(opt, os.path.join(workdir, 'options', f'{opt["name"]}.yml'))
    proc = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file, *flags], cwd=workdir)
    if expect_ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = sorted(glob.glob(os.path.join(workdir, 'experiments', opt['name'], 'train_*.log')), key=os.path.getmtime)
    return proc, (open(logs[-1]).read() if logs else '')


def load(path, key='params'):
    return torch.load(path, map_location='cpu', weights_only=True)[key]


@pytest.fixture(scope='module')
def two_stages(tmp_path_factory):
    """Stage 1 (MSKResNet) then stage 2 (GradNet from the stage-1 checkpoint), as a user runs them."""
    work = str(tmp_path_factory.mktemp('work'))
    dirs = {
        'train': write_images(os.path.join(work, 'data', 'train'), 4),
        'val': write_images(os.path.join(work, 'data', 'val'), 2, seed=100, height=32, width=36)
    }
    opt1 = make_train_options('stage1', dirs, stage1_network())
    _, log1 = train(work, opt1)
    ckpt1 = os.path.join(work, 'experiments', 'stage1', 'models', 'net_g_latest.pth')
    opt2 = make_train_options('stage2', dirs, gradnet_network(ckpt1), ema_decay=0.5, gradient_loss=True, save_img=True)
    _, log2 = train(work, opt2)
    return {'work': work, 'dirs': dirs, 'opt1': opt1, 'opt2': opt2, 'log1': log1, 'log2': log2, 'ckpt1': ckpt1}


def test_stage1_trains_validates_and_saves(two_stages):
    exp = os.path.join(two_stages['work'], 'experiments', 'stage1')
    for name in ('net_g_3.pth', 'net_g_6.pth', 'net_g_latest.pth'):
        assert os.path.isfile(os.path.join(exp, 'models', name))
    assert sorted(os.listdir(os.path.join(exp, 'training_states'))) == ['3.state', '6.state']
    log = two_stages['log1']
    assert 'Model [GradNetModel] is created.' in log and 'Network: MSKResNet' in log
    assert re.search(r'iter:\s+6, .*l_pix: ', log)
    psnr = [float(v) for v in re.findall(r'# psnr: ([\d.]+)', log)]
    assert len(psnr) >= 2 and all(10 < v < 60 for v in psnr)
    assert not glob.glob(os.path.join(two_stages['work'], '**', 'tb_logger'), recursive=True)


def test_stage2_logs_both_losses_and_keeps_predenoiser_frozen(two_stages):
    log = two_stages['log2']
    assert re.search(r'l_pix: [\d.e+-]+ l_grad: [\d.e+-]+ l_total', log)
    assert 'Use Exponential Moving Average with decay: 0.5' in log
    assert 'Params ' not in log  # no per-parameter "will not be optimized" warnings for the pre-denoiser
    assert 'Frozen (not optimized)' in log
    ckpt = torch.load(
        os.path.join(two_stages['work'], 'experiments', 'stage2', 'models', 'net_g_latest.pth'),
        map_location='cpu',
        weights_only=True)
    assert set(ckpt) == {'params', 'params_ema'}
    stage1 = load(two_stages['ckpt1'])
    for key in ('params', 'params_ema'):
        pre = {k[len('predenoiser.'):]: v for k, v in ckpt[key].items() if k.startswith('predenoiser.')}
        assert pre.keys() == stage1.keys()
        for name, value in stage1.items():  # the frozen stage 1, BN statistics included, never moved
            assert torch.equal(pre[name], value), (key, name)
    # ...while GradNet's own weights did train
    first = load(os.path.join(two_stages['work'], 'experiments', 'stage2', 'models', 'net_g_3.pth'))
    assert not torch.equal(first['head.0.weight'], ckpt['params']['head.0.weight'])


def test_ema_net_carries_batchnorm_statistics(two_stages):
    ckpt = torch.load(
        os.path.join(two_stages['work'], 'experiments', 'stage2', 'models', 'net_g_latest.pth'),
        map_location='cpu',
        weights_only=True)
    key = 'body.blocks.0.units.0.bn.running_mean'
    assert not torch.equal(ckpt['params_ema'][key], torch.zeros_like(ckpt['params_ema'][key]))
    assert torch.equal(ckpt['params_ema'][key], ckpt['params'][key])


def test_checkpoint_reloads_with_identical_outputs(two_stages):
    """The test pipeline, from the saved checkpoint, reproduces the training validation images bit for bit."""
    work = two_stages['work']
    ckpt = os.path.join(work, 'experiments', 'stage2', 'models', 'net_g_latest.pth')
    network = dict(two_stages['opt2']['network_g'])
    network['predenoiser'] = dict(network['predenoiser'], pretrained=None)  # the GradNet checkpoint holds it
    opt = make_test_options('stage2_test', two_stages['dirs']['val'], network, ckpt, param_key='params_ema')
    opt_file = write_yaml(opt, os.path.join(work, 'options', 'stage2_test.yml'))
    proc = run_python(['-m', 'gradnet_arch.test', '-opt', opt_file], cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = open(glob.glob(os.path.join(work, 'results', 'stage2_test', 'test_*.log'))[0]).read()
    assert re.search(r'# psnr: [\d.]+', log) and re.search(r'# ssim: [\d.]+', log)
    test_imgs = sorted(glob.glob(os.path.join(work, 'results', 'stage2_test', 'visualization', 'tiny_val', '*.png')))
    assert len(test_imgs) == 2
    for test_img in test_imgs:
        stem = os.path.basename(test_img).rsplit('_stage2_test', 1)[0]
        train_imgs = glob.glob(os.path.join(work, 'experiments', 'stage2', 'visualization', stem, f'{stem}_*.png'))
        final = max(train_imgs, key=lambda p: int(re.search(r'_(\d+)\.png$', p).group(1)))
        assert np.array_equal(cv2.imread(test_img), cv2.imread(final)), (test_img, final)


def test_checkpoint_loads_through_basicsr_build_network(two_stages):
    """Downstream use: BasicSR's build_network + a fresh pre-denoiser + load_state_dict restores both stages."""
    from basicsr.archs import build_network

    network = dict(two_stages['opt2']['network_g'])
    network['predenoiser'] = dict(network['predenoiser'], pretrained=None)
    net = build_network(network).eval()
    ckpt = load(os.path.join(two_stages['work'], 'experiments', 'stage2', 'models', 'net_g_latest.pth'), 'params_ema')
    net.load_state_dict(ckpt)
    again = build_network(network).eval()
    again.load_state_dict(ckpt)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
        assert torch.equal(net.predenoiser(x), again.predenoiser(x))


def test_auto_resume_continues_from_last_state(two_stages, tmp_path):
    """Resume on CPU: a run cut after its iteration-3 state continues to 6 from there."""
    work = str(tmp_path)
    src = os.path.join(two_stages['work'], 'experiments', 'stage1')
    exp = os.path.join(work, 'experiments', 'stage1')
    shutil.copytree(src, exp)
    for path in (os.path.join(exp, 'models', 'net_g_6.pth'), os.path.join(exp, 'models', 'net_g_latest.pth'),
                 os.path.join(exp, 'training_states', '6.state')):
        os.remove(path)
    for log in glob.glob(os.path.join(exp, 'train_*.log')):
        os.remove(log)
    _, log = train(work, two_stages['opt1'], '--auto_resume')
    assert 'Resuming training from epoch: ' in log and 'iter: 3.' in log
    assert re.search(r'iter:\s+4, ', log) and re.search(r'iter:\s+6, ', log)
    assert not re.search(r'iter:\s+[123], ', log)
    assert os.path.isfile(os.path.join(exp, 'models', 'net_g_6.pth'))
    # the resumed optimizer state came from the file: the learning rate halves at the milestone (iter 4) as planned
    assert re.search(r'iter:\s+5, lr:\(5\.000e-04', log)


def test_resume_state_loads_with_torch_safe_loader(two_stages):
    state_file = os.path.join(two_stages['work'], 'experiments', 'stage1', 'training_states', '3.state')
    state = torch.load(state_file, map_location='cpu', weights_only=True)  # must not need weights_only=False
    assert state['iter'] == 3 and len(state['optimizers']) == 1 and len(state['schedulers']) == 1


def test_upstream_basicsr_train_script_sees_the_plugin(two_stages, tmp_path):
    """The train.py that the installed basicsr package ships, run as a script in place: the autoload hook registers
    GradNet's classes with BasicSR's files unchanged (experiments_root points into tmp so site-packages stays clean)."""
    train_py = os.path.join(os.path.dirname(basicsr.__file__), 'train.py')
    opt = make_train_options(
        'upstream_script',
        two_stages['dirs'],
        gradnet_network(two_stages['ckpt1']),
        total_iter=2,
        checkpoint_freq=2,
        gradient_loss=True)
    opt['path']['experiments_root'] = str(tmp_path / 'experiments')
    opt_file = write_yaml(opt, tmp_path / 'upstream.yml')
    proc = run_python([train_py, '-opt', opt_file], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.path.isfile(tmp_path / 'experiments' / 'upstream_script' / 'models' / 'net_g_latest.pth')
    # The hook is what makes it work: without it upstream's script cannot find the plugin's classes.
    opt['name'] = 'upstream_script_no_hook'
    write_yaml(opt, tmp_path / 'upstream.yml')
    proc = run_python([train_py, '-opt', opt_file], cwd=str(tmp_path), env={'GRADNET_BASICSR_AUTOLOAD': '0'})
    assert proc.returncode != 0 and "No object named 'GaussianNoiseDataset'" in proc.stderr


def test_source_checkout_command(two_stages, tmp_path):
    """`python basicsr/train.py -opt ...` and `python basicsr/test.py -opt ...` from the root of a BasicSR checkout."""
    checkout = tmp_path / 'BasicSR'
    (checkout / 'basicsr').mkdir(parents=True)
    for script in ('train.py', 'test.py'):
        shutil.copy(os.path.join(os.path.dirname(basicsr.__file__), script), checkout / 'basicsr' / script)
    opt = make_train_options(
        'checkout_run',
        two_stages['dirs'],
        gradnet_network(two_stages['ckpt1']),
        total_iter=2,
        checkpoint_freq=2,
        gradient_loss=True)
    write_yaml(opt, checkout / 'options' / 'train.yml')
    proc = run_python(['basicsr/train.py', '-opt', 'options/train.yml'], cwd=str(checkout))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = checkout / 'experiments' / 'checkout_run' / 'models' / 'net_g_latest.pth'
    assert ckpt.is_file()
    network = dict(opt['network_g'], predenoiser=dict(opt['network_g']['predenoiser'], pretrained=None))
    write_yaml(
        make_test_options('checkout_test', two_stages['dirs']['val'], network, str(ckpt)),
        checkout / 'options' / 'test.yml')
    proc = run_python(['basicsr/test.py', '-opt', 'options/test.yml'], cwd=str(checkout))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(glob.glob(str(checkout / 'results' / 'checkout_test' / 'visualization' / 'tiny_val' / '*.png'))) == 2


def test_torchrun_gloo_two_processes(two_stages, tmp_path):
    """`torchrun --nproc_per_node=2 -m gradnet_arch.train ... --launcher pytorch` on CPU (gloo), with validation."""
    opt = make_train_options(
        'ddp',
        two_stages['dirs'],
        gradnet_network(two_stages['ckpt1']),
        total_iter=4,
        checkpoint_freq=2,
        ema_decay=0.5,
        gradient_loss=True)
    opt_file = write_yaml(opt, tmp_path / 'ddp.yml')
    command = [
        '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29731', '-m', 'gradnet_arch.train', '-opt',
        opt_file, '--launcher', 'pytorch'
    ]
    proc = run_python(command, cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'experiments' / 'ddp' / 'train_*.log'))[0]).read()
    assert 'World size (gpu number): 2' in log
    assert re.search(r'# psnr: [\d.]+', log)
    ckpt = torch.load(tmp_path / 'experiments' / 'ddp' / 'models' / 'net_g_latest.pth', weights_only=True)
    assert not any(k.startswith('module.') for k in ckpt['params'])
    stage1 = load(two_stages['ckpt1'])
    assert all(torch.equal(ckpt['params'][f'predenoiser.{k}'], v) for k, v in stage1.items())
    # The checkpoint loads in a single-process test run, which reproduces the (sharded) final validation metrics.
    network = dict(opt['network_g'], predenoiser=dict(opt['network_g']['predenoiser'], pretrained=None))
    test_file = write_yaml(
        make_test_options('ddp_single', two_stages['dirs']['val'], network,
                          str(tmp_path / 'experiments' / 'ddp' / 'models' / 'net_g_latest.pth'), 'params_ema'),
        tmp_path / 'ddp_test.yml')
    proc = run_python(['-m', 'gradnet_arch.test', '-opt', test_file], cwd=str(tmp_path), env={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_log = open(glob.glob(str(tmp_path / 'results' / 'ddp_single' / 'test_*.log'))[0]).read()
    final_val = re.findall(r'# (psnr|ssim): ([\d.]+)', log)[-2:]
    assert re.findall(r'# (psnr|ssim): ([\d.]+)', test_log) == final_val


def test_grey_two_stage_pipeline(gray_dirs, tmp_path):
    """Grey (C = 1) data through both stages."""
    work = str(tmp_path)
    net1 = dict(stage1_network(), num_in_ch=1)
    train(work, make_train_options('g1', gray_dirs, net1, total_iter=2, checkpoint_freq=2, color='gray'))
    ckpt1 = os.path.join(work, 'experiments', 'g1', 'models', 'net_g_latest.pth')
    net2 = gradnet_network(ckpt1)
    net2['num_in_ch'] = 1
    net2['predenoiser']['num_in_ch'] = 1
    _, log = train(
        work,
        make_train_options('g2', gray_dirs, net2, total_iter=2, checkpoint_freq=2, color='gray', gradient_loss=True))
    assert re.search(r'# psnr: [\d.]+', log)
    assert load(os.path.join(work, 'experiments', 'g2', 'models', 'net_g_latest.pth'))['tail.weight'].shape[0] == 1
