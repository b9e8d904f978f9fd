"""The autoload hook: BasicSR's registries see the plugin in any interpreter, for regular and editable installs."""
import glob
import json
import os
import pytest
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from conftest import REPO, run_python

PTH = 'gradnet_basicsr_autoload.pth'
CHECK = ('import basicsr.utils.registry as r, gradnet_arch, gradnet_arch.losses as l; '
         'print(all(n in reg for reg, n in ((r.ARCH_REGISTRY, "GradNet"), (r.ARCH_REGISTRY, "MSKResNet"), '
         '(r.LOSS_REGISTRY, "GradientConsistencyLoss"), (r.MODEL_REGISTRY, "GradNetModel"), '
         '(r.DATASET_REGISTRY, "GaussianNoiseDataset")))); print(gradnet_arch.__file__); print(l.__file__)')


def setup_module():
    # The .pth must be in the interpreter's site-packages for these tests to mean anything.
    assert any(os.path.isfile(os.path.join(d, PTH)) for d in site.getsitepackages()), 'install the package first'


def test_basicsr_import_registers_everything(tmp_path):
    proc = run_python(['-c', CHECK], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == 'True'


def test_costs_nothing_without_basicsr(tmp_path):
    """Start-up imports only the tiny hook module: no torch, numpy, basicsr or plugin until basicsr is imported."""
    code = 'import sys, json; print(json.dumps(sorted(sys.modules)))'
    with_hook = run_python(['-c', code], cwd=str(tmp_path))
    without = run_python(['-c', code], cwd=str(tmp_path), env={'GRADNET_BASICSR_AUTOLOAD': '0'})
    extra = set(eval(with_hook.stdout)) - set(eval(without.stdout))
    assert extra <= {'gradnet_basicsr_autoload', 'importlib.abc', 'importlib._abc', 'warnings'}, extra
    for heavy in ('torch', 'numpy', 'basicsr', 'gradnet_arch', 'cv2'):
        assert heavy not in eval(with_hook.stdout)
    finder = run_python(['-c', 'import sys; print([type(f).__name__ for f in sys.meta_path])'], cwd=str(tmp_path))
    assert 'BasicsrHookFinder' in finder.stdout


def test_disabled_by_environment(tmp_path):
    proc = run_python(['-c', 'import basicsr.utils.registry as r; print("GradNet" in r.ARCH_REGISTRY)'],
                      cwd=str(tmp_path),
                      env={'GRADNET_BASICSR_AUTOLOAD': '0'})
    assert proc.returncode == 0 and proc.stdout.strip() == 'False'


def test_broken_plugin_never_breaks_basicsr(tmp_path):
    """If the plugin cannot be imported, BasicSR still imports and a warning says why."""
    fake = tmp_path / 'fake' / 'gradnet_arch'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('raise RuntimeError("simulated plugin failure")\n')
    proc = run_python(['-c', 'import basicsr.utils.registry as r; print(len(list(r.ARCH_REGISTRY)) > 10)'],
                      cwd=str(tmp_path),
                      env={'PYTHONPATH': str(tmp_path / 'fake')})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'True'
    assert 'GradNet plugin could not be loaded' in proc.stderr and 'simulated plugin failure' in proc.stderr


def test_stale_pth_is_silent(tmp_path):
    """A .pth left behind after the module is gone must not print errors at every interpreter start."""
    pth = next(os.path.join(d, PTH) for d in site.getsitepackages() if os.path.isfile(os.path.join(d, PTH)))
    line = open(pth).read().replace('gradnet_basicsr_autoload', 'gradnet_basicsr_autoload_removed')
    proc = run_python(['-c', line], cwd=str(tmp_path))
    assert proc.returncode == 0 and proc.stderr == ''


def test_plugin_imported_first_registers_once(tmp_path):
    """`import gradnet_arch` before basicsr (the plugin imports basicsr, which triggers the hook) and a reload."""
    code = ('import importlib, gradnet_arch, basicsr.utils.registry as r; '
            'importlib.reload(importlib.import_module("gradnet_arch.archs.gradnet_arch")); '
            'print(sum(1 for n, _ in r.ARCH_REGISTRY if n == "GradNet"))')
    proc = run_python(['-c', code], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == '1'


def _build(kind, out_dir):
    """Build the regular or PEP 660 editable wheel with setuptools' own build backend, as pip does.

    A regular wheel is built from a copy of the source tree so that no stale build/ folder can leak into it.
    """
    source = REPO
    if kind == 'regular':
        source = os.path.join(out_dir, 'src')
        ignore = shutil.ignore_patterns('.venv', '.git', 'build', 'dist', '*.egg-info', '__pycache__', 'experiments',
                                        'results', 'datasets')
        shutil.copytree(REPO, source, ignore=ignore)
    hook = 'build_editable' if kind == 'editable' else 'build_wheel'
    code = f'from setuptools import build_meta as b; b.{hook}({str(out_dir)!r})'
    subprocess.run([sys.executable, '-c', code], cwd=source, check=True, capture_output=True)
    return glob.glob(os.path.join(out_dir, '*.whl'))[0]


def test_regular_wheel_layout(tmp_path):
    names = zipfile.ZipFile(_build('regular', tmp_path)).namelist()
    assert PTH in names and 'gradnet_basicsr_autoload.py' in names
    assert 'gradnet_arch/losses/gradient_loss.py' in names and 'gradnet_arch/archs/gradnet_arch.py' in names
    for package in ('prep', 'pretrained', 'denoise', 'benchmark', 'submit', 'metrics'):  # every subpackage ships
        assert f'gradnet_arch/{package}/__init__.py' in names, package
    shipped = json.load(open(os.path.join(REPO, 'gradnet_arch', 'pretrained', 'weights', 'manifest.json')))['models']
    assert 'gradnet_arch/pretrained/weights/manifest.json' in names
    for entry in shipped.values():  # and the shipped weights with it: the .safetensors and BasicSR's .pth
        assert entry['file'].endswith('.safetensors') and entry['basicsr']['file'].endswith('.pth')
        for record in (entry, entry['basicsr']):
            assert f'gradnet_arch/pretrained/weights/{record["file"]}' in names
    assert not any(n.startswith('losses/') or n.startswith('tests/') or n.startswith('options/') for n in names)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['regular', 'editable'])
def test_install_kinds_in_a_fresh_environment(kind, tmp_path):
    """Install the wheel pip would build into a new, empty virtual environment (which sees torch and BasicSR through
    a plain path entry, so the current environment's own hook is not active), then check the registries there."""
    wheel = _build(kind, tmp_path / 'wheel')
    env_dir = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(env_dir)], check=True)
    python = env_dir / 'bin' / 'python'
    target = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                            capture_output=True,
                            text=True,
                            check=True).stdout.strip()
    zipfile.ZipFile(wheel).extractall(target)  # a pure wheel's files go to purelib, .pth files included
    with open(os.path.join(target, 'zz_dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')  # a path line: that folder's own .pth files do not run
    proc = subprocess.run([str(python), '-c', CHECK], cwd=str(tmp_path), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    registered, plugin_file, losses_file = proc.stdout.splitlines()
    assert registered == 'True'
    if kind == 'regular':
        assert plugin_file.startswith(target) and losses_file == os.path.join(target, 'gradnet_arch', 'losses',
                                                                              '__init__.py')
        assert not os.path.exists(os.path.join(target, 'losses'))
    else:
        assert plugin_file == os.path.join(REPO, 'gradnet_arch', '__init__.py')
        assert losses_file == os.path.join(REPO, 'gradnet_arch', 'losses', '__init__.py')
    no_hook = subprocess.run(
        [str(python), '-c', 'import basicsr.utils.registry as r; print("GradNet" in r.ARCH_REGISTRY)'],
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        env=dict(os.environ, GRADNET_BASICSR_AUTOLOAD='0'))
    assert no_hook.stdout.strip() == 'False'


@pytest.mark.skipif(
    not os.environ.get('GRADNET_TEST_PYPI_BASICSR'),
    reason='set GRADNET_TEST_PYPI_BASICSR to a --target install of PyPI basicsr==1.4.2 (.ci/run does)')
def test_pypi_basicsr_release_imports_and_sees_plugin(tmp_path):
    """PyPI's basicsr 1.4.2 imports the module torchvision 0.17 removed; with the plugin installed it works."""
    env = {'PYTHONPATH': os.environ['GRADNET_TEST_PYPI_BASICSR']}
    code = 'import basicsr, basicsr.utils.registry as r; print(basicsr.__version__, "GradNet" in r.ARCH_REGISTRY)'
    proc = run_python(['-c', code], cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['1.4.2', 'True']
    proc = run_python(['-c', 'import basicsr'], cwd=str(tmp_path), env=dict(env, GRADNET_BASICSR_AUTOLOAD='0'))
    assert proc.returncode != 0 and 'functional_tensor' in proc.stderr  # the release really needs the alias
