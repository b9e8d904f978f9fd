"""Submission files written atomically, and folders of already-denoised PNGs read back by key.

Outputs that cannot be written (a read-only or full disk, a file in the way of a folder) end the command with an
OutputError (exit status 2, one line); the destination is probed before the slow part, and a failure while writing
leaves neither the output nor a temporary file behind.
"""
import contextlib
import cv2
import numpy as np
import os
import re
import shutil
from dataclasses import dataclass, field

from gradnet_arch.atomic_io import atomic_open, check_writable_folder, commit, make_folder, output_error
from gradnet_arch.errors import DataError, ImageReadError, MissingFileError, OptionError, UserError


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


def _temp_name(path):
    """A hidden sibling of `path` for this process: same folder, so os.replace is a rename, never a copy."""
    parent, base = os.path.split(os.path.abspath(path))
    return os.path.join(parent, f'.{base}.tmp-{os.getpid()}')


def check_new_file(path, overwrite):
    """Before any slow work: OptionError if `path` exists and `overwrite` is false, or if it is a folder; OutputError
    if its folder cannot be written (see atomic_io.check_writable_folder)."""
    if os.path.isdir(path):
        raise OptionError(
            f'{path} is a folder; give the output file name, e.g. {os.path.join(path, "SubmitSrgb.mat")}.')
    if os.path.lexists(path) and not overwrite:
        raise OptionError(f'{path} already exists; pass --overwrite to replace it.')
    check_writable_folder(os.path.dirname(os.path.abspath(path)))


def atomic_savemat(path, variables, overwrite=False):
    """scipy.io.savemat (MATLAB v5, compressed) into a temporary file, renamed to `path` once complete."""
    import scipy.io

    check_new_file(path, overwrite)
    make_folder(os.path.dirname(os.path.abspath(path)))
    # without overwrite the file is created exclusively: one written meanwhile by another run is never replaced
    with atomic_open(path, overwrite=overwrite) as fout:  # a file object: savemat would add '.mat' to a name
        scipy.io.savemat(fout, variables, do_compression=True, oned_as='row')


class StagedFolder:
    """Files written into a hidden temporary folder and moved into `out_dir` only when all were written.

    `out_dir` may exist and hold other files; files matching `pattern` (this kind of submission file) in it are
    replaced only with `overwrite`, and then the ones this run does not write are removed too, so that the folder
    never mixes two runs. On an error nothing in `out_dir` changes.

    Args:
        out_dir (str): The output folder.
        pattern (str): Regular expression of the names this kind of output uses (e.g. four digits + '.mat').
        overwrite (bool): Replace existing outputs.
    """

    def __init__(self, out_dir, pattern, overwrite=False):
        self.out_dir = out_dir
        self.pattern = re.compile(pattern)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise OptionError(f'{out_dir} is a file; -o takes the folder to write the submission files into.')
        self.existing = sorted(n for n in os.listdir(out_dir)
                               if self.pattern.match(n)) if os.path.isdir(out_dir) else []
        if self.existing and not overwrite:
            raise OptionError(f'{out_dir} already holds {len(self.existing)} submission file(s) ({self.existing[0]}, '
                              f'...); pass --overwrite to replace them, or choose another folder.')
        self.overwrite = overwrite
        self.temp = _temp_name(out_dir)
        check_writable_folder(os.path.dirname(self.temp))  # refuses before the slow part

    def __enter__(self):
        try:
            if os.path.exists(self.temp):  # left by a killed run of a process with the same id
                shutil.rmtree(self.temp)
            make_folder(os.path.dirname(self.temp))
            os.makedirs(self.temp)
        except OSError as error:
            raise output_error(self.out_dir, error) from None
        return self

    def path(self, name):
        """Where to write the output file `name` now (inside the temporary folder)."""
        return os.path.join(self.temp, name)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._move_into_place()
                return False
            except BaseException as error:
                exc = error
        shutil.rmtree(self.temp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, UserError):  # a write failed: full disk, read-only, ...
            raise output_error(self.out_dir, exc) from None
        if exc_type is None:
            raise exc
        return False

    def _move_into_place(self):
        if not os.path.lexists(self.out_dir):
            try:
                os.rename(self.temp, self.out_dir)  # the whole folder at once
                return
            except OSError:  # another run made the folder meanwhile: move the files one by one
                pass
        make_folder(self.out_dir)
        written, created = sorted(os.listdir(self.temp)), []
        try:
            for name in written:
                dest = os.path.join(self.out_dir, name)
                existed = os.path.lexists(dest)
                # without overwrite, a file another run wrote meanwhile is never replaced (OutputExistsError)
                commit(os.path.join(self.temp, name), dest, self.overwrite)
                if not existed:
                    created.append(dest)
        except BaseException:
            for dest in created:  # leave the folder as it was (files replaced with --overwrite stay: complete)
                with contextlib.suppress(OSError):
                    os.remove(dest)
            raise
        for name in self.existing:
            if name not in written:
                os.remove(os.path.join(self.out_dir, name))
        os.rmdir(self.temp)


def find_keyed_pngs(folder, key_pattern, example, suffix=None):
    """PNGs of `folder` named `<key>.png` or `<key>_<suffix>.png` (as gradnet-test / BasicSR save results).

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
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        match = pattern.match(stem)
        if ext.lower() != '.png' or name.startswith('.') or not match:
            continue
        if suffix is not None and (match['rest'] or '') != suffix:
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
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(f'cannot read image {path} (corrupt, truncated or not an image); denoise that input '
                             f'again.')
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype not in (np.uint8, np.uint16):
        channels = 1 if img.ndim == 2 else img.shape[2]
        raise DataError(f'{path} is a {channels}-channel {img.dtype} image; the benchmark wants 8- or 16-bit colour '
                        f'(3-channel) results.')
    return np.ascontiguousarray(img[..., ::-1])  # OpenCV gives BGR
