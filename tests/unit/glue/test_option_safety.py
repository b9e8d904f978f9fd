"""Option files are read with the safe YAML loader only: a `!!python/...` tag is refused (exit 2, the tag and its
line named) before anything parses the file unsafely, and BasicSR gets exactly the options that were checked."""
import os
import pytest
import sys
import yaml
from conftest import run_python, write_images
from tiny_options import make_test_options, make_train_options, stage1_network, write_yaml

from gradnet_arch.errors import OptionError, UnsafeFileError
from gradnet_arch.option_check import check_option_file, load_options, read_option_file, safe_option_loading

ENTRY_POINTS = {'gradnet-train': 'gradnet_arch.train', 'gradnet-test': 'gradnet_arch.test'}


def run_entry_point(name, args, cwd):
    """The installed console script (what a user types), or `python -m` where the scripts are not installed."""
    script = os.path.join(os.path.dirname(sys.executable), name)
    command = [script] if os.path.isfile(script) else ['-m', ENTRY_POINTS[name]]
    return run_python(command + list(args), cwd=str(cwd), timeout=300)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip()]


def hostile_file(path, marker):
    """A valid-looking option file whose line 4 creates `marker` when loaded with PyYAML's full loader."""
    opt = make_train_options('hostile', {'train': 'data/train', 'val': 'data/val'}, stage1_network())
    del opt['manual_seed']
    lines = yaml.safe_dump(opt, sort_keys=False).splitlines()
    assert lines[2].startswith('num_gpu:')
    lines.insert(3, f'manual_seed: !!python/object/apply:os.system ["touch {marker}"]')
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.mark.parametrize('entry_point', sorted(ENTRY_POINTS))
def test_python_tag_is_refused_and_never_run(entry_point, tmp_path):
    marker = tmp_path / 'MARKER'
    opt_file = hostile_file(tmp_path / 'hostile.yml', marker)
    proc = run_entry_point(entry_point, ['-opt', opt_file], tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith('Error: ') and 'Traceback' not in proc.stderr
    assert '!!python/object/apply:os.system' in lines[0] and 'hostile.yml, line 4' in lines[0]
    assert not marker.exists()
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'results').exists()


def test_the_payload_is_live_under_basicsr_own_loader(tmp_path):
    """What upstream's basicsr/train.py does with the same file: BasicSR's yaml_load runs the tag."""
    from basicsr.utils.options import yaml_load

    marker = tmp_path / 'MARKER'
    opt_file = hostile_file(tmp_path / 'hostile.yml', marker)
    yaml_load(opt_file)
    assert marker.exists()


@pytest.mark.parametrize('tag', [
    '!!python/object/apply:os.system ["true"]', '!!python/object/new:subprocess.Popen [["true"]]',
    '!!python/name:os.system', '!!python/module:os', '!!python/tuple [1, 2]'
])
def test_every_python_tag_is_named_with_its_line(tag):
    with pytest.raises(UnsafeFileError) as info:
        load_options(f'name: run\nmodel_type: GradNetModel\nx: {tag}\n', 'f.yml')
    assert tag.split()[0] in str(info.value) and 'f.yml, line 3' in str(info.value)


def test_standard_tags_and_merge_keys_still_load():
    """BasicSR's option files use `!!float 1e-3`; YAML anchors and merge keys are standard too."""
    opt = load_options('lr: !!float 1e-3\nn: !!int "3"\nbase: &b {a: 1}\nd:\n  <<: *b\n  c: 2\n')
    assert opt['lr'] == 0.001 and isinstance(opt['lr'], float) and opt['n'] == 3
    assert dict(opt['d']) == {'a': 1, 'c': 2}


@pytest.mark.parametrize(
    'text,expected',
    [('a: !custom 3\n', 'unknown YAML tag !custom'),
     ('a: 1\nb: 2\na: 3\n', "line 3: not valid YAML: duplicate key 'a'"), ('a: [1, 2\n', 'not valid YAML'),
     ('a: &a [x, x, x, x, x, x, x, x, x, x]\n' + ''.join(f'{c}: &{c} [{", ".join([f"*{p}"] * 10)}]\n'
                                                         for p, c in zip('abcdef', 'bcdefg')), 'YAML aliases')])
def test_other_yaml_problems_are_one_clear_error(text, expected):
    with pytest.raises(OptionError) as info:
        load_options(text, 'f.yml')
    assert expected in str(info.value)


def test_not_an_option_file(tmp_path):
    (tmp_path / 'binary.yml').write_bytes(b'\xff\xfe\x00garbage')
    with pytest.raises(OptionError, match='not UTF-8 text'):
        read_option_file(str(tmp_path / 'binary.yml'))
    with pytest.raises(OptionError, match='not a regular file'):
        read_option_file(str(tmp_path))


@pytest.fixture
def tiny_train_file(tmp_path):
    dirs = {'train': write_images(tmp_path / 'train', 2), 'val': write_images(tmp_path / 'val', 1)}
    return write_yaml(make_train_options('safe', dirs, stage1_network()), tmp_path / 'opt.yml')


def test_basicsr_gets_exactly_the_checked_options(tiny_train_file, tmp_path, monkeypatch):
    """Inside the entry point BasicSR's own parse_options reads the options through the safe path: even a file
    replaced by a hostile one after the check yields the checked options, and nothing runs."""
    from basicsr.utils.options import parse_options

    from gradnet_arch.cli import run_pipeline

    marker = tmp_path / 'MARKER'
    seen = {}

    def pipeline(root_path):
        hostile_file(tmp_path / 'opt.yml', marker)  # the file changes after it was checked
        seen['opt'], _ = parse_options(root_path, is_train=True)

    monkeypatch.chdir(tmp_path)
    run_pipeline(pipeline, ['-opt', tiny_train_file, '--force_yml', 'train:ema_decay=0.5'], is_train=True)
    assert not marker.exists()
    assert seen['opt']['manual_seed'] == 7 and seen['opt']['train']['ema_decay'] == 0.5
    assert seen['opt']['train']['optim_g']['lr'] == 0.001
    # outside the entry point BasicSR's loader is its own again
    import basicsr.utils.options
    assert basicsr.utils.options.yaml_load.__module__ == 'basicsr.utils.options'


def test_safe_option_loading_refuses_tags_for_any_file(tmp_path):
    import basicsr.utils.options

    marker = tmp_path / 'MARKER'
    path = hostile_file(tmp_path / 'other.yml', marker)
    with safe_option_loading():
        with pytest.raises(UnsafeFileError):
            basicsr.utils.options.yaml_load(path)
        with pytest.raises(UnsafeFileError):  # BasicSR's yaml_load also parses a string that is not a file name
            basicsr.utils.options.yaml_load('x: !!python/object/apply:os.system ["true"]')
    assert not marker.exists()


@pytest.mark.parametrize('entry,expected', [
    ("name=[__import__('os').system('touch MARKER')]", 'must be a literal list'),
    ('train"]=__import__("os").system("touch MARKER")#=1', 'one "="'),
    ('train"]["x"]=1', 'key path must be names'),
    ('nosuch:total_iter=3', 'no section nosuch'),
    ('train:total_iter=0', 'train.total_iter is 0'),
])
def test_force_yml_runs_no_code_and_is_checked(entry, expected, tiny_train_file, tmp_path, monkeypatch, capsys):
    """BasicSR builds a Python statement from each --force_yml entry and exec()s it (values starting with [ are
    eval()ed): entries that are more than a key path and a literal value are refused before BasicSR sees them."""
    from gradnet_arch import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        train.main(['-opt', tiny_train_file, '--force_yml', entry])
    err = capsys.readouterr().err
    assert info.value.code == 2 and expected in err and len(error_lines(err)) == 1
    assert not (tmp_path / 'MARKER').exists() and not (tmp_path / 'experiments').exists()


def test_option_check_command(tiny_train_file, tmp_path):
    marker = tmp_path / 'MARKER'
    bad = hostile_file(tmp_path / 'hostile.yml', marker)
    proc = run_python(['-m', 'gradnet_arch.option_check', tiny_train_file, bad], cwd=str(tmp_path), timeout=300)
    assert f'{tiny_train_file}: ok' in proc.stdout, proc.stderr
    assert proc.returncode == 2 and '!!python/object/apply:os.system' in proc.stderr and not marker.exists()


def test_check_option_file_returns_what_it_read(tiny_train_file):
    path, opt = check_option_file(['-opt', tiny_train_file, '--auto_resume'], is_train=True)
    assert path == tiny_train_file and opt['name'] == 'safe'
    assert check_option_file(['--auto_resume']) is None  # BasicSR's parser reports the missing -opt


def test_test_file_through_the_check(tmp_path):
    opt = make_test_options('t', str(tmp_path), stage1_network(), str(tmp_path / 'net.pth'))
    path = write_yaml(opt, tmp_path / 'test.yml')
    check_option_file(['-opt', path], is_train=False)
    opt['val']['save_img'] = 'yes'
    write_yaml(opt, tmp_path / 'test.yml')
    with pytest.raises(OptionError, match=r"val.save_img is 'yes'; it must be true or false"):
        check_option_file(['-opt', path], is_train=False)
