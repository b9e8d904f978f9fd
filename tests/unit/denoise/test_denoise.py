"""gradnet-denoise: file formats, depth, alpha, EXIF orientation, channels, tiling, precision, CLI behaviour."""
import cv2
import importlib.util
import io
import json
import numpy as np
import os
import pytest
import struct
import torch
import zlib
from conftest import REPO, run_python, synthetic_image, write_images
from sample_data import TINY, gradnet_options, save_tiny

from gradnet_arch.denoise import cli, denoise_image, read_image, write_image
from gradnet_arch.denoise.tiling import axis_windows, check_tiling, tile_starts
from gradnet_arch.errors import DataError, ImageReadError, OptionError, OutputExistsError
from gradnet_arch.pretrained import load_pretrained


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt')
    return {
        'color': save_tiny(root / 'color.pth', gradnet_options(3), 0),
        'gray': save_tiny(root / 'gray.pth', gradnet_options(1), 1),
        'msk': save_tiny(root / 'msk.pth', dict(TINY, type='MSKResNet', num_in_ch=3), 2),
    }


@pytest.fixture(scope='module')
def color_net(ckpts):
    return load_pretrained(ckpts['color'])


@pytest.fixture(scope='module')
def gray_net(ckpts):
    return load_pretrained(ckpts['gray'])


# ---- EXIF bytes built here, independently of the module under test ----


def exif_tiff(orientation, little_endian=False):
    order = '<' if little_endian else '>'
    head = b'II*\x00' if little_endian else b'MM\x00*'
    # IFD0 with two entries (an unrelated tag first, so the parser has to walk the entries)
    entries = struct.pack(order + 'HHI', 0x010F, 2, 4) + b'cam\x00'
    entries += struct.pack(order + 'HHIH', 0x0112, 3, 1, orientation) + b'\x00\x00'
    return head + struct.pack(order + 'IH', 8, 2) + entries + struct.pack(order + 'I', 0)


def jpeg_with_orientation(img, orientation):
    data = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    payload = b'Exif\x00\x00' + exif_tiff(orientation, little_endian=True)
    return data, data[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + data[2:]


def png_with_orientation(img, orientation):
    data = cv2.imencode('.png', img)[1].tobytes()
    body = exif_tiff(orientation)
    chunk = struct.pack('>I', len(body)) + b'eXIf' + body + struct.pack('>I', zlib.crc32(b'eXIf' + body))
    return data[:33] + chunk + data[33:]  # after the signature and IHDR


def asymmetric(height=12, width=20, channels=3):
    """An image whose 8 orientations all differ."""
    img = np.arange(height * width * channels, dtype=np.uint8).reshape(height, width, channels)
    img[:3, :5] = 255
    return img


# the stored rows turned upright for each EXIF orientation (the EXIF spec's table, written out here)
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}

# ---- image_io ----


@pytest.mark.parametrize('orientation', range(1, 9))
def test_png_exif_orientation_matches_pillow(tmp_path, orientation):
    Image = pytest.importorskip('PIL.Image')
    ImageOps = pytest.importorskip('PIL.ImageOps')
    data = png_with_orientation(asymmetric(), orientation)
    path = tmp_path / 'o.png'
    path.write_bytes(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))[..., ::-1]  # RGB -> BGR
    np.testing.assert_array_equal(expected, UPRIGHT[orientation](asymmetric()))  # Pillow agrees with the table
    np.testing.assert_array_equal(read_image(str(path)), expected)


@pytest.mark.parametrize('orientation', [2, 3, 6, 7])
def test_tiff_orientation_applied_once(tmp_path, orientation):
    """OpenCV 5 turns TIFFs upright itself; the reader must not apply the tag a second time."""
    Image = pytest.importorskip('PIL.Image')
    ImageOps = pytest.importorskip('PIL.ImageOps')
    path = tmp_path / 'o.tif'
    Image.fromarray(asymmetric()).save(path, tiffinfo={274: orientation})
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))[..., ::-1]
    np.testing.assert_array_equal(read_image(str(path)), expected)


def test_jpeg_exif_orientation_6_is_rotated_clockwise(tmp_path):
    plain, tagged = jpeg_with_orientation(asymmetric(16, 24), 6)
    path = tmp_path / 'o.jpg'
    path.write_bytes(tagged)
    stored = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_UNCHANGED)
    upright = read_image(str(path))
    assert upright.shape == (24, 16, 3)
    np.testing.assert_array_equal(upright, np.rot90(stored, -1))


def test_depths_formats_and_alpha_round_trip(tmp_path):
    rng = np.random.RandomState(0)
    cases = {
        'g16.tif': rng.randint(0, 65536, (9, 11)).astype(np.uint16),
        'c16.png': rng.randint(0, 65536, (9, 11, 3)).astype(np.uint16),
        'c8.bmp': rng.randint(0, 256, (9, 11, 3)).astype(np.uint8),
        'rgba.png': rng.randint(0, 256, (9, 11, 4)).astype(np.uint8),
    }
    for name, img in cases.items():
        write_image(str(tmp_path / name), img)
        np.testing.assert_array_equal(read_image(str(tmp_path / name)), img)
    with pytest.raises(OutputExistsError, match='--overwrite'):
        write_image(str(tmp_path / 'c8.bmp'), cases['c8.bmp'])
    with pytest.raises(DataError, match='--format png'):
        write_image(str(tmp_path / 'x.jpg'), cases['c16.png'])


def test_grey_alpha_png_stays_grey(tmp_path):
    Image = pytest.importorskip('PIL.Image')
    la = np.dstack([np.arange(64, dtype=np.uint8).reshape(8, 8), np.full((8, 8), 200, np.uint8)])
    Image.fromarray(la, 'LA').save(tmp_path / 'la.png')
    np.testing.assert_array_equal(read_image(str(tmp_path / 'la.png')), la)


def test_corrupt_and_truncated_files_raise(tmp_path):
    good = cv2.imencode('.png', asymmetric())[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(good[:len(good) // 2])
    (tmp_path / 'junk.jpg').write_bytes(b'not an image at all')
    for name in ('cut.png', 'junk.jpg'):
        with pytest.raises(ImageReadError, match=name):
            read_image(str(tmp_path / name))


# ---- tiling ----


@pytest.mark.parametrize('length,tile,overlap', [(100, 32, 8), (70, 32, 30), (33, 32, 1), (64, 64, 16), (97, 40, 0)])
def test_tile_windows_cover_every_pixel_with_unit_weight(length, tile, overlap):
    starts = tile_starts(length, min(tile, length), overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    total = np.zeros(length)
    for start, window in zip(starts, axis_windows(starts, min(tile, length))):
        total[start:start + len(window)] += window
    assert total.min() > 0.99
    if 2 * overlap <= tile:  # at most two tiles per pixel: the weights are a partition of unity
        np.testing.assert_allclose(total, 1, atol=1e-6)


def test_bad_tiling_options():
    with pytest.raises(OptionError, match='smaller than the tile'):
        check_tiling(32, 32)
    with pytest.raises(OptionError, match='>= 0'):
        check_tiling(-1, 0)


# ---- denoise_image ----


def test_denoise_image_keeps_dtype_shape_and_alpha(color_net):
    rng = np.random.RandomState(1)
    img8 = synthetic_image(0, 40, 48)
    out8 = denoise_image(color_net, img8, tile=0)
    assert out8.dtype == np.uint8 and out8.shape == img8.shape and not np.array_equal(out8, img8)
    img16 = img8.astype(np.uint16) * 257
    out16 = denoise_image(color_net, img16, tile=0)
    assert out16.dtype == np.uint16 and out16.shape == img16.shape
    # the same image at 16 bits gives the same result, up to 8-bit rounding
    assert np.abs(out16 / 257. - out8).max() <= 1
    outf = denoise_image(color_net, img8.astype(np.float32) / 255, tile=0)
    assert outf.dtype == np.float32
    assert denoise_image(color_net, img8[..., :1], tile=0).shape == (40, 48, 1)
    rgba = np.dstack([img8, rng.randint(0, 256, img8.shape[:2]).astype(np.uint8)])
    out_rgba = denoise_image(color_net, rgba, tile=24, overlap=8)
    np.testing.assert_array_equal(out_rgba[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(out_rgba[..., :3], denoise_image(color_net, img8, tile=24, overlap=8))
    # OpenCV's BGR order: the network still sees RGB
    np.testing.assert_array_equal(denoise_image(color_net, img8[..., ::-1], tile=0, bgr=True), out8[..., ::-1])


def test_tiled_close_to_whole_and_batch_invariant(color_net):
    # float32: the bounds are the tiling's own effect (bf16 rounding is tested in test_fast_inference.py)
    img = synthetic_image(3, 64, 80).astype(np.float32) / 255
    whole = denoise_image(color_net, img, tile=0, precision='fp32')
    tiled = denoise_image(color_net, img, tile=40, overlap=16, tile_batch=1, precision='fp32')
    diff = np.abs(tiled - whole)
    # not identical (the channel attention averages over each tile), but close
    assert 0 < diff.mean() < 2e-3 and diff.max() < 0.02
    batched = denoise_image(color_net, img, tile=40, overlap=16, tile_batch=5, precision='fp32')
    np.testing.assert_allclose(batched, tiled, atol=1e-5)
    # a size that is no multiple of anything, and reflect padding to a multiple
    odd = img[:37, :45]
    assert denoise_image(color_net, odd, tile=24, overlap=8, multiple=8).shape == odd.shape


def test_constant_image_has_no_seams(color_net):
    flat = np.full((96, 96, 3), 0.45, np.float32)
    out = denoise_image(color_net, flat, tile=64, overlap=48, tile_batch=4, precision='fp32')
    inner = out[16:-16, 16:-16]  # the image's own borders see the zero padding, as in a whole-image run
    assert np.ptp(inner, axis=(0, 1)).max() < 1e-5
    out8 = denoise_image(color_net, (flat * 255).astype(np.uint8), tile=64, overlap=48)
    assert len(np.unique(out8[16:-16, 16:-16].reshape(-1, 3), axis=0)) == 1


def test_gradient_map_is_the_one_the_net_was_given(color_net, ckpts):
    img = synthetic_image(5, 32, 40)
    # float32, to compare with the gradient map computed here in float32 (the default, auto, may run bf16)
    out, grad = denoise_image(color_net, img, tile=0, return_gradient=True, precision='fp32')
    x = torch.from_numpy(img.astype(np.float32).transpose(2, 0, 1) / 255)[None]
    expected = color_net.gradient_map(x)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    np.testing.assert_array_equal(out, denoise_image(color_net, img, tile=0, precision='fp32'))
    _, grad_tiled = denoise_image(color_net, img, tile=24, overlap=8, return_gradient=True)
    assert grad_tiled.shape == img.shape and np.abs(grad_tiled - grad).mean() < 0.05
    with pytest.raises(OptionError, match='no gradient branch'):
        denoise_image(load_pretrained(ckpts['msk']), img, return_gradient=True)


def test_channel_adaptation(color_net, gray_net):
    rgb = synthetic_image(7, 32, 40).astype(np.float32) / 255
    grey = rgb[..., 1]
    # colour model, grey image: the grey in R, G, B; one channel back (the mean of the three outputs)
    out = denoise_image(color_net, grey, tile=0)
    assert out.shape == grey.shape
    np.testing.assert_allclose(out, denoise_image(color_net, np.dstack([grey] * 3), tile=0).mean(2), atol=1e-5)
    # grey model, colour image: refused, unless per channel
    with pytest.raises(DataError, match='--per-channel'):
        denoise_image(gray_net, rgb)
    per_channel = denoise_image(gray_net, rgb, tile=24, overlap=8, per_channel=True)
    separate = np.dstack([denoise_image(gray_net, rgb[..., c], tile=24, overlap=8) for c in range(3)])
    np.testing.assert_allclose(per_channel, separate, atol=1e-5)
    with pytest.raises(OptionError, match='grey'):
        denoise_image(color_net, rgb, per_channel=True)


def test_reduced_precision_on_cpu(color_net):
    img = synthetic_image(9, 32, 40)
    reference = denoise_image(color_net, img, tile=0, precision='fp32').astype(int)  # the default is now auto
    bf16 = denoise_image(color_net, img, tile=24, overlap=8, precision='bf16')
    assert bf16.dtype == np.uint8 and np.abs(bf16.astype(int) - reference).mean() < 3
    with pytest.raises(OptionError, match='CUDA GPUs only'):
        denoise_image(color_net, img, precision='fp16')


# ---- the command ----


def photo_folder(root):
    """One photo of each kind the command takes, plus a corrupt file; returns (folder, photos)."""
    folder = root / 'photos'
    folder.mkdir()
    rng = np.random.RandomState(0)
    photos = {
        'c8.png': synthetic_image(0, 40, 48),
        'c16.png': synthetic_image(1, 40, 48).astype(np.uint16) * 257,
        'grey.png': synthetic_image(2, 40, 48)[..., 0],
        'rgba.png': np.dstack([synthetic_image(3, 40, 48),
                               rng.randint(0, 256, (40, 48)).astype(np.uint8)]),
        'g16.tif': synthetic_image(4, 40, 48)[..., 0].astype(np.uint16) * 257,
        'b8.bmp': synthetic_image(5, 40, 48),
    }
    for name, img in photos.items():
        cv2.imwrite(str(folder / name), img)
    stored = synthetic_image(6, 40, 48)
    plain, tagged = jpeg_with_orientation(stored, 6)
    (folder / 'rot.jpg').write_bytes(tagged)
    photos['rot.jpg'] = np.rot90(cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_UNCHANGED), -1)
    (folder / 'broken.png').write_bytes(cv2.imencode('.png', stored)[1].tobytes()[:300])
    (folder / 'notes.txt').write_text('not an image, not picked up from a folder')
    return folder, photos


def test_cli_end_to_end(tmp_path, ckpts):
    folder, photos = photo_folder(tmp_path)
    out = tmp_path / 'out'
    args = [
        '-m', 'gradnet_arch.denoise',
        str(folder),
        str(tmp_path / 'missing.png'), '-o',
        str(out), '--weights', ckpts['color'], '--tile', '32', '--tile-overlap', '8', '--save-gradient',
        '--side-by-side', '--device', 'cpu'
    ]
    proc = run_python(args, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 1, proc.stderr  # two inputs failed, the others were denoised
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 2 and any('broken.png' in e for e in errors) and any('missing.png' in e for e in errors)
    assert '7 denoised, 0 skipped (output exists), 2 failed' in proc.stdout
    for name, img in photos.items():
        stem = os.path.splitext(name)[0]
        result = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert result.dtype == img.dtype and result.shape == img.shape, name
        grad = cv2.imread(str(out / f'{stem}_gradient.png'), cv2.IMREAD_UNCHANGED)
        assert grad.dtype == np.uint8 and grad.shape[:2] == img.shape[:2], name
        compare = cv2.imread(str(out / f'{stem}_compare.png'), cv2.IMREAD_UNCHANGED)
        assert compare.shape == (img.shape[0], 3 * img.shape[1] + 2 * 4, 3), name
    np.testing.assert_array_equal(
        cv2.imread(str(out / 'rgba.png'), cv2.IMREAD_UNCHANGED)[..., 3], photos['rgba.png'][..., 3])
    # the JPEG was written upright: close to the rotated original, far from the stored (unrotated) layout
    rot = cv2.imread(str(out / 'rot.jpg'), cv2.IMREAD_UNCHANGED).astype(float)
    assert np.abs(rot - photos['rot.jpg']).mean() < np.abs(rot - np.rot90(photos['rot.jpg'], 2)).mean()
    assert not (out / 'notes.txt').exists() and not (out / 'broken.png').exists()


def run_cli(argv, capsys):
    """cli.main in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + ['--device', 'cpu', '--quiet'])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_never_overwrites_unless_asked(tmp_path, ckpts, capsys):
    folder = write_images(tmp_path / 'in', 2, height=24, width=32)
    out = tmp_path / 'out'
    assert run_cli([folder, '-o', str(out), '--weights', ckpts['color']], capsys)[0] == 0
    first = (out / 'img_000.png').read_bytes()
    (out / 'img_001.png').write_bytes(b'keep me')
    status, stdout, stderr = run_cli([folder, '-o', str(out), '--weights', ckpts['color'], '--tile', '0'], capsys)
    assert status == 0 and '0 denoised, 2 skipped' in stdout and stderr.count('--overwrite') == 2
    assert (out / 'img_001.png').read_bytes() == b'keep me'
    status, stdout, _ = run_cli([folder, '-o', str(out), '--weights', ckpts['color'], '--overwrite'], capsys)
    assert status == 0 and '2 denoised' in stdout
    assert (out / 'img_000.png').read_bytes() == first and (out / 'img_001.png').read_bytes() != b'keep me'
    # an output folder that is the input folder would replace the inputs: refused even with --overwrite
    status, _, stderr = run_cli([folder, '-o', folder, '--weights', ckpts['color'], '--overwrite'], capsys)
    assert status == 1 and 'is the input itself' in stderr
    # img_000.png and img_000.bmp would share img_000_gradient.png: both are refused, neither is written
    cv2.imwrite(os.path.join(folder, 'img_000.bmp'), synthetic_image(0, 24, 32))
    status, stdout, stderr = run_cli(
        [folder, '-o', str(tmp_path / 'g'), '--weights', ckpts['color'], '--save-gradient'], capsys)
    assert status == 1 and '1 denoised, 0 skipped (output exists), 2 failed' in stdout
    assert stderr.count('img_000_gradient.png is also an output of') == 2
    assert sorted(os.listdir(tmp_path / 'g')) == ['img_001.png', 'img_001_gradient.png']


def test_cli_grey_model_on_colour_photos(tmp_path, ckpts, capsys):
    folder = write_images(tmp_path / 'in', 1, height=24, width=32)
    status, _, stderr = run_cli([folder, '-o', str(tmp_path / 'a'), '--weights', ckpts['gray']], capsys)
    assert status == 1 and 'colour model' in stderr and '--per-channel' in stderr
    assert not (tmp_path / 'a' / 'img_000.png').exists()
    status, _, _ = run_cli([folder, '-o', str(tmp_path / 'b'), '--weights', ckpts['gray'], '--per-channel'], capsys)
    assert status == 0 and cv2.imread(str(tmp_path / 'b' / 'img_000.png'), cv2.IMREAD_UNCHANGED).shape == (24, 32, 3)


@pytest.mark.parametrize('extra,key,message',
                         [(['--precision', 'fp16'], 'color', 'CUDA GPUs only'),
                          (['--save-gradient'], 'msk', '--save-gradient needs a GradNet'),
                          (['--tile', '16', '--tile-overlap', '16'], 'color', 'smaller than the tile'),
                          (['--per-channel'], 'color', 'for grey models'),
                          (['--format', 'png', '--tile-batch', '0'], 'color', '>= 1')])
def test_cli_usage_errors_exit_2(tmp_path, ckpts, capsys, extra, key, message):
    folder = write_images(tmp_path / 'in', 1, height=16, width=16)
    status, _, stderr = run_cli([folder, '-o', str(tmp_path / 'out'), '--weights', ckpts[key]] + extra, capsys)
    assert status == 2 and message in stderr and 'Traceback' not in stderr


def test_cli_no_inputs_exit_2(tmp_path, ckpts, capsys):
    status, _, stderr = run_cli(
        [str(tmp_path / 'nothing*.png'), '-o',
         str(tmp_path / 'out'), '--weights', ckpts['color']], capsys)
    assert status == 2 and 'no input images found' in stderr


# ---- speed/bench_tiling.py ----


def test_bench_tiling_on_a_tiny_net(tmp_path, ckpts, capsys):
    folder = write_images(tmp_path / 'clean', 2, height=40, width=48)
    spec = importlib.util.spec_from_file_location('bench_tiling', os.path.join(REPO, 'speed', 'bench_tiling.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = {}
    for tile in (0, 24):  # the worker in this process (fast); the script runs each in its own process
        bench.main(['--worker', '--model', ckpts['color'], '--folder', folder, '--tile', str(tile), '--overlap', '8'])
        line = [x for x in capsys.readouterr().out.splitlines() if x.startswith(bench.MARK)][-1]
        results[tile] = json.loads(line[len(bench.MARK):])
    assert results[0]['names'] == ['img_000.png', 'img_001.png']
    diffs = np.subtract(results[24]['psnr'], results[0]['psnr'])
    assert np.abs(diffs).max() < 0.5 and results[0]['rss_peak_mib'] > 0
    proc = run_python(['speed/bench_tiling.py', '--model', ckpts['color'], '--folder', folder, '--tiles', '0'],
                      cwd=REPO,
                      timeout=120)
    assert proc.returncode == 0, proc.stderr
    row = [line for line in proc.stdout.splitlines() if line.startswith('| clean | whole')]
    assert len(row) == 1 and f'{np.mean(results[0]["psnr"]):.3f}' in row[0] and '+0.0000' in row[0]
