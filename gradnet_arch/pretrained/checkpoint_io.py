"""The one reader, cleaner, writer and loader of network weights (`.pth` in BasicSR's format, or `.safetensors`),
never running a pickle.

A `.pth` checkpoint is what BasicSR's `save_network` writes, `{'params': state_dict, 'params_ema': state_dict}`, plus
two optional keys that BasicSR's `load_network` ignores: `network_g` (the network's option dict, as in an option
YAML) and `meta` (name, colour, noise level, ...). A `.safetensors` file holds one state dict under its plain names
(tensors only); the rest goes into its string metadata: `format: pt`, `param_key`, `network_g` and `meta` (JSON), and
a copy of each top-level `meta` field under its own name (a string as it is, any other value as JSON: `color: rgb`,
`sigma: 25`, `sigma_range: [0, 55]`) for readers that look at the metadata alone. `meta` is what is read back.

Everything that reads weights goes through `read_checkpoint` + `select_state_dict` (`load_weights` does both and
loads the result with `load_state`), and everything that writes them through `clean_state_dict` (and
`save_checkpoint`). `load_weights` is also installed as gradnet_arch.registry's weights loader, through which a
GradNet's builder loads its pre-denoiser's stage-1 checkpoint without the archs opening files.
"""
import io
import json
import os
import pickle
import torch
import warnings

from gradnet_arch.atomic_io import atomic_open, make_folder
from gradnet_arch.errors import BadFileError, CheckpointKeyError, MissingFileError, OptionError, UnsafeFileError
from gradnet_arch.pretrained import zoo
from gradnet_arch.pretrained.safetensors_io import is_safetensors, read_safetensors, safetensors_bytes
from gradnet_arch.registry import install_weights_loader
from gradnet_arch.safe_load import load_error_reason, refused_global

EXTENSIONS = ('.pth', '.pt', '.safetensors')
INFO_KEYS = ('network_g', 'meta')
# The metadata keys of a `.safetensors` checkpoint that are not copies of `meta` fields.
SAFETENSORS_KEYS = ('format', 'param_key') + INFO_KEYS
PARAM_KEY_ORDER = ('params_ema', 'params')
DDP_PREFIX = 'module.'
MISSING_HINT = 'Check the path (or, for a shipped model, the name).'


def save_checkpoint(path, params, params_ema=None, network_opt=None, meta=None):
    """Write a checkpoint that `read_checkpoint`, `load_pretrained` and BasicSR's `load_network` all read.

    The format follows the extension: `.pth`/`.pt` (torch.save of BasicSR's dict) or `.safetensors` (one state dict:
    `params_ema` when given, else `params`). The file is written to a temporary name and renamed into place.

    Args:
        path (str): Output file.
        params (dict[str, Tensor]): The trained weights (BasicSR's `params`).
        params_ema (dict[str, Tensor] | None): The EMA weights (`params_ema`). Passing the same dict as `params`
            costs no space in a `.pth`: torch.save writes tensors shared by both keys once. Default: None.
        network_opt (dict | None): The network's option dict (`type` plus arch options, as a YAML's `network_g`),
            so that the file alone is enough to build the network. Default: None.
        meta (dict | None): Plain, JSON-compatible information (name, colour, sigma, ...). Default: None.
    """
    path, write = _encoder(path, params, params_ema, network_opt, meta)
    make_folder(os.path.dirname(os.path.abspath(path)))  # OutputError, not a traceback, for a file in the way
    with atomic_open(path) as f:
        write(f)


def checkpoint_bytes(path, params, params_ema=None, network_opt=None, meta=None):
    """The bytes `save_checkpoint(path, ...)` would write, for writers that stage several files as one unit
    (`gradnet_arch.atomic_io.write_files`); `path` only picks the format (its extension)."""
    _, write = _encoder(path, params, params_ema, network_opt, meta)
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _encoder(path, params, params_ema, network_opt, meta):
    """Check a checkpoint's parts and return (path, a function writing the file's bytes to an open binary file)."""
    path = os.path.expanduser(str(path))
    if not path.lower().endswith(EXTENSIONS):
        raise OptionError(f'Checkpoint name {path} must end with {" or ".join(EXTENSIONS)} (the extension picks the '
                          f'format).')
    meta = dict(meta or {})
    _check_plain(meta, 'meta')
    if network_opt is not None:
        if not isinstance(network_opt, dict) or 'type' not in network_opt:
            raise OptionError('network_opt must be an option dict with a `type` (a YAML\'s network_g).')
        _check_plain(network_opt, 'network_opt')
    states = {'params': params, 'params_ema': params_ema}
    for key, state in states.items():
        if state is not None and not _is_state_dict(state):
            raise OptionError(f'{key} must be a non-empty dict of tensors (a state_dict()).')
    if params is None and params_ema is None:
        raise OptionError('save_checkpoint needs params, params_ema or both.')
    if is_safetensors(path):
        param_key = 'params_ema' if params_ema is not None else 'params'
        metadata = {'format': 'pt', 'param_key': param_key, 'meta': json.dumps(meta)}
        if network_opt is not None:
            metadata['network_g'] = json.dumps(network_opt)
        for key, value in meta.items():  # readable copies of the fields; `meta` above is what is read back
            if isinstance(key, str) and key not in SAFETENSORS_KEYS:
                metadata[key] = value if isinstance(value, str) else json.dumps(value)
        # built in full now: a state dict the format cannot hold is refused before any file is opened
        data = safetensors_bytes(clean_state_dict(states[param_key], to_cpu=True), metadata)
        return path, lambda f: f.write(data)
    # Tensors shared by `params` and `params_ema` must stay shared for torch.save to store them once.
    memo = {}
    ckpt = {key: clean_state_dict(state, to_cpu=True, memo=memo) for key, state in states.items() if state is not None}
    if network_opt is not None:
        ckpt['network_g'] = network_opt
    ckpt['meta'] = meta
    return path, lambda f: torch.save(ckpt, f)


def read_checkpoint(path, what='Checkpoint', hint=MISSING_HINT):
    """Read a checkpoint safely: torch's weights_only unpickler for `.pth`, the safetensors package for `.safetensors`.

    Args:
        path (str): A `.pth`/`.pt` file in BasicSR's format or a bare state dict, or a `.safetensors` file.
        what (str): What the file is, at the start of error messages ('Checkpoint', 'pre-denoiser checkpoint', ...).
            Default: 'Checkpoint'.
        hint (str): What to do about a missing file, appended to its message. Default: MISSING_HINT.

    Returns:
        dict: `params` and/or `params_ema` (and any other state dict the file holds under its own key), each a
        dict of tensors; `network_g` (dict | None), the embedded network options; `meta` (dict).

    Raises:
        MissingFileError: No such file.
        BadFileError: Unreadable, corrupt or truncated (or, for a file of the shipped models' folder, its size or
            SHA-256 differs from the manifest's); or a pickle holding anything but tensors and plain
            containers (UnsafeFileError: such a file could run code when unpickled, so it is refused, not executed).
    """
    path = os.path.expanduser(str(path))
    if not os.path.isfile(path):
        raise MissingFileError(f'{what} not found: {path}. {hint}')
    zoo.verify_if_shipped(path)  # a file of the shipped-models folder, read by path, is checked against the manifest
    if is_safetensors(path):
        return _read_safetensors_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it was not written with; irrelevant here
            warnings.simplefilter('ignore', UserWarning)
            obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        # The safe unpickler names the class or function it refused to import ("GLOBAL module.name"); torch's own
        # advice (retry with weights_only=False, or allow-list the class) is not passed on.
        refused = refused_global(error)
        if refused is None:
            raise _corrupt(path, error, what) from None
        raise UnsafeFileError(f'Refusing to load {path}: it holds objects other than tensors and plain containers '
                              f'(GLOBAL {refused}), and unpickling it could run arbitrary code, so it is not loaded. '
                              f'Re-save the state dicts from the code that made them with '
                              f'gradnet_arch.pretrained.save_checkpoint.') from None
    except Exception as error:  # zip/EOF/runtime errors of torch.load: the file is not a complete checkpoint
        raise _corrupt(path, error, what) from None
    if not isinstance(obj, dict):
        raise BadFileError(f'{what} {path} holds a {type(obj).__name__}, not a dict of state dicts.')
    if _is_state_dict(obj):  # a bare state dict (torch.save(net.state_dict()))
        return {'params': dict(obj), 'network_g': None, 'meta': {}}
    ckpt = {key: dict(value) for key, value in obj.items() if key not in INFO_KEYS and _is_state_dict(value)}
    if not ckpt:
        raise BadFileError(f'{what} {path} holds no state dict: its top-level keys are {sorted(map(str, obj))[:10]} '
                           f'and none is a dict of tensors. Is it a training state (.state) instead of a network?')
    network_opt = obj.get('network_g')
    ckpt['network_g'] = dict(network_opt) if isinstance(network_opt, dict) else None
    ckpt['meta'] = dict(obj['meta']) if isinstance(obj.get('meta'), dict) else {}
    return ckpt


def param_keys(ckpt):
    """The state-dict keys of a `read_checkpoint` result (`params`, `params_ema`, ...)."""
    return [key for key in ckpt if key not in INFO_KEYS]


def select_state_dict(ckpt, path, param_key=None, what='Checkpoint'):
    """Pick one state dict of a `read_checkpoint` result.

    Args:
        ckpt (dict): From `read_checkpoint`.
        path (str): The file, for error messages.
        param_key (str | None): The key; None picks `params_ema`, then `params`, then the only one there is.
        what (str): What the file is, for error messages. Default: 'Checkpoint'.

    Returns:
        tuple[str, dict[str, Tensor]]: The key used and the state dict, cleaned by `clean_state_dict`.

    Raises:
        CheckpointKeyError: No state dict under `param_key`, or several and none of them the default.
    """
    available = param_keys(ckpt)
    if param_key is None:
        param_key = next((key for key in PARAM_KEY_ORDER if key in ckpt), available[0] if len(available) == 1 else None)
        if param_key is None:
            raise CheckpointKeyError(f'{what} {path} has several state dicts ({", ".join(available)}) and none is '
                                     f'params_ema or params; pass param_key= one of them.')
    elif param_key not in available:
        raise CheckpointKeyError(f'{what} {path} has no key {param_key!r}; its state dicts are {sorted(available)}. '
                                 f'Set param_key to one of them (or to None for params_ema, else params).')
    return param_key, clean_state_dict(ckpt[param_key])


def clean_state_dict(state, to_cpu=False, memo=None):
    """The one state-dict cleaner: DDP's and DataParallel's `module.` prefixes removed from the keys.

    Args:
        state (dict[str, Tensor]): A state dict.
        to_cpu (bool): Also make each tensor a detached, contiguous CPU tensor (the usual NCHW layout, whatever the
            training memory format), as files store them. Default: False.
        memo (dict | None): With `to_cpu`, shared by the calls for several state dicts (`params` and `params_ema`) so
            that a tensor they share stays one tensor (torch.save then stores it once). Default: None.

    Returns:
        dict[str, Tensor]: The cleaned state dict, in the same order.
    """
    memo = {} if memo is None else memo
    out = {}
    for key, tensor in state.items():
        if to_cpu:
            if id(tensor) not in memo:
                memo[id(tensor)] = tensor.detach().cpu().contiguous()
            tensor = memo[id(tensor)]
        out[key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key] = tensor
    return out


def load_state(net, state, path, strict=True, what='Checkpoint'):
    """`net.load_state_dict(state)` with an error that names the file, the missing/unexpected keys and shapes.

    Args:
        net (nn.Module): The network.
        state (dict[str, Tensor]): A clean state dict (`select_state_dict`'s).
        path (str): The file it came from, for the message.
        strict (bool): Require the keys to match exactly (shapes must match either way). Default: True.
        what (str): What the file is, at the start of the message. Default: 'Checkpoint'.

    Raises:
        OptionError: The state dict does not fit the network's arch options.
    """
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f'{k}: checkpoint {tuple(state[k].shape)} vs net {tuple(own[k].shape)}' for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        details = []
        if missing:
            details.append(f'missing in the file ({len(missing)}): {", ".join(missing[:8])}')
        if unexpected:
            details.append(f'not in the net ({len(unexpected)}): {", ".join(unexpected[:8])}')
        if shapes:
            details.append(f'shape mismatches ({len(shapes)}): {"; ".join(shapes[:4])}')
        raise OptionError(
            f'{what} {path} does not match {type(net).__name__}:\n  ' + '\n  '.join(details) +
            '\nCheck that the arch options (num_in_ch, num_feat, num_modules, batch_norm, reduction, ...) '
            'are the ones the checkpoint was trained with.')
    net.load_state_dict(state, strict=strict)


def load_weights(net, path, param_key=None, strict=True, what='Checkpoint', hint=MISSING_HINT):
    """Read the checkpoint `path` and load one of its state dicts into `net` (`read_checkpoint`, `select_state_dict`
    and `load_state`, with their errors).

    This is gradnet_arch.registry's weights loader: a GradNet's builder loads its pre-denoiser's stage-1 checkpoint
    with it.

    Returns:
        str: The state-dict key that was loaded.
    """
    param_key, state = select_state_dict(read_checkpoint(path, what, hint), path, param_key, what)
    load_state(net, state, path, strict=strict, what=what)
    return param_key


install_weights_loader(load_weights)


def _read_safetensors_checkpoint(path):
    tensors, metadata = read_safetensors(path)
    param_key = metadata.get('param_key', 'params')
    info = {}
    for key in INFO_KEYS:
        try:
            info[key] = json.loads(metadata[key]) if key in metadata else None
        except ValueError as error:
            raise BadFileError(f'safetensors file {path}: its {key!r} metadata is not valid JSON ({error}).') from None
        except RecursionError:  # hostile nesting ([[[[... thousands of levels deep)
            raise BadFileError(f'safetensors file {path}: its {key!r} metadata is JSON nested too deeply to be '
                               f'options.') from None
    if info['network_g'] is not None and not isinstance(info['network_g'], dict):
        raise BadFileError(f'safetensors file {path}: its network_g metadata is not a JSON object.')
    return {param_key: tensors, 'network_g': info['network_g'], 'meta': info['meta'] or {}}


def _corrupt(path, error, what):
    # torch's messages run to many lines of advice that does not apply here (some of it unsafe); keep the reason.
    return BadFileError(f'Cannot read {_lower(what)} {path}: {load_error_reason(error)}. The file is corrupt, '
                        f'truncated or not a PyTorch checkpoint.')


def _lower(what):
    return what[:1].lower() + what[1:]


def _is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _check_plain(obj, what):
    """Options and metadata must survive JSON (safetensors) and torch's weights_only unpickler (.pth)."""
    try:
        json.dumps(obj, allow_nan=True)
    except (TypeError, ValueError) as error:
        raise OptionError(
            f'{what} must hold only dicts, lists, strings, numbers, booleans and None: {error}.') from None
