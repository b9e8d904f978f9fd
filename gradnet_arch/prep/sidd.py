"""SIDD (Smartphone Image Denoising Dataset) sRGB -> BasicSR LMDBs and PNG folders.

Three sources, three commands:

- `sidd-train`: the SIDD-Medium sRGB tree, `SIDD_Medium_Srgb/Data/<scene folder>/` holding pairs such as
  `0001_GT_SRGB_010.PNG` / `0001_NOISY_SRGB_010.PNG` (a GT and a NOISY image pair by their common prefix and capture
  number). Each pair is cut into 512x512 crops with step 384 (the field's convention), plus crops flush with the
  right and bottom borders so that every pixel is covered (folders.crop_grid, thresh_size 0). Written to
  `gt_crops.lmdb` and `input_crops.lmdb` with the same keys `{prefix}_{capture}_s{index:03d}`, e.g.
  `0001_010_s001` (index 1, 2, ... row by row, as BasicSR's extract_subimages numbers crops).
- `sidd-val`: ValidationNoisyBlocksSrgb.mat / ValidationGtBlocksSrgb.mat (uint8, images x blocks x H x W x 3, RGB;
  40 x 32 x 256 x 256 x 3 in the release) -> `gt_crops.lmdb` / `input_crops.lmdb` with 1280 entries.
- `sidd-benchmark`: BenchmarkNoisyBlocksSrgb.mat -> a folder of PNGs (noisy only) for inference, e.g. with
  BasicSR's SingleImageDataset.

Block keys are MATLAB's 1-based indices: `{image:02d}_{block:02d}`, `01_01` ... `40_32`. The inverse mapping for a
submission (SubmitSrgb.mat: DenoisedBlocksSrgb, a 40x32 cell of uint8 256x256x3 RGB, and TimeMPSrgb): the result
for key `ii_bb` goes into MATLAB cell `DenoisedBlocksSrgb{ii, bb}`, i.e. numpy index `[ii - 1, bb - 1]` of a
(40, 32) object array; `parse_block_key` gives those numpy indices. Results read back with OpenCV are BGR: flip them
to RGB first.

Both .mat versions are read: v5/v7 with scipy.io (the release's format) and v7.3 (HDF5) with h5py, whose arrays
appear with their axes reversed (MATLAB is column-major) and are transposed back. Blocks are stored PNG-encoded in
BGR, as BasicSR stores every colour image.
"""
import functools
import numpy as np
import os
import re

from gradnet_arch.errors import BadFileError, DataError, MissingFileError
from gradnet_arch.prep.folders import check_crop_options, encode_sources, handle_unpaired, records_writer
from gradnet_arch.prep.lmdb_writer import encode_png, make_key
from gradnet_arch.prep.options import check_compress_level
from gradnet_arch.prep.pool import process_jobs
from gradnet_arch.prep.stamps import begin_command

VAL_NOISY_VARIABLE = 'ValidationNoisyBlocksSrgb'
VAL_GT_VARIABLE = 'ValidationGtBlocksSrgb'
BENCHMARK_NOISY_VARIABLE = 'BenchmarkNoisyBlocksSrgb'
GT_LMDB, INPUT_LMDB = 'gt_crops.lmdb', 'input_crops.lmdb'
_SIDD_NAME = re.compile(r'^(?P<prefix>.+)_(?P<kind>GT|NOISY)_SRGB_(?P<capture>\d+)\.png$', re.IGNORECASE)

# ---------------------------------------------------------------------------------------------------------------------
# SIDD-Medium sRGB


def find_sidd_pairs(root):
    """GT/NOISY sRGB pairs of a SIDD-Medium tree.

    Args:
        root (str): `SIDD_Medium_Srgb` or its `Data` folder; scene folders are searched at any depth, and a GT and a
            NOISY image pair only within one folder.

    Returns:
        tuple: (pairs, unpaired): pairs is a list of (key, gt_path, noisy_path) sorted by key; unpaired lists one
        message per image without a partner.
    """
    if not os.path.isdir(root):
        raise MissingFileError(f'SIDD folder not found: {root}')
    data = os.path.join(root, 'Data')
    data = data if os.path.isdir(data) else root
    groups, owners, count = {}, {}, 0
    for folder, dirs, files in os.walk(data):
        dirs.sort()
        for name in sorted(files):
            match = _SIDD_NAME.match(name)
            if match:
                ident = (folder, match['prefix'], match['capture'])
                groups.setdefault(ident, {})[match['kind'].upper()] = os.path.join(folder, name)
                count += 1
    if not count:
        raise DataError(f'no SIDD sRGB images (*_GT_SRGB_*.PNG, *_NOISY_SRGB_*.PNG) under {data}.')
    pairs, unpaired = [], []
    for (folder, prefix, capture), found in groups.items():
        if set(found) != {'GT', 'NOISY'}:
            (kind, path), = found.items()
            other = 'NOISY' if kind == 'GT' else 'GT'
            unpaired.append(f'{path} has no {other} partner {prefix}_{other}_SRGB_{capture}.PNG')
            continue
        key = make_key(f'{prefix}_{capture}')
        if key in owners:
            raise DataError(f'{owners[key]} and {found["GT"]} would both be stored under key {key!r}; SIDD prefixes '
                            f'(the scene instance number) must be unique.')
        owners[key] = found['GT']
        pairs.append((key, found['GT'], found['NOISY']))
    return sorted(pairs), unpaired


def prepare_sidd_train(root,
                       out_dir,
                       crop_size=512,
                       step=384,
                       thresh_size=0,
                       compress_level=1,
                       workers=1,
                       overwrite=False,
                       skip_bad=False,
                       map_size=None):
    """SIDD-Medium sRGB -> `out_dir/gt_crops.lmdb` and `out_dir/input_crops.lmdb` (see the module docstring).

    Args:
        root (str): `SIDD_Medium_Srgb` or its `Data` folder.
        out_dir (str): Output folder (BasicSR's convention: datasets/SIDD/train).
        crop_size (int): Crop size (512).
        step (int): Distance between crops (384).
        thresh_size (int): Border strips up to this width get no extra crop (0: cover every pixel).
        compress_level (int): PNG compression 0-9.
        workers (int): Encoding processes.
        overwrite (bool): Replace existing outputs.
        skip_bad (bool): Skip unpaired, unreadable, mismatched or too small images (reported) instead of stopping.
        map_size (int | None): Initial LMDB map size in bytes.

    Returns:
        PrepReport: What was written.
    """
    crop_size, step, thresh_size = check_crop_options(crop_size, step, thresh_size)
    compress_level = check_compress_level(compress_level)
    pairs, unpaired = find_sidd_pairs(root)
    skipped = handle_unpaired(unpaired, skip_bad, 'SIDD image')
    targets = [os.path.join(out_dir, GT_LMDB), os.path.join(out_dir, INPUT_LMDB)]
    settings = dict(
        crop_size=crop_size, step=step, thresh_size=thresh_size, compress_level=compress_level, skip_bad=skip_bad)
    report, outputs = begin_command(
        'sidd-train',
        settings, [path for _, gt, noisy in pairs for path in (gt, noisy)],
        targets,
        overwrite,
        sources=len(pairs),
        skipped=skipped)
    if report.up_to_date:
        return report
    if not pairs:
        raise DataError(f'no complete GT/NOISY pair under {root}.')
    encode = functools.partial(
        encode_sources,
        color='rgb',
        crop_size=crop_size,
        step=step,
        thresh_size=thresh_size,
        compress_level=compress_level)
    jobs = [(key, (gt, noisy), True) for key, gt, noisy in pairs]
    with outputs:
        writers = [outputs.lmdb(t, compress_level=compress_level, map_size=map_size) for t in targets]
        on_result, counts = records_writer(lambda job: writers)
        report.skipped = skipped + process_jobs(encode, jobs, on_result, workers, skip_bad, desc='SIDD pairs')
        if not len(writers[0]):
            raise DataError(f'sidd-train: nothing to write ({len(report.skipped)} pair(s) skipped); no output was '
                            f'created.')
        outputs.info.update(count=len(writers[0]), sources=counts['sources'], skipped=report.skipped)
    report.outputs = {t: len(w) for t, w in zip(targets, writers)}
    report.sources = counts['sources']
    return report


# ---------------------------------------------------------------------------------------------------------------------
# validation and benchmark blocks


def block_key(image, block):
    """Key of block `block` of image `image` (0-based numpy indices) -> `{image+1:02d}_{block+1:02d}`."""
    return f'{image + 1:02d}_{block + 1:02d}'


def parse_block_key(key):
    """Inverse of block_key: `'03_17'` -> (2, 16), the numpy indices into a (40, 32) DenoisedBlocksSrgb array."""
    image, block = key.split('_')
    return int(image) - 1, int(block) - 1


def load_mat_variable(path, variable):
    """One variable of a MATLAB .mat file (v5/v7 via scipy.io, v7.3 via h5py, transposed to MATLAB's axis order).

    Raises:
        MissingFileError: No such file.
        BadFileError: Not a readable .mat file, or the variable is not in it (the message lists what is).
    """
    if not os.path.isfile(path):
        raise MissingFileError(f'.mat file not found: {path}')
    import h5py

    if h5py.is_hdf5(path):  # MATLAB v7.3
        try:
            with h5py.File(path, 'r') as mat:
                names = sorted(k for k in mat.keys() if not k.startswith('#'))
                if variable not in names:
                    raise BadFileError(f'{path} has no variable {variable!r} (it has {names}); is this the right file?')
                if not isinstance(mat[variable], h5py.Dataset):
                    raise BadFileError(f'{path}: {variable!r} is a MATLAB struct or cell, not an array.')
                # h5py shows MATLAB's column-major arrays with their axes reversed
                return mat[variable][()].transpose()
        except (OSError, KeyError) as error:
            raise BadFileError(f'cannot read {path} as a MATLAB v7.3 file: {error}') from None
    import scipy.io

    try:
        names = [entry[0] for entry in scipy.io.whosmat(path)]
    except Exception as error:  # scipy raises assorted errors for files that are not .mat files
        raise BadFileError(f'cannot read {path} as a MATLAB .mat file ({type(error).__name__}: {error}); the file '
                           f'may be truncated: download it again.') from None
    if variable not in names:
        raise BadFileError(f'{path} has no variable {variable!r} (it has {sorted(names)}); is this the right file?')
    try:
        return scipy.io.loadmat(path, variable_names=[variable])[variable]
    except Exception as error:
        raise BadFileError(f'cannot read {variable!r} from {path} ({type(error).__name__}: {error}); the file may '
                           f'be truncated: download it again.') from None


def load_blocks(path, variable):
    """SIDD blocks as an (images, blocks, H, W, 3) uint8 (or uint16) RGB array; DataError for any other shape."""
    blocks = load_mat_variable(path, variable)
    if blocks.ndim != 5 or blocks.shape[-1] != 3 or blocks.dtype not in (np.uint8, np.uint16) or 0 in blocks.shape:
        raise DataError(f'{path}: {variable} is a {blocks.dtype} array of shape {blocks.shape}; SIDD blocks are '
                        f'uint8 of shape (images, blocks, height, width, 3), e.g. (40, 32, 256, 256, 3).')
    return blocks


def _encode_blocks(job, compress_level):
    """Encode all blocks of one image: job = (image index, [array (blocks, H, W, 3) RGB per output])."""
    image, arrays = job
    records = []
    for block in range(arrays[0].shape[0]):
        encoded = [encode_png(np.ascontiguousarray(array[block][..., ::-1]), compress_level) for array in arrays]
        records.append((block_key(image, block), encoded))
    return records


def prepare_sidd_val(noisy_mat,
                     gt_mat,
                     out_dir,
                     compress_level=1,
                     workers=1,
                     overwrite=False,
                     map_size=None,
                     noisy_variable=VAL_NOISY_VARIABLE,
                     gt_variable=VAL_GT_VARIABLE):
    """SIDD validation blocks -> `out_dir/gt_crops.lmdb` and `out_dir/input_crops.lmdb` (keys `{ii}_{bb}`).

    Args:
        noisy_mat (str): ValidationNoisyBlocksSrgb.mat.
        gt_mat (str): ValidationGtBlocksSrgb.mat.
        out_dir (str): Output folder (BasicSR's convention: datasets/SIDD/val).
        compress_level (int): PNG compression 0-9.
        workers (int): Encoding processes.
        overwrite (bool): Replace existing outputs.
        map_size (int | None): Initial LMDB map size in bytes.
        noisy_variable (str): Variable holding the noisy blocks.
        gt_variable (str): Variable holding the clean blocks.

    Returns:
        PrepReport: What was written.
    """
    compress_level = check_compress_level(compress_level)
    for path in (noisy_mat, gt_mat):
        if not os.path.isfile(path):
            raise MissingFileError(f'.mat file not found: {path}')
    targets = [os.path.join(out_dir, GT_LMDB), os.path.join(out_dir, INPUT_LMDB)]
    settings = dict(noisy_variable=noisy_variable, gt_variable=gt_variable, compress_level=compress_level)
    report, outputs = begin_command('sidd-val', settings, [noisy_mat, gt_mat], targets, overwrite)
    if report.up_to_date:
        return report
    noisy = load_blocks(noisy_mat, noisy_variable)
    gt = load_blocks(gt_mat, gt_variable)
    if noisy.shape != gt.shape or noisy.dtype != gt.dtype:
        raise DataError(f'{noisy_mat} holds {noisy.dtype} blocks of shape {noisy.shape} but {gt_mat} holds '
                        f'{gt.dtype} {gt.shape}; they must match.')
    jobs = [(image, (gt[image], noisy[image])) for image in range(noisy.shape[0])]
    with outputs:
        writers = [outputs.lmdb(t, compress_level=compress_level, map_size=map_size) for t in targets]
        on_result, _ = records_writer(lambda job: writers)
        process_jobs(
            functools.partial(_encode_blocks, compress_level=compress_level),
            jobs,
            on_result,
            workers,
            desc='SIDD images',
            unit='image')
        outputs.info.update(count=len(writers[0]), blocks_shape=list(noisy.shape[:2]))
    report.outputs = {t: len(w) for t, w in zip(targets, writers)}
    report.sources = len(writers[0])
    return report


def prepare_sidd_benchmark(noisy_mat, out_dir, compress_level=1, overwrite=False, variable=BENCHMARK_NOISY_VARIABLE):
    """SIDD benchmark blocks -> `out_dir/{ii}_{bb}.png` (noisy only, 8-bit BGR PNG) for inference.

    Args:
        noisy_mat (str): BenchmarkNoisyBlocksSrgb.mat.
        out_dir (str): The PNG folder to write.
        compress_level (int): PNG compression 0-9.
        overwrite (bool): Replace an existing folder.
        variable (str): Variable holding the noisy blocks.

    Returns:
        PrepReport: What was written.
    """
    compress_level = check_compress_level(compress_level)
    if not os.path.isfile(noisy_mat):
        raise MissingFileError(f'.mat file not found: {noisy_mat}')
    settings = dict(variable=variable, compress_level=compress_level)
    report, outputs = begin_command('sidd-benchmark', settings, [noisy_mat], [out_dir], overwrite)
    if report.up_to_date:
        return report
    noisy = load_blocks(noisy_mat, variable)
    with outputs:
        writer = outputs.folder(out_dir, compress_level=compress_level)
        on_result, _ = records_writer(lambda job: (writer, ))
        jobs = [(image, (noisy[image], )) for image in range(noisy.shape[0])]
        process_jobs(
            functools.partial(_encode_blocks, compress_level=compress_level), jobs, on_result, desc='SIDD images')
        outputs.info.update(count=len(writer), blocks_shape=list(noisy.shape[:2]))
    report.outputs = {out_dir: len(writer)}
    report.sources = len(writer)
    return report
