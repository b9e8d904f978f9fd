"""Reading torch files (checkpoints, training states) with torch's safe loader, and saying why one was refused.

torch's own message for a refused file advises retrying with `weights_only=False` (or allow-listing the class),
which would run whatever the pickle holds; these messages never pass that advice on.
"""
import os
import pickle
import re
import torch
import warnings

from gradnet_arch.errors import BadFileError, MissingFileError, UnsafeFileError

_GLOBAL = re.compile(r'GLOBAL ([\w.]+)')
# Lines of torch's messages that are advice (how to load the file anyway, where to read more), not the reason.
_ADVICE = ('weights_only', 'trust', 'file an issue', 'documentation', 'safe_globals', 'two options')


def refused_global(error):
    """The `module.name` the safe unpickler refused to import, or None when `error` is not such a refusal."""
    match = _GLOBAL.search(str(error)) if isinstance(error, pickle.UnpicklingError) else None
    return match.group(1) if match else None


def load_error_reason(error):
    """One short line of torch.load's error saying what went wrong, without torch's advice on loading it anyway."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not any(word in line for word in _ADVICE)]
    reason = next((line for line in reasons if 'Unsupported operand' in line), reasons[0] if reasons else '')
    reason = reason.replace('WeightsUnpickler error: ', '')
    return f'{type(error).__name__}: {reason[:200]}' if reason else type(error).__name__


def unsafe_message(what, path, name):
    """The message for a pickle that references `name`: refused for safety, with no hint at loading it anyway."""
    return (f'{what} {path} holds objects other than tensors and plain containers (it references {name}); it is not '
            f'loaded, for safety, because unpickling such a file can run arbitrary code.')


def safe_torch_load(path, what='file', map_location='cpu', allowed_globals=()):
    """`torch.load(path, weights_only=True)` with one-line errors that name the file.

    Args:
        path (str): The file.
        what (str): What the file is, for messages ("resume state", "checkpoint", ...).
        map_location: As torch.load's. Default: 'cpu'.
        allowed_globals (sequence): Classes the file may hold besides tensors and plain containers
            (torch.serialization.safe_globals). Default: none.

    Returns:
        The loaded object.

    Raises:
        MissingFileError: No such file.
        UnsafeFileError: The pickle references other Python objects (it is never unpickled).
        BadFileError: Unreadable, corrupt, truncated or not a torch file.
    """
    if not os.path.isfile(path):
        raise MissingFileError(f'{what} not found: {path}.')
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allowed_globals)):
            warnings.simplefilter('ignore', UserWarning)  # pickle-protocol notes: irrelevant to the user
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch.load raises anything from OSError to KeyError on a foreign file
        name = refused_global(error)
        if name is not None:
            raise UnsafeFileError(unsafe_message(what, path, name)) from None
        raise BadFileError(f'Cannot read {what} {path} ({load_error_reason(error)}): it is corrupt, truncated or not '
                           f'a PyTorch checkpoint.') from None
