"""Image folders -> BasicSR LMDBs: crops of clean images, and paired noisy/clean images with a train/val split.

Crop positions (`crop_grid`) follow BasicSR's scripts/data_preparation/extract_subimages.py: along each axis, crops
start at 0, step, 2 * step, ...; if the last one ends more than `thresh_size` pixels before the border, one more
crop is added flush with the border. With the default `thresh_size` 0 every pixel is covered (the border crop
overlaps its neighbour more than the others do); a larger `thresh_size` drops border strips up to that width
instead. Crop keys are `{image key}_s{index:03d}` with index 1, 2, ... row by row, BasicSR's naming.

Images are read as BasicSR reads them (common.images.read_image: OpenCV, BGR, EXIF orientation applied) but keep
their bit depth: 16-bit sources give 16-bit PNGs in the LMDB. BasicSR's own readers (imfrombytes) decode those to 8
bit; GaussianNoiseDataset keeps 16 bit.
"""
import functools
import os
import random
import sys

from gradnet_arch.common.images import COLORS, IMAGE_EXTENSIONS, list_images, read_image
from gradnet_arch.errors import DataError, MissingFileError, OptionError
from gradnet_arch.prep.lmdb_writer import encode_png, make_key
from gradnet_arch.prep.options import check_compress_level, check_positive
from gradnet_arch.prep.pool import process_jobs
from gradnet_arch.prep.stamps import begin_command

SKIP_ADVICE = 'replace it, remove it or pass --skip-bad to leave it out.'


def crop_positions(length, crop_size, step, thresh_size=0):
    """Start offsets of crops along one axis (empty if `length` < `crop_size`); see the module docstring."""
    if length < crop_size:
        return []
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def crop_grid(height, width, crop_size, step, thresh_size=0):
    """(top, left) of every crop of a height x width image, row by row."""
    tops = crop_positions(height, crop_size, step, thresh_size)
    lefts = crop_positions(width, crop_size, step, thresh_size)
    return [(top, left) for top in tops for left in lefts]


def check_crop_options(crop_size, step, thresh_size):
    """Validate crop_size, step (default crop_size // 2) and thresh_size; returns them as ints."""
    crop_size = check_positive('crop_size', crop_size)
    step = crop_size // 2 if step is None else check_positive('step', step)
    thresh_size = check_positive('thresh_size', thresh_size, 0)
    return crop_size, max(step, 1), thresh_size


def encode_sources(job, color, crop_size, step, thresh_size, compress_level):
    """Read the images of one job, check they match, crop them alike and PNG-encode them.

    Args:
        job (tuple): (key, paths, crop): the images' key, their files (one, or a pair that must match pixel for
            pixel in size), and whether to cut crops (else the whole images are kept).

    Returns:
        list[tuple]: (key, [(png bytes, shape) for each path]) per crop or for the whole images.
    """
    key, paths, crop = job
    images = [read_image(path, color, advice=SKIP_ADVICE) for path in paths]
    for path, img in zip(paths[1:], images[1:]):
        if img.shape != images[0].shape or img.dtype != images[0].dtype:
            raise DataError(f'{paths[0]} is {_describe(images[0])} but its partner {path} is {_describe(img)}; the '
                            f'images of a pair must have the same size.')
    if not crop:
        return [(key, [encode_png(img, compress_level) for img in images])]
    height, width = images[0].shape[:2]
    if height < crop_size or width < crop_size:
        raise DataError(f'{paths[0]} is {height}x{width}, smaller than the crop size {crop_size}; lower the crop '
                        f'size, remove the image or pass --skip-bad to leave it out.')
    records = []
    for index, (top, left) in enumerate(crop_grid(height, width, crop_size, step, thresh_size), 1):
        window = (slice(top, top + crop_size), slice(left, left + crop_size))
        records.append((f'{key}_s{index:03d}', [encode_png(img[window], compress_level) for img in images]))
    return records


def _describe(img):
    channels = 1 if img.ndim == 2 else img.shape[2]
    return f'{img.shape[0]}x{img.shape[1]}x{channels} {img.dtype}'


def records_writer(writers):
    """on_result callback: put each record's encoded images into the writers (same order as the job's paths)."""
    counts = {'sources': 0}

    def on_result(job, records):
        counts['sources'] += 1
        for key, encoded in records:
            for writer, (value, shape) in zip(writers(job), encoded):
                writer.put(key, value, shape)

    return on_result, counts


def _check_color(color):
    if color not in COLORS:
        raise OptionError(f'color must be one of {COLORS}, got {color!r}.')
    return color


def _check_lmdb_path(path):
    if not str(path).endswith('.lmdb'):
        raise OptionError(f'an LMDB output must end with .lmdb (BasicSR checks this), got {path}.')
    return str(path)


def prepare_crops(folders,
                  out,
                  crop_size=480,
                  step=240,
                  thresh_size=0,
                  color='rgb',
                  recursive=False,
                  folder_prefix=False,
                  compress_level=1,
                  workers=1,
                  overwrite=False,
                  skip_bad=False,
                  map_size=None):
    """Cut the clean images of one or more folders into crops and write them into one LMDB.

    Keys are `{stem}_s{index:03d}` (with `recursive`, the stem includes the sub-folder path with '_' for '/'; with
    `folder_prefix`, the input folder's name comes first). Two images that would share a key stop the command.

    Args:
        folders (str | list[str]): Folders of clean images.
        out (str): The LMDB to write (`*.lmdb`).
        crop_size (int): Crop size (BasicSR's DIV2K default 480).
        step (int): Distance between crops (default 240).
        thresh_size (int): Border strips up to this width get no extra crop (0: cover every pixel).
        color (str): 'rgb' or 'gray'.
        recursive (bool): Include images in sub-folders.
        folder_prefix (bool): Start keys with the input folder's name (for folders with clashing file names).
        compress_level (int): PNG compression 0-9 (BasicSR uses 1).
        workers (int): Encoding processes.
        overwrite (bool): Replace an existing LMDB; see stamps.
        skip_bad (bool): Skip unreadable or too small images (reported) instead of stopping.
        map_size (int | None): Initial LMDB map size in bytes (it grows as needed).

    Returns:
        PrepReport: What was written.
    """
    folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    if not folders:
        raise OptionError('crops: give at least one image folder.')
    out = _check_lmdb_path(out)
    crop_size, step, thresh_size = check_crop_options(crop_size, step, thresh_size)
    color = _check_color(color)
    compress_level = check_compress_level(compress_level)
    jobs, owners = [], {}
    for folder in folders:
        folder = os.path.expanduser(str(folder))
        files = list_images(folder, recursive)
        if not files:
            raise DataError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in {folder}'
                            f'{"" if recursive else " (pass --recursive to include sub-folders)"}.')
        prefix = make_key(os.path.basename(os.path.normpath(folder))) + '_' if folder_prefix else ''
        for rel in files:
            path = os.path.join(folder, rel)
            key = prefix + make_key(os.path.splitext(rel)[0].replace(os.sep, '_'))
            if key in owners:
                raise DataError(f'{owners[key]} and {path} would both be stored under key {key!r}; rename one'
                                f'{"" if folder_prefix else " or pass --folder-prefix"}.')
            owners[key] = path
            jobs.append((key, (path, ), True))
    settings = dict(
        crop_size=crop_size,
        step=step,
        thresh_size=thresh_size,
        color=color,
        recursive=recursive,
        folder_prefix=folder_prefix,
        compress_level=compress_level,
        skip_bad=skip_bad)
    report, outputs = begin_command('crops', settings, [job[1][0] for job in jobs], [out], overwrite, sources=len(jobs))
    if report.up_to_date:
        return report
    encode = functools.partial(
        encode_sources,
        color=color,
        crop_size=crop_size,
        step=step,
        thresh_size=thresh_size,
        compress_level=compress_level)
    with outputs:
        writer = outputs.lmdb(out, compress_level=compress_level, map_size=map_size)
        on_result, counts = records_writer(lambda job: (writer, ))
        report.skipped = process_jobs(encode, jobs, on_result, workers, skip_bad, desc='crops')
        _check_not_empty(writer, report)
        outputs.info.update(count=len(writer), sources=counts['sources'], skipped=report.skipped)
    report.outputs[out] = len(writer)
    report.sources = counts['sources']
    return report


def _check_not_empty(writer, report):
    if not len(writer):
        raise DataError(f'{report.command}: nothing to write ({len(report.skipped)} source(s) skipped); no output '
                        f'was created.')


def find_pairs(lq_dir, gt_dir=None, lq_suffix='', gt_suffix='', recursive=False):
    """Match noisy (lq) and clean (gt) images by name.

    An lq file `{name}{lq_suffix}.{ext}` pairs with the gt file `{name}{gt_suffix}.{ext2}` (any image extension).
    With gt_dir left out, both are in lq_dir and the suffixes must differ (PolyU: `_real` and `_mean`); files
    ending in neither suffix are ignored.

    Returns:
        tuple: (pairs, unpaired): pairs is a sorted list of (name, gt_path, lq_path); unpaired lists one message
        per image without a partner.
    """
    gt_dir = lq_dir if gt_dir is None else gt_dir
    same = os.path.normpath(os.path.abspath(lq_dir)) == os.path.normpath(os.path.abspath(gt_dir))
    if same and lq_suffix == gt_suffix:
        raise OptionError(f'noisy and clean images are both in {lq_dir}: give different --lq-suffix and --gt-suffix '
                          f'(for PolyU: --lq-suffix _real --gt-suffix _mean).')
    sides = {}
    for role, folder, suffix, other in (('lq', lq_dir, lq_suffix, gt_suffix), ('gt', gt_dir, gt_suffix, lq_suffix)):
        names = {}
        for rel in list_images(folder, recursive):
            stem = os.path.splitext(rel)[0]
            if not stem.endswith(suffix) or (same and other and len(other) > len(suffix) and stem.endswith(other)):
                continue  # e.g. suffix '' in a shared folder would otherwise also take the other side's files
            name = stem[:len(stem) - len(suffix)]
            if not name:
                continue
            if name in names:
                raise DataError(f'{os.path.join(folder, names[name])} and {os.path.join(folder, rel)} both match '
                                f'the {role} name {name!r}; keep one.')
            names[name] = rel
        sides[role] = names
    if not sides['lq'] and not sides['gt']:
        raise DataError(f'no images named *{lq_suffix}.* in {lq_dir} or *{gt_suffix}.* in {gt_dir}.')
    pairs, unpaired = [], []
    for name in sorted(set(sides['lq']) | set(sides['gt'])):
        lq, gt = sides['lq'].get(name), sides['gt'].get(name)
        if lq is None:
            unpaired.append(f'clean image {os.path.join(gt_dir, gt)} has no noisy partner {name}{lq_suffix}.* in '
                            f'{lq_dir}')
        elif gt is None:
            unpaired.append(f'noisy image {os.path.join(lq_dir, lq)} has no clean partner {name}{gt_suffix}.* in '
                            f'{gt_dir}')
        else:
            pairs.append((name, os.path.join(gt_dir, gt), os.path.join(lq_dir, lq)))
    return pairs, unpaired


def handle_unpaired(unpaired, skip_bad, what='image'):
    """DataError listing unpaired images (first five), or with `skip_bad` report them as skips and return them."""
    if not unpaired or skip_bad:
        for message in unpaired:
            print(f'skipped: {message}', file=sys.stderr)
        return list(unpaired)
    shown = '; '.join(unpaired[:5]) + (f'; and {len(unpaired) - 5} more' if len(unpaired) > 5 else '')
    raise DataError(f'{len(unpaired)} unpaired {what}(s): {shown}. Add the partners, remove these files, or pass '
                    f'--skip-bad to leave them out.')


def split_pairs(names, val_count=None, val_fraction=None, seed=0):
    """Deterministic train/val split of pair names.

    The validation set is `random.Random(seed).sample(sorted(names), k)` with k = val_count, or
    round(val_fraction * n) (at least 1 when val_fraction > 0). It depends only on the set of names and the seed,
    never on file system order. Both lists come back sorted.

    Returns:
        tuple: (train_names, val_names).
    """
    names = sorted(names)
    if val_count is not None and val_fraction is not None:
        raise OptionError('give either val_count or val_fraction, not both.')
    if val_fraction is not None:
        if not 0 <= val_fraction < 1:
            raise OptionError(f'val_fraction must be in [0, 1), got {val_fraction}.')
        count = max(1, round(val_fraction * len(names))) if val_fraction > 0 else 0
    else:
        count = check_positive('val_count', 0 if val_count is None else val_count, 0)
    if count >= len(names):
        raise OptionError(f'a validation set of {count} leaves no training pairs (there are {len(names)} pairs).')
    val = set(random.Random(seed).sample(names, count))
    return [n for n in names if n not in val], [n for n in names if n in val]


def prepare_paired(lq_dir,
                   out_dir,
                   gt_dir=None,
                   lq_suffix='',
                   gt_suffix='',
                   val_count=None,
                   val_fraction=None,
                   seed=0,
                   crop_size=None,
                   step=None,
                   thresh_size=0,
                   color='rgb',
                   recursive=False,
                   compress_level=1,
                   workers=1,
                   overwrite=False,
                   skip_bad=False,
                   map_size=None):
    """Paired noisy/clean folders -> `out_dir/train/{gt,lq}.lmdb` and `out_dir/val/{gt,lq}.lmdb`.

    Pairs are matched by `find_pairs` and split by `split_pairs`. Training pairs are cut into crops when
    `crop_size` is given (keys `{name}_s{index:03d}`), else stored whole (key `{name}`); validation pairs are always
    whole. Without a validation set only the train LMDBs are written. The gt and lq LMDBs of a split have the same
    keys, as BasicSR's PairedImageDataset requires.

    Args:
        lq_dir (str): Folder of noisy images.
        out_dir (str): Output folder.
        gt_dir (str | None): Folder of clean images (default: lq_dir).
        lq_suffix (str): Noisy file name ending before the extension (PolyU: '_real').
        gt_suffix (str): Clean file name ending (PolyU: '_mean').
        val_count (int | None): Pairs held out for validation ...
        val_fraction (float | None): ... or this fraction of them.
        seed (int): Seed of the split.
        crop_size (int | None): Crop the training pairs to this size.
        step (int | None): Distance between crops (default crop_size // 2).
        thresh_size (int): Border strips up to this width get no extra crop.
        color (str): 'rgb' or 'gray'.
        recursive (bool): Include sub-folders (names then include the sub-folder path).
        compress_level (int): PNG compression 0-9.
        workers (int): Encoding processes.
        overwrite (bool): Replace existing outputs.
        skip_bad (bool): Skip unpaired, unreadable, mismatched or too small images (reported) instead of stopping.
        map_size (int | None): Initial LMDB map size in bytes.

    Returns:
        PrepReport: What was written.
    """
    for folder in (lq_dir, gt_dir):
        if folder is not None and not os.path.isdir(folder):
            raise MissingFileError(f'image folder not found: {folder}')
    crop = crop_size is not None
    if crop:
        crop_size, step, thresh_size = check_crop_options(crop_size, step, thresh_size)
    color = _check_color(color)
    compress_level = check_compress_level(compress_level)
    pairs, unpaired = find_pairs(lq_dir, gt_dir, lq_suffix, gt_suffix, recursive)
    skipped = handle_unpaired(unpaired, skip_bad)
    if not pairs:
        raise DataError(f'no image pairs found in {lq_dir}' + (f' and {gt_dir}' if gt_dir else '') + '.')
    keys = {}
    for name, gt, _ in pairs:
        key = make_key(name)
        if key in keys:
            raise DataError(f'{keys[key]} and {gt} would both be stored under key {key!r}; rename one.')
        keys[key] = gt
    train_names, val_names = split_pairs([p[0] for p in pairs], val_count, val_fraction, seed)
    val_set = set(val_names)
    splits = ('train', 'val') if val_names else ('train', )
    targets = {(split, role): os.path.join(out_dir, split, f'{role}.lmdb') for split in splits for role in ('gt', 'lq')}
    jobs = [(make_key(name), (gt, lq), crop and name not in val_set) for name, gt, lq in pairs]
    job_split = {job[0]: 'val' if name in val_set else 'train' for job, (name, _, _) in zip(jobs, pairs)}
    settings = dict(
        lq_suffix=lq_suffix,
        gt_suffix=gt_suffix,
        val_names=val_names,
        crop_size=crop_size if crop else None,
        step=step if crop else None,
        thresh_size=thresh_size if crop else None,
        color=color,
        recursive=recursive,
        compress_level=compress_level,
        skip_bad=skip_bad)
    report, outputs = begin_command(
        'paired',
        settings, [path for _, gt, lq in pairs for path in (gt, lq)],
        targets.values(),
        overwrite,
        sources=len(pairs))
    if report.up_to_date:
        return report
    encode = functools.partial(
        encode_sources,
        color=color,
        crop_size=crop_size,
        step=step,
        thresh_size=thresh_size,
        compress_level=compress_level)
    with outputs:
        writers = {
            name: outputs.lmdb(path, compress_level=compress_level, map_size=map_size)
            for name, path in targets.items()
        }

        def writers_of(job):
            split = job_split[job[0]]
            return writers[split, 'gt'], writers[split, 'lq']

        on_result, counts = records_writer(writers_of)
        skipped += process_jobs(encode, jobs, on_result, workers, skip_bad, desc='pairs')
        report.skipped = skipped
        for name, writer in writers.items():
            if not len(writer):
                raise DataError(f'paired: nothing left for {targets[name]} ({len(skipped)} source(s) skipped); '
                                f'no output was created.')
        outputs.info.update(
            counts={
                path: len(writers[name])
                for name, path in targets.items()
            },
            sources=counts['sources'],
            skipped=skipped,
            train_names=train_names)
    report.outputs = {path: len(writers[name]) for name, path in targets.items()}
    report.sources = counts['sources']
    return report
