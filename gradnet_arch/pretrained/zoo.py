"""The shipped models: `weights/manifest.json` names each model's weight files with their sizes and SHA-256.

Manifest layout::

    {"models": {
        "gradnet_color_sigma25": {
            "file": "gradnet_color_sigma25.safetensors", "sha256": "...", "size": 123,
            "basicsr": {"file": "gradnet_color_sigma25.pth", "sha256": "...", "size": 456},
            "description": "...", "color": "rgb", "sigma": 25,
            "card": "docs/model_cards/gradnet_color_sigma25.md"},
        "gradnet_color_blind": {
            "file": "gradnet_color_blind.safetensors", "sha256": "...", "size": 123,
            "basicsr": {"file": "gradnet_color_blind.pth", "sha256": "...", "size": 456},
            "description": "...", "color": "rgb", "sigma": null, "sigma_range": [0, 55],
            "card": "docs/model_cards/gradnet_color_blind.md"}}}

- `file` / `sha256` / `size`: the model's `.safetensors` (tensors only: the whole state dict, a GradNet's
  `predenoiser.*` included; the network options and the descriptive fields in its string metadata). This is what
  `load_pretrained(NAME)` and every tool read.
- `basicsr`: the same tensors as a `.pth` in BasicSR's layout (`params`, plus `network_g` and `meta`), for BasicSR's
  own `build_network` + `load_network(net, path, param_key='params')` and the option files in `options/pretrained/`.
- `sigma`: the AWGN level (0-255 scale) of a non-blind model; a blind model has `"sigma": null` and `sigma_range`
  [low, high] (`description.training_noise`).

Both files' sizes and SHA-256 are checked when they are read: by name (`shipped_path`) or by path (`read_checkpoint`
calls `verify_if_shipped`). A manifest of the earlier layout (one `.pth` as `file`, no `basicsr`) is still read: that
file serves both. `scripts/package_weights.py` writes the two files and the entry.

The folder is the package's `weights/` unless the environment variable GRADNET_WEIGHTS_DIR (or a `weights_dir`
argument) points elsewhere.
"""
import hashlib
import json
import os

from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import BadFileError, MissingFileError, OptionError
from gradnet_arch.pretrained.description import training_noise

ENV_VAR = 'GRADNET_WEIGHTS_DIR'
MANIFEST = 'manifest.json'
PACKAGE_WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
FILE_KEYS = ('file', 'sha256', 'size')
BASICSR_KEY = 'basicsr'
ENTRY_KEYS = FILE_KEYS + (BASICSR_KEY, 'description', 'color', 'sigma', 'sigma_range', 'card')
BASICSR_EXTENSIONS = ('.pth', '.pt')
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
        missing = [key for key in FILE_KEYS if not isinstance(entry, dict) or key not in entry]
        basicsr = entry.get(BASICSR_KEY) if isinstance(entry, dict) else None
        if basicsr is not None:
            missing += [
                f'{BASICSR_KEY}.{key}' for key in FILE_KEYS if not isinstance(basicsr, dict) or key not in basicsr
            ]
        if missing:
            raise BadFileError(f'The manifest {path}: model {name!r} lacks {", ".join(missing)}. {FIX_HINT}')
        try:
            training_noise(entry)
        except OptionError as error:
            raise BadFileError(f'The manifest {path}: model {name!r}: {error} {FIX_HINT}') from None
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
    """The manifest entry of a shipped model, with absolute paths added; None when `name` is not shipped.

    Returns:
        dict | None: The entry plus `path` (its `file`, the `.safetensors`) and `basicsr_path` (its BasicSR `.pth`;
        for an entry of the earlier layout, whose one file is a `.pth`, that file; else None).
    """
    models = read_manifest(directory)
    if name not in models:
        return None
    entry = dict(models[name])
    folder = os.path.abspath(weights_dir(directory))
    entry['path'] = os.path.join(folder, entry['file'])
    record = _basicsr_record(entry)
    entry['basicsr_path'] = None if record is None else os.path.join(folder, record['file'])
    return entry


def unknown_name_message(name, directory=None):
    names = list_pretrained(directory)
    shipped = ', '.join(names) if names else 'none (this installation ships no weights)'
    return (f'{name!r} is neither a shipped model nor an existing checkpoint file. Shipped models: {shipped}. A path '
            f'must name an existing .pth or .safetensors file.')


def shipped_path(name, directory=None, basicsr=False):
    """The verified weight file of a shipped model: its `.safetensors`, or with `basicsr` its BasicSR `.pth`.

    The size is checked first (cheap, catches truncation), then the SHA-256; a file that passed is not hashed again
    in this process unless it changes.

    Raises:
        MissingFileError: Unknown name, no BasicSR file in the manifest (with `basicsr`), or the file is absent.
        BadFileError: Size or checksum differs from the manifest.
    """
    entry = model_info(name, directory)
    if entry is None:
        raise MissingFileError(unknown_name_message(name, directory))
    record = _basicsr_record(entry) if basicsr else entry
    if record is None:
        raise MissingFileError(f'Shipped model {name!r} has no BasicSR .pth file in its manifest entry; load it with '
                               f'load_pretrained({name!r}).')
    path = entry['basicsr_path'] if basicsr else entry['path']
    if not os.path.isfile(path):
        raise MissingFileError(f'Shipped model {name!r}: its weight file {path} is missing. {FIX_HINT}')
    verify_file(path, record['sha256'], record['size'], what=f'Shipped model {name!r}')
    return path


def verify_if_shipped(path):
    """Check `path` against the manifest when it is one of the shipped models' files (in the folder `weights_dir()`
    names); any other file is left alone.

    Raises:
        BadFileError: Size or checksum differs from the manifest.
    """
    folder = weights_dir()
    real = os.path.realpath(path)
    if os.path.dirname(real) != os.path.realpath(folder) or not os.path.isfile(os.path.join(folder, MANIFEST)):
        return
    base = os.path.basename(real)
    for name, entry in read_manifest(folder).items():
        for record in (entry, _basicsr_record(entry)):
            if record is not None and record['file'] == base:
                verify_file(path, record['sha256'], record['size'], what=f'Shipped model {name!r}')
                return


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


def file_record(file_name, data):
    """The manifest's record of a weight file about to be written: {'file', 'sha256', 'size'} of its bytes."""
    return {'file': file_name, 'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}


def manifest_bytes(models):
    """The manifest file's bytes for {name: entry}, sorted by name."""
    return (json.dumps({'models': dict(sorted(models.items()))}, indent=2) + '\n').encode('utf-8')


def write_manifest(models, directory=None):
    """Write {name: entry} as the manifest, atomically, sorted by name."""
    directory = weights_dir(directory)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MANIFEST)
    with atomic_open(path) as f:
        f.write(manifest_bytes(models))
    return path


def _basicsr_record(entry):
    """The {'file', 'sha256', 'size'} record of an entry's BasicSR `.pth`, or None (no such file)."""
    if isinstance(entry.get(BASICSR_KEY), dict):
        return entry[BASICSR_KEY]
    return entry if str(entry['file']).lower().endswith(BASICSR_EXTENSIONS) else None
