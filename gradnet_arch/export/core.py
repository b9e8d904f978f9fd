"""`export`: the format from OUT's name, an existing output refused unless `overwrite`, then the format's writer."""
import os

from gradnet_arch.atomic_io import check_new_file, check_writable_folder
from gradnet_arch.errors import OptionError, OutputError
from gradnet_arch.export import writers
from gradnet_arch.export.source import Source

FORMATS = {'.safetensors': 'safetensors', '.pth': 'pth', '.pt': 'pth', '.onnx': 'onnx'}


def format_of(out):
    """'safetensors', 'pth', 'onnx' or 'folder' for the output name `out`."""
    text = os.fspath(out)
    ext = os.path.splitext(text.rstrip('/' + os.sep))[1].lower()
    if text.endswith(('/', os.sep)) or os.path.isdir(text) or not ext:
        return 'folder'
    if ext not in FORMATS:
        raise OptionError(f'Cannot tell the format of {text}: end it with {", ".join(FORMATS)}, or give a folder '
                          f'(a name without an extension, or ending in /) for the Hugging Face layout.')
    return FORMATS[ext]


def export(model, out, network_opt=None, param_key=None, opset=writers.DEFAULT_OPSET, overwrite=False):
    """Export `model` to `out` and check the result against `load_pretrained`'s network.

    Args:
        model (str | Source): A shipped model name, a checkpoint (.pth / .safetensors, with embedded network options
            or `network_opt`), or a BasicSR option YAML (its network_g and path.pretrain_network_g).
        out (str): The output; its extension picks the format (see the package docstring).
        network_opt (str | dict | None): Network options for a checkpoint that does not embed them. Default: None.
        param_key (str | None): The checkpoint's state dict (None: params_ema if present, else params).
        opset (int): ONNX opset (18 or later). Default: 18.
        overwrite (bool): Replace an existing file (or, for a folder, its three files). Default: False.

    Returns:
        dict: `format`, `path` and `check` (the one-line check that was run, with its tolerance).
    """
    out = os.path.expanduser(os.fspath(out))
    kind = format_of(out)
    if kind == 'folder':
        if os.path.isfile(out):
            raise OutputError(f'{out} is a file; a folder export needs a folder name (or use a file extension: '
                              f'{", ".join(FORMATS)}).')
        for name in (writers.CONFIG_FILE, writers.CARD_FILE, writers.WEIGHTS_FILE):
            check_new_file(os.path.join(out, name), overwrite)
    else:
        check_new_file(out, overwrite)
    check_writable_folder(os.path.dirname(os.path.abspath(out)))  # before loading and exporting the model
    source = model if isinstance(model, Source) else Source(model, network_opt=network_opt, param_key=param_key)
    if kind == 'onnx':
        check = writers.write_onnx(source, out, opset=opset, overwrite=overwrite)
    elif kind == 'folder':
        check = writers.write_folder(source, out, overwrite=overwrite)
    else:
        check = writers.write_state_file(source, out, overwrite=overwrite)
    return {'format': kind, 'path': out, 'check': check}
