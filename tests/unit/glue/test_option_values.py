"""Option values of the wrong type, out of range or unknown end gradnet-train / gradnet-test early: exit status 2,
one line naming the key, its value and what is allowed, no traceback, and nothing already written is touched."""
import os
import pytest
import sys
import yaml
from conftest import run_python, write_images
from tiny_options import make_test_options, make_train_options, stage1_network, write_yaml

from gradnet_arch.errors import OptionError
from gradnet_arch.option_check import check_options


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def dirs(tmp_path):
    return {'train': write_images(tmp_path / 'train', 2), 'val': write_images(tmp_path / 'val', 1)}


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Run gradnet-train's / gradnet-test's `main` in tmp_path; returns (exit code, stderr)."""
    from gradnet_arch import test, train

    monkeypatch.chdir(tmp_path)

    def run(opt, pipeline='train'):
        opt_file = write_yaml(opt, tmp_path / 'opt.yml')
        with pytest.raises(SystemExit) as info:
            (train if pipeline == 'train' else test).main(['-opt', opt_file])
        return info.value.code, capsys.readouterr().err

    return run


def _set(path, value):
    """A mutation setting `path` (dotted) to `value`; value DELETE removes the key."""

    def mutate(opt):
        *parents, last = path.split('.')
        node = opt
        for key in parents:
            node = node[key]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


DELETE = object()
# (key path, value, what the message must say is allowed)
WRONG_TRAINING_VALUES = [
    ('datasets.train.batch_size_per_gpu', 'eight', 'an integer >= 1'),
    ('datasets.train.batch_size_per_gpu', 0, 'an integer >= 1'),
    ('datasets.train.num_worker_per_gpu', -1, 'an integer >= 0'),
    ('datasets.train.gt_size', '32', 'an integer >= 1'),
    ('datasets.train.sigma', 'twenty', 'a number >= 0'),
    ('datasets.train.sigma', -5, 'a number >= 0'),
    ('datasets.train.use_hflip', 'yes', 'true or false'),
    ('datasets.train.dataset_enlarge_ratio', 0, 'a number > 0'),
    ('datasets.train.prefetch_mode', 'gpu', "one of ~, 'cpu', 'cuda'"),
    ('train.total_iter', 0, 'an integer >= 1'),
    ('train.total_iter', -10, 'an integer >= 1'),
    ('train.total_iter', 'many', 'an integer >= 1'),
    ('train.optim_g.lr', 'fast', 'a number > 0'),
    ('train.optim_g.lr', 0, 'a number > 0'),
    ('train.optim_g.betas', [0.9], 'a list of 2 values'),
    ('train.optim_g.amsgrad', 'yes', 'true or false'),  # from torch.optim.Adam's signature (default False)
    ('train.scheduler.milestones', [4, 'five'], 'an integer >= 1'),
    ('train.scheduler.gamma', 'half', 'a number > 0'),
    ('train.ema_decay', 1.5, 'a number in [0, 1)'),
    ('train.pixel_opt.loss_weight', 'one', 'a number'),
    ('train.pixel_opt.reduction', 'avg', "one of 'none', 'mean', 'sum'"),
    ('val.val_freq', 0, 'a number > 0'),
    ('val.save_img', 'no', 'true or false'),
    ('val.metrics.psnr.crop_border', -1, 'an integer >= 0'),
    ('logger.print_freq', 'often', 'a number > 0'),
    ('logger.save_checkpoint_freq', 0, 'a number > 0'),
    ('network_g.num_feat', 'eight', 'an integer >= 1'),
    ('network_g.batch_norm', 'off', 'true or false'),
    ('num_gpu', -1, "an integer >= 0 or 'auto'"),
    ('manual_seed', 'seven', 'an integer in [0, 4294967295]'),
    ('amp', 'fp32', "one of 'bf16', 'fp16', false, ~"),
    ('amp', True, "one of 'bf16', 'fp16', false, ~"),
    ('channels_last', 'yes', 'true or false'),
    ('dist_params.port', 'any', 'an integer in [1, 65535]'),
]


@pytest.mark.parametrize(
    'key,value,allowed', WRONG_TRAINING_VALUES, ids=[f'{k}={v!r}' for k, v, _ in WRONG_TRAINING_VALUES])
def test_wrong_value_is_one_line_naming_key_value_and_allowed(key, value, allowed, run_main, dirs, tmp_path):
    opt = make_train_options('bad', dirs, stage1_network())
    _set(key, value)(opt)
    code, err = run_main(opt)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    shown = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()
    assert f': {key}' in lines[0] and allowed in lines[0], lines[0]
    bad = value[-1] if key.endswith('milestones') else value  # a list names the item that is wrong
    assert str(bad) in lines[0] or repr(bad) in lines[0] or shown in lines[0], lines[0]
    assert not (tmp_path / 'experiments').exists()  # refused before BasicSR made any folder


UNKNOWN_KEYS = [
    # (where, key, what the message says)
    ('', 'total_iter', 'valid keys: name, model_type'),  # no close match at the top level: name the valid keys
    ('', 'netwrok_g', "did you mean 'network_g'?"),
    ('val', 'val_frq', "did you mean 'val_freq'?"),
    ('logger', 'print_frequency', "did you mean 'print_freq'?"),
    ('path', 'resume_stat', "did you mean 'resume_state'?"),
    ('train.optim_g', 'weight_decy', "did you mean 'weight_decay'?"),
    ('train.scheduler', 'gama', "did you mean 'gamma'?"),
    ('train.pixel_opt', 'loss_weigth', "did you mean 'loss_weight'?"),
    ('val.metrics.psnr', 'crop_boder', "did you mean 'crop_border'?"),
]


@pytest.mark.parametrize('where,key,expected', UNKNOWN_KEYS, ids=[f'{w}.{k}' for w, k, _ in UNKNOWN_KEYS])
def test_unknown_key_is_an_error(where, key, expected, run_main, dirs):
    opt = make_train_options('bad', dirs, stage1_network())
    node = opt
    for part in filter(None, where.split('.')):
        node = node[part]
    node[key] = 1
    code, err = run_main(opt)
    lines = error_lines(err)
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err
    assert repr(key) in lines[0] and expected in lines[0], lines[0]


@pytest.mark.parametrize('key,expected', [
    ('datasets.train.batch_size_per_gpu', 'datasets.train (GaussianNoiseDataset) is missing batch_size_per_gpu'),
    ('train.optim_g.lr', 'train.optim_g (Adam) is missing lr'),
    ('train.total_iter', 'train is missing total_iter'),
    ('val.metrics.psnr.crop_border', 'val.metrics.psnr (calculate_psnr) is missing crop_border'),
    ('logger', 'the file is missing logger'),
])
def test_missing_required_key(key, expected, run_main, dirs):
    """Keys BasicSR indexes directly (a KeyError traceback, some only after training, at the first validation)."""
    opt = make_train_options('bad', dirs, stage1_network())
    _set(key, DELETE)(opt)
    code, err = run_main(opt)
    assert code == 2 and expected in err and len(error_lines(err)) == 1, err


def test_wrong_type_of_component(run_main, dirs):
    opt = make_train_options('bad', dirs, stage1_network())
    opt['train']['optim_g']['type'] = 'Adma'
    code, err = run_main(opt)
    assert code == 2 and "train.optim_g.type is 'Adma'" in err and 'Adam, AdamW' in err
    opt['train']['optim_g']['type'] = 'Adam'
    opt['train']['pixel_opt']['type'] = 'L1Los'
    code, err = run_main(opt)
    assert code == 2 and "'L1Los' is not registered in BasicSR's loss registry; did you mean 'L1Loss'?" in err


def test_options_of_basicsr_archs_come_from_their_signature(dirs):
    """An arch without a description of its own (BasicSR's RIDNet): its parameters are the valid keys, those
    without default are required, and a default's type is the type the option must have."""
    opt = make_train_options('ridnet', dirs, {'type': 'RIDNet', 'in_channels': 3, 'out_channels': 3})
    with pytest.raises(OptionError, match=r'network_g \(RIDNet\) is missing mid_channels\.'):
        check_options(opt, 'o.yml', is_train=True)
    opt['network_g'].update(mid_channels=8, num_block='four')
    with pytest.raises(OptionError, match=r"network_g.num_block is 'four'; it must be a number\."):
        check_options(opt, 'o.yml', is_train=True)
    opt['network_g'].update(num_block=2, num_blocks=2)
    with pytest.raises(OptionError, match=r"unknown key 'num_blocks' in network_g; did you mean 'num_block'\?"):
        check_options(opt, 'o.yml', is_train=True)
    del opt['network_g']['num_blocks']
    check_options(opt, 'o.yml', is_train=True)


def test_dataset_phases(run_main, dirs):
    opt = make_train_options('bad', dirs, stage1_network())
    opt['datasets']['validation'] = opt['datasets'].pop('val')
    code, err = run_main(opt)
    assert code == 2 and "datasets.validation: a training file has the phases train and val" in err


def test_nothing_already_written_is_touched(run_main, dirs, tmp_path):
    """A refused run leaves an earlier run of the same name exactly as it was (BasicSR would archive it)."""
    exp = tmp_path / 'experiments' / 'again'
    (exp / 'models').mkdir(parents=True)
    (exp / 'training_states').mkdir()
    (exp / 'models' / 'net_g_3.pth').write_bytes(b'weights')
    (exp / 'training_states' / '3.state').write_bytes(b'state')
    opt = make_train_options('again', dirs, stage1_network(), total_iter=0)
    code, err = run_main(opt)
    assert code == 2 and 'train.total_iter is 0' in err
    assert sorted(os.listdir(tmp_path / 'experiments')) == ['again']
    assert (exp / 'models' / 'net_g_3.pth').read_bytes() == b'weights'
    assert (exp / 'training_states' / '3.state').read_bytes() == b'state'


def test_test_pipeline_values(run_main, tmp_path):
    opt = make_test_options('t', str(tmp_path), stage1_network(), str(tmp_path / 'net.pth'))
    opt['datasets']['test_1']['sigma'] = 'twenty'
    code, err = run_main(opt, 'test')
    assert code == 2 and "datasets.test_1.sigma is 'twenty'; it must be a number >= 0" in err
    assert len(error_lines(err)) == 1 and not (tmp_path / 'results').exists()
    opt['datasets']['test_1']['sigma'] = 25
    del opt['val']
    code, err = run_main(opt, 'test')
    assert code == 2 and 'the file is missing val (testing needs it)' in err


@pytest.mark.parametrize('amp', ['bf16', 'fp16', False, None])
def test_amp_and_channels_last_values_are_accepted(amp, dirs):
    opt = make_train_options('ok', dirs, stage1_network())
    opt['amp'], opt['channels_last'] = amp, True
    check_options(opt, 'o.yml', is_train=True)
    del opt['amp'], opt['channels_last']
    check_options(opt, 'o.yml', is_train=True)


def test_basicsr_keys_are_known(dirs):
    """Keys of BasicSR's own files and the keys parse_options adds (a parsed dict passes too)."""
    opt = make_train_options('ok', dirs, stage1_network())
    opt.update(
        scale=1,
        num_gpu='auto',
        find_unused_parameters=False,
        is_train=True,
        dist=False,
        rank=0,
        world_size=1,
        auto_resume=False,
        root_path='.')
    opt['train']['total_iter'] = 4e5  # !!float 4e5: BasicSR reads int(total_iter)
    opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = 5e3
    opt['path'].update(
        experiments_root='exp',
        models='m',
        training_states='s',
        log='l',
        visualization='v',
        pretrain_network_d=None,
        strict_load_d=True,
        param_key_d='params',
        ignore_resume_networks=[])
    check_options(opt, 'o.yml', is_train=True)
    with pytest.raises(OptionError, match="unknown key 'root' in path; valid keys: resume_state"):
        check_options(dict(opt, path=dict(opt['path'], root='x')), 'o.yml', is_train=True)


def test_real_console_script(dirs, tmp_path):
    """The installed gradnet-train itself, in a fresh interpreter."""
    opt = make_train_options('cli', dirs, stage1_network())
    opt['datasets']['train']['batch_size_per_gpu'] = 'eight'
    opt_file = write_yaml(opt, tmp_path / 'o.yml')
    script = os.path.join(os.path.dirname(sys.executable), 'gradnet-train')
    command = [script] if os.path.isfile(script) else ['-m', 'gradnet_arch.train']
    proc = run_python(command + ['-opt', opt_file], cwd=str(tmp_path), timeout=300)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert "datasets.train.batch_size_per_gpu is 'eight'; it must be an integer >= 1" in lines[0]
