"""Whole-or-nothing file writes, shared by everything the plugin saves (checkpoints, weights, images, .mat files).

A file is written under a temporary name in its own folder, flushed to disk and only then given its name, in one
step: readers see the old file or the new one, never half of one, and a failed or interrupted write removes its
temporary file. That last step either replaces the name (`os.replace`, with `overwrite`) or creates it exclusively
(a hard link, which the operating system refuses when the name exists): without `overwrite` a file is never
replaced, not even one that another process wrote after every earlier check.

Failures to write (a read-only or full destination, a file where a folder should be, a folder where the file should
go) raise OutputError, a UserError whose message says what was wrong and what to do; an existing file that may not
be replaced raises OutputExistsError.
"""
import contextlib
import errno
import os
import secrets

from gradnet_arch.errors import OutputError, OutputExistsError, UserError

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


def write_files(files, overwrite=True):
    """Write several files as one unit: each whole or not at all, and none of them if one cannot be written.

    All files are first written under temporary names, then named one after another; if one cannot be named (it
    exists without `overwrite`, a folder is in the way), the ones this call created are removed again. (Files that
    `overwrite` already replaced stay replaced: they are complete new files.)

    Args:
        files (list[tuple[str, bytes]]): (path, contents) pairs; the paths' folders must exist.
        overwrite (bool): Replace existing files; otherwise an existing one raises OutputExistsError. Default: True.

    Returns:
        list[str]: The paths written.
    """
    temps = []
    try:
        for path, data in files:
            temp = temp_name(path)
            temps.append(temp)
            try:
                with open(temp, 'wb') as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as error:
                raise output_error(path, error) from None
        created = []
        try:
            for (path, _), temp in zip(files, temps):
                existed = os.path.lexists(path)
                commit(temp, path, overwrite)
                if not existed:
                    created.append(path)
        except BaseException:
            for path in created:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                os.remove(temp)
    return [path for path, _ in files]
