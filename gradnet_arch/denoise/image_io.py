"""Reading and writing photos at their own depth (8/16 bit), with alpha, upright by their EXIF orientation.

OpenCV's `IMREAD_UNCHANGED` keeps 16-bit samples and alpha but ignores the EXIF orientation of JPEG and PNG files,
while the flags that apply it convert to 8-bit BGR. So files are decoded with `IMREAD_UNCHANGED` and the Orientation
tag (0x0112) is read here from the JPEG APP1 `Exif` segment, the TIFF IFD0 or the PNG `eXIf` chunk and applied with
numpy. Some OpenCV builds (5.x) already apply the TIFF tag inside their decoder; whether this build's decoder does is
found once per format by decoding a tiny probe image, so the orientation is never applied twice.

Arrays follow OpenCV: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) BGR, (H, W, 4) BGRA; uint8 or uint16.
"""
import cv2
import functools
import numpy as np
import os
import struct
import zlib

from gradnet_arch.atomic_io import check_new_file, write_files
from gradnet_arch.errors import BadFileError, DataError, ImageReadError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.jpe', '.tif', '.tiff', '.bmp')
JPEG_QUALITY = 95
ORIENTATION_TAG = 0x0112
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
TIFF_HEADERS = (b'II*\x00', b'MM\x00*')


def file_format(data):
    """'jpeg', 'png', 'tiff', 'bmp' or None, from the file's first bytes (not its name)."""
    if data[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if data[:8] == PNG_SIGNATURE:
        return 'png'
    if data[:4] in TIFF_HEADERS:
        return 'tiff'
    if data[:2] == b'BM':
        return 'bmp'
    return None


def tiff_orientation(tiff):
    """The Orientation tag of IFD0 of a TIFF structure (a TIFF file or an Exif payload); 1 when absent or invalid."""
    if len(tiff) < 8 or tiff[:4] not in TIFF_HEADERS:
        return 1
    order = '<' if tiff[:2] == b'II' else '>'
    ifd = struct.unpack(order + 'I', tiff[4:8])[0]
    if ifd + 2 > len(tiff):
        return 1
    count = struct.unpack(order + 'H', tiff[ifd:ifd + 2])[0]
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind = struct.unpack(order + 'HH', tiff[entry:entry + 4])
        if tag != ORIENTATION_TAG:
            continue
        # the value (count 1) is stored in the entry itself: SHORT in its first 2 bytes, LONG in all 4
        if kind == 3:
            value = struct.unpack(order + 'H', tiff[entry + 8:entry + 10])[0]
        elif kind == 4:
            value = struct.unpack(order + 'I', tiff[entry + 8:entry + 12])[0]
        else:
            return 1
        return value if 1 <= value <= 8 else 1
    return 1


def jpeg_exif(data):
    """The TIFF structure of the first APP1 `Exif` segment of a JPEG file, or None."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not at a marker: a malformed header, give up quietly
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this point
            return None
        length = struct.unpack('>H', data[pos + 2:pos + 4])[0]
        payload = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and payload[:6] == b'Exif\x00\x00':
            return payload[6:]
        pos += 2 + length
    return None


def png_exif(data):
    """The TIFF structure of a PNG file's `eXIf` chunk, or None."""
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        if kind == b'eXIf':
            payload = data[pos + 8:pos + 8 + length]
            # the PNG spec stores the bare TIFF structure; some writers keep JPEG's `Exif\0\0` prefix
            return payload[6:] if payload[:6] == b'Exif\x00\x00' else payload
        if kind in (b'IDAT', b'IEND'):  # eXIf must come before the image data
            return None
        pos += 12 + length  # length, type, data, CRC
    return None


def exif_orientation(data):
    """EXIF orientation (1-8; 1 = upright, also when the file has none) of JPEG, PNG or TIFF file bytes."""
    kind = file_format(data)
    try:
        if kind == 'tiff':
            return tiff_orientation(data)
        exif = jpeg_exif(data) if kind == 'jpeg' else png_exif(data) if kind == 'png' else None
        return 1 if exif is None else tiff_orientation(exif)
    except struct.error:  # metadata cut short: treat as upright and let the decoder judge the pixels
        return 1


def apply_orientation(img, orientation):
    """Turn a decoded image (rows stored as in the file) upright for EXIF `orientation` 1-8.

    Args:
        img (ndarray): (H, W) or (H, W, C).
        orientation (int): 1 upright, 2 mirrored left-right, 3 rotated 180, 4 mirrored top-bottom, 5 transposed,
            6 needs 90 degrees clockwise, 7 transversed (mirrored across the anti-diagonal), 8 needs 90 degrees
            counter-clockwise.

    Returns:
        ndarray: The upright image (contiguous).
    """
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(img))


def _exif_tiff(orientation):
    """A big-endian TIFF structure with one IFD0 entry: the Orientation tag."""
    entry = struct.pack('>HHIHH', ORIENTATION_TAG, 3, 1, orientation, 0)
    return b'MM\x00*' + struct.pack('>IH', 8, 1) + entry + struct.pack('>I', 0)


def _probe_file(kind, orientation):
    """A 8x16 grey image, dark left and bright right, encoded as `kind` with an EXIF orientation."""
    img = np.zeros((8, 16), np.uint8)
    img[:, 8:] = 255
    if kind == 'tiff':  # a hand-built uncompressed TIFF, so the tag is certainly in IFD0
        tags = [(256, 16), (257, 8), (258, 8), (259, 1), (262, 1), (273, None), (274, orientation), (277, 1), (278, 8),
                (279, img.size)]
        pixels_at = 8 + 2 + 12 * len(tags) + 4  # header, entry count, entries, next-IFD offset
        entries = b''
        for tag, value in tags:
            if tag in (273, 279):  # strip offset and byte count as LONG
                entries += struct.pack('<HHII', tag, 4, 1, pixels_at if value is None else value)
            else:
                entries += struct.pack('<HHIHH', tag, 3, 1, value, 0)
        return b'II*\x00' + struct.pack('<IH', 8, len(tags)) + entries + struct.pack('<I', 0) + img.tobytes()
    data = cv2.imencode('.png' if kind == 'png' else '.jpg', img)[1].tobytes()
    exif = _exif_tiff(orientation)
    if kind == 'png':  # eXIf right after IHDR (signature 8 + IHDR chunk 25 bytes)
        chunk = struct.pack('>I', len(exif)) + b'eXIf' + exif
        chunk += struct.pack('>I', zlib.crc32(b'eXIf' + exif) & 0xFFFFFFFF)
        return data[:33] + chunk + data[33:]
    app1 = b'Exif\x00\x00' + exif
    return data[:2] + b'\xff\xe1' + struct.pack('>H', len(app1) + 2) + app1 + data[2:]


@functools.lru_cache(maxsize=None)
def decoder_applies_orientation(kind):
    """Whether this OpenCV build's `IMREAD_UNCHANGED` decoder already turns `kind` files upright."""
    if kind not in ('jpeg', 'png', 'tiff'):
        return False
    img = cv2.imdecode(np.frombuffer(_probe_file(kind, 3), np.uint8), cv2.IMREAD_UNCHANGED)
    # orientation 3 (180 degrees) puts the bright half on the left only if the decoder applied it
    return img is not None and float(img[..., :8].mean()) > float(img[..., 8:].mean())


def decode_image(data, name='image'):
    """Decode image file bytes at full depth, with alpha, upright.

    Args:
        data (bytes): The file's contents.
        name (str): Used in error messages.

    Returns:
        ndarray: uint8 or uint16, (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) BGR or (H, W, 4) BGRA.
    """
    kind = file_format(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise ImageReadError(f'cannot decode {name}: not a readable PNG/JPEG/TIFF/BMP image (corrupt, truncated or '
                             f'another format)')
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f'{name} has {img.dtype} samples; only 8- and 16-bit integer images are supported. Convert it '
                        f'to an 8- or 16-bit PNG/TIFF first.')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise DataError(f'{name} has {img.shape[2]} channels; supported are grey, grey + alpha, colour and colour + '
                        f'alpha.')
    # OpenCV expands grey + alpha PNGs (colour type 4) to BGRA: keep them grey so a grey model can denoise them
    if kind == 'png' and len(data) > 25 and data[25] == 4 and img.ndim == 3 and img.shape[2] == 4:
        img = np.ascontiguousarray(img[..., [0, 3]])
    orientation = exif_orientation(data) if kind in ('jpeg', 'png', 'tiff') else 1
    if orientation != 1 and not decoder_applies_orientation(kind):
        img = apply_orientation(img, orientation)
    return img


def read_image(path):
    """Read an image file at full depth, with alpha, upright by its EXIF orientation (see `decode_image`)."""
    try:
        with open(path, 'rb') as fin:
            data = fin.read()
    except OSError as error:
        raise ImageReadError(f'cannot read {path}: {error.strerror or error}') from error
    return decode_image(data, path)


def split_alpha(img):
    """(colour HxWxC with C 1 or 3, alpha HxW or None) of an image in OpenCV's layout."""
    if img.ndim == 2:
        return img[..., None], None
    if img.shape[2] in (2, 4):
        return img[..., :-1], img[..., -1]
    return img, None


def merge_alpha(colour, alpha):
    """Inverse of `split_alpha`: (H, W) grey, (H, W, 3), or the colour with the alpha channel appended."""
    if alpha is None:
        return colour[..., 0] if colour.shape[2] == 1 else colour
    return np.concatenate([colour, alpha[..., None]], axis=2)


def encode_image(path, img, jpeg_quality=JPEG_QUALITY):
    """The bytes of `img` encoded by the extension of `path` (JPEG at `jpeg_quality`), without any metadata.

    Args:
        path (str): Output file name; its extension picks the format.
        img (ndarray): uint8 or uint16 in OpenCV's layout (grey, grey + alpha, BGR, BGRA).
        jpeg_quality (int): JPEG quality. Default: 95.

    Returns:
        bytes: The encoded file.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise DataError(
            f'cannot write {path}: unknown image extension {ext!r}; use one of {", ".join(IMAGE_EXTENSIONS)}')
    if img.ndim == 3 and img.shape[2] == 2:  # encoders take 1, 3 or 4 channels: grey + alpha is written as BGRA
        img = img[..., [0, 0, 0, 1]]
    if ext in ('.jpg', '.jpeg', '.jpe', '.bmp') and img.dtype != np.uint8:
        raise DataError(f'cannot write {path}: {ext} holds 8-bit samples only, the image is {img.dtype}. Use --format '
                        f'png to keep 16 bits.')
    if ext in ('.jpg', '.jpeg', '.jpe') and img.ndim == 3 and img.shape[2] == 4:
        raise DataError(f'cannot write {path}: JPEG has no alpha channel. Use --format png to keep it.')
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in ('.jpg', '.jpeg', '.jpe') else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(img), params)
    if not ok:
        raise BadFileError(f'OpenCV could not encode {path} ({img.dtype}, shape {img.shape})')
    return buf.tobytes()


def write_image(path, img, overwrite=False, jpeg_quality=JPEG_QUALITY):
    """Encode `img` by the extension of `path` (see `encode_image`) and write it whole or not at all.

    The file is written under a temporary name and then named in one step (atomic_io): an interrupted run never
    leaves a truncated image, and without `overwrite` an existing file is never replaced, even one another process
    wrote meanwhile.

    Args:
        path (str): Output file; its extension picks the format.
        img (ndarray): uint8 or uint16 in OpenCV's layout (grey, grey + alpha, BGR, BGRA).
        overwrite (bool): Replace an existing file. Default: False (OutputExistsError instead).
        jpeg_quality (int): JPEG quality. Default: 95.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is off.
        OutputError: The file cannot be written (read-only or full disk, a folder in the way, ...).
    """
    check_new_file(path, overwrite)  # an early answer; the exclusive create in write_files is the real check
    data = encode_image(path, img, jpeg_quality)
    write_files([(path, data)], overwrite=overwrite)


def to_uint8(img):
    """An 8-bit copy for viewing: uint16 scaled down, floats in [0, 1] rounded."""
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.float32) / 257.) + 0.5).astype(np.uint8)
    return (np.clip(img, 0, 1) * 255. + 0.5).astype(np.uint8)


def gradient_to_uint8(grad, percentile=99.5):
    """A gradient map (float, HxW or HxWxC) scaled for viewing: its `percentile` maps to 255, 0 to 0.

    A percentile rather than the maximum keeps a few extreme edges from making the whole map dark.
    """
    grad = np.asarray(grad, np.float32)
    top = float(np.percentile(grad, percentile)) if grad.size else 0.
    top = top if top > 0 else float(grad.max(initial=0.)) or 1.
    return (np.clip(grad / top, 0, 1) * 255. + 0.5).astype(np.uint8)


def side_by_side(panels, separator=4, value=255):
    """Panels of one height placed left to right with `separator`-pixel bars between them, as 8-bit BGR.

    Args:
        panels (list[ndarray]): Images in OpenCV's layout, any depth (converted with `to_uint8`; alpha dropped).
        separator (int): Bar width in pixels. Default: 4.
        value (int): Bar grey level. Default: 255 (white).

    Returns:
        ndarray: uint8 (H, W_total, 3).
    """
    rows = []
    for panel in panels:
        colour, _ = split_alpha(to_uint8(panel))
        rows.append(np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour)
    height = rows[0].shape[0]
    if any(row.shape[0] != height for row in rows):
        raise ValueError(f'side_by_side: panels have different heights {[row.shape[0] for row in rows]}')
    bar = np.full((height, separator, 3), value, np.uint8)
    out = [rows[0]]
    for row in rows[1:]:
        out += [bar, row]
    return np.concatenate(out, axis=1)
