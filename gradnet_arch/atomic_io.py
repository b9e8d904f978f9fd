"""Whole-or-nothing file writes, shared by everything the plugin saves (checkpoints, weights, images, .mat files)."""
import contextlib
import os


@contextlib.contextmanager
def atomic_open(path, temp_path=None):
    """Open a temporary file for binary writing and rename it to `path` only once it is complete and on disk.

    Readers (auto-resume, a second process, the user) see the old file or the new one, never half of one; a write
    that fails removes its temporary file.

    Args:
        path (str): The final file.
        temp_path (str | None): The temporary file, in the same folder so that the rename is atomic. Default:
            `path` + `.tmp` + process id.

    Yields:
        file: The open temporary file.
    """
    temp_path = temp_path or f'{path}.tmp{os.getpid()}'
    try:
        with open(temp_path, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp_path, path)
    finally:
        if os.path.exists(temp_path):
            os.remove(temp_path)
