"""`.safetensors` files through the `safetensors` package, with the checks that turn a bad file into one clear error.

The package parses and validates the format (dtypes, shapes, offsets that tile the data exactly). Around it:

- reading: the file's framing (8-byte header length, a JSON object, string metadata) is checked first with Python's
  own JSON decoder, so a truncated file or a hostile header (`[[[[...` thousands of levels deep) is a BadFileError
  that names the file; a file the package refuses gets the same form, with the reason spelled out from the header
  (which tensor's shape, offsets or bytes do not fit) where the package's own message does not name it;
- writing: only dense tensors of the dtypes below and str-to-str metadata are accepted (OptionError otherwise), tensors
  are made contiguous and CPU copies (tensors sharing memory are written as separate copies), and the file is written
  whole or not at all (atomic_io).
"""
import json
import math
import os
import struct
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes

from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import BadFileError, OptionError

# What network weights are stored in (and what the format has held since its first version).
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool)
METADATA_KEY = '__metadata__'
# The package's own limit; a larger "header" means a corrupt length field, not a real header.
MAX_HEADER_BYTES = 100 * 1024 * 1024
# Bytes per element of the format's whole-byte dtypes, to say which tensor's offsets do not fit (errors only).
ITEM_BYTES = {
    'F64': 8,
    'F32': 4,
    'F16': 2,
    'BF16': 2,
    'I64': 8,
    'I32': 4,
    'I16': 2,
    'I8': 1,
    'U64': 8,
    'U32': 4,
    'U16': 2,
    'U8': 1,
    'BOOL': 1,
    'C64': 8,
    'F8_E4M3': 1,
    'F8_E5M2': 1
}


def write_safetensors(path, tensors, metadata=None):
    """Write tensors to a `.safetensors` file atomically (a temporary file renamed into place).

    Args:
        path (str): Output file.
        tensors (dict[str, Tensor]): Named dense tensors of a dtype in DTYPES. They are copied to the CPU, contiguous;
            tensors sharing memory are written as separate copies.
        metadata (dict[str, str] | None): Free-form string metadata stored under `__metadata__`. Default: None.
    """
    data = safetensors_bytes(tensors, metadata)  # built in full first: nothing is left half-written on an error
    with atomic_open(str(path)) as f:
        f.write(data)


def safetensors_bytes(tensors, metadata=None):
    """The bytes of a `.safetensors` file (what `write_safetensors` writes), for writers that stage several files.

    Args:
        tensors (dict[str, Tensor]): As for `write_safetensors`.
        metadata (dict[str, str] | None): As for `write_safetensors`. Default: None.

    Returns:
        bytes: The whole file.
    """
    metadata = dict(metadata or {})
    bad = [key for key, value in metadata.items() if not isinstance(key, str) or not isinstance(value, str)]
    if bad:
        raise OptionError(f'safetensors metadata must map str to str; not so for {bad[:5]}. '
                          f'Encode other values as JSON strings.')
    plain, storages = {}, set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise OptionError(f'Cannot store a tensor named {name!r} in a safetensors file.')
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise OptionError(f'safetensors stores dense tensors only; {name!r} is a {type(tensor).__name__}.')
        if tensor.dtype not in DTYPES:
            raise OptionError(f'Cannot store tensor {name!r} of dtype {tensor.dtype} in a safetensors file; '
                              f'supported: {", ".join(str(d) for d in DTYPES)}.')
        tensor = tensor.detach().cpu().contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in storages:
            tensor = tensor.clone()  # the package refuses shared memory; a state dict's tied weights get two copies
        storages.add(tensor.untyped_storage().data_ptr())
        plain[name] = tensor
    return save_bytes(plain, metadata or None)


def read_safetensors(path):
    """Read and validate a `.safetensors` file.

    Args:
        path (str): The file.

    Returns:
        tuple[dict[str, Tensor], dict[str, str]]: The tensors (on the CPU) and the metadata ({} when the file has
        none).

    Raises:
        BadFileError: The file is truncated or not a valid safetensors file (the reason is in the message).
    """
    path = str(path)

    def bad(reason):
        return BadFileError(f'{path} is not a valid safetensors file: {reason}. The file is corrupt or truncated; '
                            f'download or export it again.')

    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise bad(f'it has {size} bytes, fewer than the 8-byte header length')
        (header_len, ) = struct.unpack('<Q', f.read(8))
        if header_len > size - 8:
            raise bad(f'the header length field says {header_len} bytes but only {size - 8} bytes follow it')
        if header_len > MAX_HEADER_BYTES:
            raise bad(f'the header length {header_len} is over the {MAX_HEADER_BYTES}-byte limit')
        text = f.read(header_len)
    try:
        header = json.loads(text.decode('utf-8'))
    except (UnicodeDecodeError, ValueError) as error:
        raise bad(f'its header is not valid JSON ({error})') from None
    except RecursionError:  # a real header is three levels deep
        raise bad('its JSON header is nested too deeply to be a safetensors header') from None
    if not isinstance(header, dict):
        raise bad(f'its header is a JSON {type(header).__name__}, not an object')
    metadata = header.get(METADATA_KEY) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise bad('its __metadata__ is not a map of strings to strings')
    try:
        with safe_open(path, framework='pt') as f:
            # clone: get_tensor's tensors map the file, which a later write to that path would change under them
            tensors = {name: f.get_tensor(name).clone() for name in header if name != METADATA_KEY}
    except SafetensorError as error:  # dtypes, shapes or offsets that do not describe the data
        reason = _explain(header, size - 8 - header_len)
        raise bad(reason or str(error).replace('Error while deserializing header: ', '')[:300]) from None
    return tensors, dict(metadata)


def _explain(header, data_len):
    """Which entry of a header the package refused does not fit the data, in words; None when this cannot tell."""
    spans = []
    for name, info in header.items():
        if name == METADATA_KEY:
            continue
        if not isinstance(info, dict) or set(info) != {'dtype', 'shape', 'data_offsets'}:
            return f'the entry of tensor {name!r} is not {{dtype, shape, data_offsets}}: {str(info)[:200]}'
        shape, offsets = info['shape'], info['data_offsets']
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            return f'tensor {name!r} has an invalid shape {str(shape)[:100]}'
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and o >= 0 for o in offsets)
                or offsets[1] < offsets[0]):
            return f'tensor {name!r} has invalid data_offsets {str(offsets)[:100]}'
        item = ITEM_BYTES.get(info['dtype'])
        nbytes = item * math.prod(shape) if item else None
        if nbytes is not None and offsets[1] - offsets[0] != nbytes:
            return (f'tensor {name!r} of dtype {info["dtype"]} and shape {shape} needs {nbytes} bytes but its '
                    f'data_offsets {offsets} span {offsets[1] - offsets[0]}')
        spans.append((offsets[0], offsets[1], name))
    end = 0  # the tensors must tile the data exactly
    for begin, stop, name in sorted(spans):
        if begin < end:
            return f'tensor {name!r} (bytes {begin}-{stop}) overlaps the tensor before it (which ends at {end})'
        if begin > end:
            return f'there is a gap of unused bytes {end}-{begin} before tensor {name!r}'
        end = stop
    if end > data_len:
        return f'the tensors need {end} bytes of data but the file holds {data_len} after the header (truncated?)'
    if end < data_len:
        return f'{data_len - end} bytes after the last tensor are not described by the header'
    return None


def is_safetensors(path):
    """True for a `.safetensors` file name."""
    return os.fspath(path).lower().endswith('.safetensors')
