"""Resuming survives damaged and foreign files: --auto_resume takes the newest readable training state (warning about
the others, deleting nothing), an explicit unreadable state is a one-line error, and unsafe pickles are never
loaded, with messages that do not suggest loading them unsafely."""
import glob
import os
import pytest
import re
import shutil
import torch
from conftest import run_python, write_images
from tiny_options import gradnet_network, make_train_options, stage1_network, write_yaml

from gradnet_arch.compat import PipelineRun, load_resume_state
from gradnet_arch.errors import BadFileError, UnsafeFileError
from gradnet_arch.pretrained.checkpoint_io import read_checkpoint

FOREIGN = {
    'notes.txt': b'lr halved at 4\n',
    'x.state.tmp': b'half a write',
    'abc.state': b'not a state',
    '12.state.bak': b'old'
}
UNSAFE_ADVICE = ('weights_only', 'safe_globals', 'trust', 'delete')


class Payload:
    """Unpickling this runs `touch marker` (through os.system, which the safe unpickler refuses)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


def snapshot(folder):
    """Every file under `folder` with its bytes."""
    return {
        os.path.relpath(path, folder): open(path, 'rb').read()
        for path in glob.glob(os.path.join(folder, '**', '*'), recursive=True) if os.path.isfile(path)
    }


def tear(path):
    """Cut a file in half, as a full disk or a broken copy leaves it."""
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])


# ---------------------------------------------------------------------------------------------------------------------
# Which state --auto_resume picks (BasicSR's check_resume included), on small real torch files.


def _fake_run(root, iters, network=True):
    states, models = root / 'training_states', root / 'models'
    states.mkdir(parents=True)
    models.mkdir()
    for it in iters:
        torch.save({'iter': it, 'epoch': 0, 'optimizers': [], 'schedulers': []}, states / f'{it}.state')
        if network:
            torch.save({'params': {'w': torch.zeros(1)}}, models / f'net_g_{it}.pth')
    opt = {
        'name': 'run',
        'auto_resume': True,
        'num_gpu': 0,
        'rank': 0,
        'network_g': {
            'type': 'MSKResNet'
        },
        'path': {
            'training_states': str(states),
            'models': str(models),
            'resume_state': None
        }
    }
    return opt, states, models


def test_newest_readable_state_is_picked_and_foreign_files_ignored(tmp_path, capsys):
    opt, states, models = _fake_run(tmp_path, [2, 4, 6, 8])
    for name, content in FOREIGN.items():
        (states / name).write_bytes(content)
    (states / '10.state').mkdir()  # a folder is not a state either
    torch.save({'params': {'w': torch.zeros(1)}}, states / '9.state')  # a network checkpoint under a state's name
    tear(states / '8.state')
    tear(models / 'net_g_6.pth')
    before = snapshot(str(tmp_path))
    run = PipelineRun()  # what gradnet-train swaps in: it keeps the resume point for the resumable data loader
    state = run.load_resume_state(opt)
    err = capsys.readouterr().err
    assert state['iter'] == 4 and opt['path']['resume_state'] == str(states / '4.state')
    assert (run.resume.iteration, run.resume.epoch) == (4, 0)
    assert not any(key.startswith('_resume') for key in opt)  # passed explicitly, not through private option keys
    assert opt['path']['pretrain_network_g'] == os.path.join(str(models), 'net_g_4.pth')  # BasicSR's check_resume
    assert '8.state' in err and 'net_g_6.pth' in err and 'nothing is deleted' in err
    assert re.search(r'skips \S*9\.state: .*not a BasicSR training state', err)
    assert snapshot(str(tmp_path)) == before


def test_only_foreign_files_start_afresh(tmp_path):
    opt, states, _ = _fake_run(tmp_path, [])
    for name, content in FOREIGN.items():
        (states / name).write_bytes(content)
    assert load_resume_state(opt) is None and not opt['path']['resume_state']


def test_no_readable_state_at_all_is_an_error_that_deletes_nothing(tmp_path, capsys):
    opt, states, _ = _fake_run(tmp_path, [3, 6])
    tear(states / '3.state')
    tear(states / '6.state')
    before = snapshot(str(tmp_path))
    with pytest.raises(BadFileError) as info:
        load_resume_state(opt)
    message = str(info.value)
    assert 'no readable training state' in message and '3.state' in message and '6.state' in message
    assert not any(word in message for word in UNSAFE_ADVICE)
    assert snapshot(str(tmp_path)) == before


# ---------------------------------------------------------------------------------------------------------------------
# Through gradnet-train.


@pytest.fixture
def run_train(tmp_path, monkeypatch, capsys):
    """gradnet-train's main in tmp_path; returns (exit code, stderr)."""
    from gradnet_arch import train

    monkeypatch.chdir(tmp_path)

    def run(opt, *flags):
        opt_file = write_yaml(opt, tmp_path / 'options' / f'{opt["name"]}.yml')
        with pytest.raises(SystemExit) as info:
            train.main(['-opt', opt_file, *flags])
        return info.value.code, capsys.readouterr().err

    return run


@pytest.fixture
def dirs(tmp_path):
    return {'train': write_images(tmp_path / 'train', 2), 'val': write_images(tmp_path / 'val', 1)}


def _states_of(tmp_path, name, iters):
    """experiments/<name>/ with real states of a tiny MSKResNet run (what GradNetModel writes) at `iters`."""
    _, states, models = _fake_run(tmp_path / 'experiments' / name, iters)
    return states, models


def test_explicit_torn_resume_state_is_one_line_without_delete(run_train, dirs, tmp_path):
    states, _ = _states_of(tmp_path, 'explicit', [3])
    tear(states / '3.state')
    before = snapshot(str(tmp_path / 'experiments'))
    opt = make_train_options('explicit', dirs, stage1_network())
    opt['path']['resume_state'] = str(states / '3.state')
    code, err = run_train(opt)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert str(states / '3.state') in lines[0] and 'path.resume_state' in lines[0]
    assert not any(word in lines[0].lower() for word in UNSAFE_ADVICE), lines[0]
    assert snapshot(str(tmp_path / 'experiments')) == before


@pytest.mark.parametrize('flag', ['explicit', '--auto_resume'])
def test_unsafe_resume_state_is_refused_and_never_run(flag, run_train, dirs, tmp_path):
    states, _ = _states_of(tmp_path, 'unsafe', [3])
    marker = tmp_path / 'MARKER'
    torch.save({'iter': 6, 'epoch': 0, 'optimizers': [Payload(marker)], 'schedulers': []}, states / '6.state')
    torch.save({'params': {'w': torch.zeros(1)}}, states.parent / 'models' / 'net_g_6.pth')
    before = snapshot(str(tmp_path / 'experiments'))
    opt = make_train_options('unsafe', dirs, stage1_network())
    if flag == 'explicit':
        opt['path']['resume_state'] = str(states / '6.state')
    code, err = run_train(opt, *([flag] if flag != 'explicit' else []))
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert 'holds objects other than tensors and plain containers' in lines[0] and 'posix.system' in lines[0]
    assert not any(word in lines[0].lower() for word in UNSAFE_ADVICE), lines[0]
    assert not marker.exists()
    assert snapshot(str(tmp_path / 'experiments')) == before


def test_unsafe_predenoiser_checkpoint_message(run_train, dirs, tmp_path):
    marker = tmp_path / 'MARKER'
    torch.save({'params': {'w': torch.zeros(1)}, 'x': Payload(marker)}, tmp_path / 'stage1.pth')
    code, err = run_train(make_train_options('pre', dirs, gradnet_network(str(tmp_path / 'stage1.pth'))))
    message = next(line for line in err.splitlines() if line.startswith('Error: '))
    assert code == 2 and 'holds objects other than tensors and plain containers' in message
    assert not any(word in message.lower() for word in UNSAFE_ADVICE), message
    assert not marker.exists()


class Unlisted:
    """A class the safe unpickler does not know: torch's message suggests allow-listing it."""


def test_read_checkpoint_does_not_pass_on_torch_advice(tmp_path):
    for name, obj in (('global.pth', {
            'params': {
                'w': torch.zeros(1)
            },
            'x': Unlisted()
    }), ('payload.pth', {
            'params': {
                'w': torch.zeros(1)
            },
            'x': Payload(tmp_path / 'MARKER')
    })):
        torch.save(obj, tmp_path / name)
        with pytest.raises(UnsafeFileError) as info:
            read_checkpoint(str(tmp_path / name))
        assert 'GLOBAL ' in str(info.value) and not any(w in str(info.value) for w in UNSAFE_ADVICE[:3])
    (tmp_path / 'garbage.pth').write_bytes(os.urandom(300))  # torch's message for this also advises weights_only
    with pytest.raises(BadFileError) as info:
        read_checkpoint(str(tmp_path / 'garbage.pth'))
    assert 'corrupt' in str(info.value) and not any(w in str(info.value) for w in UNSAFE_ADVICE[:3])
    assert not (tmp_path / 'MARKER').exists()


@pytest.mark.slow
def test_auto_resume_survives_torn_and_foreign_files(tmp_path):
    """A real run with states at 2, 4 and 6; the 6 state and the 4 network torn, notes and leftovers beside them:
    --auto_resume continues from 2 and everything that was there stays byte for byte."""
    dirs = {'train': write_images(tmp_path / 'data' / 'train', 4), 'val': write_images(tmp_path / 'data' / 'val', 1)}
    opt = make_train_options('torn', dirs, stage1_network(), total_iter=6, checkpoint_freq=2)
    opt_file = write_yaml(opt, tmp_path / 'options' / 'torn.yml')
    proc = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'torn'
    assert sorted(os.listdir(exp / 'training_states')) == ['2.state', '4.state', '6.state']
    tear(exp / 'training_states' / '6.state')
    tear(exp / 'models' / 'net_g_4.pth')
    for name, content in FOREIGN.items():
        (exp / 'training_states' / name).write_bytes(content)
    for log in glob.glob(str(exp / 'train_*.log')):
        os.remove(log)
    shutil.copy(exp / 'models' / 'net_g_2.pth', tmp_path / 'net_g_2.before')
    opt['train']['total_iter'] = 3  # stop before iteration 4 is written again: the torn files must stay as they are
    write_yaml(opt, opt_file)
    before = snapshot(str(exp / 'training_states'))
    proc = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file, '--auto_resume'], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r'skips .*6\.state', proc.stderr) and re.search(r'skips .*4\.state: .*net_g_4\.pth', proc.stderr)
    log = open(glob.glob(str(exp / 'train_*.log'))[0]).read()
    assert 'Resuming training from epoch: ' in log and 'iter: 2.' in log and re.search(r'iter:\s+3, ', log)
    assert snapshot(str(exp / 'training_states')) == before
    assert open(exp / 'models' / 'net_g_2.pth', 'rb').read() == open(tmp_path / 'net_g_2.before', 'rb').read()
    assert not glob.glob(str(tmp_path / 'experiments' / '*archived*'))
