"""gradnet_arch.common.images: the one image lister and reader of the tools (order, filters, depth, alpha, EXIF)."""
import cv2
import io
import numpy as np
import pytest
import struct
import zlib
from PIL import Image

from gradnet_arch.common.images import decode_image, list_images, read_image
from gradnet_arch.errors import DataError, ImageReadError, MissingFileError


def touch(folder, *names):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'')


def test_list_images_order_filters_and_recursion(tmp_path):
    touch(tmp_path, 'b.PNG', 'a.jpg', '.hidden.png', 'notes.txt', 'z/c.png', 'sub/y.tif', 'sub/deeper/x.png')
    (tmp_path / 'folder.png').mkdir()  # a folder named like an image is not a file
    assert list_images(str(tmp_path)) == ['a.jpg', 'b.PNG']
    # a folder's own files first, then each sub-folder's, by name
    assert list_images(str(tmp_path), recursive=True) == ['a.jpg', 'b.PNG', 'sub/y.tif', 'sub/deeper/x.png', 'z/c.png']
    assert list_images(str(tmp_path), recursive=True, extensions=('.png', )) == ['b.PNG', 'sub/deeper/x.png', 'z/c.png']
    with pytest.raises(MissingFileError, match='image folder not found'):
        list_images(str(tmp_path / 'absent'))


def png_with_exif_orientation(data, orientation):
    """PNG bytes with an eXIf chunk (big-endian TIFF, IFD0 holding only the orientation) after IHDR."""
    tiff = b'MM\x00*' + struct.pack('>IH', 8, 1) + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack('>I', 0)
    chunk = struct.pack('>I', len(tiff)) + b'eXIf' + tiff + struct.pack('>I', zlib.crc32(b'eXIf' + tiff))
    return data[:33] + chunk + data[33:]


@pytest.mark.parametrize('orientation,upright', [(3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)),
                                                 (5, lambda a: a.swapaxes(0, 1))])
def test_16_bit_colour_with_alpha_is_turned_upright(tmp_path, orientation, upright):
    """16-bit BGRA, which Pillow cannot hold as one image: the orientation is applied plane by plane."""
    rng = np.random.RandomState(orientation)
    stored = rng.randint(0, 65536, (6, 10, 4)).astype(np.uint16)
    path = tmp_path / 'o.png'
    path.write_bytes(png_with_exif_orientation(cv2.imencode('.png', stored)[1].tobytes(), orientation))
    img = read_image(str(path))
    assert img.dtype == np.uint16
    np.testing.assert_array_equal(img, upright(stored))


def test_jpeg_orientation_written_by_pillow(tmp_path):
    stored = np.zeros((8, 12, 3), np.uint8)
    stored[:4, :6] = 255  # a bright corner top left
    exif = Image.Exif()
    exif[0x0112] = 8  # the stored rows need 90 degrees counter-clockwise
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, 'JPEG', quality=100, exif=exif.tobytes())
    img = decode_image(buffer.getvalue())
    assert img.shape == (12, 8, 3)
    assert img[-4:, :4].mean() > 200 and img[:4, :4].mean() < 50  # the corner is now bottom left


def test_colour_modes_read_as_basicsr_does(tmp_path):
    rng = np.random.RandomState(0)
    bgra = rng.randint(0, 65536, (5, 7, 4)).astype(np.uint16)
    grey = rng.randint(0, 256, (5, 7)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / 'bgra.png'), bgra)
    cv2.imwrite(str(tmp_path / 'grey.png'), grey)
    np.testing.assert_array_equal(read_image(str(tmp_path / 'bgra.png')), bgra)  # as stored, alpha kept
    np.testing.assert_array_equal(read_image(str(tmp_path / 'bgra.png'), 'rgb'), bgra[..., :3])  # alpha dropped
    gray = read_image(str(tmp_path / 'bgra.png'), 'gray')
    assert gray.shape == (5, 7) and gray.dtype == np.uint16
    np.testing.assert_array_equal(read_image(str(tmp_path / 'grey.png'), 'rgb'), np.repeat(grey[..., None], 3, 2))
    np.testing.assert_array_equal(read_image(str(tmp_path / 'grey.png')), grey)


def test_unreadable_files_raise_user_errors(tmp_path):
    with pytest.raises(MissingFileError, match='image not found'):
        read_image(str(tmp_path / 'absent.png'))
    (tmp_path / 'junk.png').write_bytes(b'\x89PNG\r\n\x1a\n not really')
    for color in (None, 'rgb', 'gray'):
        with pytest.raises(ImageReadError, match=r'cannot decode the image .*junk\.png.*; try again'):
            read_image(str(tmp_path / 'junk.png'), color, advice='try again')
    cv2.imwrite(str(tmp_path / 'float.tif'), np.ones((4, 4), np.float32))
    with pytest.raises(DataError, match='float32 samples'):
        read_image(str(tmp_path / 'float.tif'))
