"""Writing photos at their own depth (8/16 bit), with alpha, and the 8-bit views (gradient maps, comparisons).

Photos are read by gradnet_arch.common.images (`read_image`: full depth, alpha, upright by the EXIF orientation),
re-exported here with `write_image` as the denoise module's file API. Arrays follow OpenCV: (H, W) grey, (H, W, 2)
grey + alpha, (H, W, 3) BGR, (H, W, 4) BGRA; uint8 or uint16.
"""
import cv2
import numpy as np
import os

from gradnet_arch.atomic_io import check_new_file, write_files
from gradnet_arch.common.images import read_image  # noqa: F401  (the denoise module's reader)
from gradnet_arch.errors import BadFileError, DataError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.jpe', '.tif', '.tiff', '.bmp')  # what gradnet-denoise reads and writes
JPEG_QUALITY = 95


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
