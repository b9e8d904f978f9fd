"""Clean images + additive white Gaussian noise, the synthetic-noise setting of GradNet."""
import cv2
import numpy as np
import os
import random
import torch
from basicsr.data.data_util import paths_from_lmdb
from basicsr.data.transforms import augment
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data as data

from gradnet_arch.common import images
from gradnet_arch.errors import BadFileError, DataError, ImageReadError, MissingFileError, OptionError
from gradnet_arch.registry import register

# Keys BasicSR's parse_options / dataloader builder read or add, then this dataset's own options.
_BASICSR_KEYS = ('name', 'type', 'phase', 'scale', 'io_backend', 'num_worker_per_gpu', 'batch_size_per_gpu',
                 'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'num_prefetch_queue')
_OWN_KEYS = ('dataroot_gt', 'color', 'sigma', 'sigma_range', 'sigma_list', 'gt_size', 'use_hflip', 'use_rot', 'clip',
             'noise_seed', 'recursive', 'meta_info_file', 'cache_images')
_OPTION_KEYS = frozenset(_BASICSR_KEYS + _OWN_KEYS)


def list_images(folders, recursive=False):
    """Sorted image paths under one or more folders (common.images.list_images); clear errors for missing or
    image-less folders."""
    folders = [folders] if isinstance(folders, str) else list(folders)
    paths = []
    for folder in folders:
        folder = os.path.expanduser(folder)
        if not os.path.isdir(folder):
            raise MissingFileError(f'GaussianNoiseDataset: dataroot_gt folder not found: {folder}')
        found = [os.path.join(folder, rel) for rel in images.list_images(folder, recursive)]
        if not found:
            raise DataError(f'GaussianNoiseDataset: no images ({", ".join(images.IMAGE_EXTENSIONS)}) in {folder}'
                            f'{"" if recursive else " (set recursive: true to search sub-folders)"}.')
        paths += found
    return paths


def list_meta_info_images(folder, meta_info_file):
    """Image paths named in a meta information file, relative to `folder` (BasicSR's convention).

    Each non-empty line's first white-space separated token is a file name relative to `folder`, so BasicSR's
    meta_info.txt lines (`name.png (H,W,C) 1`) and plain lists of names both work.
    """
    if not os.path.isfile(meta_info_file):
        raise MissingFileError(f'GaussianNoiseDataset: meta_info_file not found: {meta_info_file}')
    if not os.path.isdir(folder):
        raise MissingFileError(f'GaussianNoiseDataset: dataroot_gt folder not found: {folder}')
    with open(meta_info_file) as fin:
        paths = [os.path.join(folder, line.split()[0]) for line in fin if line.strip()]
    if not paths:
        raise DataError(f'GaussianNoiseDataset: meta_info_file {meta_info_file} lists no images.')
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise MissingFileError(f'GaussianNoiseDataset: {len(missing)} image(s) listed in {meta_info_file} are not in '
                               f'{folder}, e.g. {missing[0]}.')
    return paths


def lmdb_keys(root):
    """Keys of a BasicSR LMDB folder (from its meta_info.txt, read by BasicSR's paths_from_lmdb)."""
    if not str(root).endswith('.lmdb'):
        raise OptionError(
            f'GaussianNoiseDataset: with io_backend lmdb, dataroot_gt must be an LMDB folder ending in '
            f'.lmdb (BasicSR\'s convention), got {root}. For an image folder use io_backend {{type: disk}}.')
    if not os.path.isdir(root):
        raise MissingFileError(f'GaussianNoiseDataset: LMDB folder not found: {root}')
    if not os.path.isfile(os.path.join(root, 'meta_info.txt')) or not os.path.isfile(os.path.join(root, 'data.mdb')):
        raise BadFileError(f'GaussianNoiseDataset: {root} is not a BasicSR LMDB (it needs data.mdb and '
                           f'meta_info.txt); build one with `python -m gradnet_arch.prep crops`.')
    try:
        keys = paths_from_lmdb(str(root))
    except (OSError, UnicodeDecodeError) as error:
        raise BadFileError(f'GaussianNoiseDataset: cannot read {root}/meta_info.txt ({error}); the LMDB is damaged: '
                           f'rebuild it with `python -m gradnet_arch.prep`.') from None
    if not keys:
        raise DataError(f'GaussianNoiseDataset: the LMDB {root} lists no images in its meta_info.txt.')
    check_lmdb_keys(root, keys)
    return keys


def check_lmdb_keys(root, keys):
    """BadFileError unless `root` opens as an LMDB that stores every key of its meta_info.txt.

    Checked once, when the dataset is built, rather than as a traceback from a dataloader worker mid-training. Only
    the keys are looked up (no values are read), so even large LMDBs take a moment.
    """
    import lmdb

    try:
        env = lmdb.open(str(root), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as error:
        raise BadFileError(f'GaussianNoiseDataset: {root}/data.mdb is not a readable LMDB ({error}); the file is '
                           f'damaged or of another kind: rebuild it with `python -m gradnet_arch.prep`.') from None
    try:
        with env.begin(buffers=True) as txn:
            cursor = txn.cursor()
            missing = [key for key in keys if not cursor.set_key(key.encode('ascii', 'replace'))]
    except lmdb.Error as error:
        raise BadFileError(f'GaussianNoiseDataset: cannot read the LMDB {root} ({error}); it is damaged: rebuild it '
                           f'with `python -m gradnet_arch.prep`.') from None
    finally:
        env.close()
    if missing:
        raise BadFileError(f'GaussianNoiseDataset: {len(missing)} of the {len(keys)} keys listed in '
                           f'{root}/meta_info.txt are not stored in the LMDB (e.g. {missing[0]!r}); meta_info.txt does '
                           f'not belong to this data.mdb: rebuild the LMDB with `python -m gradnet_arch.prep`.')


@register(DATASET_REGISTRY)
class GaussianNoiseDataset(data.Dataset):
    """Clean images with additive white Gaussian noise N(0, (sigma/255)^2) added in [0, 1].

    Training: a random `gt_size` crop, BasicSR's flips/rotations, fresh noise each time (from the dataloader
    worker's numpy generator, which BasicSR seeds per rank and worker). Validation/test (phase other than train):
    whole images, and noise drawn from a generator seeded with `noise_seed` for every image (the field's "seed 0
    per image" convention), so every run and every process sees exactly the same noisy image.

    Args:
        opt (dict): Config for the dataset. It contains:
            dataroot_gt (str | list[str]): Folder(s) of clean images.
            color (str): 'rgb' or 'gray'; the net's num_in_ch must be 3 or 1 to match. Default: 'rgb'.
            sigma (float): Fixed noise level on the 0-255 scale (non-blind, as in the paper).
            sigma_range (list[float]): [low, high]: sigma drawn uniformly per sample (blind training).
            sigma_list (list[float]): sigma drawn from this list per sample. Exactly one of sigma, sigma_range and
                sigma_list must be given; validation with a range or list uses a per-image draw from the seeded
                generator.
            gt_size (int): Training crop size (the paper uses 80). Required in training.
            use_hflip (bool): Random horizontal flips in training. Default: True.
            use_rot (bool): Random vertical flips and transposes in training. Default: True.
            clip (bool): Clip the noisy image to [0, 1] (the paper does not). Default: False.
            noise_seed (int): Seed of the validation noise. Default: 0.
            recursive (bool): Also read images in sub-folders (disk backend without meta_info_file). Default: False.
            meta_info_file (str): Disk backend: read only the images this file lists, one per line (first token,
                relative to dataroot_gt, as in BasicSR). Default: all images of the folder(s).
            cache_images (bool): Keep every decoded image in memory (8/16-bit, as stored) after its first read, in
                each process that reads (each loader worker), so a training crop no longer decodes a whole image.
                For small sets: CBSD432 takes about 200 MB per worker. Samples are identical either way. Default:
                False.
            io_backend (dict): {type: disk} (image folders) or {type: lmdb} (dataroot_gt a BasicSR LMDB such as
                `python -m gradnet_arch.prep crops` writes; keys from its meta_info.txt). Both read 8- and 16-bit
                PNGs at full depth.
            phase (str): 'train' or 'val'/'test', set by BasicSR.
    """

    def __init__(self, opt):
        super().__init__()
        unknown = sorted(set(opt) - _OPTION_KEYS)
        if unknown:
            raise OptionError(f'GaussianNoiseDataset {opt.get("name", "")!r}: unknown option(s) {unknown}. Valid: '
                              f'{", ".join(_OWN_KEYS)} and BasicSR\'s loader keys.')
        self.opt = opt
        self.io_backend_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.backend = self.io_backend_opt.pop('type', 'disk')
        if self.backend not in ('disk', 'lmdb'):
            raise OptionError(f'GaussianNoiseDataset: io_backend {self.backend!r} is not supported; use {{type: disk}} '
                              f'with an image folder or {{type: lmdb}} with an LMDB.')
        self.file_client = None  # opened on first read in each process (see _read_lmdb)
        self._client_pid = None
        self.color = opt.get('color', 'rgb')
        if self.color not in ('rgb', 'gray'):
            raise OptionError(f'GaussianNoiseDataset: color must be "rgb" or "gray", got {self.color!r}.')
        self.is_train = opt.get('phase', 'train') == 'train'
        self.sigma, self.sigma_range, self.sigma_list = self._parse_sigma(opt)
        self.gt_size = opt.get('gt_size')
        if self.is_train and not self.gt_size:
            raise OptionError('GaussianNoiseDataset: training needs gt_size (the random crop size, e.g. 80).')
        self.clip = bool(opt.get('clip', False))
        self.noise_seed = int(opt.get('noise_seed', 0))
        if 'dataroot_gt' not in opt:
            raise OptionError('GaussianNoiseDataset: dataroot_gt (a folder of clean images) is required.')
        self.paths = self._list_paths(opt)
        if not isinstance(opt.get('cache_images', False), bool):
            raise OptionError(f'GaussianNoiseDataset: cache_images must be true or false, got {opt["cache_images"]!r}.')
        self._cache = {} if opt.get('cache_images', False) else None

    def _list_paths(self, opt):
        root, meta_info_file = opt['dataroot_gt'], opt.get('meta_info_file')
        if self.backend == 'lmdb':
            if meta_info_file:
                raise OptionError('GaussianNoiseDataset: meta_info_file is for the disk backend; an LMDB lists its '
                                  'keys in its own meta_info.txt.')
            if isinstance(root, (list, tuple)):
                if len(root) != 1:
                    raise OptionError(f'GaussianNoiseDataset: io_backend lmdb reads one LMDB, got {len(root)}: {root}. '
                                      f'Write all images into one LMDB (`python -m gradnet_arch.prep crops A B ...`).')
                root = root[0]
            root = os.path.expanduser(str(root))
            self.io_backend_opt.update(db_paths=[root], client_keys=['gt'])
            self.lmdb_root = root
            return lmdb_keys(root)
        if meta_info_file:
            if not isinstance(root, str):
                raise OptionError(f'GaussianNoiseDataset: meta_info_file names files in one folder; dataroot_gt must '
                                  f'be a single folder, got {root}.')
            return list_meta_info_images(os.path.expanduser(root), os.path.expanduser(meta_info_file))
        return list_images(root, opt.get('recursive', False))

    @staticmethod
    def _parse_sigma(opt):
        given = [key for key in ('sigma', 'sigma_range', 'sigma_list') if opt.get(key) is not None]
        if len(given) != 1:
            raise OptionError(f'GaussianNoiseDataset: give exactly one of sigma (fixed), sigma_range ([low, high]) or '
                              f'sigma_list, on the 0-255 scale; got {given or "none"}.')
        sigma, sigma_range, sigma_list = opt.get('sigma'), opt.get('sigma_range'), opt.get('sigma_list')
        if sigma_range is not None:
            if len(sigma_range) != 2 or not 0 <= float(sigma_range[0]) <= float(sigma_range[1]):
                raise OptionError(f'GaussianNoiseDataset: sigma_range must be [low, high] with 0 <= low <= high, '
                                  f'got {sigma_range}.')
            sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        if sigma_list is not None:
            sigma_list = [float(s) for s in sigma_list]
            if not sigma_list or min(sigma_list) < 0:
                raise OptionError(f'GaussianNoiseDataset: sigma_list must be non-empty and >= 0, got {sigma_list}.')
        if sigma is not None and float(sigma) < 0:
            raise OptionError(f'GaussianNoiseDataset: sigma must be >= 0, got {sigma}.')
        return (None if sigma is None else float(sigma)), sigma_range, sigma_list

    def _read(self, path):
        """The image at `path` (a file or an LMDB key) as stored: HWC (HW1 for gray) uint8 or uint16."""
        if self._cache is not None and path in self._cache:
            return self._cache[path]
        img = self._decode(path)
        img = img[..., None] if img.ndim == 2 else img
        if self._cache is not None:
            self._cache[path] = img
        return img

    def _decode(self, path):
        flag = cv2.IMREAD_GRAYSCALE if self.color == 'gray' else cv2.IMREAD_COLOR
        if self.backend == 'lmdb':
            img = self._read_lmdb(path, flag)
        else:
            img = cv2.imread(path, flag | cv2.IMREAD_ANYDEPTH)
            if img is None:
                raise ImageReadError(f'GaussianNoiseDataset: cannot read image {path} (missing, corrupt or not an '
                                     f'image). Remove or replace it.')
        return img

    def __getstate__(self):
        # an open LMDB environment cannot be pickled (spawned dataloader workers); each process reopens its own
        state = self.__dict__.copy()
        state['file_client'] = None
        return state

    def _read_lmdb(self, key, flag):
        # an LMDB environment must not be used across fork: a dataloader worker forked after the parent read an
        # image closes its inherited copy (py-lmdb allows one open environment per path) and opens its own
        if self.file_client is None or self._client_pid != os.getpid():
            if self.file_client is not None:
                for env in self.file_client.client._client.values():
                    env.close()
            self.file_client = FileClient('lmdb', **self.io_backend_opt)
            self._client_pid = os.getpid()
        value = self.file_client.get(key, 'gt')
        if value is None:
            raise BadFileError(f'GaussianNoiseDataset: key {key!r} is listed in {self.lmdb_root}/meta_info.txt but not '
                               f'stored in the LMDB; rebuild it.')
        # BasicSR's imfrombytes with the disk reader's flags: the same decoder (cv2.imdecode), but 16-bit PNGs keep
        # their depth instead of being cut to 8 bit
        img = cv2.imdecode(np.frombuffer(value, np.uint8), flag | cv2.IMREAD_ANYDEPTH)
        if img is None:
            raise ImageReadError(
                f'GaussianNoiseDataset: cannot decode the image under key {key!r} in {self.lmdb_root}. '
                f'Rebuild the LMDB.')
        return img

    def _draw_sigma(self, rng):
        if self.sigma is not None:
            return self.sigma
        if self.sigma_range is not None:
            return float(rng.uniform(*self.sigma_range))
        return float(self.sigma_list[rng.randint(len(self.sigma_list))])

    def __getitem__(self, index):
        path = self.paths[index]
        img_gt = self._read(path)
        scale = np.float32(65535. if img_gt.dtype == np.uint16 else 255.)
        if self.is_train:
            h, w = img_gt.shape[:2]
            size = self.gt_size
            if h < size or w < size:
                raise DataError(f'GaussianNoiseDataset: image {path} is {h}x{w}, smaller than gt_size {size}. '
                                f'Lower gt_size or remove the image.')
            top, left = random.randint(0, h - size), random.randint(0, w - size)
            # crop and augment the stored integers, then convert only the crop: the same values as converting first
            # (a copy: BasicSR's augment flips in place, and the image may be the cached one)
            img_gt = img_gt[top:top + size, left:left + size, ...].copy()
            img_gt = augment(img_gt, self.opt.get('use_hflip', True), self.opt.get('use_rot', True))
            img_gt = img_gt.reshape(img_gt.shape[0], img_gt.shape[1], -1).astype(np.float32) / scale
            rng = np.random  # seeded per rank and worker by BasicSR's worker_init_fn
        else:
            img_gt = img_gt.astype(np.float32) / scale
            rng = np.random.RandomState(self.noise_seed)
        sigma = self._draw_sigma(rng)
        noise = rng.standard_normal(img_gt.shape).astype(np.float32) * np.float32(sigma / 255.)
        img_lq = img_gt + noise
        if self.clip:
            img_lq = np.clip(img_lq, 0, 1)
        # BasicSR's img2tensor: HWC (BGR for colour) -> CHW RGB float32
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=self.color == 'rgb', float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': path, 'gt_path': path, 'sigma': torch.tensor(sigma)}

    def __len__(self):
        return len(self.paths)
