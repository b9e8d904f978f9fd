"""Loading GradNet outside this package: spandrel (chaiNNer, ComfyUI, ...) in `gradnet_arch.integrations.spandrel`.

The optional packages each integration needs are extras of the distribution (`[spandrel]`, `[onnx]`, `[hub]`);
`require` turns a missing one into a one-line error that names the extra to install.
"""
import importlib

from gradnet_arch.errors import UserError


class MissingExtraError(UserError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module, extra, what):
    """Import `module`, or raise MissingExtraError naming `pip install "gradnet-basicsr[extra]"`.

    Args:
        module (str): The import name (`spandrel`, `onnxruntime`, ...).
        extra (str): The distribution's extra that installs it.
        what (str): What needs it, for the message ("ONNX export", ...).

    Returns:
        module: The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(f'{what} needs the optional package {module!r}, which is not installed ({error}); '
                                f'install it with: pip install "gradnet-basicsr[{extra}]"') from None
