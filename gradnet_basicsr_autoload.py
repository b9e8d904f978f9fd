"""Load the GradNet plugin into BasicSR's registries whenever `basicsr` is imported.

Installed with a one-line `gradnet_basicsr_autoload.pth`, which calls :func:`install` at interpreter start-up. That
only appends a finder to ``sys.meta_path``; it imports nothing else and does nothing until some code imports the
top-level ``basicsr`` package. Then the finder lets the normal machinery find BasicSR (site-packages, an editable
checkout, ``PYTHONPATH``), runs BasicSR's own ``__init__`` unchanged and afterwards imports ``gradnet_arch``, whose
import registers GradNet's arch, loss, model and dataset. This is what makes upstream's unmodified
``python basicsr/train.py -opt ...`` see the plugin.

Two safety rules: a failure of the plugin import is turned into a warning (BasicSR still imports and works), and
setting ``GRADNET_BASICSR_AUTOLOAD=0`` disables the hook entirely.

PyPI's ``basicsr==1.4.2`` imports ``torchvision.transforms.functional_tensor``, which torchvision 0.17 removed. While
BasicSR is being imported, and only if that module really is missing, the finder serves it as an alias of
``torchvision.transforms.functional`` (which has the same ``rgb_to_grayscale``), so that BasicSR release imports too.
"""
import importlib
import importlib.abc
import importlib.util
import os
import sys
import warnings

_PLUGIN = 'gradnet_arch'
_TARGET = 'basicsr'
_TV_LEGACY = 'torchvision.transforms.functional_tensor'


class _AfterExecLoader(importlib.abc.Loader):
    """Delegates to BasicSR's real loader, then imports the plugin."""

    def __init__(self, inner, finder):
        self.inner = inner
        self.finder = finder

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        # Restore the real loader so reloads and introspection see BasicSR's own.
        module.__spec__.loader = self.inner
        module.__loader__ = self.inner
        self.finder.basicsr_loading = True
        try:
            self.inner.exec_module(module)
        finally:
            self.finder.basicsr_loading = False
        _load_plugin()


class _TorchvisionAliasLoader(importlib.abc.Loader):
    """A new module re-exporting `torchvision.transforms.functional` (that module itself is left untouched)."""

    def create_module(self, spec):
        return None  # the default: a fresh module object

    def exec_module(self, module):
        functional = importlib.import_module('torchvision.transforms.functional')
        module.__dict__.update({k: v for k, v in vars(functional).items() if not k.startswith('__')})


class BasicsrHookFinder(importlib.abc.MetaPathFinder):
    """Meta path finder that answers only for the top-level ``basicsr`` package (and the torchvision alias)."""

    _gradnet_basicsr_hook = True  # marker: one finder per interpreter, even if this module is loaded twice

    def __init__(self):
        self.basicsr_loading = False
        self._busy = False

    def _find_elsewhere(self, fullname, path, target):
        # Ask every other finder, in order, so editable installs and PYTHONPATH behave exactly as without the hook.
        self._busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, 'find_spec'):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    return spec
        finally:
            self._busy = False
        return None

    def find_spec(self, fullname, path=None, target=None):
        if self._busy:
            return None
        if fullname == _TARGET:
            if os.environ.get('GRADNET_BASICSR_AUTOLOAD', '1') == '0':
                return None
            spec = self._find_elsewhere(fullname, path, target)
            if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
                return spec
            spec.loader = _AfterExecLoader(spec.loader, self)
            return spec
        if fullname == _TV_LEGACY and self.basicsr_loading:
            if self._find_elsewhere(fullname, path, target) is not None:
                return None  # the real module exists: never shadow it
            return importlib.util.spec_from_loader(fullname, _TorchvisionAliasLoader())
        return None


def _load_plugin():
    if _PLUGIN in sys.modules:  # being imported already (it imported basicsr first) or done: nothing to do
        return
    try:
        importlib.import_module(_PLUGIN)
    except Exception as error:  # never let the plugin break BasicSR itself
        warnings.warn(
            f'gradnet-basicsr: BasicSR was imported but the GradNet plugin could not be loaded '
            f'({type(error).__name__}: {error}). GradNet, GradientConsistencyLoss, GradNetModel and '
            f'GaussianNoiseDataset are not registered. Run `python -c "import gradnet_arch"` to see the full error.',
            RuntimeWarning,
            stacklevel=2)


def install():
    """Put the finder on ``sys.meta_path`` once. Safe to call repeatedly; never raises."""
    try:
        if os.environ.get('GRADNET_BASICSR_AUTOLOAD', '1') == '0':
            return
        if any(getattr(f, '_gradnet_basicsr_hook', False) for f in sys.meta_path):
            return
        if _TARGET in sys.modules:  # BasicSR already imported (install() called late): load the plugin now
            _load_plugin()
            return
        sys.meta_path.insert(0, BasicsrHookFinder())
    except Exception:  # pragma: no cover - start-up must never fail because of this plugin
        pass
