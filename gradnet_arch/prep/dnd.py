"""DND (Darmstadt Noise Dataset) sRGB -> one 16-bit PNG per benchmark crop, for inference.

Input, as downloaded (MATLAB v7.3 files, i.e. HDF5):

- `images_srgb/0001.mat` ... `0050.mat`, variable `InoisySRGB`: float32 H x W x 3 RGB in [0, 1].
- `info.mat`: a struct `info` whose field `boundingboxes` is a cell of 50 arrays of 20 x 4 doubles, one row per
  crop, 1-based and inclusive.

MATLAB stores arrays column-major and h5py shows them with their axes reversed: an H x W x 3 image appears as
(3, W, H) and a 20 x 4 box array as (4, 20); both are transposed back here. In h5py the struct is a group, and
`info['boundingboxes']` a (1, 50) (or (50, 1)) dataset of object references, each to one (4, 20) box array.

Box rows are used as DND's own submission kit uses them: columns 1 and 3 bound the first (row) axis, columns 2 and
4 the second (column) axis, so a box [a b c d] is MATLAB's `Inoisy(a:c, b:d, :)` and numpy's
`img[a-1:c, b-1:d]`. (DND's documentation calls them x1 y1 x2 y2; what matters is that they index MATLAB's first
axis first.)

Output: a folder with `{image:04d}_{box:02d}.png` (1-based like the .mat files and the submission's 1x20
`Idenoised` cell: `0007_13.png` is `Idenoised{13}` of `0007.mat`), RGB turned into BGR and [0, 1] into uint16 by
rounding x * 65535 (values are clipped to [0, 1] first). Use a reader that keeps 16 bit (GaussianNoiseDataset's disk
reader, or cv2.imread with IMREAD_UNCHANGED): BasicSR's own imfrombytes decodes these PNGs to 8 bit. `bits=8`
writes 8-bit PNGs (x * 255) instead.
"""
import functools
import numpy as np
import os

from gradnet_arch.errors import BadFileError, DataError, MissingFileError, OptionError
from gradnet_arch.prep.folders import records_writer
from gradnet_arch.prep.lmdb_writer import encode_png
from gradnet_arch.prep.options import check_compress_level
from gradnet_arch.prep.pool import process_jobs
from gradnet_arch.prep.stamps import begin_command

IMAGE_VARIABLE = 'InoisySRGB'


def dnd_key(image, box):
    """Key of box `box` of image `image` (both 1-based, as in DND's files): `{image:04d}_{box:02d}`."""
    return f'{image:04d}_{box:02d}'


def _open_h5(path, what):
    import h5py

    if not os.path.isfile(path):
        raise MissingFileError(f'DND {what} not found: {path}')
    if not h5py.is_hdf5(path):
        raise BadFileError(f'{path} is not a MATLAB v7.3 (HDF5) file; DND ships its .mat files in that format. The '
                           f'file may be truncated: download it again.')
    try:
        return h5py.File(path, 'r')
    except OSError as error:
        raise BadFileError(f'cannot open {path}: {error}') from None


def read_boxes(info_path):
    """The bounding boxes of info.mat: one (boxes, 4) int64 array of 1-based inclusive rows per image."""
    import h5py

    with _open_h5(info_path, 'info.mat') as mat:
        info = mat.get('info')
        if not isinstance(info, h5py.Group) or 'boundingboxes' not in info:
            raise BadFileError(f'{info_path} has no struct info with a field boundingboxes (it has '
                               f'{sorted(k for k in mat.keys() if not k.startswith("#"))}); is this DND\'s info.mat?')
        refs = info['boundingboxes']
        if not isinstance(refs, h5py.Dataset) or h5py.check_dtype(ref=refs.dtype) is not h5py.Reference:
            raise BadFileError(f'{info_path}: info.boundingboxes is not a cell of arrays (MATLAB v7.3 references).')
        boxes = []
        for index, ref in enumerate(refs[()].reshape(-1), 1):  # a 1 x N or N x 1 cell: the same order either way
            try:
                array = np.asarray(mat[ref][()], dtype=np.float64).transpose()  # (4, K) in h5py -> K x 4
            except (KeyError, ValueError, TypeError) as error:
                raise BadFileError(f'{info_path}: boundingboxes{{{index}}} cannot be read ({error}).') from None
            if array.ndim != 2 or array.shape[1] != 4 or not np.all(np.isfinite(array)) or np.any(array % 1):
                raise BadFileError(f'{info_path}: boundingboxes{{{index}}} is not a K x 4 array of whole numbers '
                                   f'(shape {array.shape}).')
            boxes.append(array.astype(np.int64))
    if not boxes:
        raise BadFileError(f'{info_path}: info.boundingboxes is empty.')
    return boxes


def image_paths(root):
    """(boxes, paths): info.mat's boxes and the images_srgb/NNNN.mat files they belong to, all checked to exist."""
    if not os.path.isdir(root):
        raise MissingFileError(f'DND folder not found: {root} (it holds info.mat and images_srgb/).')
    info_path = os.path.join(root, 'info.mat')
    boxes = read_boxes(info_path)
    paths = [os.path.join(root, 'images_srgb', f'{number:04d}.mat') for number in range(1, len(boxes) + 1)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise MissingFileError(f'{len(missing)} DND image(s) listed in {info_path} are missing, e.g. {missing[0]}.')
    return boxes, paths


def read_crops(path, number, boxes):
    """The boxes of one DND image as stored: rows x columns x RGB arrays (float32, nominally in [0, 1], unclipped).

    Only the boxes are read from the HDF5 file, not the whole image.

    Args:
        path (str): images_srgb/NNNN.mat (MATLAB v7.3).
        number (int): The image's 1-based number (for messages).
        boxes (np.ndarray): (K, 4) 1-based inclusive [r1 c1 r2 c2] boxes, as `read_boxes` gives them.

    Returns:
        list[np.ndarray]: One array per box.
    """
    import h5py

    with _open_h5(path, 'image') as mat:
        data = mat.get(IMAGE_VARIABLE)
        if not isinstance(data, h5py.Dataset):
            raise BadFileError(f'{path} has no variable {IMAGE_VARIABLE!r} (it has '
                               f'{sorted(k for k in mat.keys() if not k.startswith("#"))}); is this a DND sRGB image?')
        if data.ndim != 3 or data.shape[0] != 3:
            raise BadFileError(f'{path}: {IMAGE_VARIABLE} has shape {data.shape} in HDF5 order; a MATLAB H x W x 3 '
                               f'image appears as (3, W, H).')
        width, height = data.shape[1], data.shape[2]
        crops = []
        for index, (r1, c1, r2, c2) in enumerate(boxes, 1):
            if not (1 <= r1 <= r2 <= height and 1 <= c1 <= c2 <= width):
                raise DataError(f'box {index} of image {number} ([{r1} {c1} {r2} {c2}]) lies outside {path}, which is '
                                f'{height}x{width}; do info.mat and images_srgb/ belong together?')
            try:
                crop = data[:, c1 - 1:c2, r1 - 1:r2]  # HDF5 order (3, W, H): columns before rows
            except (OSError, ValueError) as error:
                raise BadFileError(f'cannot read box {index} of {path} ({error}); the file may be truncated: '
                                   f'download it again.') from None
            crops.append(crop.transpose(2, 1, 0))  # -> rows x columns x RGB
    return crops


def _crop_image(job, bits, compress_level):
    """Cut and encode all boxes of one image: job = (image number, .mat path, boxes)."""
    number, path, boxes = job
    scale, dtype = (65535., np.uint16) if bits == 16 else (255., np.uint8)
    records = []
    for index, crop in enumerate(read_crops(path, number, boxes), 1):
        crop = np.round(np.clip(crop.astype(np.float64), 0, 1) * scale).astype(dtype)
        records.append((dnd_key(number, index), [encode_png(crop[..., ::-1], compress_level)]))
    return records


def prepare_dnd(root, out_dir, bits=16, compress_level=1, workers=1, overwrite=False):
    """DND sRGB -> `out_dir/{image:04d}_{box:02d}.png`, 50 x 20 crops for inference (see the module docstring).

    Args:
        root (str): The DND folder holding info.mat and images_srgb/.
        out_dir (str): The PNG folder to write.
        bits (int): 16 (default) or 8.
        compress_level (int): PNG compression 0-9.
        workers (int): Processes reading and encoding images.
        overwrite (bool): Replace an existing folder.

    Returns:
        PrepReport: What was written.
    """
    if bits not in (8, 16):
        raise OptionError(f'bits must be 8 or 16, got {bits!r}.')
    compress_level = check_compress_level(compress_level)
    boxes, paths = image_paths(root)
    info_path = os.path.join(root, 'info.mat')
    settings = dict(bits=bits, compress_level=compress_level)
    report, outputs = begin_command('dnd', settings, [info_path] + paths, [out_dir], overwrite)
    if report.up_to_date:
        return report
    jobs = [(number, path, boxes[number - 1].tolist()) for number, path in enumerate(paths, 1)]
    with outputs:
        writer = outputs.folder(out_dir, compress_level=compress_level)
        on_result, counts = records_writer(lambda job: (writer, ))
        process_jobs(
            functools.partial(_crop_image, bits=bits, compress_level=compress_level),
            jobs,
            on_result,
            workers,
            desc='DND images')
        outputs.info.update(count=len(writer), images=len(paths))
    report.outputs = {out_dir: len(writer)}
    report.sources = counts['sources']
    return report
