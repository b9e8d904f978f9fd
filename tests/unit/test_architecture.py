"""docs/architecture.md stays true: no module imports a layer above its own."""
import ast
import os
import pytest
from conftest import REPO

BASE = {'errors', 'atomic_io', 'common', 'precision', 'safe_load', 'registry', 'version'}
METHOD = {'archs', 'losses', 'data', 'metrics'}
WEIGHTS = {'pretrained'}
TRAINING = {'models', 'compat', 'resumable_data', 'option_check', 'cli', 'train', 'test', 'demo'}
TOOLS = {'denoise', 'benchmark', 'submit', 'export', 'prep', 'integrations'}
LAYERS = [BASE, METHOD, WEIGHTS, TRAINING, TOOLS]
TOOL_EDGES = {('benchmark', 'denoise'), ('submit', 'prep'), ('export', 'integrations')}
PACKAGE = os.path.join(REPO, 'gradnet_arch')


def _layer(part):
    return next(i for i, members in enumerate(LAYERS) if part in members)


def _modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, PACKAGE)[:-3].split(os.sep)
                if parts != ['__init__'] and parts != ['__main__']:
                    yield path, parts[0]


def _imports(path):
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            if name.startswith('gradnet_arch.'):
                yield name.split('.')[1]


def test_every_package_part_has_a_layer():
    parts = {part for _, part in _modules()}
    known = set().union(*LAYERS)
    assert parts <= known, f'add {sorted(parts - known)} to docs/architecture.md and LAYERS here'
    assert known <= parts, f'gone from the package: {sorted(known - parts)}'


@pytest.mark.parametrize('path,part', list(_modules()), ids=lambda v: os.path.relpath(v, REPO) if '/' in v else v)
def test_no_module_imports_a_layer_above_its_own(path, part):
    for target in _imports(path):
        if target == part:
            continue
        mine, theirs = _layer(part), _layer(target)
        if mine == theirs == LAYERS.index(TOOLS):
            assert (part, target) in TOOL_EDGES, f'{path}: tool {part} imports tool {target} (not in TOOL_EDGES)'
        assert theirs <= mine, f'{path} ({part}, layer {mine + 1}) imports {target} (layer {theirs + 1})'


def test_archs_open_no_files():
    for folder, _, files in os.walk(os.path.join(PACKAGE, 'archs')):
        for name in files:
            if name.endswith('.py'):
                text = open(os.path.join(folder, name), encoding='utf-8').read()
                assert 'torch.load' not in text and 'open(' not in text, f'archs/{name} reads a file'
