"""The shipped models: `weights/manifest.json` names each weight file with its size and SHA-256.

Manifest layout::

    {"models": {"gradnet_color_sigma25": {"file": "gradnet_color_sigma25.pth", "sha256": "...", "size": 123,
                                          "description": "...", "color": "rgb", "sigma": 25,
                                          "card": "docs/model_cards/gradnet_color_sigma25.md"}}}

The folder is the package's `weights/` unless the environment variable GRADNET_WEIGHTS_DIR (or a `weights_dir`
argument) points elsewhere.
"""
import hashlib
import json
import os

from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import BadFileError, MissingFileError

ENV_VAR = 'GRADNET_WEIGHTS_DIR'
MANIFEST = 'manifest.json'
PACKAGE_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
ENTRY_KEYS = ('file', 'sha256', 'size', 'description', 'color', 'sigma', 'card')
FIX_HINT = ('Reinstall the package (`pip install --force-reinstall --no-deps gradnet-basicsr`; in a git checkout, '
            '`git checkout -- gradnet_arch/pretrained/weights`) to get the original file.')

# (real path, size, mtime_ns, sha256) of files whose checksum matched: each file is hashed once per process.
_verified = set()


def weights_dir(directory=None):
    """The folder of the manifest and the weight files: `directory`, else $GRADNET_WEIGHTS_DIR, else the package's."""
    return os.path.expanduser(str(directory or os.environ.get(ENV_VAR) or PACKAGE_WEIGHTS_DIR))


def read_manifest(directory=None):
    """The manifest's models as {name: entry}; an absent manifest means no shipped models."""
    path = os.path.join(weights_dir(directory), MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise BadFileError(f'The pretrained-model manifest {path} cannot be read ({error}). {FIX_HINT}') from None
    models = manifest.get('models', {}) if isinstance(manifest, dict) else None
    if not isinstance(models, dict):
        raise BadFileError(f'The pretrained-model manifest {path} has no "models" object. {FIX_HINT}')
    for name, entry in models.items():
        missing = [key for key in ('file', 'sha256', 'size') if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise BadFileError(f'The manifest {path}: model {name!r} lacks {", ".join(missing)}. {FIX_HINT}')
    return models


def list_pretrained(directory=None):
    """The shipped models.

    Args:
        directory (str | None): Weights folder; default $GRADNET_WEIGHTS_DIR or the package's. Default: None.

    Returns:
        dict[str, str]: Model name -> one-line description, sorted by name (iterate it for the names).
    """
    return {name: entry.get('description', '') for name, entry in sorted(read_manifest(directory).items())}


def model_info(name, directory=None):
    """The manifest entry of a shipped model, with `path` (absolute) added; None when `name` is not shipped."""
    models = read_manifest(directory)
    if name not in models:
        return None
    entry = dict(models[name])
    entry['path'] = os.path.join(os.path.abspath(weights_dir(directory)), entry['file'])
    return entry


def unknown_name_message(name, directory=None):
    names = list_pretrained(directory)
    shipped = ', '.join(names) if names else 'none (this installation ships no weights)'
    return (f'{name!r} is neither a shipped model nor an existing checkpoint file. Shipped models: {shipped}. A path '
            f'must name an existing .pth or .safetensors file.')


def shipped_path(name, directory=None):
    """The verified weight file of a shipped model.

    The size is checked first (cheap, catches truncation), then the SHA-256; a file that passed is not hashed again
    in this process unless it changes.

    Raises:
        MissingFileError: Unknown name, or the manifest's file is absent.
        BadFileError: Size or checksum differs from the manifest.
    """
    entry = model_info(name, directory)
    if entry is None:
        raise MissingFileError(unknown_name_message(name, directory))
    path = entry['path']
    if not os.path.isfile(path):
        raise MissingFileError(f'Shipped model {name!r}: its weight file {path} is missing. {FIX_HINT}')
    verify_file(path, entry['sha256'], entry['size'], what=f'Shipped model {name!r}')
    return path


def verify_file(path, sha256, size, what='File'):
    """Check a file's size and SHA-256 against expected values (hashing each unchanged file once per process)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, str(sha256).lower())
    if key in _verified:
        return
    if size is not None and stat.st_size != int(size):
        raise BadFileError(f'{what}: weight file {path} has {stat.st_size} bytes but the manifest expects {size} '
                           f'(truncated or replaced). {FIX_HINT}')
    actual = sha256_of(path)
    if actual != str(sha256).lower():
        raise BadFileError(f'{what}: weight file {path} is corrupt: SHA-256 {actual}, expected {sha256}. {FIX_HINT}')
    _verified.add(key)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(models, directory=None):
    """Write {name: entry} as the manifest, atomically, sorted by name."""
    directory = weights_dir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MANIFEST)
    with atomic_open(path) as f:
        f.write((json.dumps({'models': dict(sorted(models.items()))}, indent=2) + '\n').encode('utf-8'))
    return path
