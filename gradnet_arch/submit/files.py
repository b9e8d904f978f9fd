"""Submission files written atomically, and folders of already-denoised PNGs read back by key.

Outputs that cannot be written (a read-only or full disk, a file in the way of a folder) end the command with an
OutputError (exit status 2, one line); the destination is probed before the slow part, and a failure while writing
leaves neither the output nor a temporary file behind.
"""
import numpy as np
import os
import re
from dataclasses import dataclass, field

from gradnet_arch.atomic_io import StagedFolders, atomic_open, check_new_file, check_writable_folder, make_folder
from gradnet_arch.common.images import list_images, read_image
from gradnet_arch.errors import DataError, MissingFileError, OptionError


@dataclass
class SubmitReport:
    """What a submission command wrote.

    Attributes:
        benchmark (str): 'sidd' or 'dnd'.
        outputs (list[str]): The file or folder written.
        results (int): Denoised blocks or crops in them.
        time_mp (float | None): Seconds per megapixel (measured, or given for a bundled folder).
        device (str | None): Where the model ran (None: results bundled from a folder).
    """
    benchmark: str
    outputs: list = field(default_factory=list)
    results: int = 0
    time_mp: float = None
    device: str = None

    def summary(self):
        """One line for the command line."""
        line = f'{self.benchmark}: {self.results} denoised result(s) -> {", ".join(self.outputs)}'
        if self.device is not None:
            line += f'; {self.time_mp:.4g} s per megapixel on {self.device}'
        return line


def check_output_file(path, overwrite):
    """Before any slow work: refuse an output file that cannot be written (atomic_io.check_new_file) or whose folder
    is not writable (atomic_io.check_writable_folder)."""
    check_new_file(path, overwrite)
    check_writable_folder(os.path.dirname(os.path.abspath(path)))


def atomic_savemat(path, variables, overwrite=False):
    """scipy.io.savemat (MATLAB v5, compressed) into a temporary file, named `path` once complete (atomic_open)."""
    import scipy.io

    make_folder(os.path.dirname(os.path.abspath(path)))
    # without overwrite the file is created exclusively: one written meanwhile by another run is never replaced
    with atomic_open(path, overwrite=overwrite) as fout:  # a file object: savemat would add '.mat' to a name
        scipy.io.savemat(fout, variables, do_compression=True, oned_as='row')


def staged_folder(out_dir, pattern, overwrite=False):
    """The output folder of a submission of several files, staged (atomic_io.StagedFolders, merged into `out_dir`).

    `out_dir` may exist and hold other files; files matching `pattern` (this kind of submission file) in it are
    replaced only with `overwrite`, and then the ones this run does not write are removed too, so that the folder
    never mixes two runs. On an error nothing in `out_dir` changes. The checks run now, before the slow part.

    Args:
        out_dir (str): The output folder.
        pattern (str): Regular expression of the names this kind of output uses (e.g. four digits + '.mat').
        overwrite (bool): Replace existing outputs.

    Returns:
        StagedFolders: Enter it, then write each file into `os.path.join(staged.temp(out_dir), name)`.
    """
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OptionError(f'{out_dir} is a file; -o takes the folder to write the submission files into.')
    existing = sorted(n for n in os.listdir(out_dir) if re.match(pattern, n)) if os.path.isdir(out_dir) else []
    if existing and not overwrite:
        raise OptionError(f'{out_dir} already holds {len(existing)} submission file(s) ({existing[0]}, ...); pass '
                          f'--overwrite to replace them, or choose another folder.')
    check_writable_folder(os.path.dirname(os.path.abspath(out_dir)))
    return StagedFolders([out_dir], overwrite, merge=pattern)


def find_keyed_pngs(folder, key_pattern, example, suffix=None):
    """PNGs of `folder` (common.images.list_images) named `<key>.png` or `<key>_<suffix>.png`, as gradnet-test /
    BasicSR save results.

    Args:
        folder (str): The folder (not searched recursively).
        key_pattern (str): Regular expression of the key with two groups, e.g. r'(\\d{2})_(\\d{2})'.
        example (str): A file name for messages, e.g. '01_01.png'.
        suffix (str | None): Take only files with this suffix after the key ('' = files named `<key>.png`);
            None takes any suffix, as long as each key has one file only.

    Returns:
        dict: {(first number, second number): path}.
    """
    if not os.path.isdir(folder):
        raise MissingFileError(f'folder of denoised PNGs not found: {folder}')
    pattern = re.compile(rf'^{key_pattern}(?:_(?P<rest>.+))?$')
    found = {}
    for name in list_images(folder, extensions=('.png', )):
        match = pattern.match(os.path.splitext(name)[0])
        if not match or (suffix is not None and (match['rest'] or '') != suffix):
            continue
        found.setdefault((int(match[1]), int(match[2])), []).append(name)
    if not found:
        wanted = f' with suffix {suffix!r}' if suffix else ''
        raise DataError(f'no PNG named like {example}{wanted} in {folder}; is this the folder of denoised results?')
    for key, names in found.items():
        if len(names) > 1:
            raise DataError(f'{folder} holds {len(names)} PNGs for one key: {", ".join(names)}; pass --suffix to '
                            f'choose which results to bundle.')
    return {key: os.path.join(folder, names[0]) for key, names in found.items()}


def full_grid(keys):
    """All (a, b) with 1 <= a <= max a and 1 <= b <= max b of `keys`: the grid a complete folder fills."""
    return [(a, b) for a in range(1, max(a for a, _ in keys) + 1) for b in range(1, max(b for _, b in keys) + 1)]


def check_keys(found, expected, folder, name):
    """DataError unless the keys of `found` are exactly `expected`; `name(key)` formats a key for the message."""
    missing = [key for key in expected if key not in found]
    extra = sorted(set(found) - set(expected))
    if missing:
        listed = ', '.join(f'{name(key)}.png' for key in missing[:3]) + (', ...' if len(missing) > 3 else '')
        raise DataError(f'{folder} lacks {len(missing)} of the {len(expected)} denoised results ({listed}); a '
                        f'submission needs all of them.')
    if extra:
        listed = ', '.join(name(key) for key in extra[:3]) + (', ...' if len(extra) > 3 else '')
        raise DataError(f'{folder} holds {len(extra)} result(s) the benchmark does not have ({listed}); is this the '
                        f'right folder for these inputs?')


def read_result_png(path):
    """An 8- or 16-bit colour PNG as an H x W x 3 RGB array (uint8 or uint16)."""
    img = read_image(path, advice='denoise that input again.')
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype not in (np.uint8, np.uint16):
        channels = 1 if img.ndim == 2 else img.shape[2]
        raise DataError(f'{path} is a {channels}-channel {img.dtype} image; the benchmark wants 8- or 16-bit colour '
                        f'(3-channel) results.')
    return np.ascontiguousarray(img[..., ::-1])  # OpenCV gives BGR
