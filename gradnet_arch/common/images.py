"""The one image lister and reader of the tools (denoise, prep, submit, benchmark) and of the dataset's folders.

Listing (`list_images`): the image files of a folder, optionally of its sub-folders, as paths relative to it, in one
fixed order: a folder's own files by name, then its sub-folders by name (os.walk with sorted names). Hidden files
(names starting with '.') are left out, as BasicSR's `scandir` leaves them out.

Reading (`read_image`, `decode_image`): OpenCV decodes the pixels (it keeps 16-bit colour, which Pillow cannot).
Arrays follow OpenCV: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) BGR, (H, W, 4) BGRA; uint8 or uint16.

- `color=None`: the file as it is (its depth, grey or colour, alpha), upright. OpenCV's `IMREAD_UNCHANGED` ignores the
  EXIF orientation, and the flags that apply it drop alpha, so Pillow reads the file's header (the orientation, and
  whether a PNG is grey + alpha, which OpenCV expands to BGRA) and `ImageOps.exif_transpose` turns the decoded
  planes upright. Some OpenCV builds (5.x) already turn TIFFs upright in their decoder; whether this build's does is
  found once per format with a tiny probe image, so the orientation is never applied twice.
- `color='rgb'` / `'gray'`: BGR or grey without alpha at the file's depth, as BasicSR reads images (OpenCV's
  `IMREAD_COLOR` / `IMREAD_GRAYSCALE` with `IMREAD_ANYDEPTH`, which apply the orientation themselves).
"""
import cv2
import functools
import io
import numpy as np
import os
import warnings
from PIL import ExifTags, Image, ImageOps

from gradnet_arch.errors import DataError, ImageReadError, MissingFileError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
COLORS = ('rgb', 'gray')
ORIENTED_FORMATS = ('JPEG', 'PNG', 'TIFF')  # formats whose EXIF orientation is applied (Pillow's format names)


def list_images(folder, recursive=False, extensions=IMAGE_EXTENSIONS):
    """Image files of `folder` (by extension, any case; hidden files left out), as sorted paths relative to it.

    Args:
        folder (str): The folder.
        recursive (bool): Also list the files of its sub-folders (their relative paths include the sub-folder).
        extensions (tuple[str]): Lower-case file name endings to take. Default: IMAGE_EXTENSIONS.

    Returns:
        list[str]: Relative paths, a folder's own files first (by name), then each sub-folder's (by name).

    Raises:
        MissingFileError: `folder` is not a folder.
    """
    if not os.path.isdir(folder):
        raise MissingFileError(f'image folder not found: {folder}')
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        rel = os.path.relpath(root, folder)
        found += [
            os.path.normpath(os.path.join(rel, name)) for name in sorted(files)
            if name.lower().endswith(extensions) and not name.startswith('.')
        ]
        if not recursive:
            break
    return found


def read_image(path, color=None, advice=None):
    """Read an image file (see the module docstring for `color`).

    Args:
        path (str): The file.
        color (str | None): None (as stored, with alpha, upright), 'rgb' (BGR) or 'gray'.
        advice (str | None): What the user can do, appended to the message when the file cannot be decoded.

    Raises:
        MissingFileError: No such file.
        ImageReadError: It cannot be read or decoded.
        DataError: Its samples are not 8- or 16-bit integers, or it has an unsupported number of channels.
    """
    try:
        with open(path, 'rb') as fin:
            data = fin.read()
    except FileNotFoundError:
        raise MissingFileError(f'image not found: {path}') from None
    except OSError as error:
        raise ImageReadError(f'cannot read {path}: {error.strerror or error}') from None
    return decode_image(data, path, color, advice)


def decode_image(data, name='image', color=None, advice=None):
    """Decode image file bytes (see `read_image`; `name` is the image's name in messages).

    Returns:
        ndarray: uint8 or uint16 in OpenCV's layout.
    """
    if color is not None and color not in COLORS:
        raise ValueError(f'color must be None or one of {COLORS}, got {color!r}')
    buffer = np.frombuffer(data, np.uint8)
    if color is None:
        img = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if data else None
    else:
        flag = cv2.IMREAD_GRAYSCALE if color == 'gray' else cv2.IMREAD_COLOR
        img = cv2.imdecode(buffer, flag | cv2.IMREAD_ANYDEPTH) if data else None
    if img is None:
        raise ImageReadError(f'cannot decode the image {name} (corrupt, truncated or not an image)' +
                             (f'; {advice}' if advice else ''))
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f'{name} has {img.dtype} samples; only 8- and 16-bit integer images are supported. Convert it '
                        f'to an 8- or 16-bit PNG/TIFF first.')
    if color is not None:
        return img
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise DataError(f'{name} has {img.shape[2]} channels; supported are grey, grey + alpha, colour and colour + '
                        f'alpha.')
    kind, mode, orientation = _header(data)
    if mode == 'LA' and img.ndim == 3 and img.shape[2] == 4:  # keep grey + alpha grey, so a grey model takes it
        img = np.ascontiguousarray(img[..., [0, 3]])
    if orientation != 1 and kind in ORIENTED_FORMATS and not decoder_applies_orientation(kind):
        img = exif_transposed(img, orientation)
    return img


def _header(data):
    """(Pillow's format name, mode, EXIF orientation 1-8) of image file bytes; (None, None, 1) if Pillow cannot tell.

    Only the header is parsed (the pixels are OpenCV's), so Pillow's decompression-bomb limit on decoded pixels does
    not apply here.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            try:
                pil = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError:
                limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    pil = Image.open(io.BytesIO(data))
                finally:
                    Image.MAX_IMAGE_PIXELS = limit
        with pil:
            # the PNG spec puts eXIf before the pixels; without one there, Pillow's getexif would decode them all
            if pil.format == 'PNG' and 'exif' not in pil.info:
                return pil.format, pil.mode, 1
            orientation = pil.getexif().get(ExifTags.Base.Orientation, 1)
            return pil.format, pil.mode, orientation if orientation in range(1, 9) else 1
    except Exception:  # Pillow cannot parse the header or its metadata: take it as upright (OpenCV read the pixels)
        return None, None, 1


def exif_transposed(img, orientation):
    """`img` (rows as stored in the file) turned upright for EXIF `orientation` 1-8 by Pillow's `exif_transpose`.

    Plane by plane, since Pillow has no mode for 16-bit colour.
    """
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = int(orientation)
    exif = exif.tobytes()

    def upright(plane):
        pil = Image.fromarray(np.ascontiguousarray(plane))
        pil.info['exif'] = exif
        return np.asarray(ImageOps.exif_transpose(pil))

    if img.ndim == 2:
        return upright(img)
    return np.stack([upright(img[..., c]) for c in range(img.shape[2])], axis=2)


@functools.lru_cache(maxsize=None)
def decoder_applies_orientation(kind):
    """Whether this OpenCV build's `IMREAD_UNCHANGED` decoder already turns `kind` files (Pillow's format name) upright.

    The probe is an 8x16 grey image, dark left and bright right, saved with orientation 3 (180 degrees): its bright
    half comes out on the left only if the decoder applied the orientation.
    """
    probe = np.zeros((8, 16), np.uint8)
    probe[:, 8:] = 255
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 3
    buffer = io.BytesIO()
    Image.fromarray(probe).save(buffer, format=kind, exif=exif.tobytes())
    img = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and float(img[..., :8].mean()) > float(img[..., 8:].mean())
