"""Writing BasicSR's LMDBs and PNG folders: streamed, growing, atomic and safe to re-run.

An LMDB here has exactly BasicSR's layout (basicsr/utils/lmdb_util.py)::

    name.lmdb/
        data.mdb        values: PNG-encoded images (BGR or grey, 8 or 16 bit, as cv2.imencode writes them)
        lock.mdb
        meta_info.txt   one line per image: `key.png (H,W,C) compression_level`
        .gradnet_prep.json   this tool's stamp (hidden; BasicSR never reads it)

Keys are ASCII without dots or white space, because BasicSR takes a key from meta_info.txt as the part before the
first '.' and encodes it as ASCII.

Safety rules, shared by every command of `python -m gradnet_arch.prep`:

- Streaming: images go into the LMDB in transactions of at most `batch_items` images or `batch_bytes` bytes; only
  the open transaction's encoded images are held in memory.
- Map growth: the LMDB map starts small and doubles (env.set_mapsize) whenever a transaction does not fit, and the
  transaction is replayed, so tiny and huge sets both work without guessing a map size.
- Atomicity: every output is written into a hidden temporary folder next to its target (`.name.partial-PID-XXXX`)
  and renamed into place only after all outputs of the command are complete. A failed or interrupted run removes
  its temporary folders; one killed outright leaves only a hidden `.partial-` folder, which the next run in that
  folder removes. A half-written LMDB never sits under the target name. Ctrl-C is held back for the few
  milliseconds of the final renames, so an interrupt never leaves some outputs of a command in place and others
  not. A write that fails (read-only or full disk, a file in the way of a folder) raises OutputError.
- Interrupts: worker processes ignore Ctrl-C (SIGINT reaches the whole process group); the main process stops
  them itself, so an interrupted run ends promptly instead of hanging on a worker killed in mid-hand-over.
- Re-running: each finished output holds a stamp (`.gradnet_prep.json`) with a fingerprint of the command, its
  settings and its input files (path, size, modification time). Re-running the same command on unchanged inputs
  finds every output up to date and does nothing. If any output exists but is not up to date (other inputs or
  settings, a different tool, or only some outputs present) the command stops without touching it, unless
  `overwrite` is set; the old output is then replaced only once the new one is complete.
"""
import collections
import contextlib
import cv2
import datetime
import errno
import hashlib
import json
import lmdb
import multiprocessing
import numpy as np
import os
import re
import secrets
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from tqdm import tqdm

from gradnet_arch.atomic_io import make_folder, output_error
from gradnet_arch.errors import DataError, ImageReadError, OptionError, OutputError, OutputExistsError, UserError

STAMP_NAME = '.gradnet_prep.json'
FORMAT_VERSION = 1  # bump when the meaning of an output changes, so that old outputs are no longer "up to date"
DEFAULT_MAP_SIZE = 1 << 26  # 64 MiB to start with; grows as needed
MAX_MAP_SIZE = 1 << 46  # 64 TiB: beyond this a MapFullError means something else is wrong
_KEY_RE = re.compile(r'^[A-Za-z0-9_+\-]+$')
_TEMP_RE = r'^\.{name}\.(?:partial|old)-(\d+)-[0-9a-f]+$'


def check_key(key):
    """Raise DataError unless `key` is a valid BasicSR LMDB key (ASCII letters, digits, '_', '+', '-')."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise DataError(f'invalid LMDB key {key!r}: BasicSR keys are ASCII letters, digits, "_", "+" and "-" only '
                        f'(a "." would cut the key short in meta_info.txt).')
    return key


def make_key(text):
    """Turn a file name stem or relative path into a valid key (every other character becomes '_')."""
    key = re.sub(r'[^A-Za-z0-9_+\-]', '_', text)
    return key or '_'


def encode_png(img, compress_level=1):
    """PNG-encode an HxW or HxWxC uint8/uint16 image (BGR for colour) as cv2 does for BasicSR.

    Args:
        img (ndarray): The image.
        compress_level (int): PNG compression 0-9; BasicSR's LMDB scripts use 1.

    Returns:
        tuple: (bytes of the PNG, shape (H, W, C) for meta_info.txt).
    """
    if img.dtype not in (np.uint8, np.uint16):
        raise DataError(f'cannot store a {img.dtype} image as PNG; convert it to uint8 or uint16 first.')
    ok, buf = cv2.imencode('.png', np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise DataError(f'OpenCV could not PNG-encode an image of shape {img.shape}.')
    shape = (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2])
    return buf.tobytes(), shape


def read_meta_info(lmdb_path):
    """Keys of an LMDB in meta_info.txt order, read the way BasicSR does (the part before the first '.')."""
    with open(os.path.join(lmdb_path, 'meta_info.txt')) as fin:
        return [line.split('.')[0] for line in fin if line.strip()]


class _ImageSink:
    """What both writers share: a new folder, unique valid keys, and PNG encoding with one compression level."""

    def __init__(self, path, compress_level=1, name=None):
        os.makedirs(path)
        self.path = path
        self.name = name or path
        self.compress_level = int(compress_level)
        self._keys = set()

    def __len__(self):
        return len(self._keys)

    def put_image(self, key, img):
        """PNG-encode `img` (BGR or grey, uint8 or uint16) and store it under `key`."""
        value, shape = encode_png(img, self.compress_level)
        self.put(key, value, shape)

    def _claim(self, key, what):
        check_key(key)
        if key in self._keys:
            raise DataError(f'two images map to the same {what} in {self.name}; rename one of the sources.')
        self._keys.add(key)


class LmdbWriter(_ImageSink):
    """Stream images into a new BasicSR LMDB folder.

    Use it through `AtomicOutputs.lmdb`, which points it at a temporary folder and renames the folder into place
    once everything succeeded.

    Args:
        path (str): The folder to create (must not exist).
        compress_level (int): PNG compression level recorded in meta_info.txt (and used by `put_image`).
        map_size (int | None): Initial LMDB map size in bytes; it doubles whenever a transaction does not fit.
        batch_items (int): Commit after this many images ...
        batch_bytes (int): ... or after this many encoded bytes, whichever comes first.
        name (str | None): The path to name in messages (the final target rather than the temporary folder).
    """

    def __init__(self, path, compress_level=1, map_size=None, batch_items=1000, batch_bytes=1 << 26, name=None):
        super().__init__(path, compress_level, name)
        self.batch_items = max(1, int(batch_items))
        self.batch_bytes = max(1, int(batch_bytes))
        self.map_growths = 0
        # no fsync per commit: an unfinished LMDB is thrown away anyway; close() syncs before the rename
        self.env = lmdb.open(path, map_size=int(map_size or DEFAULT_MAP_SIZE), meminit=False, sync=False)
        self._meta = open(os.path.join(path, 'meta_info.txt'), 'w')
        self._pending = []  # (key, value, shape) of the open transaction
        self._pending_bytes = 0

    def put(self, key, value, shape):
        """Store already PNG-encoded bytes (encoded with this writer's compress_level) under `key`."""
        self._claim(key, f'key {key!r}')
        self._pending.append((key, value, tuple(int(s) for s in shape)))
        self._pending_bytes += len(value)
        if len(self._pending) >= self.batch_items or self._pending_bytes >= self.batch_bytes:
            self.flush()

    def flush(self):
        """Commit the open batch, growing the map and replaying the batch if it does not fit."""
        if not self._pending:
            return
        while True:
            try:
                with self.env.begin(write=True) as txn:  # aborted on any exception, committed otherwise
                    for key, value, _ in self._pending:
                        txn.put(key.encode('ascii'), value)
                break
            except lmdb.MapFullError:
                size = self.env.info()['map_size']
                if size >= MAX_MAP_SIZE:
                    raise
                self.env.set_mapsize(size * 2)
                self.map_growths += 1
        # meta_info.txt lines only for committed images, so the file never lists a key the LMDB lacks
        for key, _, (h, w, c) in self._pending:
            self._meta.write(f'{key}.png ({h},{w},{c}) {self.compress_level}\n')
        self._pending, self._pending_bytes = [], 0

    def close(self):
        """Commit what is left and close the LMDB."""
        self.flush()
        self.env.sync(True)
        self.env.close()
        self._meta.close()

    def abort(self):
        """Close without committing the open batch (the folder is about to be deleted)."""
        self._pending = []
        self.env.close()
        self._meta.close()


class FolderWriter(_ImageSink):
    """Write PNG-encoded images as `{key}.png` files into a new folder (for inference inputs).

    Args:
        path (str): The folder to create (must not exist).
        compress_level (int): PNG compression level of `put_image`.
    """

    def put(self, key, value, shape=None):
        self._claim(key, f'file name {key}.png')
        with open(os.path.join(self.path, f'{key}.png'), 'wb') as fout:
            fout.write(value)

    def close(self):
        pass  # every file is closed as it is written

    def abort(self):
        pass


def fingerprint(command, settings, input_files):
    """A hex digest of the command, its settings and its inputs (absolute path, size, modification time).

    Contents are not hashed: SIDD alone is tens of GB, and size + mtime catch replaced or re-downloaded files.
    """
    files = []
    for path in input_files:
        stat = os.stat(path)
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    content = dict(format=FORMAT_VERSION, command=command, settings=settings, files=files)
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_stamp(target):
    """The stamp of a finished output as a dict, or None if it has none (or an unreadable one)."""
    try:
        with open(os.path.join(target, STAMP_NAME)) as fin:
            stamp = json.load(fin)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


class AtomicOutputs:
    """All outputs of one command, staged in temporary folders and renamed into place together on success.

    Usage::

        outputs = AtomicOutputs([gt_path, lq_path], digest, overwrite=False)
        if not outputs.up_to_date:
            with outputs:
                gt, lq = outputs.lmdb(gt_path), outputs.lmdb(lq_path)
                ...  # put images; any exception discards everything

    Args:
        targets (list[str]): Output paths (LMDB folders or PNG folders).
        digest (str): `fingerprint(...)` of the command; stored in each output's stamp.
        overwrite (bool): Replace outputs that exist but are not up to date (and rebuild up-to-date ones).
        stamp (dict | None): Extra information for the stamp (command, settings). `info` can add more while writing.

    Raises:
        OptionError: An output exists and is not up to date, and `overwrite` is off.
    """

    def __init__(self, targets, digest, overwrite=False, stamp=None):
        self.targets = [os.path.abspath(t) for t in targets]
        if len(set(self.targets)) != len(self.targets):
            raise OptionError(f'two outputs of one command have the same path: {self.targets}')
        self.digest = digest
        self.overwrite = overwrite
        self.info = dict(stamp or {})
        self._temps = {}
        self._writers = []
        self.up_to_date = self._check()

    def _check(self):
        existing = [t for t in self.targets if os.path.lexists(t)]
        if not existing or self.overwrite:
            return False
        stamps = [read_stamp(t) for t in existing]
        if len(existing) == len(self.targets) and all(s and s.get('fingerprint') == self.digest for s in stamps):
            return True
        target, stamp = existing[0], stamps[0]
        if stamp is None:
            why = 'was not written by this tool (or is incomplete)'
        elif stamp.get('fingerprint') != self.digest:
            why = 'was built from other inputs or settings'
        else:
            missing = [t for t in self.targets if t not in existing]
            why = f'is up to date but {missing[0]} is missing'
        raise OptionError(f'{target} already exists and {why}; pass --overwrite to replace it (the old one stays '
                          f'until the new one is complete), or choose another output.')

    def __enter__(self):
        if self.up_to_date:
            raise RuntimeError('outputs are up to date; check `up_to_date` before writing')
        token = secrets.token_hex(4)
        for target in self.targets:
            parent, name = os.path.split(target)
            make_folder(parent)
            self._remove_stale(parent, name)
            self._temps[target] = os.path.join(parent, f'.{name}.partial-{os.getpid()}-{token}')
        return self

    @staticmethod
    def _remove_stale(parent, name):
        """Remove temporary folders of `name` left by killed runs (their process no longer exists)."""
        pattern = re.compile(_TEMP_RE.format(name=re.escape(name)))
        for entry in os.listdir(parent):
            match = pattern.match(entry)
            if match and not _pid_alive(int(match.group(1))):
                _remove(os.path.join(parent, entry))

    def _temp(self, target):
        target = os.path.abspath(target)
        if target not in self._temps:
            raise ValueError(f'{target} is not one of this command\'s outputs {self.targets}')
        return self._temps[target]

    def lmdb(self, target, **kwargs):
        """An LmdbWriter for `target` (kwargs: compress_level, map_size, batch_items, batch_bytes)."""
        writer = LmdbWriter(self._temp(target), name=target, **kwargs)
        self._writers.append(writer)
        return writer

    def folder(self, target, **kwargs):
        """A FolderWriter for `target` (kwargs: compress_level)."""
        writer = FolderWriter(self._temp(target), name=target, **kwargs)
        self._writers.append(writer)
        return writer

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._discard()
            self._raise_write_error(exc)
            return False
        try:
            for writer in self._writers:
                writer.close()
            for target, temp in self._temps.items():
                if not os.path.isdir(temp):
                    raise RuntimeError(f'no writer was opened for {target}')
                self._write_stamp(temp)
            with _sigint_deferred():
                self._commit()
        except BaseException as error:
            self._discard()
            self._raise_write_error(error)
            raise
        return False

    def _raise_write_error(self, error):
        """Raise OutputError for a failed write (OSError, LMDB error); other errors are left to propagate."""
        if isinstance(error, UserError) or not isinstance(error, (OSError, lmdb.Error)):
            return
        target = self.targets[0] if len(self.targets) == 1 else os.path.commonpath(self.targets)
        if isinstance(error, OSError):
            raise output_error(target, error) from None
        raise OutputError(f'cannot write {target}: {error}; check that the disk has space and the folder is '
                          f'writable') from None

    def _write_stamp(self, temp):
        stamp = dict(self.info)
        stamp.update(
            tool='gradnet_arch.prep',
            format=FORMAT_VERSION,
            fingerprint=self.digest,
            written=datetime.datetime.now().isoformat(timespec='seconds'))
        with open(os.path.join(temp, STAMP_NAME), 'w') as fout:
            json.dump(stamp, fout, indent=1, sort_keys=True)

    def _commit(self):
        done = []  # (target, temp, old) renamed into place so far
        try:
            for target, temp in self._temps.items():
                parent, name = os.path.split(target)
                old = None
                if self.overwrite and os.path.lexists(target):
                    old = os.path.join(parent, f'.{name}.old-{os.getpid()}-{secrets.token_hex(4)}')
                    os.rename(target, old)
                try:
                    # fails on a folder holding files: another run's output that appeared meanwhile is never replaced
                    os.rename(temp, target)
                except OSError as error:
                    if old is not None:
                        os.rename(old, target)
                    if os.path.lexists(target) and error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                        raise OutputExistsError(f'{target} appeared while this run was writing it (another run at '
                                                f'the same time?); it is left as it is. Pass --overwrite to replace '
                                                f'it.') from None
                    raise
                done.append((target, temp, old))
        except BaseException:
            for target, temp, old in reversed(done):  # all outputs or none: put the earlier ones back
                with contextlib.suppress(OSError):
                    os.rename(target, temp)
                    if old is not None:
                        os.rename(old, target)
            raise
        for _, _, old in done:
            if old is not None:
                _remove(old)

    def _discard(self):
        for writer in self._writers:
            try:
                writer.abort()
            except Exception:  # the folder goes anyway; the original error matters
                pass
        for temp in self._temps.values():
            _remove(temp)


def _call(func, job):
    """Run func(job) in a worker; hand user errors back as values (they are per-job and may be skipped)."""
    try:
        return True, func(job)
    except UserError as error:
        return False, error


@contextlib.contextmanager
def _sigint_deferred():
    """Hold back Ctrl-C in the main thread for the duration (a few renames): the command then completes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread (processes forked meanwhile start with it blocked), where the platform can."""
    if not hasattr(signal, 'pthread_sigmask'):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_ignores_sigint():
    """Pool initializer: Ctrl-C is for the main process, which stops the workers itself.

    A worker that Ctrl-C killed while handing back a result would leave the pool's result queue locked, and the
    pool's shutdown would then wait forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, 'pthread_sigmask'):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def stop_pool(pool, timeout=10.):
    """Terminate the workers of `pool`, within about `timeout` seconds whatever state its queues are in."""
    stopper = threading.Thread(target=pool.terminate, name='stop-pool', daemon=True)
    stopper.start()
    try:
        stopper.join(timeout)
    finally:
        if stopper.is_alive():  # the pool's own shutdown is stuck, or a second Ctrl-C came: end the workers here
            for child in multiprocessing.active_children():
                child.kill()


@contextlib.contextmanager
def start_pool(workers, jobs):
    """A process pool for `run_jobs` (a context manager), or None when one process will do.

    Start it before anything starts threads (a progress bar's monitor thread), as it forks where it can: fork starts
    workers instantly, while spawn re-imports the package (torch, BasicSR) in every worker. The workers ignore
    Ctrl-C; leaving the context (normally, on an error or on Ctrl-C) terminates them.
    """
    if workers <= 1 or jobs <= 1:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context('fork' if 'fork' in methods else None)
    pool = None
    try:
        with _sigint_blocked():  # no worker can be hit by Ctrl-C before its initializer ignores it
            pool = context.Pool(min(workers, jobs), initializer=_worker_ignores_sigint)
        yield pool
    finally:
        if pool is not None:
            stop_pool(pool)


def run_jobs(func, jobs, pool=None, workers=1):
    """Yield (job, result, error) for each job, in job order; `error` is the UserError func raised, else None.

    With a pool (`start_pool`) at most 2 jobs per worker are in flight, so results (encoded images) never pile up
    in memory. Errors that are not UserErrors propagate.

    Args:
        func (callable): A picklable function of one job (a top-level function or a functools.partial of one).
        jobs (list): The jobs (picklable).
        pool (multiprocessing.pool.Pool | None): Worker processes; None runs everything in this process.
        workers (int): The pool's number of processes.
    """
    if pool is None:
        for job in jobs:
            ok, value = _call(func, job)
            yield (job, value, None) if ok else (job, None, value)
        return
    pending = collections.deque()
    todo = iter(jobs)
    for job in todo:
        pending.append((job, pool.apply_async(_call, (func, job))))
        if len(pending) >= 2 * workers:
            break
    while pending:
        job, result = pending.popleft()
        for following in todo:  # keep the pool busy: one new job for each finished one
            pending.append((following, pool.apply_async(_call, (func, following))))
            break
        ok, value = result.get()
        yield (job, value, None) if ok else (job, None, value)


def process_jobs(func, jobs, on_result, workers=1, skip_bad=False, desc=None, unit='image'):
    """Run `func` over `jobs` with a progress bar and hand each result to `on_result(job, result)`.

    A job that fails with DataError or ImageReadError (unreadable, corrupt, mismatched or too small images) stops
    everything, or with `skip_bad` is reported on stderr and counted; other errors always stop.

    Returns:
        list[str]: One message per skipped job.
    """
    workers = check_positive('workers', workers)
    skipped = []
    with start_pool(workers, len(jobs)) as pool, tqdm(
            total=len(jobs), desc=desc, unit=unit, disable=None, dynamic_ncols=True) as bar:
        for job, result, error in run_jobs(func, jobs, pool, workers):
            if error is not None:
                if not (skip_bad and isinstance(error, (DataError, ImageReadError))):
                    raise error
                skipped.append(str(error))
                tqdm.write(f'skipped: {error}', file=sys.stderr)
            else:
                on_result(job, result)
            bar.update()
    return skipped


@dataclass
class PrepReport:
    """What a preparation command did.

    Attributes:
        command (str): The command name (sidd-train, ...).
        outputs (dict): Output path -> number of images in it.
        sources (int): Source images (or image pairs, .mat blocks) used.
        skipped (list[str]): One message per skipped source.
        up_to_date (bool): Nothing was written because the outputs were up to date.
    """
    command: str
    outputs: dict = field(default_factory=dict)
    sources: int = 0
    skipped: list = field(default_factory=list)
    up_to_date: bool = False

    def summary(self):
        """A few human-readable lines for the command line."""
        if self.up_to_date:
            return f'{self.command}: up to date, nothing to do: ' + ', '.join(self.outputs)
        lines = [
            f'{self.command}: {self.sources} source(s) -> ' + ', '.join(f'{path} ({count} images)'
                                                                        for path, count in self.outputs.items())
        ]
        if self.skipped:
            lines.append(f'{self.command}: skipped {len(self.skipped)} source(s) (listed above; --skip-bad).')
        return '\n'.join(lines)


def check_positive(name, value, minimum=1):
    """OptionError unless `value` is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionError(f'{name} must be an integer >= {minimum}, got {value!r}.')
    return int(value)


def check_compress_level(level):
    """OptionError unless `level` is a PNG compression level 0-9."""
    check_positive('compress_level', level, 0)
    if level > 9:
        raise OptionError(f'compress_level must be 0-9, got {level}.')
    return int(level)


def begin_command(command, settings, input_files, targets, overwrite, **report_fields):
    """The report and staged outputs of a preparation command, with `report.up_to_date` set when there is nothing to do.

    Args:
        command (str): The command name (sidd-train, ...); recorded in the outputs' stamp.
        settings (dict): Every setting that changes the outputs.
        input_files (list[str]): The files read (fingerprinted by path, size and modification time).
        targets (list[str]): The output folders / LMDBs.
        overwrite (bool): Replace outputs made from other inputs or settings.
        **report_fields: More PrepReport fields (sources, skipped).

    Returns:
        tuple[PrepReport, AtomicOutputs]
    """
    digest = fingerprint(command, settings, input_files)
    report = PrepReport(command, outputs={target: 0 for target in targets}, **report_fields)
    outputs = AtomicOutputs(list(targets), digest, overwrite, stamp=dict(command=command, settings=settings))
    report.up_to_date = outputs.up_to_date
    return report, outputs
