"""Writers of small test inputs shared by several test folders (SIDD/DND/PolyU layouts, tiny saved networks)."""
import cv2
import h5py
import numpy as np
import os
import tiny_options
import torch

from gradnet_arch.archs import GradNet, MSKResNet


def random_image(rng, height, width, channels=3, dtype=np.uint8):
    high = 65536 if dtype == np.uint16 else 256
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rng.randint(0, high, shape).astype(dtype)


def write_sidd_medium(root,
                      scenes=('0001_001_S6_00100_00060_3200_L', '0002_001_S6_00100_00060_3200_N'),
                      captures=('010', '011'),
                      size=(40, 56),
                      seed=0):
    """A SIDD-Medium sRGB tree; returns {key: (gt, noisy)} of BGR arrays as stored."""
    rng = np.random.RandomState(seed)
    images = {}
    for scene in scenes:
        folder = os.path.join(root, 'Data', scene)
        os.makedirs(folder, exist_ok=True)
        prefix = scene[:4]
        for capture in captures:
            gt, noisy = random_image(rng, *size), random_image(rng, *size)
            cv2.imwrite(os.path.join(folder, f'{prefix}_GT_SRGB_{capture}.PNG'), gt)
            cv2.imwrite(os.path.join(folder, f'{prefix}_NOISY_SRGB_{capture}.PNG'), noisy)
            images[f'{prefix}_{capture}'] = (gt, noisy)
    return images


def write_mat_v73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte header block and column-major (reversed) axes."""
    with h5py.File(path, 'w', userblock_size=512) as mat:
        for name, value in variables.items():
            mat.create_dataset(name, data=np.asarray(value).transpose())
    with open(path, 'r+b') as fout:
        fout.write(b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .')


def write_dnd(root, images, boxes):
    """DND's layout: images_srgb/NNNN.mat (InoisySRGB) and info.mat (info.boundingboxes, a cell of references)."""
    os.makedirs(os.path.join(root, 'images_srgb'), exist_ok=True)
    for number, img in enumerate(images, 1):
        write_mat_v73(os.path.join(root, 'images_srgb', f'{number:04d}.mat'), {'InoisySRGB': img})
    with h5py.File(os.path.join(root, 'info.mat'), 'w', userblock_size=512) as mat:
        refs = mat.create_group('#refs#')
        cells = [
            refs.create_dataset(f'b{i}', data=np.asarray(b, np.float64).transpose()).ref for i, b in enumerate(boxes)
        ]
        info = mat.create_group('info')
        info.create_dataset('boundingboxes', data=np.array([cells], dtype=h5py.ref_dtype))  # a 50x1 cell: (1, 50)
        info.create_dataset('nlf', data=np.zeros((1, 1)))  # other fields of the real struct are ignored
    return root


def write_pairs(folder, names, size=(32, 40), seed=0, lq_suffix='_real', gt_suffix='_mean', ext='.png'):
    """PolyU-style pairs in one folder; returns {name: (gt, lq)}."""
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    pairs = {}
    for name in names:
        gt, lq = random_image(rng, *size), random_image(rng, *size)
        cv2.imwrite(os.path.join(folder, f'{name}{gt_suffix}{ext}'), gt)
        cv2.imwrite(os.path.join(folder, f'{name}{lq_suffix}{ext}'), lq)
        pairs[name] = (gt, lq)
    return pairs


SIDD_SHAPE = (2, 3, 32, 32, 3)

DND_BOXES = [
    [[1, 1, 16, 16], [5, 20, 24, 43], [3, 10, 12, 30]],  # [first-axis from, second-axis from, first-axis to, ...]
    [[9, 2, 30, 17], [1, 1, 30, 44]],
]


def sidd_noisy(seed=0, shape=SIDD_SHAPE):
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:shape[2], 0:shape[3]]
    clean = 120 + 80 * np.sin(xx / 4.)[..., None] * np.cos(yy / 6.)[..., None] * np.array([1, .7, .4])
    return np.clip(clean + rng.normal(0, 20, shape), 0, 255).round().astype(np.uint8)


def dnd_root(root, seed=0, boxes=DND_BOXES):
    rng = np.random.RandomState(seed)
    images = [rng.uniform(0, 1, (30, 44, 3)).astype(np.float32) for _ in boxes]  # MATLAB H x W x 3
    images[0][0, 0] = [-0.05, 1.1, 0.5]  # out of range: clipped before denoising
    return write_dnd(str(root), images, boxes), images


TINY = {'num_feat': 8, 'num_modules': 1, 'num_units': 1}


def gradnet_options(channels):
    return tiny_options.gradnet_options(channels, TINY)


def save_tiny(path, opt, seed):
    """A random tiny network saved in BasicSR's format with its options embedded."""
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in opt.items() if k != 'type'}
    net = {'GradNet': GradNet, 'MSKResNet': MSKResNet}[opt['type']](**kwargs)
    torch.save({'params': net.state_dict(), 'network_g': opt}, path)
    return str(path)
