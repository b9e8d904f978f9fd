"""Writing BasicSR's LMDBs and PNG folders: streamed, with a growing map.

An LMDB here has exactly BasicSR's layout (basicsr/utils/lmdb_util.py)::

    name.lmdb/
        data.mdb        values: PNG-encoded images (BGR or grey, 8 or 16 bit, as cv2.imencode writes them)
        lock.mdb
        meta_info.txt   one line per image: `key.png (H,W,C) compression_level`
        .gradnet_prep.json   this tool's stamp (hidden; BasicSR never reads it; see stamps)

Keys are ASCII without dots or white space, because BasicSR takes a key from meta_info.txt as the part before the
first '.' and encodes it as ASCII.

- Streaming: images go into the LMDB in transactions of at most `batch_items` images or `batch_bytes` bytes; only
  the open transaction's encoded images are held in memory.
- Map growth: the LMDB map starts small and doubles (env.set_mapsize) whenever a transaction does not fit, and the
  transaction is replayed, so tiny and huge sets both work without guessing a map size.

The writers write into the temporary folders of `stamps.AtomicOutputs`, which names them only once complete.
"""
import cv2
import lmdb
import numpy as np
import os
import re

from gradnet_arch.errors import DataError

DEFAULT_MAP_SIZE = 1 << 26  # 64 MiB to start with; grows as needed
MAX_MAP_SIZE = 1 << 46  # 64 TiB: beyond this a MapFullError means something else is wrong
_KEY_RE = re.compile(r'^[A-Za-z0-9_+\-]+$')


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


class _ImageSink:
    """What both writers share: a new folder, unique valid keys, and PNG encoding with one compression level."""

    def __init__(self, path, compress_level=1, name=None):
        os.makedirs(path, exist_ok=True)
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

    Use it through `stamps.AtomicOutputs.lmdb`, which points it at a temporary folder and renames the folder into
    place once everything succeeded.

    Args:
        path (str): The folder to write (created if needed; a new or empty one).
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
        path (str): The folder to write (created if needed; a new or empty one).
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
