"""Alias of `gradnet_arch.losses`, kept because the design card lists `losses/` at the repository's top level.

The code lives in `gradnet_arch/losses/` (one package, no `package_dir` mapping). This folder is not installed (a
generic top-level `losses` module never lands in site-packages); it only lets `import losses` work from a checkout.
"""
from gradnet_arch.losses import *  # noqa: F401,F403
from gradnet_arch.losses import __all__  # noqa: F401
