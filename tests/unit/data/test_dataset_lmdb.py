"""GaussianNoiseDataset on the LMDBs the preparation tools write, and with a meta_info_file on disk."""
import cv2
import numpy as np
import os
import pickle
import pytest
import random
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.utils import imfrombytes
from conftest import write_images

from gradnet_arch.data import GaussianNoiseDataset
from gradnet_arch.prep import prepare_crops, prepare_paired


def options(root, phase='train', backend='lmdb', **kwargs):
    root = [str(r) for r in root] if isinstance(root, list) else str(root)
    opt = {
        'name': 'lmdb_test',
        'type': 'GaussianNoiseDataset',
        'phase': phase,
        'dataroot_gt': root,
        'io_backend': {
            'type': backend
        },
        'sigma': 25
    }
    if phase == 'train':
        opt['gt_size'] = 16
    opt.update(kwargs)
    return opt


@pytest.fixture
def whole_image_lmdb(tmp_path):
    """Four 32x32 colour images and an LMDB holding each as one 32x32 crop (key img_00N_s001)."""
    folder = write_images(tmp_path / 'clean', 4, height=32, width=32)
    lmdb_path = str(tmp_path / 'clean.lmdb')
    prepare_crops(folder, lmdb_path, crop_size=32, step=32)
    return folder, lmdb_path


def test_lmdb_validation_equals_the_disk_dataset(whole_image_lmdb):
    folder, lmdb_path = whole_image_lmdb
    from_lmdb = GaussianNoiseDataset(options(lmdb_path, phase='val'))
    from_disk = GaussianNoiseDataset(options(folder, phase='val', backend='disk'))
    assert from_lmdb.paths == [f'img_{i:03d}_s001' for i in range(4)]
    for index in range(4):
        a, b = from_lmdb[index], from_disk[index]
        assert torch.equal(a['gt'], b['gt']) and torch.equal(a['lq'], b['lq'])  # same image, same seeded noise
        assert a['gt_path'] == a['lq_path'] == from_lmdb.paths[index]


def test_lmdb_training_crops(whole_image_lmdb):
    _, lmdb_path = whole_image_lmdb
    random.seed(0)
    np.random.seed(0)
    dataset = GaussianNoiseDataset(options(lmdb_path, gt_size=32, use_hflip=False, use_rot=False))
    sample = dataset[2]
    expected = cv2.imread(os.path.join(os.path.dirname(lmdb_path), 'clean', 'img_002.png'))[..., ::-1]
    np.testing.assert_array_equal(sample['gt'].numpy(), expected.transpose(2, 0, 1).astype(np.float32) / 255.)
    assert sample['lq'].shape == (3, 32, 32) and not torch.equal(sample['lq'], sample['gt'])


def test_lmdb_decoding_matches_basicsr_for_8_bit(whole_image_lmdb):
    _, lmdb_path = whole_image_lmdb
    dataset = GaussianNoiseDataset(options(lmdb_path, phase='val'))
    dataset[0]  # opens the file client
    value = dataset.file_client.get('img_001_s001', 'gt')
    ours = dataset._read('img_001_s001')  # the stored 8-bit pixels; samples divide them by 255 as BasicSR does
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours.astype(np.float32) / 255., imfrombytes(value, float32=True))


def test_grey_and_16_bit_lmdbs(tmp_path):
    grey = write_images(tmp_path / 'grey', 2, height=24, width=24, channels=1)
    prepare_crops(grey, str(tmp_path / 'grey.lmdb'), crop_size=16, step=8, color='gray')
    dataset = GaussianNoiseDataset(options(tmp_path / 'grey.lmdb', color='gray'))
    assert len(dataset) == 2 * 4 and dataset[0]['gt'].shape == (1, 16, 16)
    deep = np.random.RandomState(0).randint(0, 65536, (16, 16, 3)).astype(np.uint16)
    os.makedirs(tmp_path / 'deep')
    cv2.imwrite(str(tmp_path / 'deep' / 'd.png'), deep)
    prepare_crops(str(tmp_path / 'deep'), str(tmp_path / 'deep.lmdb'), crop_size=16, step=16)
    gt = GaussianNoiseDataset(options(tmp_path / 'deep.lmdb', phase='val'))[0]['gt']
    np.testing.assert_allclose(gt.numpy(), deep[..., ::-1].transpose(2, 0, 1) / np.float32(65535.), rtol=1e-6)


def test_reads_the_gt_lmdb_of_a_paired_set(tmp_path):
    write_images(tmp_path / 'src', 3, height=24, width=24)
    folder = tmp_path / 'pairs'
    os.makedirs(folder)
    for name in sorted(os.listdir(tmp_path / 'src')):
        img = cv2.imread(str(tmp_path / 'src' / name))
        stem = name[:-4]
        cv2.imwrite(str(folder / f'{stem}_mean.png'), img)
        cv2.imwrite(str(folder / f'{stem}_real.png'), 255 - img)
    prepare_paired(str(folder), str(tmp_path / 'out'), lq_suffix='_real', gt_suffix='_mean', crop_size=16)
    dataset = GaussianNoiseDataset(options(tmp_path / 'out' / 'train' / 'gt.lmdb'))
    assert len(dataset) == 3 * 4 and dataset[5]['gt'].shape == (3, 16, 16)


def test_lmdb_through_basicsr_builders_with_worker_processes(whole_image_lmdb):
    _, lmdb_path = whole_image_lmdb
    opt = options(
        lmdb_path,
        num_worker_per_gpu=2,
        batch_size_per_gpu=2,
        dataset_enlarge_ratio=1,
        prefetch_mode=None,
        use_hflip=True,
        use_rot=True)
    dataset = build_dataset(opt)
    dataset[0]  # the parent's open LMDB: forked workers reopen it, spawned ones get a copy without it
    assert pickle.loads(pickle.dumps(dataset)).file_client is None
    loader = build_dataloader(dataset, opt, num_gpu=0, dist=False, sampler=None, seed=0)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]['gt'].shape == (2, 3, 16, 16)
    assert dataset[1]['gt'].shape == (3, 16, 16)  # the workers closing their copies left the parent's intact


def test_lmdb_errors(tmp_path, whole_image_lmdb):
    folder, lmdb_path = whole_image_lmdb
    with pytest.raises(ValueError, match='ending in .lmdb'):
        GaussianNoiseDataset(options(folder))
    with pytest.raises(FileNotFoundError, match='LMDB folder not found'):
        GaussianNoiseDataset(options(tmp_path / 'none.lmdb'))
    os.makedirs(tmp_path / 'fake.lmdb')
    with pytest.raises(RuntimeError, match='is not a BasicSR LMDB'):
        GaussianNoiseDataset(options(tmp_path / 'fake.lmdb'))
    with pytest.raises(ValueError, match='meta_info_file is for the disk backend'):
        GaussianNoiseDataset(options(lmdb_path, meta_info_file='x.txt'))
    with pytest.raises(ValueError, match='reads one LMDB'):
        GaussianNoiseDataset(options([lmdb_path, lmdb_path]))
    assert len(GaussianNoiseDataset(options([lmdb_path]))) == 4
    with pytest.raises(ValueError, match="io_backend 'memcached'"):
        GaussianNoiseDataset(options(lmdb_path, backend='memcached'))


def test_lmdb_key_without_value_and_undecodable_value(tmp_path, whole_image_lmdb):
    import lmdb

    _, lmdb_path = whole_image_lmdb
    meta = os.path.join(lmdb_path, 'meta_info.txt')
    with open(meta) as fin:
        lines = fin.read()
    with open(meta, 'a') as fout:
        fout.write('ghost.png (32,32,3) 1\n')
    # found when the dataset is built (one message), not as a traceback from a dataloader worker mid-training
    with pytest.raises(RuntimeError, match="1 of the 5 keys listed in .*meta_info.txt are not stored.*'ghost'"):
        GaussianNoiseDataset(options(lmdb_path, phase='val'))
    with open(meta, 'w') as fout:
        fout.write(lines)
    env = lmdb.open(lmdb_path)
    with env.begin(write=True) as txn:
        txn.put(b'img_000_s001', b'not a png')
    env.close()
    dataset = GaussianNoiseDataset(options(lmdb_path, phase='val'))
    with pytest.raises(OSError, match="cannot decode the image under key 'img_000_s001'"):
        dataset[0]


def test_meta_info_file_on_disk(tmp_path):
    folder = write_images(tmp_path / 'imgs', 4)
    meta = tmp_path / 'meta.txt'
    meta.write_text('img_003.png (40,48,3) 1\n\nimg_001.png\n')  # BasicSR's format and plain names
    dataset = GaussianNoiseDataset(options(folder, backend='disk', meta_info_file=str(meta)))
    assert dataset.paths == [os.path.join(folder, 'img_003.png'), os.path.join(folder, 'img_001.png')]
    assert dataset[0]['gt'].shape == (3, 16, 16)
    meta.write_text('img_000.png\nimg_009.png\n')
    with pytest.raises(FileNotFoundError, match='1 image.*img_009.png'):
        GaussianNoiseDataset(options(folder, backend='disk', meta_info_file=str(meta)))
    meta.write_text('\n')
    with pytest.raises(ValueError, match='lists no images'):
        GaussianNoiseDataset(options(folder, backend='disk', meta_info_file=str(meta)))
    with pytest.raises(FileNotFoundError, match='meta_info_file not found'):
        GaussianNoiseDataset(options(folder, backend='disk', meta_info_file=str(tmp_path / 'nope.txt')))
    with pytest.raises(ValueError, match='single folder'):
        GaussianNoiseDataset(options([folder, folder], backend='disk', meta_info_file=str(meta)))
