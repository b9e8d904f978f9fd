"""A small reader and writer of the `.safetensors` format, so that no extra package is needed to use it.

Layout of a file: an 8-byte little-endian unsigned header length N; N bytes of UTF-8 JSON mapping each tensor name to
`{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` (offsets relative to the data that follows the
header), plus an optional `"__metadata__"` map of str to str; then the raw little-endian tensor bytes, packed without
gaps or overlaps. Nothing in the file is executed on reading, which is the point of the format.
"""
import json
import os
import struct
import sys
import torch

from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import BadFileError, OptionError

DTYPES = {
    'F64': torch.float64,
    'F32': torch.float32,
    'F16': torch.float16,
    'BF16': torch.bfloat16,
    'I64': torch.int64,
    'I32': torch.int32,
    'I16': torch.int16,
    'I8': torch.int8,
    'U8': torch.uint8,
    'BOOL': torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
METADATA_KEY = '__metadata__'
# The reference implementation's limit; a larger "header" means a corrupt length field, not a real header.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def _check_little_endian():
    # Tensors are stored little-endian and viewed in place; a big-endian host would need byte swapping.
    if sys.byteorder != 'little':  # pragma: no cover - no big-endian CI machine
        raise OptionError('safetensors files can only be read and written on little-endian machines here.')


def write_safetensors(path, tensors, metadata=None):
    """Write tensors to a `.safetensors` file atomically (a temporary file renamed into place).

    Args:
        path (str): Output file.
        tensors (dict[str, Tensor]): Named dense tensors of a dtype in DTYPES (F64, F32, F16, BF16, I64, I32, I16,
            I8, U8, BOOL). They are copied to the CPU; tensors sharing memory are written as separate copies.
        metadata (dict[str, str] | None): Free-form string metadata stored under `__metadata__`. Default: None.
    """
    _check_little_endian()
    header = {}
    if metadata:
        bad = [key for key, value in metadata.items() if not isinstance(key, str) or not isinstance(value, str)]
        if bad:
            raise OptionError(f'safetensors metadata must map str to str; not so for {bad[:5]}. '
                              f'Encode other values as JSON strings.')
        header[METADATA_KEY] = dict(metadata)
    blobs = []
    offset = 0
    for name, tensor in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise OptionError(f'Cannot store a tensor named {name!r} in a safetensors file.')
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise OptionError(f'safetensors stores dense tensors only; {name!r} is a {type(tensor).__name__}.')
        if tensor.dtype not in DTYPE_NAMES:
            raise OptionError(f'Cannot store tensor {name!r} of dtype {tensor.dtype} in a safetensors file; '
                              f'supported: {", ".join(str(d) for d in DTYPE_NAMES)}.')
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        blob = flat.view(torch.uint8).numpy().tobytes()
        header[name] = {
            'dtype': DTYPE_NAMES[tensor.dtype],
            'shape': list(tensor.shape),
            'data_offsets': [offset, offset + len(blob)]
        }
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(',', ':')).encode('utf-8')
    header_bytes += b' ' * (-len(header_bytes) % 8)  # padding with spaces keeps the data 8-byte aligned
    path = str(path)
    with atomic_open(path) as f:
        f.write(struct.pack('<Q', len(header_bytes)))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def read_safetensors(path):
    """Read and validate a `.safetensors` file.

    Args:
        path (str): The file.

    Returns:
        tuple[dict[str, Tensor], dict[str, str]]: The tensors (in file order, on the CPU) and the metadata ({} when
        the file has none).

    Raises:
        BadFileError: The file is truncated or its header is not valid (length past the end of the file, bad JSON,
            unknown dtype, offsets out of range, overlapping or leaving gaps, byte counts that do not fit the shape).
    """
    _check_little_endian()
    path = str(path)

    def bad(reason):
        return BadFileError(f'{path} is not a valid safetensors file: {reason}. The file is corrupt or truncated; '
                            f'download or export it again.')

    size = os.path.getsize(path)
    with open(path, 'rb') as f:
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
        except RecursionError:
            # a hostile header ([[[[... a hundred thousand levels deep); a real one is three levels deep
            raise bad('its JSON header is nested too deeply to be a safetensors header') from None
        if not isinstance(header, dict):
            raise bad(f'its header is a JSON {type(header).__name__}, not an object')
        metadata = header.pop(METADATA_KEY, None) or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise bad('its __metadata__ is not a map of strings to strings')
        try:
            entries = [(name, _parse_entry(name, info, bad)) for name, info in header.items()]
        except RecursionError:  # nesting just under the decoder's limit, met again in an error message's repr
            raise bad('its JSON header is nested too deeply to be a safetensors header') from None
        data = f.read()
    data_len = size - 8 - header_len
    # The tensors must tile the data exactly, as the reference implementation requires.
    expected_begin = 0
    for name, (_, _, begin, end) in sorted(entries, key=lambda item: item[1][2:]):
        if begin < expected_begin:
            raise bad(f'tensor {name!r} (bytes {begin}-{end}) overlaps the tensor before it (which ends at '
                      f'{expected_begin})')
        if begin > expected_begin:
            raise bad(f'there is a gap of unused bytes {expected_begin}-{begin} before tensor {name!r}')
        expected_begin = end
    if expected_begin > data_len:
        raise bad(f'the tensors need {expected_begin} bytes of data but the file holds {data_len} after the header '
                  f'(truncated?)')
    if expected_begin < data_len:
        raise bad(f'{data_len - expected_begin} bytes after the last tensor are not described by the header')
    tensors = {}
    for name, (dtype, shape, begin, end) in entries:
        if end == begin:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            # A fresh bytearray per tensor: writable and aligned for its dtype (offsets in the file need not be).
            tensors[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype).reshape(shape)
    return tensors, dict(metadata)


def _parse_entry(name, info, bad):
    """Check one header entry; returns (torch dtype, shape, begin, end)."""
    if not isinstance(info, dict) or set(info) != {'dtype', 'shape', 'data_offsets'}:
        raise bad(f'the entry of tensor {name!r} is not {{dtype, shape, data_offsets}}: {str(info)[:200]}')
    dtype = DTYPES.get(info['dtype'])
    if dtype is None:
        raise bad(f'tensor {name!r} has unknown dtype {info["dtype"]!r} (known: {", ".join(DTYPES)})')
    shape, offsets = info['shape'], info['data_offsets']
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad(f'tensor {name!r} has an invalid shape {shape!r}')
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            or offsets[1] < offsets[0]):
        raise bad(f'tensor {name!r} has invalid data_offsets {offsets!r}')
    begin, end = offsets
    numel = 1
    for dim in shape:
        numel *= dim
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if end - begin != nbytes:
        raise bad(f'tensor {name!r} of dtype {info["dtype"]} and shape {shape} needs {nbytes} bytes but its '
                  f'data_offsets {offsets} span {end - begin}')
    return dtype, shape, begin, end
