"""Benchmark submissions: SIDD's SubmitSrgb.mat and DND's per-image bundles, read back and checked value by value.

Inputs are written here in the benchmarks' own formats (SIDD blocks as MATLAB v5 and v7.3, DND's v7.3 images and
info.mat with references, built with test_prep's writers); the model is a tiny GradNet checkpoint with embedded
options, and its own output on each block or crop is what the submission must hold.
"""
import cv2
import h5py
import numpy as np
import os
import pytest
import scipy.io
import torch
from conftest import REPO, run_python
from sample_data import DND_BOXES, dnd_root, sidd_noisy, write_mat_v73
from tiny_options import gradnet_network, write_yaml

from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.pretrained import load_pretrained
from gradnet_arch.submit import bundle_dnd_folder, bundle_sidd_folder, submit_sidd
from gradnet_arch.submit.cli import main


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    """(checkpoint path, network): a tiny colour GradNet, its options embedded as gradnet_arch.pretrained reads them,
    and the network as gradnet-submit loads it (BatchNorm folded, channels_last weights), checked here against the
    network BasicSR builds (to 1e-5: folding reorders the float32 arithmetic)."""
    from basicsr.archs import build_network

    torch.manual_seed(3)
    opt = gradnet_network(None)
    net = build_network(dict(opt)).eval()
    path = str(tmp_path_factory.mktemp('model') / 'tiny_gradnet.pth')
    torch.save({'params': net.state_dict(), 'network_g': opt}, path)
    loaded = load_pretrained(path)
    img = np.random.RandomState(0).uniform(0, 1, (24, 20, 3)).astype(np.float32)
    with torch.no_grad():
        basicsr_out = net(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None])
    np.testing.assert_allclose(run_net(loaded, img), basicsr_out.clamp(0, 1)[0].permute(1, 2, 0).numpy(), atol=1e-5)
    return path, loaded


def run_net(net, img):
    """The network's own output on one H x W x 3 float image, as the submission must hold it (float32, [0, 1]) with
    --precision fp32: the input in channels_last, as gradnet-submit gives it."""
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
        out = net(x.contiguous(memory_format=torch.channels_last))
    return out.clamp(0, 1)[0].permute(1, 2, 0).numpy()


def write_sidd(path, noisy, version):
    if version == 'v5':
        scipy.io.savemat(path, {'BenchmarkNoisyBlocksSrgb': noisy})
    else:
        write_mat_v73(path, {'BenchmarkNoisyBlocksSrgb': noisy})
    return path


def expected_sidd(net, noisy):
    return {
        (i, b): np.round(run_net(net, noisy[i, b] / np.float32(255)) * 255).astype(np.uint8)
        for i in range(noisy.shape[0])
        for b in range(noisy.shape[1])
    }


def expected_dnd(net, images, boxes=DND_BOXES):
    return {
        (n, k): run_net(net, np.clip(img[r1 - 1:r2, c1 - 1:c2], 0, 1))
        for n, (img, image_boxes) in enumerate(zip(images, boxes), 1)
        for k, (r1, c1, r2, c2) in enumerate(image_boxes, 1)
    }


def read_bundles(out_dir):
    bundles = {}
    for name in sorted(os.listdir(out_dir)):
        bundles[name] = scipy.io.loadmat(os.path.join(out_dir, name))
    return bundles


def check_cli_error(capsys, argv, *fragments):
    """main(argv) must exit 2 with one error line (after any warnings) naming every fragment."""
    capsys.readouterr()  # drop what earlier calls printed
    with pytest.raises(SystemExit) as exit_info:
        main(argv + ['--quiet'])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err and err[-1].startswith('Error: ') and all(line.startswith('Warning: ') for line in err[:-1]), err
    for fragment in fragments:
        assert fragment in err[-1], (fragment, err[-1])
    return err[-1]


# ---------------------------------------------------------------------------------------------------------------------
# SIDD


@pytest.mark.parametrize('version', ['v5', 'v7.3'])
def test_sidd_submission_holds_the_model_output(tmp_path, tiny_model, capsys, version):
    checkpoint, net = tiny_model
    noisy = sidd_noisy()
    mat = write_sidd(str(tmp_path / 'BenchmarkNoisyBlocksSrgb.mat'), noisy, version)
    out = str(tmp_path / 'sub' / 'SubmitSrgb.mat')
    args = ['sidd', '--model', checkpoint, '--noisy', mat, '-o', out, '--device', 'cpu', '--precision', 'fp32']
    if version == 'v5':  # once in a fresh interpreter, through `python -m`
        result = run_python(['-m', 'gradnet_arch.submit'] + args + ['--method-name', 'TinyNet'], REPO, timeout=300)
        assert result.returncode == 0, result.stderr
        stdout, stderr = result.stdout, result.stderr
    else:
        assert main(args + ['--quiet']) == 0
        stdout, stderr = capsys.readouterr()
    assert 'Warning: ' in stderr and '(2, 3, 32, 32, 3)' in stderr and '(40, 32, 256, 256, 3)' in stderr
    assert f'6 denoised result(s) -> {out}' in stdout
    assert sorted(os.listdir(tmp_path / 'sub')) == ['SubmitSrgb.mat']  # no temporary file left
    assert {name for name, _, _ in scipy.io.whosmat(out)} == {'DenoisedBlocksSrgb', 'TimeMPSrgb', 'OptionalData'}
    sub = scipy.io.loadmat(out)
    blocks = sub['DenoisedBlocksSrgb']
    assert blocks.dtype == object and blocks.shape == (2, 3)
    expected = expected_sidd(net, noisy)
    for (i, b), want in expected.items():
        got = blocks[i, b]
        assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
        if version == 'v5':  # another process: the float rounding of a different thread count may flip a value
            assert np.abs(got.astype(int) - want).max() <= 1 and np.mean(got == want) > 0.99
        else:
            np.testing.assert_array_equal(got, want)
    assert not np.array_equal(blocks[0, 0], noisy[0, 0])  # it did denoise
    assert sub['TimeMPSrgb'].dtype == np.float64 and sub['TimeMPSrgb'].shape == (1, 1) and sub['TimeMPSrgb'] > 0
    method = {key: str(sub['OptionalData'][key][0, 0][0]) for key in ('MethodName', 'PaperTitle', 'Venue')}
    assert method == {
        'MethodName': 'TinyNet' if version == 'v5' else 'GradNet',
        'PaperTitle': 'GradNet Image Denoising',
        'Venue': 'CVPR 2020 Workshops'
    }


def test_sidd_from_folder(tmp_path, tiny_model, capsys):
    _, net = tiny_model
    noisy = sidd_noisy(1)
    mat = write_sidd(str(tmp_path / 'noisy.mat'), noisy, 'v5')
    expected = expected_sidd(net, noisy)
    folder = tmp_path / 'results'
    os.makedirs(folder)
    for (i, b), img in expected.items():
        bgr = img[..., ::-1]
        if i == 0:  # what gradnet-test saves: 8 bit, the run's name after the key
            cv2.imwrite(str(folder / f'{i + 1:02d}_{b + 1:02d}_GradNet_SIDD.png'), bgr)
        else:  # 16 bit, no suffix
            cv2.imwrite(str(folder / f'{i + 1:02d}_{b + 1:02d}.png'), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / 'notes.png'), bgr)  # not a block key: ignored
    out = str(tmp_path / 'SubmitSrgb.mat')
    assert main(['sidd', '--from-folder', str(folder), '--noisy', mat, '--time-mp', '0.25', '-o', out, '--quiet']) == 0
    sub = scipy.io.loadmat(out)
    assert sub['DenoisedBlocksSrgb'].shape == (2, 3) and sub['TimeMPSrgb'].item() == 0.25
    for (i, b), want in expected.items():
        assert sub['DenoisedBlocksSrgb'][i, b].dtype == np.uint8
        np.testing.assert_array_equal(sub['DenoisedBlocksSrgb'][i, b], want)
    assert str(sub['OptionalData']['MethodName'][0, 0][0]) == 'GradNet'

    # a second run's results in the same folder: ambiguous unless --suffix picks one
    cv2.imwrite(str(folder / '01_01_other_run.png'), expected[0, 0][..., ::-1])
    check_cli_error(capsys, ['sidd', '--from-folder',
                             str(folder), '-o', str(tmp_path / 'x.mat')], '2 PNGs for one key',
                    '01_01_GradNet_SIDD.png', '01_01_other_run.png', '--suffix')
    with pytest.warns(UserWarning) as record:
        bundle_sidd_folder(str(folder), str(tmp_path / 'other.mat'), suffix='other_run', quiet=True)
    assert [str(w.message).split(';')[0] for w in record] == [
        f'{folder}: the blocks form an array of shape (1, 1, 32, 32, 3), not the release\'s (40, 32, 256, 256, 3)',
        'TimeMPSrgb is not known when bundling a folder'
    ]
    other = scipy.io.loadmat(str(tmp_path / 'other.mat'))
    assert other['DenoisedBlocksSrgb'].shape == (1, 1) and other['TimeMPSrgb'].item() == 0
    np.testing.assert_array_equal(other['DenoisedBlocksSrgb'][0, 0], expected[0, 0])
    os.remove(folder / '01_01_other_run.png')

    # a missing block is named, with and without the noisy file giving the grid
    check_cli_error(capsys,
                    ['sidd', '--from-folder',
                     str(folder), '--suffix', 'nothing', '-o',
                     str(tmp_path / 'y.mat')], "no PNG named like 01_01.png with suffix 'nothing'")
    check_cli_error(
        capsys, ['sidd', '--from-folder',
                 str(folder), '--noisy', mat, '--suffix', '', '-o',
                 str(tmp_path / 'y.mat')], 'lacks 3 of the 6', '01_01.png, 01_02.png, 01_03.png')
    os.remove(folder / '02_02.png')
    for extra in ([], ['--noisy', mat]):
        check_cli_error(capsys, ['sidd', '--from-folder',
                                 str(folder), '-o', str(tmp_path / 'y.mat')] + extra, 'lacks 1 of the 6', '02_02.png')
    # a block of the wrong size
    cv2.imwrite(str(folder / '02_02.png'), np.zeros((16, 32, 3), np.uint8))
    check_cli_error(
        capsys,
        ['sidd', '--from-folder', str(folder), '--noisy', mat, '-o',
         str(tmp_path / 'y.mat')], '02_02.png is 16x32 but the blocks are 32x32')
    assert not os.path.exists(tmp_path / 'y.mat')


def test_sidd_overwrite_and_input_errors(tmp_path, tiny_model, capsys):
    checkpoint, net = tiny_model
    noisy = sidd_noisy(2, (1, 2, 16, 16, 3))
    mat = write_sidd(str(tmp_path / 'noisy.mat'), noisy, 'v7.3')
    out = tmp_path / 'SubmitSrgb.mat'
    out.write_bytes(b'an earlier submission')
    base = ['sidd', '--model', checkpoint, '--noisy', mat, '--quiet', '--precision', 'fp32']
    check_cli_error(capsys, base + ['-o', str(out)], str(out), 'exists; pass --overwrite')
    assert out.read_bytes() == b'an earlier submission'
    assert main(base + ['-o', str(tmp_path), '--overwrite']) == 0  # a folder: SubmitSrgb.mat inside it
    blocks = scipy.io.loadmat(str(out))['DenoisedBlocksSrgb']
    np.testing.assert_array_equal(blocks[0, 1], expected_sidd(net, noisy)[0, 1])
    assert sorted(os.listdir(tmp_path)) == ['SubmitSrgb.mat', 'noisy.mat']
    # the model given as the BasicSR option YAML it was tested with
    yaml_path = write_yaml(
        {
            'network_g': gradnet_network(None),
            'path': {
                'pretrain_network_g': checkpoint,
                'param_key_g': 'params'
            }
        }, str(tmp_path / 'options' / 'test.yml'))
    assert main(base[:2] + [yaml_path] + base[3:] + ['-o', str(tmp_path / 'yaml.mat')]) == 0
    np.testing.assert_array_equal(
        scipy.io.loadmat(str(tmp_path / 'yaml.mat'))['DenoisedBlocksSrgb'][0, 1], blocks[0, 1])

    junk = tmp_path / 'junk.mat'
    junk.write_bytes(b'not a mat file' * 20)
    new = ['-o', str(tmp_path / 'new.mat')]
    check_cli_error(capsys, base[:4] + [str(junk)] + new, str(junk), 'cannot read')
    check_cli_error(capsys, base[:4] + [str(tmp_path / 'absent.mat')] + new, 'absent.mat', 'not found')
    wrong = str(tmp_path / 'wrong.mat')
    write_mat_v73(wrong, {'ValidationNoisyBlocksSrgb': noisy})
    check_cli_error(capsys, base[:4] + [wrong] + new, "no variable 'BenchmarkNoisyBlocksSrgb'",
                    'ValidationNoisyBlocksSrgb')
    flat = write_sidd(str(tmp_path / 'flat.mat'), noisy[0, 0], 'v5')
    check_cli_error(capsys, base[:4] + [flat] + new, 'shape (16, 16, 3)', 'SIDD blocks are uint8')
    check_cli_error(capsys, ['sidd', '--model', str(tmp_path / 'none.pth'), '--noisy', mat] + new, 'none.pth')
    check_cli_error(capsys, ['sidd', '--model', checkpoint] + new, '--model needs --noisy')
    check_cli_error(capsys, base + new + ['--time-mp', '1'], '--time-mp', '--from-folder only')
    check_cli_error(capsys, ['sidd', '--from-folder', str(tmp_path), '--device', 'cpu'] + new, '--device',
                    '--model only')
    assert not os.path.exists(tmp_path / 'new.mat')
    assert not any(name.startswith('.') for name in os.listdir(tmp_path))  # no temporary file left

    # a grey model cannot denoise a colour benchmark
    from basicsr.archs import build_network
    grey = build_network(
        dict(gradnet_network(None), num_in_ch=1, predenoiser=dict(gradnet_network(None)['predenoiser'], num_in_ch=1)))
    with pytest.warns(UserWarning, match='not the release'), pytest.raises(OptionError, match='colour .*1-channel'):
        submit_sidd(grey, mat, str(tmp_path / 'new.mat'), quiet=True)
    check_cli_error(capsys, base + new + ['--device', 'cuda:99'], 'cuda:99')


# ---------------------------------------------------------------------------------------------------------------------
# DND


def test_dnd_bundles_hold_the_model_output(tmp_path, tiny_model):
    checkpoint, net = tiny_model
    root, images = dnd_root(tmp_path / 'dnd')
    out = str(tmp_path / 'submission')
    argv = ['-m', 'gradnet_arch.submit', 'dnd', '--model', checkpoint, '--dnd-root', root, '-o', out]
    result = run_python(argv + ['--precision', 'fp32'], REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'Warning: ' in result.stderr and '2 image(s) with 2/3 box(es)' in result.stderr
    assert sorted(os.listdir(out)) == ['0001.mat', '0002.mat']
    expected = expected_dnd(net, images)
    for number, bundle in enumerate(read_bundles(out).values(), 1):
        assert {k for k in bundle if not k.startswith('__')} == {'Idenoised', 'israw', 'eval_version'}
        assert bundle['israw'].item() == 0 and list(bundle['eval_version']) == ['1.0']
        cell = bundle['Idenoised']
        assert cell.dtype == object and cell.shape == (1, len(DND_BOXES[number - 1]))
        for index, (r1, c1, r2, c2) in enumerate(DND_BOXES[number - 1], 1):
            crop = cell[0, index - 1]
            assert crop.dtype == np.float32 and crop.shape == (r2 - r1 + 1, c2 - c1 + 1, 3)
            assert crop.min() >= 0 and crop.max() <= 1
            np.testing.assert_allclose(crop, expected[number, index], atol=1e-5)
    logical = {name: kind for name, _, kind in scipy.io.whosmat(os.path.join(out, '0001.mat'))}
    assert logical == {'Idenoised': 'cell', 'israw': 'logical', 'eval_version': 'char'}


def test_dnd_from_folder_overwrite_and_errors(tmp_path, tiny_model, capsys):
    checkpoint, net = tiny_model
    root, images = dnd_root(tmp_path / 'dnd', seed=1)
    out = tmp_path / 'submission'
    base = ['dnd', '--model', checkpoint, '--dnd-root', root, '--quiet', '-o', str(out), '--precision', 'fp32']
    assert main(base) == 0
    expected = expected_dnd(net, images)
    bundles = read_bundles(str(out))
    for (number, index), want in expected.items():
        np.testing.assert_array_equal(bundles[f'{number:04d}.mat']['Idenoised'][0, index - 1], want)

    # refuse to replace; with --overwrite, stale bundles of an earlier run go, other files stay
    check_cli_error(capsys, base, str(out), 'already holds 2 submission file(s)', '--overwrite')
    (out / '0003.mat').write_bytes(b'stale')
    (out / 'readme.txt').write_text('mine')
    assert main(base + ['--overwrite']) == 0
    assert sorted(os.listdir(out)) == ['0001.mat', '0002.mat', 'readme.txt']
    assert not any(name.startswith('.') for name in os.listdir(tmp_path))

    # bundling saved PNGs: 16 bit with a suffix, 8 bit without
    folder = tmp_path / 'pngs'
    os.makedirs(folder)
    for (number, index), crop in expected.items():
        if number == 1:
            cv2.imwrite(
                str(folder / f'{number:04d}_{index:02d}_run.png'),
                np.round(crop[..., ::-1] * 65535).astype(np.uint16))
        else:
            cv2.imwrite(str(folder / f'{number:04d}_{index:02d}.png'), np.round(crop[..., ::-1] * 255).astype(np.uint8))
    assert main(['dnd', '--from-folder', str(folder), '--dnd-root', root, '--quiet', '-o', str(tmp_path / 'b')]) == 0
    bundles = read_bundles(str(tmp_path / 'b'))
    for (number, index), want in expected.items():
        got = bundles[f'{number:04d}.mat']['Idenoised'][0, index - 1]
        scale = 65535 if number == 1 else 255
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, np.round(want * scale) / scale, atol=1e-6)
    # without --dnd-root the grid comes from the keys: image 2 has 2 boxes, image 1 has 3 -> incomplete
    with pytest.raises(DataError, match=r'lacks 1 of the 6 .*0002_03\.png'):
        bundle_dnd_folder(str(folder), str(tmp_path / 'c'), quiet=True)
    cv2.imwrite(str(folder / '0002_01.png'), np.zeros((5, 5, 3), np.uint8))
    check_cli_error(
        capsys,
        ['dnd', '--from-folder', str(folder), '--dnd-root', root, '-o',
         str(tmp_path / 'c')], '0002_01.png is 5x5 but box 1 of image 2 is 22x16')
    (folder / '0002_01.png').write_bytes(b'truncated')
    check_cli_error(
        capsys,
        ['dnd', '--from-folder', str(folder), '--dnd-root', root, '-o',
         str(tmp_path / 'c')], 'cannot decode the image', '0002_01.png')
    cv2.imwrite(str(folder / '0002_01.png'), np.zeros((22, 16), np.uint8))  # grey
    check_cli_error(
        capsys,
        ['dnd', '--from-folder', str(folder), '--dnd-root', root, '-o',
         str(tmp_path / 'c')], '0002_01.png', '1-channel')
    assert not os.path.exists(tmp_path / 'c')

    # corrupt and missing DND inputs, named
    new = ['--quiet', '-o', str(tmp_path / 'c')]
    os.remove(os.path.join(root, 'images_srgb', '0002.mat'))
    check_cli_error(capsys, ['dnd', '--model', checkpoint, '--dnd-root', root] + new, '0002.mat', 'missing')
    write_mat_v73(os.path.join(root, 'images_srgb', '0002.mat'), {'Inoisy': images[1]})
    check_cli_error(capsys, ['dnd', '--model', checkpoint, '--dnd-root', root] + new, '0002.mat',
                    "no variable 'InoisySRGB'")
    assert not os.path.exists(tmp_path / 'c')  # image 1 was denoised, but nothing appeared
    assert not any(name.startswith('.') for name in os.listdir(tmp_path))
    with open(os.path.join(root, 'info.mat'), 'wb') as fout:
        fout.write(b'\x89HDF\r\n' + b'\0' * 40)
    check_cli_error(capsys, ['dnd', '--model', checkpoint, '--dnd-root', root] + new, 'info.mat')
    check_cli_error(capsys, ['dnd', '--model', checkpoint, '--dnd-root',
                             str(tmp_path / 'nowhere')] + new, 'DND folder not found', 'nowhere')
    check_cli_error(capsys, ['dnd', '--model', checkpoint] + new, '--model needs --dnd-root')
    with h5py.File(os.path.join(root, 'images_srgb', '0001.mat'), 'r') as mat:
        assert mat['InoisySRGB'].shape == (3, 44, 30)  # the writer stores MATLAB's layout (the reader transposes)
