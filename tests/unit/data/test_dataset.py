"""GaussianNoiseDataset: training crops, noise statistics, reproducible validation noise, errors, BasicSR builders."""
import cv2
import hashlib
import numpy as np
import os
import pytest
import random
import re
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils.registry import DATASET_REGISTRY
from conftest import REPO, run_python, write_images

from gradnet_arch.data import GaussianNoiseDataset
from gradnet_arch.errors import OptionError


def options(folder, phase='train', **kwargs):
    opt = {
        'name': 'noise_test',
        'type': 'GaussianNoiseDataset',
        'phase': phase,
        'dataroot_gt': folder,
        'io_backend': {
            'type': 'disk'
        },
    }
    if phase == 'train':
        opt['gt_size'] = 32
    if not {'sigma', 'sigma_range', 'sigma_list'} & set(kwargs):
        opt['sigma'] = 25
    opt.update(kwargs)
    return opt


def seed_all(seed=0):
    random.seed(seed)
    np.random.seed(seed)


def read_rgb(path):
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.float32) / 255.


def checksum(tensor):
    return hashlib.sha256(tensor.numpy().astype(np.float32).tobytes()).hexdigest()


def black_white_folder(root, size=40):
    """One image with exact 0 and 255 pixels (left half black, right half white)."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:, size // 2:] = 255
    os.makedirs(root, exist_ok=True)
    cv2.imwrite(os.path.join(root, 'bw.png'), img)
    return str(root)


# ---------------------------------------------------------------------------------------------------------------------
# training samples


def test_training_sample_keys_shapes_and_types(image_dirs):
    seed_all()
    dataset = GaussianNoiseDataset(options(image_dirs['train']))
    assert len(dataset) == 4
    sample = dataset[1]
    assert {'lq', 'gt', 'lq_path', 'gt_path'} <= set(sample)
    for key in ('lq', 'gt'):
        assert sample[key].shape == (3, 32, 32)
        assert sample[key].dtype == torch.float32
    assert sample['lq_path'] == sample['gt_path'] == os.path.join(image_dirs['train'], 'img_001.png')
    assert float(sample['sigma']) == 25.
    assert 0. <= sample['gt'].min() and sample['gt'].max() <= 1.


def test_training_gt_is_an_rgb_crop_of_the_image(image_dirs):
    seed_all(1)
    dataset = GaussianNoiseDataset(options(image_dirs['train'], gt_size=40, use_hflip=False, use_rot=False))
    image = read_rgb(dataset.paths[0])  # 40 x 48: the 40 x 40 crop can only move horizontally
    crops = [np.ascontiguousarray(image[:, left:left + 40].transpose(2, 0, 1)) for left in range(9)]
    for _ in range(5):
        gt = dataset[0]['gt'].numpy()
        assert any(np.array_equal(gt, crop) for crop in crops)


def test_cached_images_give_the_same_samples(image_dirs):
    """cache_images changes where the pixels come from, not one value: same seeds, same crops, flips and noise."""
    samples = {}
    for cache in (False, True):
        seed_all(6)
        dataset = GaussianNoiseDataset(options(image_dirs['train'], gt_size=24, cache_images=cache))
        samples[cache] = [dataset[i % 4] for i in range(16)]  # every image read more than once, flips included
    for plain, cached in zip(samples[False], samples[True]):
        assert torch.equal(plain['gt'], cached['gt']) and torch.equal(plain['lq'], cached['lq'])


def test_image_cache_serves_later_reads_and_stays_intact(image_dirs, tmp_path):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    image = np.random.RandomState(0).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    cv2.imwrite(str(folder / 'a.png'), image)
    seed_all(7)
    # gt_size = the image: the crop is the whole cached array, which BasicSR's in-place flips would change
    dataset = GaussianNoiseDataset(options(str(folder), gt_size=32, cache_images=True))
    dataset[0]
    os.remove(folder / 'a.png')  # decoded once: later samples need no file
    for _ in range(20):
        dataset[0]
    np.testing.assert_array_equal(dataset._cache[str(folder / 'a.png')], image)


def test_cache_images_must_be_a_boolean(image_dirs):
    with pytest.raises(OptionError, match='cache_images must be true or false'):
        GaussianNoiseDataset(options(image_dirs['train'], cache_images='yes'))


def test_training_noise_statistics(image_dirs):
    seed_all(2)
    dataset = GaussianNoiseDataset(options(image_dirs['train'], gt_size=40))
    noise = np.concatenate([(s['lq'] - s['gt']).numpy().ravel() for s in (dataset[i % 4] for i in range(20))])
    assert noise.size == 20 * 3 * 40 * 40
    assert noise.std() == pytest.approx(25 / 255, rel=0.03)
    assert abs(noise.mean()) < 0.003
    # roughly Gaussian: about 68 % within one sigma
    assert np.mean(np.abs(noise) < 25 / 255) == pytest.approx(0.6827, abs=0.02)


def test_training_noise_is_fresh_each_time(image_dirs):
    seed_all(3)
    dataset = GaussianNoiseDataset(options(image_dirs['train'], use_hflip=False, use_rot=False, gt_size=40))
    first, second = dataset[0], dataset[0]
    assert not torch.allclose(first['lq'] - first['gt'], second['lq'] - second['gt'])


def test_no_clipping_by_default(tmp_path):
    seed_all(4)
    dataset = GaussianNoiseDataset(options(black_white_folder(tmp_path / 'bw'), sigma=50, gt_size=40))
    lq = dataset[0]['lq']
    assert lq.min() < 0 and lq.max() > 1


def test_clipping_when_asked(tmp_path):
    seed_all(4)
    dataset = GaussianNoiseDataset(options(black_white_folder(tmp_path / 'bw'), sigma=50, gt_size=40, clip=True))
    sample = dataset[0]
    assert sample['lq'].min() >= 0 and sample['lq'].max() <= 1
    assert (sample['lq'] == 0).any() and (sample['lq'] == 1).any()
    assert not torch.equal(sample['lq'], sample['gt'])  # still noisy


def test_grey_images(gray_dirs):
    seed_all(5)
    dataset = GaussianNoiseDataset(options(gray_dirs['train'], color='gray', gt_size=24))
    for i in range(12):  # enough draws to cover the flips and transposes
        sample = dataset[i % 4]
        assert sample['lq'].shape == sample['gt'].shape == (1, 24, 24)
        assert sample['lq'].dtype == torch.float32
    val = GaussianNoiseDataset(options(gray_dirs['val'], phase='val', color='gray'))
    assert val[0]['lq'].shape == val[0]['gt'].shape == (1, 32, 36)
    expected = cv2.imread(val.paths[0], cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.
    np.testing.assert_array_equal(val[0]['gt'][0].numpy(), expected)


# ---------------------------------------------------------------------------------------------------------------------
# validation noise


def test_validation_whole_image_and_reproducible_noise(image_dirs):
    opt = options(image_dirs['val'], phase='val')
    first, second = GaussianNoiseDataset(opt), GaussianNoiseDataset(dict(opt))
    sample = first[0]
    assert sample['lq'].shape == sample['gt'].shape == (3, 32, 36)
    np.testing.assert_array_equal(sample['gt'].numpy(), read_rgb(first.paths[0]).transpose(2, 0, 1))
    np.random.seed(123)  # the global generator must not matter
    assert torch.equal(first[0]['lq'], sample['lq'])
    assert torch.equal(second[0]['lq'], sample['lq'])
    assert torch.equal(second[1]['lq'], first[1]['lq'])
    noise = (sample['lq'] - sample['gt']).numpy()
    assert noise.std() == pytest.approx(25 / 255, rel=0.1)


def test_validation_noise_identical_in_a_fresh_interpreter(image_dirs):
    opt = options(image_dirs['val'], phase='val', noise_seed=7)
    expected = [checksum(GaussianNoiseDataset(opt)[i]['lq']) for i in range(2)]
    code = ('import hashlib, sys\n'
            'import numpy as np\n'
            'from gradnet_arch.data import GaussianNoiseDataset\n'
            'np.random.seed(999)\n'
            f'ds = GaussianNoiseDataset({opt!r})\n'
            'for i in range(len(ds)):\n'
            '    print(hashlib.sha256(ds[i]["lq"].numpy().astype(np.float32).tobytes()).hexdigest())\n')
    result = run_python(['-c', code], cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


def test_noise_seed_changes_validation_noise(image_dirs):
    lq_0 = GaussianNoiseDataset(options(image_dirs['val'], phase='val'))[0]['lq']
    lq_1 = GaussianNoiseDataset(options(image_dirs['val'], phase='val', noise_seed=1))[0]['lq']
    assert not torch.allclose(lq_0, lq_1)


def test_validation_with_sigma_range_is_reproducible(image_dirs):
    opt = options(image_dirs['val'], phase='val', sigma_range=[5, 50])
    a, b = GaussianNoiseDataset(opt)[0], GaussianNoiseDataset(opt)[0]
    assert torch.equal(a['lq'], b['lq']) and float(a['sigma']) == float(b['sigma'])
    assert 5 <= float(a['sigma']) <= 50


# ---------------------------------------------------------------------------------------------------------------------
# sigma options


def test_sigma_range_draws_vary_within_bounds(image_dirs):
    seed_all(6)
    dataset = GaussianNoiseDataset(options(image_dirs['train'], sigma_range=[10, 40], gt_size=40))
    sigmas = []
    for i in range(30):
        sample = dataset[i % 4]
        sigma = float(sample['sigma'])
        sigmas.append(sigma)
        # the returned sigma is the one the noise was drawn with
        assert (sample['lq'] - sample['gt']).std().item() == pytest.approx(sigma / 255, rel=0.1)
    assert all(10 <= s <= 40 for s in sigmas)
    assert len(set(sigmas)) > 20
    assert max(sigmas) - min(sigmas) > 10


def test_sigma_list_draws_only_listed_values(image_dirs):
    seed_all(7)
    dataset = GaussianNoiseDataset(options(image_dirs['train'], sigma_list=[15, 25, 50], gt_size=40))
    sigmas = []
    for i in range(30):
        sample = dataset[i % 4]
        sigmas.append(float(sample['sigma']))
        assert (sample['lq'] - sample['gt']).std().item() == pytest.approx(sigmas[-1] / 255, rel=0.1)
    assert set(sigmas) <= {15., 25., 50.}
    assert len(set(sigmas)) >= 2


@pytest.mark.parametrize('sigmas', [
    {},
    {
        'sigma': 25,
        'sigma_range': [10, 20]
    },
    {
        'sigma': 25,
        'sigma_list': [15, 25]
    },
    {
        'sigma_range': [10, 20],
        'sigma_list': [15, 25]
    },
    {
        'sigma_range': [30, 20]
    },
    {
        'sigma_range': [10]
    },
    {
        'sigma_list': []
    },
    {
        'sigma': -5
    },
])
def test_sigma_options_validated(image_dirs, sigmas):
    opt = options(image_dirs['train'], sigma=None)
    opt.update(sigmas)
    with pytest.raises(ValueError, match='sigma'):
        GaussianNoiseDataset(opt)


# ---------------------------------------------------------------------------------------------------------------------
# errors


def test_missing_folder(tmp_path):
    folder = str(tmp_path / 'does_not_exist')
    with pytest.raises(FileNotFoundError, match=re.escape(folder)):
        GaussianNoiseDataset(options(folder))


def test_folder_without_images(tmp_path):
    folder = tmp_path / 'empty'
    folder.mkdir()
    (folder / 'notes.txt').write_text('no images here')
    with pytest.raises(ValueError, match='no images'):
        GaussianNoiseDataset(options(str(folder)))


def test_images_in_sub_folders_need_recursive(tmp_path):
    write_images(tmp_path / 'root' / 'sub', 2)
    with pytest.raises(ValueError, match='recursive'):
        GaussianNoiseDataset(options(str(tmp_path / 'root')))
    assert len(GaussianNoiseDataset(options(str(tmp_path / 'root'), recursive=True))) == 2


def test_corrupt_image(tmp_path):
    folder = tmp_path / 'corrupt'
    write_images(folder, 1)
    bad = folder / 'x.png'
    bad.write_bytes(b'\x89PNG this is not really an image' * 4)
    dataset = GaussianNoiseDataset(options(str(folder)))
    index = dataset.paths.index(str(bad))
    with pytest.raises(OSError, match=re.escape(str(bad))):
        dataset[index]
    val = GaussianNoiseDataset(options(str(folder), phase='val'))
    with pytest.raises(OSError, match=re.escape(str(bad))):
        val[index]


def test_image_smaller_than_gt_size(image_dirs):
    dataset = GaussianNoiseDataset(options(image_dirs['train'], gt_size=44))  # images are 40 x 48
    with pytest.raises(ValueError, match=re.escape(os.path.join(image_dirs['train'], 'img_000.png'))):
        dataset[0]


def test_unknown_option(image_dirs):
    with pytest.raises(ValueError, match='sigmas'):
        GaussianNoiseDataset(options(image_dirs['train'], sigmas=25))


def test_training_needs_gt_size(image_dirs):
    opt = options(image_dirs['train'])
    del opt['gt_size']
    with pytest.raises(ValueError, match='gt_size'):
        GaussianNoiseDataset(opt)
    GaussianNoiseDataset(dict(opt, phase='val'))  # validation uses whole images


def test_lmdb_backend_needs_an_lmdb_folder(image_dirs):
    with pytest.raises(ValueError, match='lmdb'):
        GaussianNoiseDataset(options(image_dirs['train'], io_backend={'type': 'lmdb'}))


def test_invalid_color(image_dirs):
    with pytest.raises(ValueError, match='color'):
        GaussianNoiseDataset(options(image_dirs['train'], color='bgr'))


# ---------------------------------------------------------------------------------------------------------------------
# BasicSR builders


def test_registered_and_built_through_basicsr(image_dirs):
    assert DATASET_REGISTRY.get('GaussianNoiseDataset') is GaussianNoiseDataset
    seed_all(8)
    opt = options(
        image_dirs['train'],
        gt_size=24,
        use_hflip=True,
        use_rot=True,
        num_worker_per_gpu=0,
        batch_size_per_gpu=2,
        dataset_enlarge_ratio=1,
        prefetch_mode=None)
    dataset = build_dataset(opt)
    assert isinstance(dataset, GaussianNoiseDataset)
    loader = build_dataloader(dataset, opt, num_gpu=0, dist=False, sampler=None, seed=0)
    batches = list(loader)
    assert len(batches) == 2
    batch = batches[0]
    assert batch['lq'].shape == batch['gt'].shape == (2, 3, 24, 24)
    assert batch['lq'].dtype == torch.float32
    assert len(batch['lq_path']) == 2 and all(p.endswith('.png') for p in batch['lq_path'])
    assert batch['sigma'].shape == (2, )

    val_opt = options(image_dirs['val'], phase='val')
    val_loader = build_dataloader(build_dataset(val_opt), val_opt)
    val_batch = next(iter(val_loader))
    assert val_batch['lq'].shape == (1, 3, 32, 36)
