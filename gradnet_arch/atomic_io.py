"""Whole-or-nothing writes of files and folders: the one staged-output writer of everything the plugin saves
(checkpoints, weights, images, .mat files, LMDBs, submission folders).

A file is written under a temporary name in its own folder, flushed to disk and only then given its name, in one
step: readers see the old file or the new one, never half of one, and a failed or interrupted write removes its
temporary file. That last step either replaces the name (`os.replace`, with `overwrite`) or creates it exclusively
(a hard link, which the operating system refuses when the name exists): without `overwrite` a file is never
replaced, not even one that another process wrote after every earlier check.

Folders (`StagedFolders`) are written the same way: under a hidden temporary name next to the target
(`.name.partial-PID-TOKEN`), and named, all of a command's folders together, only once every one is complete.

Failures to write (a read-only or full destination, a file where a folder should be, a folder where the file should
go) raise OutputError, a UserError whose message says what was wrong and what to do; an existing file that may not
be replaced raises OutputExistsError.
"""
import contextlib
import errno
import os
import re
import secrets
import shutil
import signal
import threading

from gradnet_arch.errors import OptionError, OutputError, OutputExistsError, UserError

_HINTS = {
    errno.ENOSPC: 'free some space or write to another disk',
    getattr(errno, 'EDQUOT', -1): 'free some space or write elsewhere',
    errno.EROFS: 'choose a folder on a writable disk',
    errno.EACCES: 'choose a folder you can write to',
    errno.EPERM: 'choose a folder you can write to',
    errno.ENOTDIR: 'a part of the path is a file, not a folder; choose another output folder',
    errno.EISDIR: 'a folder has that name; rename or remove it, or choose another output folder',
    errno.ENAMETOOLONG: 'choose a shorter name',
}
# os.link fails with these where the file system has no hard links (FAT, some network shares)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def output_error(path, error):
    """The OutputError to raise for OSError `error` met while writing `path`; a UserError comes back unchanged."""
    if isinstance(error, UserError):
        return error
    code = getattr(error, 'errno', None)
    if code == errno.EEXIST:
        if os.path.isdir(path) and not os.path.islink(path):
            code = errno.EISDIR
        else:
            new = OutputExistsError(f'{path} exists; pass --overwrite to replace it')
            new.errno = code
            return new
    reason = os.strerror(code) if code else str(error)
    hint = _HINTS.get(code)
    new = OutputError(f'cannot write {path}: {reason}' + (f'; {hint}' if hint else ''))
    new.errno = code
    return new


def make_folder(path):
    """`os.makedirs(path, exist_ok=True)`, with an OutputError (not a traceback) when the folder cannot be made."""
    if not path:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        new = OutputError(f'cannot create the folder {path}: it is a file, not a folder; choose another output '
                          f'folder')
        new.errno = errno.ENOTDIR
        raise new
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise output_error(path, error) from None


def check_new_file(path, overwrite=False):
    """Refuse early, before any work, a file name that cannot be written: a folder has it (OutputError), or a file
    does and `overwrite` is off (OutputExistsError). The write itself checks again (`commit`)."""
    if os.path.isdir(path) and not os.path.islink(path):
        raise output_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path))
    if os.path.lexists(path) and not overwrite:
        raise output_error(path, FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path))


def check_writable_folder(folder):
    """Raise OutputError, before any slow work, if files cannot be created in `folder` (or in the nearest existing
    folder above it, when `folder` is still to be made): a file in the path, a read-only or full disk, no permission.

    It creates and removes a hidden empty file, because permission bits do not tell (root writes anywhere).
    """
    folder = os.path.abspath(folder or '.')
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        new = OutputError(f'cannot write into {folder}: {existing} is a file, not a folder; choose another output '
                          f'folder')
        new.errno = errno.ENOTDIR
        raise new
    probe = os.path.join(existing, f'.write-probe-{os.getpid()}-{secrets.token_hex(4)}')
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as error:
        raise output_error(folder, error) from None
    with contextlib.suppress(OSError):
        os.remove(probe)


def temp_name(path):
    """A hidden temporary name next to `path`, unique to this process and call (threads may write one path)."""
    parent, base = os.path.split(os.fspath(path))
    return os.path.join(parent, f'.{base}.{os.getpid()}-{secrets.token_hex(4)}.tmp')


def commit(temp_path, path, overwrite=True):
    """Give the finished file `temp_path` the name `path`: replace it, or create it exclusively without `overwrite`.

    Raises:
        OutputExistsError: `path` exists and `overwrite` is off (`temp_path` is left for the caller to remove).
        OutputError: The name cannot be written (a folder there, a read-only folder, ...).
    """
    try:
        if overwrite:
            if os.path.isdir(path) and not os.path.islink(path):  # os.replace would put a file over an empty folder
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            os.replace(temp_path, path)
            return
        try:
            os.link(temp_path, path)
        except OSError as error:
            if error.errno not in _NO_LINKS:
                raise
            # no hard links here: claim the name with an exclusive create, then move the file over the claim
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.replace(temp_path, path)
        else:
            os.remove(temp_path)
    except OSError as error:
        raise output_error(path, error) from None


@contextlib.contextmanager
def atomic_open(path, temp_path=None, overwrite=True):
    """Open a temporary file for binary writing and give it the name `path` only once it is complete and on disk.

    Args:
        path (str): The final file.
        temp_path (str | None): The temporary file, in the same folder so that the rename is atomic. Default: a
            hidden name unique to this call (`temp_name`).
        overwrite (bool): Replace an existing `path` (atomically). False creates `path` exclusively and raises
            OutputExistsError if it exists when the file is complete. Default: True.

    Yields:
        file: The open temporary file.

    Raises:
        OutputError: The file cannot be written (OSErrors of the writes are turned into it as well).
    """
    path = os.fspath(path)
    temp_path = temp_path or temp_name(path)
    try:
        with open(temp_path, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        commit(temp_path, path, overwrite)
    except OSError as error:
        raise output_error(path, error) from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(temp_path)


def commit_files(pairs, overwrite=True):
    """Name finished temporary files one after another (`commit`); if one cannot be named, the files this call
    created are removed again before the error propagates (files that `overwrite` replaced stay: they are complete).

    Args:
        pairs (list[tuple]): (temporary file, final path) pairs, or (temporary file, final path, overwrite) triples
            whose own `overwrite` replaces the call's for that file.
        overwrite (bool): Replace existing files; otherwise an existing one raises OutputExistsError. Default: True.

    Returns:
        list[str]: The paths this call created (that did not exist before).
    """
    created = []
    try:
        for temp, path, *own in pairs:
            existed = os.path.lexists(path)
            commit(temp, path, own[0] if own else overwrite)
            if not existed:
                created.append(path)
    except BaseException:
        for path in created:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise
    return created


def write_files(files, overwrite=True):
    """Write several files as one unit: each whole or not at all, and none of them if one cannot be written.

    All files are first written under temporary names, then named one after another; if one cannot be named (it
    exists without `overwrite`, a folder is in the way), the ones this call created are removed again. (Files that
    `overwrite` already replaced stay replaced: they are complete new files.)

    Args:
        files (list[tuple]): (path, contents) pairs, or (path, contents, overwrite) triples whose own `overwrite`
            replaces the call's for that file (a manifest that is always replaced next to files that may not be);
            the paths' folders must exist.
        overwrite (bool): Replace existing files; otherwise an existing one raises OutputExistsError. Default: True.

    Returns:
        list[str]: The paths written.
    """
    temps = []
    try:
        for path, data, *_ in files:
            temp = temp_name(path)
            temps.append(temp)
            try:
                with open(temp, 'wb') as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as error:
                raise output_error(path, error) from None
        commit_files([(temp, path, *own) for temp, (path, _, *own) in zip(temps, files)], overwrite)
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                os.remove(temp)
    return [path for path, *_ in files]


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


@contextlib.contextmanager
def sigint_deferred():
    """Hold back Ctrl-C in the main thread for the duration (a few renames): what was started then completes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


class StagedFolders:
    """Folders written under hidden temporary names next to their targets, and named together once all are complete.

    Usage::

        with StagedFolders([a, b]) as staged:
            ...  # write into staged.temp(a) and staged.temp(b)
        # both are in place now; after an error (or Ctrl-C) inside the block neither changed and nothing is left

    Each temporary folder is `.<name>.partial-<pid>-<token>`, made on entering; those of a run killed outright are
    removed by the next run that stages the same target (their process no longer exists). On success the targets
    are named one after another with Ctrl-C held back, and if one cannot be named the ones before it are put back:
    all or none. A target is named in one of two ways:

    - replaced as a whole (the default): the folder is renamed into place. With `overwrite` an existing target is
      moved aside (`.<name>.old-...`) and deleted once every target is in place; without it a target that exists by
      then (another run's, written meanwhile) raises OutputExistsError and is left as it is.
    - merged (`merge`): a target folder that exists keeps its other files; the new files are named in it one by one
      (`commit_files`; an existing one is replaced only with `overwrite`), and with `overwrite` its files matching
      `merge` that this run did not write are removed, so that it never mixes two runs' outputs.

    Checks that should refuse before any slow work (the target exists, its folder is not writable) are the caller's.
    Subclasses complete their files in `finish` (called before the naming) and release them in `discard`.

    Args:
        targets (list[str]): The folders to write.
        overwrite (bool): Replace existing targets (or their files, with `merge`). Default: False.
        merge (str | None): Regular expression of the file names this kind of output uses; None replaces targets as
            a whole. Default: None.

    Raises:
        OptionError: Two targets are one path.
        OutputError: A folder cannot be made or named (OSErrors of the block are turned into it as well).
    """

    def __init__(self, targets, overwrite=False, merge=None):
        self.targets = [os.path.abspath(t) for t in targets]
        if len(set(self.targets)) != len(self.targets):
            raise OptionError(f'two outputs of one command have the same path: {self.targets}')
        self.overwrite = overwrite
        self.merge = None if merge is None else re.compile(merge)
        self._temps = {}

    def temp(self, target):
        """The temporary folder `target` is written into (inside the `with` block)."""
        target = os.path.abspath(target)
        if target not in self._temps:
            raise ValueError(f'{target} is not one of the staged outputs {self.targets}')
        return self._temps[target]

    def __enter__(self):
        token = secrets.token_hex(4)
        try:
            for target in self.targets:
                parent, name = os.path.split(target)
                make_folder(parent)
                self._remove_stale(parent, name)
                temp = os.path.join(parent, f'.{name}.partial-{os.getpid()}-{token}')
                os.mkdir(temp)
                self._temps[target] = temp
        except BaseException as error:
            self.discard()
            self._raise_write_error(error)
            raise
        return self

    @staticmethod
    def _remove_stale(parent, name):
        """Remove temporary folders of `name` left by killed runs (their process no longer exists)."""
        pattern = re.compile(rf'^\.{re.escape(name)}\.(?:partial|old)-(\d+)-[0-9a-f]+$')
        for entry in os.listdir(parent):
            match = pattern.match(entry)
            if match and not _pid_alive(int(match.group(1))):
                _remove(os.path.join(parent, entry))

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.finish()
                with sigint_deferred():
                    self._commit()
                return False
            except BaseException as error:
                exc = error
        self.discard()
        self._raise_write_error(exc)
        if exc_type is None:
            raise exc
        return False

    def finish(self):
        """Complete the staged files before they are named (nothing here; subclasses close writers, add stamps)."""

    def discard(self):
        """Remove the temporary folders (after an error)."""
        for temp in self._temps.values():
            _remove(temp)

    def _raise_write_error(self, error):
        """Raise OutputError for a failed write (an OSError); other errors are left to propagate."""
        if isinstance(error, OSError) and not isinstance(error, UserError):
            name = self.targets[0] if len(self.targets) == 1 else os.path.commonpath(self.targets)
            raise output_error(name, error) from None

    def _commit(self):
        placed = []  # (undo, done) of each target named so far
        try:
            for target, temp in self._temps.items():
                placed.append(self._place(target, temp))
        except BaseException:
            for undo, _ in reversed(placed):  # all outputs or none: put the earlier ones back
                with contextlib.suppress(OSError):
                    undo()
            raise
        for _, done in placed:
            done()

    def _place(self, target, temp):
        """Name the staged folder `temp` `target`; returns (undo, done): put it back, or tidy up once all are named."""
        if self.merge is not None and os.path.isdir(target) and not os.path.islink(target):
            return self._merge_into(target, temp)
        try:
            return self._rename(target, temp)
        except OutputExistsError:
            if self.merge is None or not os.path.isdir(target):
                raise
            return self._merge_into(target, temp)  # another run made the folder meanwhile

    def _rename(self, target, temp):
        parent, name = os.path.split(target)
        old = None
        if self.overwrite and self.merge is None and os.path.lexists(target):
            old = os.path.join(parent, f'.{name}.old-{os.getpid()}-{secrets.token_hex(4)}')
            os.rename(target, old)
        try:
            # fails on a folder holding files: another run's output that appeared meanwhile is never replaced
            os.rename(temp, target)
        except OSError as error:
            if old is not None:
                os.rename(old, target)
            if os.path.lexists(target) and error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise OutputExistsError(f'{target} appeared while this run was writing it (another run at the same '
                                        f'time?); it is left as it is. Pass --overwrite to replace it.') from None
            raise

        def undo():
            os.rename(target, temp)
            if old is not None:
                os.rename(old, target)

        def done():
            if old is not None:
                _remove(old)

        return undo, done

    def _merge_into(self, target, temp):
        names = sorted(os.listdir(temp))
        created = commit_files([(os.path.join(temp, n), os.path.join(target, n)) for n in names], self.overwrite)

        def undo():
            for path in created:
                os.remove(path)

        def done():
            if self.overwrite:
                for name in os.listdir(target):
                    if self.merge.match(name) and name not in names:
                        os.remove(os.path.join(target, name))
            _remove(temp)

        return undo, done
