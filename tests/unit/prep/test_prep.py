"""Data preparation: SIDD, DND and folders -> LMDBs / PNG folders, checked key by key and pixel by pixel.

Every input is written here in the real formats (SIDD-Medium PNG tree, SIDD .mat v5 and v7.3, DND v7.3 with
references); outputs are decoded back with lmdb + cv2 and compared with the source arrays.
"""
import cv2
import h5py
import lmdb
import numpy as np
import os
import pytest
import re
import scipy.io
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.single_image_dataset import SingleImageDataset
from basicsr.utils import imfrombytes
from conftest import REPO, SHARED_DATA, run_python
from sample_data import random_image, write_dnd, write_mat_v73, write_pairs, write_sidd_medium

from gradnet_arch.errors import BadFileError, DataError, ImageReadError, MissingFileError, OptionError
from gradnet_arch.prep import (LmdbWriter, prepare_crops, prepare_dnd, prepare_paired, prepare_sidd_benchmark,
                               prepare_sidd_train, prepare_sidd_val)
from gradnet_arch.prep.__main__ import main
from gradnet_arch.prep.folders import crop_grid, crop_positions, split_pairs
from gradnet_arch.prep.sidd import parse_block_key
from gradnet_arch.prep.stamps import STAMP_NAME, AtomicOutputs, fingerprint

META_LINE = re.compile(r'^([A-Za-z0-9_+\-]+)\.png \((\d+),(\d+),(\d+)\) (\d)$')


def read_lmdb(path):
    """{key: decoded image} of a BasicSR LMDB, after checking its layout and that meta_info.txt matches data.mdb."""
    assert {'data.mdb', 'lock.mdb', 'meta_info.txt'} <= set(os.listdir(path)), os.listdir(path)
    with open(os.path.join(path, 'meta_info.txt')) as fin:
        meta = [META_LINE.match(line.rstrip('\n')) for line in fin]
    assert all(meta), 'meta_info.txt lines must read `key.png (H,W,C) level`'
    images = {}
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()['entries'] == len(meta)
        for match in meta:
            key, h, w, c = match.group(1), int(match.group(2)), int(match.group(3)), int(match.group(4))
            img = cv2.imdecode(np.frombuffer(txn.get(key.encode('ascii')), np.uint8), cv2.IMREAD_UNCHANGED)
            assert (img.shape[0], img.shape[1], 1 if img.ndim == 2 else img.shape[2]) == (h, w, c)
            images[key] = img
    env.close()
    return images


def read_png_folder(path):
    return {
        name[:-4]: cv2.imread(os.path.join(path, name), cv2.IMREAD_UNCHANGED)
        for name in os.listdir(path) if name.endswith('.png')
    }


def leftovers(folder):
    """Hidden temporary folders left in `folder`."""
    return [name for name in os.listdir(folder) if '.partial-' in name or '.old-' in name]


# ---------------------------------------------------------------------------------------------------------------------
# writers of the real formats


def expected_crops(img, key, crop, step, thresh=0):
    return {
        f'{key}_s{i:03d}': img[top:top + crop, left:left + crop]
        for i, (top, left) in enumerate(crop_grid(img.shape[0], img.shape[1], crop, step, thresh), 1)
    }


# ---------------------------------------------------------------------------------------------------------------------
# crop positions


def test_crop_positions_cover_the_border():
    assert crop_positions(10, 4, 3) == [0, 3, 6]  # exact fit
    assert crop_positions(11, 4, 3) == [0, 3, 6, 7]  # one more crop flush with the border
    assert crop_positions(11, 4, 3, thresh_size=1) == [0, 3, 6]  # a 1-pixel strip is dropped
    assert crop_positions(3, 4, 3) == []
    positions = crop_positions(5328, 512, 384)  # a SIDD-Medium width
    assert positions[-1] == 5328 - 512 and positions[:2] == [0, 384]
    covered = np.zeros(5328, bool)
    for p in positions:
        covered[p:p + 512] = True
    assert covered.all()


# ---------------------------------------------------------------------------------------------------------------------
# SIDD-Medium


def test_sidd_train_crops_pixel_by_pixel(tmp_path):
    images = write_sidd_medium(tmp_path / 'SIDD_Medium_Srgb')
    out = tmp_path / 'train'
    report = prepare_sidd_train(str(tmp_path / 'SIDD_Medium_Srgb'), str(out), crop_size=16, step=12)
    gt, lq = read_lmdb(str(out / 'gt_crops.lmdb')), read_lmdb(str(out / 'input_crops.lmdb'))
    expected_gt, expected_lq = {}, {}
    for key, (gt_img, noisy_img) in images.items():
        expected_gt.update(expected_crops(gt_img, key, 16, 12))
        expected_lq.update(expected_crops(noisy_img, key, 16, 12))
    assert set(gt) == set(lq) == set(expected_gt)
    # 40x56 with crop 16, step 12: rows 0, 12, 24 and columns 0, 12, 24, 36 + 40 (flush with the border)
    assert len(gt) == 4 * 15 and '0001_010_s001' in gt and '0002_011_s015' in gt
    for key in expected_gt:
        np.testing.assert_array_equal(gt[key], expected_gt[key])
        np.testing.assert_array_equal(lq[key], expected_lq[key])
    assert report.sources == 4 and list(report.outputs.values()) == [len(gt)] * 2


def test_sidd_train_parallel_cli_matches_serial(tmp_path, capsys):
    write_sidd_medium(tmp_path / 'sidd', scenes=('0001_a', '0002_b', '0003_c'))
    serial = prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'one'), crop_size=16, step=12, workers=1)
    main([
        'sidd-train',
        str(tmp_path / 'sidd' / 'Data'), '--out',
        str(tmp_path / 'two'), '--crop-size', '16', '--step', '12', '--workers', '2'
    ])
    assert 'sidd-train: 6 source(s)' in capsys.readouterr().out
    for name in ('gt_crops.lmdb', 'input_crops.lmdb'):
        one, two = read_lmdb(str(tmp_path / 'one' / name)), read_lmdb(str(tmp_path / 'two' / name))
        assert list(one) == list(two) and len(one) == list(serial.outputs.values())[0]
        assert all(np.array_equal(one[k], two[k]) for k in one)


def test_sidd_train_unpaired_image_is_an_error_or_a_reported_skip(tmp_path, capsys):
    write_sidd_medium(tmp_path / 'sidd')
    noisy = tmp_path / 'sidd' / 'Data' / '0002_001_S6_00100_00060_3200_N' / '0002_NOISY_SRGB_011.PNG'
    noisy.unlink()
    gt = str(noisy).replace('NOISY', 'GT')
    with pytest.raises(DataError, match=re.escape(gt)):
        prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12)
    assert not (tmp_path / 'out').exists() or not os.listdir(tmp_path / 'out')
    report = prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12, skip_bad=True)
    assert len(report.skipped) == 1 and gt in report.skipped[0] and report.sources == 3
    keys = read_lmdb(str(tmp_path / 'out' / 'gt_crops.lmdb'))
    assert not any(k.startswith('0002_011') for k in keys) and any(k.startswith('0002_010') for k in keys)


def test_sidd_train_pair_of_different_sizes(tmp_path):
    write_sidd_medium(tmp_path / 'sidd')
    noisy = tmp_path / 'sidd' / 'Data' / '0001_001_S6_00100_00060_3200_L' / '0001_NOISY_SRGB_011.PNG'
    cv2.imwrite(str(noisy), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(DataError, match=re.escape(str(noisy))):
        prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12)
    assert not os.path.exists(tmp_path / 'out' / 'gt_crops.lmdb') and not leftovers(tmp_path / 'out')


def test_image_smaller_than_the_crop(tmp_path):
    write_sidd_medium(tmp_path / 'sidd', size=(40, 56))
    with pytest.raises(DataError, match='smaller than the crop size 48'):
        prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=48, step=24)
    assert not os.path.exists(tmp_path / 'out' / 'gt_crops.lmdb')


def test_corrupt_image_midway_leaves_no_lmdb(tmp_path):
    """A corrupt image in the middle: earlier pairs were already written, yet no LMDB appears, and no temp stays."""
    write_sidd_medium(tmp_path / 'sidd', scenes=('0001_a', '0002_b', '0003_c'))
    bad = tmp_path / 'sidd' / 'Data' / '0002_b' / '0002_GT_SRGB_010.PNG'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    out = tmp_path / 'out'
    for workers in (1, 2):
        with pytest.raises(ImageReadError, match=re.escape(str(bad))):
            prepare_sidd_train(str(tmp_path / 'sidd'), str(out), crop_size=16, step=12, workers=workers)
        assert os.listdir(out) == []
    report = prepare_sidd_train(str(tmp_path / 'sidd'), str(out), crop_size=16, step=12, skip_bad=True)
    assert len(report.skipped) == 1 and str(bad) in report.skipped[0] and report.sources == 5


def test_failed_overwrite_keeps_the_old_output(tmp_path):
    write_sidd_medium(tmp_path / 'sidd')
    out = tmp_path / 'out'
    prepare_sidd_train(str(tmp_path / 'sidd'), str(out), crop_size=16, step=12)
    before = read_lmdb(str(out / 'gt_crops.lmdb'))
    (tmp_path / 'sidd' / 'Data' / '0002_001_S6_00100_00060_3200_N' / '0001_GT_SRGB_099.PNG').write_bytes(b'junk')
    (tmp_path / 'sidd' / 'Data' / '0002_001_S6_00100_00060_3200_N' / '0001_NOISY_SRGB_099.PNG').write_bytes(b'junk')
    with pytest.raises(ImageReadError):
        prepare_sidd_train(str(tmp_path / 'sidd'), str(out), crop_size=16, step=12, overwrite=True)
    after = read_lmdb(str(out / 'gt_crops.lmdb'))
    assert list(before) == list(after) and sorted(os.listdir(out)) == ['gt_crops.lmdb', 'input_crops.lmdb']


# ---------------------------------------------------------------------------------------------------------------------
# the LMDB writer and the output rules


def test_lmdb_map_grows_from_a_tiny_initial_size(tmp_path):
    rng = np.random.RandomState(0)
    images = {f'k{i:02d}': random_image(rng, 24, 24) for i in range(40)}  # about 70 kB of incompressible PNGs
    writer = LmdbWriter(str(tmp_path / 'x.lmdb'), map_size=8192, batch_items=7)
    for key, img in images.items():
        writer.put_image(key, img)
    writer.close()
    assert writer.map_growths >= 3
    stored = read_lmdb(str(tmp_path / 'x.lmdb'))
    assert list(stored) == list(images) and all(np.array_equal(stored[k], images[k]) for k in images)
    # the same through a command, starting from a 4 kB map
    folder = tmp_path / 'clean'
    os.makedirs(folder)
    for key, img in images.items():
        cv2.imwrite(str(folder / f'{key}.png'), img)
    prepare_crops([str(folder)], str(tmp_path / 'crops.lmdb'), crop_size=24, step=24, map_size=4096)
    crops = read_lmdb(str(tmp_path / 'crops.lmdb'))
    assert all(np.array_equal(crops[f'{k}_s001'], images[k]) for k in images)


def test_lmdb_writer_rejects_bad_and_duplicate_keys(tmp_path):
    writer = LmdbWriter(str(tmp_path / 'x.lmdb'))
    img = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(DataError, match='invalid LMDB key'):
        writer.put_image('a.b', img)  # BasicSR would read the key as "a"
    writer.put_image('a', img)
    with pytest.raises(DataError, match="same key 'a'"):
        writer.put_image('a', img)
    writer.abort()


@pytest.mark.parametrize('error', [RuntimeError('boom'), KeyboardInterrupt()])
def test_atomic_outputs_discard_committed_batches_on_failure(tmp_path, error):
    target = str(tmp_path / 'out' / 'x.lmdb')
    with pytest.raises(type(error)):
        with AtomicOutputs([target], 'digest') as outputs:
            writer = outputs.lmdb(target, batch_items=1)  # every image is committed at once
            for i in range(5):
                writer.put_image(f'k{i}', np.zeros((8, 8, 3), np.uint8))
            assert writer.env.stat()['entries'] >= 4
            raise error
    assert os.listdir(tmp_path / 'out') == []


def test_stale_temporary_folder_of_a_killed_run_is_removed(tmp_path):
    pid = 4_000_000
    while True:  # a process id that is not running
        try:
            os.kill(pid, 0)
            pid += 1
        except ProcessLookupError:
            break
        except OSError:
            pid += 1
    stale = tmp_path / f'.x.lmdb.partial-{pid}-0123abcd'
    stale.mkdir()
    (stale / 'data.mdb').write_bytes(b'half')
    with AtomicOutputs([str(tmp_path / 'x.lmdb')], 'd') as outputs:
        outputs.lmdb(str(tmp_path / 'x.lmdb')).put_image('a', np.zeros((4, 4), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ['x.lmdb']


def test_rerun_rules(tmp_path):
    folder = tmp_path / 'clean'
    rng = np.random.RandomState(1)
    os.makedirs(folder)
    for i in range(3):
        cv2.imwrite(str(folder / f'im{i}.png'), random_image(rng, 20, 20))
    out = str(tmp_path / 'c.lmdb')
    first = prepare_crops(str(folder), out, crop_size=16, step=8)
    data_mtime = os.stat(os.path.join(out, 'data.mdb')).st_mtime_ns
    again = prepare_crops(str(folder), out, crop_size=16, step=8)  # same inputs: nothing to do
    assert again.up_to_date and not first.up_to_date
    assert os.stat(os.path.join(out, 'data.mdb')).st_mtime_ns == data_mtime
    with pytest.raises(OptionError, match='other inputs or settings.*--overwrite'):
        prepare_crops(str(folder), out, crop_size=16, step=4)
    cv2.imwrite(str(folder / 'im3.png'), random_image(rng, 20, 20))
    with pytest.raises(OptionError, match='--overwrite'):
        prepare_crops(str(folder), out, crop_size=16, step=8)
    prepare_crops(str(folder), out, crop_size=16, step=8, overwrite=True)
    assert len(read_lmdb(out)) == 4 * 4
    assert prepare_crops(str(folder), out, crop_size=16, step=8).up_to_date
    foreign = tmp_path / 'foreign.lmdb'
    foreign.mkdir()
    with pytest.raises(OptionError, match='not written by this tool'):
        prepare_crops(str(folder), str(foreign), crop_size=16, step=8)


def test_rerun_with_one_of_two_outputs_missing(tmp_path):
    write_sidd_medium(tmp_path / 'sidd', scenes=('0001_a', ))
    prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12)
    assert prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12).up_to_date
    import shutil
    shutil.rmtree(tmp_path / 'out' / 'input_crops.lmdb')
    with pytest.raises(OptionError, match='input_crops.lmdb is missing'):
        prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12)
    prepare_sidd_train(str(tmp_path / 'sidd'), str(tmp_path / 'out'), crop_size=16, step=12, overwrite=True)
    assert set(read_lmdb(str(tmp_path / 'out' / 'input_crops.lmdb'))) == set(
        read_lmdb(str(tmp_path / 'out' / 'gt_crops.lmdb')))


def test_fingerprint_sees_changed_files(tmp_path):
    path = tmp_path / 'a.txt'
    path.write_text('1')
    digest = fingerprint('x', {'a': 1}, [str(path)])
    assert digest == fingerprint('x', {'a': 1}, [str(path)]) != fingerprint('x', {'a': 2}, [str(path)])
    path.write_text('22')
    assert fingerprint('x', {'a': 1}, [str(path)]) != digest


# ---------------------------------------------------------------------------------------------------------------------
# SIDD validation and benchmark blocks


def sidd_blocks(seed, shape=(2, 3, 16, 16, 3)):
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


@pytest.mark.parametrize('version', ['v5', 'v7.3'])
def test_sidd_val_blocks_pixel_by_pixel(tmp_path, version):
    noisy, gt = sidd_blocks(1), sidd_blocks(2)
    paths = {}
    for name, value in (('ValidationNoisyBlocksSrgb', noisy), ('ValidationGtBlocksSrgb', gt)):
        paths[name] = str(tmp_path / f'{name}.mat')
        if version == 'v5':
            scipy.io.savemat(paths[name], {name: value})
        else:
            write_mat_v73(paths[name], {name: value})
    report = prepare_sidd_val(paths['ValidationNoisyBlocksSrgb'], paths['ValidationGtBlocksSrgb'], str(tmp_path / 'v'))
    stored_lq = read_lmdb(str(tmp_path / 'v' / 'input_crops.lmdb'))
    stored_gt = read_lmdb(str(tmp_path / 'v' / 'gt_crops.lmdb'))
    assert list(stored_lq) == list(stored_gt) == ['01_01', '01_02', '01_03', '02_01', '02_02', '02_03']
    for key in stored_lq:
        image, block = parse_block_key(key)
        np.testing.assert_array_equal(stored_lq[key], noisy[image, block][..., ::-1])  # RGB in .mat, BGR in LMDB
        np.testing.assert_array_equal(stored_gt[key], gt[image, block][..., ::-1])
    assert report.sources == 6


def test_sidd_mat_errors(tmp_path):
    blocks = sidd_blocks(0)
    wrong = str(tmp_path / 'wrong.mat')
    scipy.io.savemat(wrong, {'SomethingElse': blocks})
    good = str(tmp_path / 'gt.mat')
    scipy.io.savemat(good, {'ValidationGtBlocksSrgb': blocks})
    with pytest.raises(
            BadFileError, match=re.escape(wrong) + r".*no variable 'ValidationNoisyBlocksSrgb'.*"
            "SomethingElse"):
        prepare_sidd_val(wrong, good, str(tmp_path / 'v'))
    wrong73 = str(tmp_path / 'wrong73.mat')
    write_mat_v73(wrong73, {'Other': blocks})
    with pytest.raises(BadFileError, match=re.escape(wrong73) + '.*Other'):
        prepare_sidd_val(wrong73, good, str(tmp_path / 'v'))
    junk = tmp_path / 'junk.mat'
    junk.write_bytes(b'not a mat file at all' * 10)
    with pytest.raises(BadFileError, match=re.escape(str(junk))):
        prepare_sidd_val(str(junk), good, str(tmp_path / 'v'))
    with pytest.raises(MissingFileError, match='nothere.mat'):
        prepare_sidd_val(str(tmp_path / 'nothere.mat'), good, str(tmp_path / 'v'))
    small = str(tmp_path / 'small.mat')
    scipy.io.savemat(small, {'ValidationNoisyBlocksSrgb': sidd_blocks(0, (2, 2, 16, 16, 3))})
    with pytest.raises(DataError, match='must match'):
        prepare_sidd_val(small, good, str(tmp_path / 'v'))
    flat = str(tmp_path / 'flat.mat')
    scipy.io.savemat(flat, {'ValidationNoisyBlocksSrgb': blocks[0, 0]})
    with pytest.raises(DataError, match=r'shape \(16, 16, 3\)'):
        prepare_sidd_val(flat, good, str(tmp_path / 'v'))
    assert not (tmp_path / 'v').exists() or os.listdir(tmp_path / 'v') == []


def test_sidd_benchmark_png_folder(tmp_path):
    noisy = sidd_blocks(5, (3, 2, 8, 12, 3))
    path = str(tmp_path / 'BenchmarkNoisyBlocksSrgb.mat')
    scipy.io.savemat(path, {'BenchmarkNoisyBlocksSrgb': noisy})
    prepare_sidd_benchmark(path, str(tmp_path / 'bench'))
    stored = read_png_folder(str(tmp_path / 'bench'))
    assert sorted(stored) == [f'{i:02d}_{b:02d}' for i in (1, 2, 3) for b in (1, 2)]
    for key, img in stored.items():
        np.testing.assert_array_equal(img[..., ::-1], noisy[parse_block_key(key)])
    assert sorted(os.listdir(tmp_path / 'bench')) == sorted([f'{k}.png' for k in stored] + [STAMP_NAME])
    # BasicSR's SingleImageDataset reads every file of the folder except hidden ones such as the stamp
    dataset = SingleImageDataset({'dataroot_lq': str(tmp_path / 'bench'), 'io_backend': {'type': 'disk'}})
    assert len(dataset) == 6 and dataset[0]['lq_path'].endswith('01_01.png')
    np.testing.assert_array_equal(dataset[0]['lq'].numpy(), noisy[0, 0].transpose(2, 0, 1) / np.float32(255))


# ---------------------------------------------------------------------------------------------------------------------
# DND

DND_BOXES = [
    [[1, 1, 8, 8], [5, 30, 20, 44], [3, 10, 12, 30]],  # [first-axis from, second-axis from, first-axis to, ...]
    [[23, 2, 30, 17], [1, 1, 30, 44]],
]


def dnd_images(seed=0):
    rng = np.random.RandomState(seed)
    images = [rng.uniform(0, 1, (30, 44, 3)).astype(np.float32) for _ in DND_BOXES]  # MATLAB H x W x 3
    images[0][0, 0] = [-0.01, 1.02, 0.5]  # out-of-range values are clipped
    return images


@pytest.mark.parametrize('bits', [16, 8])
def test_dnd_crops_pixel_by_pixel(tmp_path, bits):
    images = dnd_images()
    root = write_dnd(str(tmp_path / 'dnd'), images, DND_BOXES)
    with h5py.File(os.path.join(root, 'images_srgb', '0001.mat'), 'r') as mat:
        assert mat['InoisySRGB'].shape == (3, 44, 30)  # what MATLAB's H x W x 3 looks like in h5py
    report = prepare_dnd(root, str(tmp_path / 'out'), bits=bits)
    stored = read_png_folder(str(tmp_path / 'out'))
    assert sorted(stored) == ['0001_01', '0001_02', '0001_03', '0002_01', '0002_02']
    scale, dtype = (65535, np.uint16) if bits == 16 else (255, np.uint8)
    for number, (img, boxes) in enumerate(zip(images, DND_BOXES), 1):
        for index, (r1, c1, r2, c2) in enumerate(boxes, 1):
            crop = np.clip(img[r1 - 1:r2, c1 - 1:c2].astype(np.float64), 0, 1)
            expected = np.round(crop * scale).astype(dtype)[..., ::-1]
            got = stored[f'{number:04d}_{index:02d}']
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, expected)
    assert report.outputs == {str(tmp_path / 'out'): 5}
    dataset = SingleImageDataset({'dataroot_lq': str(tmp_path / 'out'), 'io_backend': {'type': 'disk'}})
    assert len(dataset) == 5 and dataset[4]['lq'].shape == (3, 30, 44)  # BasicSR reads them (as 8 bit)


def test_dnd_errors(tmp_path):
    images = dnd_images()
    root = write_dnd(str(tmp_path / 'dnd'), images, [[[1, 1, 8, 45]], [[1, 1, 4, 4]]])  # 45 > width 44
    with pytest.raises(DataError, match=r'box 1 of image 1 .*outside'):
        prepare_dnd(root, str(tmp_path / 'out'))
    assert not os.path.exists(tmp_path / 'out')
    os.remove(os.path.join(root, 'images_srgb', '0002.mat'))
    with pytest.raises(MissingFileError, match='0002.mat'):
        prepare_dnd(root, str(tmp_path / 'out'))
    write_mat_v73(os.path.join(root, 'images_srgb', '0002.mat'), {'Inoisy': images[1]})
    write_dnd(root, images[:1], [[[1, 1, 4, 4]]])
    write_mat_v73(os.path.join(root, 'info.mat'), {'boxes': np.ones((4, 20))})
    with pytest.raises(BadFileError, match='info.mat has no struct info'):
        prepare_dnd(root, str(tmp_path / 'out'))
    scipy.io.savemat(os.path.join(root, 'info.mat'), {'info': np.ones(3)})  # a v5 file: not what DND ships
    with pytest.raises(BadFileError, match='not a MATLAB v7.3'):
        prepare_dnd(root, str(tmp_path / 'out'))
    write_dnd(root, [images[0]], [[[1, 1, 4, 4]], [[1, 1, 4, 4]]])
    with pytest.raises(BadFileError, match=r"0002.mat has no variable 'InoisySRGB'"):
        prepare_dnd(root, str(tmp_path / 'out'))
    assert not os.path.exists(tmp_path / 'out')


# ---------------------------------------------------------------------------------------------------------------------
# clean folders -> crops


def test_crops_of_several_grey_folders(tmp_path):
    rng = np.random.RandomState(3)
    sources = {}
    for folder, names in (('a', ('x', 'y')), ('b', ('z', ))):
        os.makedirs(tmp_path / folder)
        for name in names:
            img = random_image(rng, 20, 25)  # colour source, stored grey
            cv2.imwrite(str(tmp_path / folder / f'{name}.png'), img)
            sources[name] = cv2.imread(str(tmp_path / folder / f'{name}.png'), cv2.IMREAD_GRAYSCALE)
    out = str(tmp_path / 'grey.lmdb')
    prepare_crops([str(tmp_path / 'a'), str(tmp_path / 'b')], out, crop_size=12, step=10, thresh_size=3, color='gray')
    stored = read_lmdb(out)
    expected = {}
    for name, img in sources.items():
        expected.update(expected_crops(img, name, 12, 10, 3))
    # rows 0 + 8 (an 8-pixel strip > thresh 3 gets a border crop); columns 0, 10 (the 3-pixel strip is dropped)
    assert list(stored) == list(expected) and len(stored) == 3 * 2 * 2
    assert all(np.array_equal(stored[k], expected[k]) for k in stored)
    with open(os.path.join(out, 'meta_info.txt')) as fin:
        assert fin.readline() == 'x_s001.png (12,12,1) 1\n'
    cv2.imwrite(str(tmp_path / 'b' / 'x.jpg'), random_image(rng, 20, 25))
    with pytest.raises(DataError, match=r"x.png and .*x.jpg would both be stored under key 'x'.*--folder-prefix"):
        prepare_crops([str(tmp_path / 'a'), str(tmp_path / 'b')], str(tmp_path / 'two.lmdb'), crop_size=12, step=10)
    prepare_crops([str(tmp_path / 'a'), str(tmp_path / 'b')],
                  str(tmp_path / 'two.lmdb'),
                  crop_size=12,
                  step=10,
                  folder_prefix=True)
    assert 'b_x_s001' in read_lmdb(str(tmp_path / 'two.lmdb'))


def test_crops_keep_16_bit(tmp_path):
    img = np.random.RandomState(0).randint(0, 65536, (16, 16, 3)).astype(np.uint16)
    os.makedirs(tmp_path / 'deep')
    cv2.imwrite(str(tmp_path / 'deep' / 'd.png'), img)
    prepare_crops(str(tmp_path / 'deep'), str(tmp_path / 'deep.lmdb'), crop_size=16, step=16)
    np.testing.assert_array_equal(read_lmdb(str(tmp_path / 'deep.lmdb'))['d_s001'], img)


def test_crops_option_and_input_errors(tmp_path):
    with pytest.raises(OptionError, match='must end with .lmdb'):
        prepare_crops(str(tmp_path), str(tmp_path / 'out'))
    with pytest.raises(MissingFileError, match='nowhere'):
        prepare_crops(str(tmp_path / 'nowhere'), str(tmp_path / 'o.lmdb'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(DataError, match='no images'):
        prepare_crops(str(tmp_path / 'empty'), str(tmp_path / 'o.lmdb'))
    with pytest.raises(OptionError, match='crop_size'):
        prepare_crops(str(tmp_path / 'empty'), str(tmp_path / 'o.lmdb'), crop_size=0)


# ---------------------------------------------------------------------------------------------------------------------
# paired folders


def test_split_is_seeded_and_independent_of_order():
    names = [f'n{i}' for i in range(10)]
    train, val = split_pairs(names, val_count=3, seed=0)
    assert (train, val) == split_pairs(list(reversed(names)), val_count=3, seed=0)
    assert sorted(train + val) == names and len(val) == 3 and val == sorted(val)
    assert split_pairs(names, val_count=3, seed=1)[1] != val
    assert len(split_pairs(names, val_fraction=0.25)[1]) == 2  # round(2.5) = 2
    assert split_pairs(names)[1] == []
    with pytest.raises(OptionError, match='no training pairs'):
        split_pairs(names, val_count=10)


def test_paired_train_crops_and_whole_val(tmp_path):
    names = [f'Cam_{i}_scene' for i in range(5)]
    pairs = write_pairs(str(tmp_path / 'poly'), names)
    report = prepare_paired(
        str(tmp_path / 'poly'),
        str(tmp_path / 'out'),
        lq_suffix='_real',
        gt_suffix='_mean',
        val_count=2,
        seed=3,
        crop_size=16,
        step=12)
    _, val_names = split_pairs(names, val_count=2, seed=3)
    out = {(s, r): read_lmdb(str(tmp_path / 'out' / s / f'{r}.lmdb')) for s in ('train', 'val') for r in ('gt', 'lq')}
    assert list(out['val', 'gt']) == list(out['val', 'lq']) == val_names
    for name in val_names:
        np.testing.assert_array_equal(out['val', 'gt'][name], pairs[name][0])
        np.testing.assert_array_equal(out['val', 'lq'][name], pairs[name][1])
    expected_gt, expected_lq = {}, {}
    for name in sorted(set(names) - set(val_names)):
        expected_gt.update(expected_crops(pairs[name][0], name, 16, 12))
        expected_lq.update(expected_crops(pairs[name][1], name, 16, 12))
    assert list(out['train', 'gt']) == list(out['train', 'lq']) == list(expected_gt)
    assert all(np.array_equal(out['train', 'gt'][k], expected_gt[k]) for k in expected_gt)
    assert all(np.array_equal(out['train', 'lq'][k], expected_lq[k]) for k in expected_lq)
    assert report.sources == 5 and len(report.outputs) == 4


def test_paired_in_two_folders_without_validation(tmp_path):
    rng = np.random.RandomState(0)
    for side in ('noisy', 'clean'):
        os.makedirs(tmp_path / side)
    for name in ('a', 'b'):
        cv2.imwrite(str(tmp_path / 'noisy' / f'{name}.png'), random_image(rng, 10, 12))
        cv2.imwrite(str(tmp_path / 'clean' / f'{name}.bmp'), random_image(rng, 10, 12))
    prepare_paired(str(tmp_path / 'noisy'), str(tmp_path / 'out'), gt_dir=str(tmp_path / 'clean'))
    assert sorted(os.listdir(tmp_path / 'out')) == ['train']
    assert list(read_lmdb(str(tmp_path / 'out' / 'train' / 'lq.lmdb'))) == ['a', 'b']


def test_paired_unpaired_and_mismatched(tmp_path):
    write_pairs(str(tmp_path / 'p'), ['a', 'b', 'c'])
    os.remove(tmp_path / 'p' / 'b_mean.png')
    with pytest.raises(DataError, match=r'1 unpaired image.*b_real.png has no clean partner b_mean'):
        prepare_paired(str(tmp_path / 'p'), str(tmp_path / 'out'), lq_suffix='_real', gt_suffix='_mean')
    cv2.imwrite(str(tmp_path / 'p' / 'c_real.png'), np.zeros((8, 8, 3), np.uint8))
    report = prepare_paired(
        str(tmp_path / 'p'), str(tmp_path / 'out'), lq_suffix='_real', gt_suffix='_mean', skip_bad=True)
    assert len(report.skipped) == 2 and 'c_mean.png' in report.skipped[1] and 'same size' in report.skipped[1]
    assert list(read_lmdb(str(tmp_path / 'out' / 'train' / 'gt.lmdb'))) == ['a']
    with pytest.raises(OptionError, match='different --lq-suffix and --gt-suffix'):
        prepare_paired(str(tmp_path / 'p'), str(tmp_path / 'o2'))


def test_basicsr_paired_image_dataset_reads_the_lmdbs(tmp_path):
    names = [f'im{i}' for i in range(4)]
    pairs = write_pairs(str(tmp_path / 'p'), names, size=(24, 28))
    prepare_paired(
        str(tmp_path / 'p'),
        str(tmp_path / 'out'),
        lq_suffix='_real',
        gt_suffix='_mean',
        val_count=1,
        crop_size=16,
        step=8)
    _, (val_name, ) = split_pairs(names, val_count=1)
    root = tmp_path / 'out'
    train = PairedImageDataset({
        'phase': 'train',
        'scale': 1,
        'gt_size': 12,
        'use_hflip': True,
        'use_rot': True,
        'dataroot_gt': str(root / 'train' / 'gt.lmdb'),
        'dataroot_lq': str(root / 'train' / 'lq.lmdb'),
        'io_backend': {
            'type': 'lmdb'
        }
    })
    assert len(train) == 3 * 6  # rows 0,8 / cols 0,8,12
    sample = train[0]
    assert sample['gt'].shape == sample['lq'].shape == (3, 12, 12)
    val = PairedImageDataset({
        'phase': 'val',
        'scale': 1,
        'dataroot_gt': str(root / 'val' / 'gt.lmdb'),
        'dataroot_lq': str(root / 'val' / 'lq.lmdb'),
        'io_backend': {
            'type': 'lmdb'
        }
    })
    sample = val[0]
    assert sample['gt_path'] == val_name
    gt_rgb = pairs[val_name][0][..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.
    np.testing.assert_array_equal(sample['gt'].numpy(), gt_rgb)
    lq_rgb = pairs[val_name][1][..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.
    np.testing.assert_array_equal(sample['lq'].numpy(), lq_rgb)


def test_basicsr_reads_sidd_lmdbs(tmp_path):
    scipy.io.savemat(str(tmp_path / 'n.mat'), {'ValidationNoisyBlocksSrgb': sidd_blocks(1)})
    scipy.io.savemat(str(tmp_path / 'g.mat'), {'ValidationGtBlocksSrgb': sidd_blocks(2)})
    prepare_sidd_val(str(tmp_path / 'n.mat'), str(tmp_path / 'g.mat'), str(tmp_path / 'val'))
    val = PairedImageDataset({
        'phase': 'val',
        'scale': 1,
        'filename_tmpl': '{}',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_gt': str(tmp_path / 'val' / 'gt_crops.lmdb'),
        'dataroot_lq': str(tmp_path / 'val' / 'input_crops.lmdb')
    })
    sample = val[4]  # sorted keys: 02_02
    assert sample['lq_path'] == '02_02'
    np.testing.assert_array_equal(sample['lq'].numpy(), sidd_blocks(1)[1, 1].transpose(2, 0, 1) / np.float32(255))
    value = val.file_client.get('01_03', 'gt')  # BasicSR's LmdbBackend and decoder give the BGR block
    np.testing.assert_array_equal(imfrombytes(value), sidd_blocks(2)[0, 2][..., ::-1])


# ---------------------------------------------------------------------------------------------------------------------
# command line


def test_cli_user_error_is_one_line_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(['crops', str(tmp_path / 'missing'), '--out', str(tmp_path / 'c.lmdb')])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().count('\n') == 0 and err.startswith('Error: image folder not found:') and 'missing' in err


def test_cli_in_a_fresh_interpreter(tmp_path):
    scipy.io.savemat(str(tmp_path / 'b.mat'), {'BenchmarkNoisyBlocksSrgb': sidd_blocks(0, (1, 2, 8, 8, 3))})
    mat, out = str(tmp_path / 'b.mat'), str(tmp_path / 'val')
    bad = run_python(['-m', 'gradnet_arch.prep', 'sidd-val', '--noisy', mat, '--gt', mat, '--out', out],
                     REPO,
                     timeout=120)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'b.mat'} has no variable 'ValidationNoisyBlocksSrgb' (it has "
        f"['BenchmarkNoisyBlocksSrgb']); is this the right file?"
    ]


POLYU = os.path.join(SHARED_DATA, 'real', 'PolyU')


@pytest.mark.skipif(not os.path.isdir(POLYU), reason=f'PolyU pairs not available at {POLYU}')
def test_polyu_pairs(tmp_path, capsys):
    names = sorted(n[:-len('_real.JPG')] for n in os.listdir(POLYU) if n.endswith('_real.JPG'))[:6]
    os.makedirs(tmp_path / 'polyu')
    for name in names:  # links, not copies: six pairs of the shared set
        for suffix in ('_real.JPG', '_mean.JPG'):
            os.symlink(os.path.join(POLYU, name + suffix), tmp_path / 'polyu' / (name + suffix))
    main([
        'paired', '--lq',
        str(tmp_path / 'polyu'), '--lq-suffix', '_real', '--gt-suffix', '_mean', '--val-count', '2', '--crop-size',
        '256', '--step', '256', '--out',
        str(tmp_path / 'out'), '--workers', '1'
    ])
    assert 'paired: 6 source(s)' in capsys.readouterr().out
    train_names, val_names = split_pairs(names, val_count=2)
    val = read_lmdb(str(tmp_path / 'out' / 'val' / 'lq.lmdb'))
    assert list(val) == val_names and all(img.shape == (512, 512, 3) for img in val.values())
    np.testing.assert_array_equal(val[val_names[0]], cv2.imread(os.path.join(POLYU, val_names[0] + '_real.JPG')))
    train = read_lmdb(str(tmp_path / 'out' / 'train' / 'gt.lmdb'))
    assert list(train) == [f'{n}_s{i:03d}' for n in train_names for i in range(1, 5)]
    assert all(img.shape == (256, 256, 3) for img in train.values())
    assert list(read_lmdb(str(tmp_path / 'out' / 'train' / 'lq.lmdb'))) == list(train)
