"""compat.py: the BasicSR functions it swaps still look as the replacements expect (a BasicSR release that changes
one fails here, naming it), the swaps last only as long as the pipeline, importing the plugin changes nothing in
BasicSR except in upstream's own scripts without CUDA, and the resume point reaches the data loader."""
import inspect
import os
import pytest
import sys
import torch
import types
from conftest import run_python
from tiny_options import make_train_options, stage1_network, write_yaml

from gradnet_arch import compat
from gradnet_arch.resumable_data import ResumePoint, create_train_val_dataloader

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason='the gloo fallback applies only without CUDA')


def _upstream():
    import basicsr.train
    import basicsr.utils.dist_util
    import basicsr.utils.options

    return basicsr.train, basicsr.utils.options, basicsr.utils.dist_util


def _expect(condition, name, what):
    assert condition, f'{name} changed: {what}. Check gradnet_arch/compat.py against this BasicSR version.'


def _parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def _calls(caller, name):
    """Whether `caller` looks `name` up as a module global (what a swapped module attribute replaces)."""
    return name in caller.__code__.co_names


def test_basicsr_train_load_resume_state_is_as_expected():
    train, _, _ = _upstream()
    name = 'basicsr.train.load_resume_state'
    _expect(callable(getattr(train, 'load_resume_state', None)), name, 'it no longer exists')
    _expect(
        _parameters(train.load_resume_state) == _parameters(compat.PipelineRun().load_resume_state), name,
        f'its signature is {inspect.signature(train.load_resume_state)}, the replacement takes (opt)')
    _expect(_calls(train.train_pipeline, 'load_resume_state'), name, 'train_pipeline no longer calls it by that name')
    source = inspect.getsource(train.train_pipeline)
    _expect('resume_state = load_resume_state(opt)' in source, name, 'train_pipeline calls it differently')
    for use in ("resume_state['iter']", "resume_state['epoch']", 'model.resume_training(resume_state)'):
        _expect(use.replace("'", '"') in source or use in source, name, f'train_pipeline no longer uses {use}')


def test_basicsr_train_create_train_val_dataloader_is_as_expected():
    train, _, _ = _upstream()
    name = 'basicsr.train.create_train_val_dataloader'
    _expect(callable(getattr(train, 'create_train_val_dataloader', None)), name, 'it no longer exists')
    _expect(
        _parameters(train.create_train_val_dataloader) == _parameters(compat.PipelineRun().create_train_val_dataloader),
        name, f'its signature is {inspect.signature(train.create_train_val_dataloader)}, the replacement takes '
        f'(opt, logger)')
    _expect(
        _calls(train.train_pipeline, 'create_train_val_dataloader'), name,
        'train_pipeline no longer calls it by that name')
    source = inspect.getsource(train.train_pipeline)
    call = source.find('create_train_val_dataloader(opt, logger)')
    _expect(call >= 0, name, 'train_pipeline calls it differently')
    # The resume point goes from load_resume_state to this function: it must be called after it.
    _expect(source.find('load_resume_state(opt)') < call, name, 'train_pipeline calls it before load_resume_state')
    _expect(
        'train_loader, train_sampler, val_loaders, total_epochs, total_iters = result' in source, name,
        'train_pipeline expects other return values than (train_loader, train_sampler, val_loaders, '
        'total_epochs, total_iters)')
    _expect('train_sampler.set_epoch(epoch)' in source, name, 'train_pipeline no longer sets the sampler epoch')


def test_basicsr_utils_options_init_dist_is_as_expected():
    _, options, dist_util = _upstream()
    name = 'basicsr.utils.options.init_dist'
    _expect(getattr(options, 'init_dist', None) is dist_util.init_dist, name, 'it is no longer dist_util.init_dist')
    _expect(
        _parameters(dist_util.init_dist) == _parameters(compat.init_dist), name,
        f'its signature is {inspect.signature(dist_util.init_dist)}, the replacement takes '
        f'{inspect.signature(compat.init_dist)}')
    _expect(_calls(options.parse_options, 'init_dist'), name, 'parse_options no longer calls it by that name')
    source = inspect.getsource(options.parse_options)
    _expect('init_dist(args.launcher)' in source, name, 'parse_options calls it differently')


def test_swaps_last_only_as_long_as_the_pipeline():
    train, options, _ = _upstream()
    originals = (train.load_resume_state, train.create_train_val_dataloader, options.init_dist)
    with pytest.raises(KeyboardInterrupt):
        with compat.pipeline_fixes() as run:
            assert train.load_resume_state == run.load_resume_state
            assert train.create_train_val_dataloader == run.create_train_val_dataloader
            assert options.init_dist is compat.init_dist
            raise KeyboardInterrupt
    assert (train.load_resume_state, train.create_train_val_dataloader, options.init_dist) == originals


def test_importing_the_plugin_changes_nothing_in_basicsr():
    """This process imported gradnet_arch (pytest is its main program): BasicSR's functions are its own."""
    train, options, dist_util = _upstream()
    assert 'gradnet_arch' in sys.modules and not compat.running_upstream_script()
    assert options.init_dist is dist_util.init_dist
    assert train.load_resume_state.__module__ == 'basicsr.train'
    assert compat.install_upstream_script_fixes() is False and options.init_dist is dist_util.init_dist


@pytest.mark.parametrize('argv, expected', [
    (['python', '-m', 'basicsr.train', '-opt', 'x.yml'], True),
    (['python', '-u', '-X', 'utf8', '-mbasicsr.test'], True),
    (['python', '-m', 'gradnet_arch.train', '-m', 'basicsr.train'], False),
    (['python', 'my_script.py', '-m', 'basicsr.train'], False),
    (['python', '-c', 'pass', '-m', 'basicsr.train'], False),
])
def test_upstream_module_from_the_command_line(argv, expected, monkeypatch):
    monkeypatch.setattr(sys, 'orig_argv', argv, raising=False)
    monkeypatch.setitem(sys.modules, '__main__', types.ModuleType('__main__'))
    assert compat.running_upstream_script() is expected


def test_upstream_script_file_is_recognised(monkeypatch):
    import basicsr

    monkeypatch.setattr(sys, 'orig_argv', ['python', 'train.py'], raising=False)
    for script, expected in (('train.py', True), ('test.py', True), ('setup.py', False)):
        main = types.ModuleType('__main__')
        main.__file__ = os.path.join(os.path.dirname(basicsr.__file__), script)
        monkeypatch.setitem(sys.modules, '__main__', main)
        assert compat.running_upstream_script() is expected, script


@NO_CUDA
def test_upstream_train_script_gets_the_gloo_init_dist(tmp_path):
    """Upstream's `basicsr/train.py --launcher pytorch` reaches the plugin's init_dist (here it says torchrun is
    missing; upstream's own stops with KeyError: 'RANK' before gloo could be used)."""
    import basicsr

    opt_file = write_yaml({'name': 'x'}, tmp_path / 'x.yml')
    train_py = os.path.join(os.path.dirname(basicsr.__file__), 'train.py')
    proc = run_python([train_py, '-opt', opt_file, '--launcher', 'pytorch'], cwd=str(tmp_path))
    assert proc.returncode != 0
    assert '--launcher pytorch expects the environment set by torchrun' in proc.stderr, proc.stderr[-2000:]


def test_resume_point_reaches_the_data_loader(image_dirs, tmp_path, monkeypatch):
    """PipelineRun hands what the resume loader found (iteration 6, epoch 1) to the data loader, whose sampler then
    starts epoch 1 where the interrupted run stopped; nothing is left in `opt`."""
    from basicsr.utils import get_root_logger
    from basicsr.utils.options import parse_options

    opt = make_train_options('resume', image_dirs, stage1_network())
    opt['path']['experiments_root'] = str(tmp_path / 'experiments' / 'resume')
    monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', write_yaml(opt, tmp_path / 'resume.yml'), '--auto_resume'])
    opt, _ = parse_options(str(tmp_path), is_train=True)
    os.makedirs(opt['path']['training_states'])
    os.makedirs(opt['path']['models'])
    torch.save({
        'iter': 6,
        'epoch': 1,
        'optimizers': [],
        'schedulers': []
    }, os.path.join(opt['path']['training_states'], '6.state'))
    torch.save({'params': {}}, os.path.join(opt['path']['models'], 'net_g_6.pth'))
    keys = set(opt)

    run = compat.PipelineRun()
    assert run.load_resume_state(opt)['iter'] == 6
    assert run.resume == ResumePoint(iteration=6, epoch=1) and set(opt) == keys
    logger = get_root_logger()
    _, sampler, _, _, _ = run.create_train_val_dataloader(opt, logger)
    _, fresh, _, _, _ = create_train_val_dataloader(opt, logger)
    # 4 images x enlarge ratio 2 = 8 samples, batch 2: 4 iterations per epoch, so iterations 5 and 6 are done
    sampler.set_epoch(1)
    fresh.set_epoch(1)
    assert list(sampler) == list(fresh)[4:] and len(sampler) == 4
    sampler.set_epoch(2)
    fresh.set_epoch(2)
    assert list(sampler) == list(fresh)  # later epochs start at their beginning
