"""Test sets of the benchmark: clean images + synthetic AWGN, or real noisy/clean pairs; folders or BasicSR LMDBs.

Synthetic noise comes from `GaussianNoiseDataset` itself in validation mode, so every noisy image is bit for bit the
one `gradnet-test` feeds a net for the same folder, sigma and noise seed (a generator seeded with `noise_seed` for
every image). Each noisy image is generated once and handed to every model.
"""
import hashlib
import numpy as np
import os
from basicsr.utils import FileClient, img2tensor

from gradnet_arch.common.images import decode_image, list_images, read_image
from gradnet_arch.data.gaussian_noise_dataset import GaussianNoiseDataset, lmdb_keys
from gradnet_arch.errors import BadFileError, DataError, MissingFileError, OptionError


class Sample:
    """One test image: the noisy input and the ground truth as (1, C, H, W) float32 RGB tensors in [0, 1].

    Args:
        name (str): Image name (file stem or LMDB key).
        lq (Tensor): Noisy input.
        gt (Tensor): Clean image.
    """

    def __init__(self, name, lq, gt):
        self.name = name
        self.lq = lq
        self.gt = gt
        self.sha256 = tensor_sha256(lq)

    @property
    def pixels(self):
        return int(self.lq.shape[-2] * self.lq.shape[-1])


class NoisyCase:
    """The images of one set at one noise level, as every model sees them.

    Args:
        set_name (str): The set's label.
        sigma (float | None): AWGN level on the 0-255 scale; None for real noise.
        samples (list[Sample]): The images.
    """

    def __init__(self, set_name, sigma, samples):
        self.set_name = set_name
        self.sigma = sigma
        self.samples = samples

    @property
    def noise(self):
        return 'real' if self.sigma is None else f'{self.sigma:g}'


def tensor_sha256(tensor):
    """SHA-256 of a tensor's values (float32, C order): identical inputs have identical hashes."""
    array = np.ascontiguousarray(tensor.detach().cpu().numpy().astype(np.float32, copy=False))
    return hashlib.sha256(array.tobytes()).hexdigest()


def subsample(count, max_images):
    """Indices of at most `max_images` of `count` items, spread evenly over the set (first and last included)."""
    if max_images is None or max_images >= count:
        return list(range(count))
    if max_images < 1:
        raise OptionError(f'--max-images must be at least 1, got {max_images}.')
    if max_images == 1:
        return [0]
    return sorted({int(round(i * (count - 1) / (max_images - 1))) for i in range(max_images)})


def _is_lmdb(path):
    return str(path).rstrip('/').endswith('.lmdb')


def synthetic_case(set_name, root, sigma, color='rgb', max_images=None, noise_seed=0):
    """Clean images of a folder or LMDB with AWGN of level `sigma`, exactly as GaussianNoiseDataset validates.

    Args:
        set_name (str): The set's label.
        root (str): Folder of clean images, or a BasicSR LMDB (a folder ending in .lmdb).
        sigma (float): Noise level on the 0-255 scale.
        color (str): 'rgb' or 'gray'. Default: 'rgb'.
        max_images (int | None): Use at most this many images, spread evenly over the set. Default: all.
        noise_seed (int): GaussianNoiseDataset's noise_seed (the generator's seed for every image). Default: 0.

    Returns:
        NoisyCase: the noisy/clean pairs.
    """
    backend = 'lmdb' if _is_lmdb(root) else 'disk'
    if backend == 'disk' and not os.path.isdir(root):
        raise MissingFileError(f'Test set {set_name!r}: folder not found: {root}')
    dataset = GaussianNoiseDataset({
        'name': set_name,
        'phase': 'val',
        'dataroot_gt': root,
        'color': color,
        'sigma': float(sigma),
        'noise_seed': int(noise_seed),
        'io_backend': {
            'type': backend
        },
    })
    samples = []
    for index in subsample(len(dataset), max_images):
        item = dataset[index]
        name = os.path.splitext(os.path.basename(str(item['lq_path'])))[0]
        samples.append(Sample(name, item['lq'][None], item['gt'][None]))
    return NoisyCase(set_name, float(sigma), samples)


class _PairSource:
    """Images of one side of a real-noise pair set, by name: an image folder or a BasicSR LMDB."""

    def __init__(self, set_name, root, side):
        self.set_name, self.root, self.side = set_name, root, side
        if _is_lmdb(root):
            self.keys = {key: key for key in lmdb_keys(root)}
            self.client = FileClient('lmdb', db_paths=[root], client_keys=[side])
        else:
            if not os.path.isdir(root):
                raise MissingFileError(f'Test set {set_name!r}: {side} folder not found: {root}')
            self.keys = {os.path.splitext(rel)[0]: os.path.join(root, rel) for rel in list_images(root)}
            if not self.keys:
                raise DataError(f'Test set {set_name!r}: no images in the {side} folder {root}.')
            self.client = None

    def read(self, name, color):
        where = self.keys[name]
        advice = f'it is the {self.side} image {name!r} of test set {self.set_name!r}'
        if self.client is None:
            img = read_image(where, color, advice)
        else:
            value = self.client.get(where, self.side)
            if value is None:
                raise BadFileError(f'Test set {self.set_name!r}: key {where!r} is listed in {self.root}/meta_info.txt '
                                   f'but not stored in the LMDB; rebuild it.')
            img = decode_image(value, f'{self.root}[{where}]', color, advice)
        img = img.astype(np.float32) / (65535. if img.dtype == np.uint16 else 255.)
        return img[..., None] if img.ndim == 2 else img


def paired_case(set_name, gt_root, noisy_root, color='rgb', max_images=None):
    """Real noise: noisy images and their clean references, matched by name (file stem or LMDB key).

    Args:
        set_name (str): The set's label.
        gt_root (str): Folder or LMDB of clean images.
        noisy_root (str): Folder or LMDB of noisy images with the same names (BasicSR's paired convention).
        color (str): 'rgb' or 'gray'. Default: 'rgb'.
        max_images (int | None): Use at most this many pairs, spread evenly over the set. Default: all.

    Returns:
        NoisyCase: the pairs, with sigma None.
    """
    gt_source = _PairSource(set_name, gt_root, 'gt')
    lq_source = _PairSource(set_name, noisy_root, 'lq')
    names = sorted(set(gt_source.keys) & set(lq_source.keys))
    unmatched = sorted(set(gt_source.keys) ^ set(lq_source.keys))
    if unmatched:
        raise DataError(f'Test set {set_name!r}: {len(unmatched)} image(s) have no partner of the same name in '
                        f'{gt_root} and {noisy_root}, e.g. {unmatched[0]!r}. Name each noisy image like its clean '
                        f'image (BasicSR\'s paired convention), or build LMDBs with `python -m gradnet_arch.prep '
                        f'paired`.')
    samples = []
    for index in subsample(len(names), max_images):
        name = names[index]
        gt, lq = gt_source.read(name, color), lq_source.read(name, color)
        if gt.shape != lq.shape:
            raise DataError(f'Test set {set_name!r}: image {name!r} is {gt.shape} in {gt_root} but {lq.shape} in '
                            f'{noisy_root}; a pair must have one size.')
        gt, lq = img2tensor([gt, lq], bgr2rgb=color == 'rgb', float32=True)
        samples.append(Sample(name, lq[None], gt[None]))
    return NoisyCase(set_name, None, samples)


def parse_named(text, flag):
    """Split `NAME=VALUE` (a name is required to label the table); a clear error otherwise."""
    name, sep, value = text.partition('=')
    if not sep or not name.strip() or not value.strip():
        raise OptionError(f'{flag} {text!r}: expected NAME=VALUE, e.g. {flag} CBSD68=datasets/CBSD68.')
    return name.strip(), value.strip()


def build_cases(sets, pairs, sigmas, color, max_images=None, noise_seed=0):
    """All test cases: each `--set` at each sigma, then each `--pairs`.

    Args:
        sets (list[str]): `NAME=FOLDER_OR_LMDB` of clean images.
        pairs (list[str]): `NAME=GT_DIR_OR_LMDB,NOISY_DIR_OR_LMDB`.
        sigmas (list[float]): AWGN levels for the clean sets.
        color (str): 'rgb' or 'gray'.
        max_images (int | None): Images per set.
        noise_seed (int): Seed of the synthetic noise.

    Returns:
        list[NoisyCase]
    """
    cases = []
    names = set()
    for text in sets:
        name, root = parse_named(text, '--set')
        _claim(names, name)
        for sigma in sigmas:
            cases.append(synthetic_case(name, os.path.expanduser(root), sigma, color, max_images, noise_seed))
    for text in pairs:
        name, roots = parse_named(text, '--pairs')
        _claim(names, name)
        parts = [part.strip() for part in roots.split(',')]
        if len(parts) != 2 or not all(parts):
            raise OptionError(f'--pairs {text!r}: expected NAME=GT_DIR_OR_LMDB,NOISY_DIR_OR_LMDB (clean first).')
        cases.append(paired_case(name, os.path.expanduser(parts[0]), os.path.expanduser(parts[1]), color, max_images))
    return cases


def _claim(names, name):
    if name in names:
        raise OptionError(f'Two test sets are named {name!r}; give each --set / --pairs its own NAME.')
    names.add(name)
