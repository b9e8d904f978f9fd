"""`python -m gradnet_arch.benchmark`: end to end on tiny checkpoints, values checked against BasicSR's metrics."""
import csv
import cv2
import hashlib
import importlib.util
import json
import numpy as np
import os
import pytest
import sys
import torch
import yaml
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import img2tensor, tensor2img
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from conftest import run_python, write_images
from tiny_options import TINY_NET
from torch import nn
from torch.nn import functional as F

import gradnet_arch  # noqa: F401
from gradnet_arch.benchmark.cli import main
from gradnet_arch.benchmark.cost import flops_per_pixel
from gradnet_arch.benchmark.report import COLUMNS
from gradnet_arch.benchmark.testsets import subsample, tensor_sha256
from gradnet_arch.data import GaussianNoiseDataset
from gradnet_arch.metrics import calculate_psnr_smooth, calculate_psnr_texture
from gradnet_arch.pretrained import load_pretrained, save_checkpoint

STAGE1 = dict(TINY_NET, type='MSKResNet')
INLINE = '{type: MSKResNet, num_in_ch: 3, num_feat: 8, num_modules: 1, num_units: 1}'


@pytest.fixture(scope='module')
def bench(tmp_path_factory):
    """3 clean 48x48 images, a tiny MSKResNet and GradNet (options embedded), the MSKResNet also as a plain BasicSR
    checkpoint with an option YAML; then one real `python -m gradnet_arch.benchmark` run over 4 specs x 2 sigmas, in
    float32 (--precision fp32), so that the scores can be compared exactly with BasicSR's metrics (the default, auto,
    is tested in test_fast_inference.py)."""
    root = tmp_path_factory.mktemp('bench')
    work = str(root)
    images = write_images(os.path.join(work, 'clean'), 3, seed=5, height=48, width=48)
    torch.manual_seed(0)
    stage1 = build_network(dict(STAGE1))
    for p in stage1.parameters():  # not a near-identity: outputs differ clearly from the input
        p.data.mul_(3)
    save_checkpoint(os.path.join(work, 'msk.pth'), stage1.state_dict(), network_opt=STAGE1)
    torch.save({'params': stage1.state_dict()}, os.path.join(work, 'msk_plain.pth'))
    gradnet_opt = dict(TINY_NET, type='GradNet', global_residual=True, predenoiser=dict(STAGE1))
    gradnet = build_network(gradnet_opt)
    gradnet.predenoiser.load_state_dict(stage1.state_dict())
    save_checkpoint(os.path.join(work, 'gradnet.pth'), gradnet.state_dict(), network_opt=gradnet_opt)
    option_yaml = os.path.join(work, 'msk_options.yml')
    with open(option_yaml, 'w') as f:
        yaml.safe_dump({'network_g': STAGE1, 'path': {'pretrain_network_g': os.path.join(work, 'msk_plain.pth')}}, f)
    args = [
        '-m', 'gradnet_arch.benchmark', '--model', 'G=gradnet.pth', '--model', 'M=msk.pth', '--model',
        'Y=msk_options.yml', '--model', f'I={INLINE}@msk_plain.pth', '--set', 'tiny=clean', '--sigma', '15', '25',
        '--device', 'cpu', '--precision', 'fp32', '--csv', 'out.csv', '--json', 'out.json', '--plot', 'out.png'
    ]
    proc = run_python(args, cwd=work)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(os.path.join(work, 'out.csv')) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(work, 'out.json')) as f:
        doc = json.load(f)
    return {'work': work, 'images': images, 'proc': proc, 'rows': rows, 'doc': doc}


def row_of(rows, model, noise):
    (row, ) = [r for r in rows if r['model'] == model and r['noise'] == noise]
    return row


def run_net(net, lq):
    """The network as gradnet-benchmark runs it in fp32: load_pretrained's layout (BatchNorm folded, channels_last
    weights) on a channels_last input, so that the scores below can be compared exactly. That this layout computes
    BasicSR's unfolded NCHW network to 1e-5 is tested in test_fast_inference.py."""
    with torch.no_grad():
        return net(lq.contiguous(memory_format=torch.channels_last)).contiguous()


def reference(work, images, spec_path, sigma, color='rgb'):
    """What gradnet-test computes: GaussianNoiseDataset's validation noise, the net, tensor2img, BasicSR metrics."""
    net = load_pretrained(os.path.join(work, spec_path))
    dataset = GaussianNoiseDataset({
        'name': 'ref',
        'phase': 'val',
        'dataroot_gt': images,
        'sigma': sigma,
        'color': color
    })
    values = {'psnr': [], 'ssim': [], 'psnr_texture': [], 'psnr_smooth': [], 'sha': []}
    for i in range(len(dataset)):
        item = dataset[i]
        out = tensor2img([run_net(net, item['lq'][None])])
        gt = tensor2img([item['gt'][None]])
        values['psnr'].append(calculate_psnr(out, gt, 0))
        values['ssim'].append(calculate_ssim(out, gt, 0))
        values['psnr_texture'].append(calculate_psnr_texture(out, gt, 0))
        values['psnr_smooth'].append(calculate_psnr_smooth(out, gt, 0))
        values['sha'].append(tensor_sha256(item['lq'][None]))
    return values


def test_table_csv_and_values_equal_basicsr(bench):
    out = bench['proc'].stdout
    assert '| Model | Set | Noise | Images | PSNR | SSIM | PSNR texture | PSNR smooth |' in out
    assert out.count('| tiny | sigma ') == 8 and out.count('| fp32, channels_last |') == 8
    rows = bench['rows']
    assert tuple(rows[0].keys()) == COLUMNS
    assert [(r['model'], r['noise']) for r in rows] == [(m, s) for s in ('15', '25') for m in 'GMYI']
    for sigma in (15, 25):
        for model, path in (('G', 'gradnet.pth'), ('M', 'msk.pth')):
            row = row_of(rows, model, str(sigma))
            ref = reference(bench['work'], bench['images'], path, sigma)
            for key in ('psnr', 'ssim', 'psnr_texture', 'psnr_smooth'):
                assert float(row[key]) == pytest.approx(np.mean(ref[key]), rel=1e-12, abs=1e-12), (model, key)
            assert row['images'] == '3' and row['texture_images'] == '3' and row['device'].startswith('cpu')
            assert row['precision'] == 'fp32' and row['memory_format'] == 'channels_last'
            assert float(row['sec_per_mp']) > 0
        # the four specs of one MSKResNet give one result; the GradNet another
        for key in ('psnr', 'ssim', 'psnr_texture', 'psnr_smooth', 'params', 'flops_per_pixel'):
            assert row_of(rows, 'M', str(sigma))[key] == row_of(rows, 'Y', str(sigma))[key] \
                == row_of(rows, 'I', str(sigma))[key]
        assert row_of(rows, 'G', str(sigma))['psnr'] != row_of(rows, 'M', str(sigma))['psnr']
    stage1 = build_network(dict(STAGE1))
    assert int(row_of(rows, 'M', '25')['params']) == sum(p.numel() for p in stage1.parameters())
    # the trained network's count (pre-denoiser included), not that of the BatchNorm-folded net that ran
    gradnet = load_pretrained(os.path.join(bench['work'], 'gradnet.pth'), fold_batchnorm=False)
    assert int(row_of(rows, 'G', '25')['params']) == sum(p.numel() for p in gradnet.parameters())
    folded = load_pretrained(os.path.join(bench['work'], 'gradnet.pth'))
    assert sum(p.numel() for p in folded.parameters()) < int(row_of(rows, 'G', '25')['params'])
    assert bench['doc']['settings']['precision'] == 'fp32'
    assert float(row_of(rows, 'G', '25')['flops_per_pixel']) > float(row_of(rows, 'M', '25')['flops_per_pixel'])


def test_every_model_sees_the_identical_noisy_input(bench):
    per_image = bench['doc']['per_image']
    assert len(per_image) == 4 * 2 * 3
    by_input = {}
    for record in per_image:
        by_input.setdefault((record['noise'], record['image']), set()).add(record['input_sha256'])
    assert all(len(hashes) == 1 for hashes in by_input.values())
    # ...and it is gradnet-test's input (GaussianNoiseDataset, seed 0 per image), different for each sigma
    for sigma in (15, 25):
        ref = reference(bench['work'], bench['images'], 'msk.pth', sigma)['sha']
        names = sorted(os.path.splitext(n)[0] for n in os.listdir(bench['images']))
        assert [by_input[(str(sigma), name)].pop() for name in names] == ref
    assert bench['doc']['settings']['sigmas'] == [15.0, 25.0]


def test_plot_is_a_png_with_the_points(bench):
    path = os.path.join(bench['work'], 'out.png')
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert 10_000 < os.path.getsize(path) < 2_000_000
    img = cv2.imread(path)
    assert img is not None and 800 <= img.shape[1] <= 2000 and 400 <= img.shape[0] <= 1200
    # one colour per model: matplotlib's C0..C3 (BGR), in solid marker pixels
    for bgr in ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214)):
        assert (np.abs(img.astype(int) - bgr).max(axis=2) < 8).sum() > 50, bgr


def plot_row(model, set_name, noise, sec_per_mp, psnr):
    return {'model': model, 'set': set_name, 'noise': noise, 'sec_per_mp': sec_per_mp, 'psnr': psnr}


def test_plot_axes_labels_markers_and_log_scale():
    from gradnet_arch.benchmark.report import draw_plot

    rows = [
        plot_row('G', 'CBSD68', '25', 0.5, 31.2),
        plot_row('G', 'CBSD68', '50', 0.5, 28.1),
        plot_row('bm3d', 'CBSD68', '25', 40.0, 30.7),
        plot_row('bm3d', 'CBSD68', '50', 40.0, 27.6),
        plot_row('noisy', 'CBSD68', '25', None, 20.2),  # not timed: left out
    ]
    fig = draw_plot(rows, 'title')
    (ax, ) = fig.axes
    assert ax.get_xscale() == 'log'  # 0.5 s to 40 s: nearly two decades
    assert ax.get_xlabel() == 'time per megapixel (s)' and ax.get_ylabel() == 'PSNR (dB)'
    points = [(line.get_xdata()[0], line.get_ydata()[0], line.get_color(), line.get_marker()) for line in ax.lines]
    assert [p[:2] for p in points] == [(0.5, 31.2), (0.5, 28.1), (40.0, 30.7), (40.0, 27.6)]
    assert points[0][2] == points[1][2] != points[2][2] == points[3][2]  # colour: the model
    assert points[0][3] == points[2][3] != points[1][3] == points[3][3]  # marker: the set and noise
    assert [t.get_text() for t in ax.texts] == ['G 31.20', 'G 28.10', 'bm3d 30.70', 'bm3d 27.60']
    (legend, ) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ['G', 'bm3d', 'CBSD68, sigma 25', 'CBSD68, sigma 50']
    close = draw_plot([plot_row('G', 's', '25', 1.0, 30.0), plot_row('M', 's', '25', 3.0, 29.0)])
    assert close.axes[0].get_xscale() == 'linear'  # less than a decade apart


def test_plot_without_matplotlib_is_refused_before_any_work(bench, tmp_path, monkeypatch, capsys):
    for name in [name for name in sys.modules if name == 'matplotlib' or name.startswith('matplotlib.')]:
        monkeypatch.setitem(sys.modules, name, None)  # what an environment without the package does on import
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    outputs = [tmp_path / 'r.csv', tmp_path / 'p.png']
    # a model that does not exist: loading it would fail with another message, so the check comes first
    code, _, err = run_main([
        '--model', 'X=no_such_model.pth', '--set', f'tiny={bench["images"]}', '--quiet', '--csv',
        str(outputs[0]), '--plot',
        str(outputs[1])
    ], capsys)
    assert code == 2 and 'pip install gradnet-basicsr[plot]' in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1 and 'no_such_model' not in err
    assert not any(path.exists() for path in outputs)


class FixedSobelLike(nn.Module):
    """A functional depthwise conv with a fixed kernel (two 3x3 filters per channel), as GradNet's Sobel filter."""

    def forward(self, x):
        return F.conv2d(x, torch.ones(2 * x.shape[1], 1, 3, 3), padding=1, groups=x.shape[1])


def test_flops_per_pixel_counts_conv_linear_and_transposed_conv():
    # 2 FLOPs per multiply-accumulate of the convolutions; BatchNorm, ReLU and bias additions are not counted
    layers = (nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    plain = nn.Sequential(*layers).eval()
    assert flops_per_pixel(plain, 3) == 2 * (8 * 3 * 9 + 3 * 8 * 9)
    # stride 2 (a quarter of the positions) and a 2x2 stride-2 transposed conv back up: 27 + 12 MACs per pixel
    updown = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ConvTranspose2d(4, 3, 2, stride=2))
    assert flops_per_pixel(updown, 3) == 2 * (27 + 12)
    # a Linear layer over the rows (64 -> 64 features per row of each of 3 channels): 3 x 64 MACs per pixel
    assert flops_per_pixel(nn.Linear(64, 64), 3, size=64) == 2 * 3 * 64
    # functional convolutions count too: 3 channels x 2 filters x 9 taps per pixel
    assert flops_per_pixel(FixedSobelLike(), 3) == 2 * 3 * 2 * 9
    assert subsample(10, 3) == [0, 4, 9] and subsample(4, 10) == [0, 1, 2, 3] and subsample(5, 1) == [0]


def run_main(args, capsys):
    """In-process CLI: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_real_noise_pairs_from_folders_and_lmdbs(bench, tmp_path, capsys):
    clean = bench['images']
    names = sorted(os.listdir(clean))
    noisy_dir = str(tmp_path / 'noisy')
    os.makedirs(noisy_dir)
    rng = np.random.RandomState(3)
    for name in names:
        img = cv2.imread(os.path.join(clean, name))
        cv2.imwrite(os.path.join(noisy_dir, name), np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8))
    stems = [os.path.splitext(n)[0] for n in names]
    for folder, lmdb_path in ((clean, tmp_path / 'gt.lmdb'), (noisy_dir, tmp_path / 'lq.lmdb')):
        make_lmdb_from_imgs(folder, str(lmdb_path), names, stems, n_thread=1)
    ckpt = os.path.join(bench['work'], 'msk.pth')
    code, out, err = run_main([
        '--model', f'M={ckpt}', '--pairs', f'folders={clean},{noisy_dir}', '--pairs',
        f'lmdbs={tmp_path / "gt.lmdb"},{tmp_path / "lq.lmdb"}', '--max-images', '2', '--quiet', '--json',
        str(tmp_path / 'pairs.json'), '--precision', 'fp32'
    ], capsys)
    assert code == 0, err
    doc = json.load(open(tmp_path / 'pairs.json'))
    rows = {r['set']: r for r in doc['results']}
    assert rows['folders']['noise'] == 'real' and rows['folders']['images'] == 2
    assert rows['folders']['psnr'] == rows['lmdbs']['psnr']  # the same pairs either way
    net = load_pretrained(ckpt)
    psnrs = []
    for name in (names[0], names[2]):  # --max-images 2 of 3: first and last
        lq = img2tensor(cv2.imread(os.path.join(noisy_dir, name)).astype(np.float32) / 255.)[None]
        psnrs.append(calculate_psnr(tensor2img([run_net(net, lq)]), cv2.imread(os.path.join(clean, name)), 0))
    assert rows['folders']['psnr'] == pytest.approx(np.mean(psnrs), rel=1e-12)
    assert '| M | folders | real | 2 |' in out
    if importlib.util.find_spec('bm3d') is not None:  # real noise of unknown level: BM3D needs --bm3d-sigma
        code, out, err = run_main(['--classical', 'bm3d', '--pairs', f'folders={clean},{noisy_dir}', '--quiet'], capsys)
        assert code == 0 and 'bm3d skipped on folders' in err and '| bm3d |' not in out
    # names that do not pair up
    os.rename(os.path.join(noisy_dir, names[0]), os.path.join(noisy_dir, 'other.png'))
    code, _, err = run_main(['--model', f'M={ckpt}', '--pairs', f'p={clean},{noisy_dir}', '--quiet'], capsys)
    assert code == 2 and 'no partner of the same name' in err


@pytest.mark.skipif(importlib.util.find_spec('bm3d') is None, reason='the optional bm3d package is not installed')
def test_bm3d_row(bench, tmp_path, capsys):
    code, out, err = run_main([
        '--classical', 'bm3d', '--set', f'tiny={bench["images"]}', '--sigma', '25', '--max-images', '1', '--quiet',
        '--csv',
        str(tmp_path / 'bm3d.csv')
    ], capsys)
    assert code == 0, err
    (row, ) = list(csv.DictReader(open(tmp_path / 'bm3d.csv')))
    assert row['model'] == 'bm3d' and row['kind'] == 'classical' and row['params'] == '0'
    assert row['flops_per_pixel'] == '' and '| bm3d | tiny | sigma 25 | 1 |' in out and '| n/a |' in out
    item = GaussianNoiseDataset({'name': 'x', 'phase': 'val', 'dataroot_gt': bench['images'], 'sigma': 25})[0]
    noisy_psnr = calculate_psnr(tensor2img([item['lq'][None]]), tensor2img([item['gt'][None]]), 0)
    assert float(row['psnr']) > noisy_psnr + 4  # CBM3D denoises


def test_noisy_baseline_row_scores_the_noisy_input(bench, tmp_path, capsys):
    code, out, err = run_main([
        '--classical', 'noisy', '--set', f'tiny={bench["images"]}', '--sigma', '25', '--quiet', '--csv',
        str(tmp_path / 'noisy.csv')
    ], capsys)
    assert code == 0, err
    (row, ) = list(csv.DictReader(open(tmp_path / 'noisy.csv')))
    data = GaussianNoiseDataset({'name': 'x', 'phase': 'val', 'dataroot_gt': bench['images'], 'sigma': 25})
    psnrs = [calculate_psnr(tensor2img([item['lq'][None]]), tensor2img([item['gt'][None]]), 0) for item in data]
    assert row['model'] == 'noisy' and row['params'] == '0' and row['sec_per_mp'] == ''
    assert float(row['psnr']) == pytest.approx(np.mean(psnrs), rel=1e-12)


def test_bm3d_missing_gives_install_hint(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'bm3d', None)  # what an environment without the package does on import
    code, _, err = run_main(['--classical', 'bm3d', '--set', f'tiny={bench["images"]}', '--quiet'], capsys)
    assert code == 2 and 'pip install bm3d' in err and 'Traceback' not in err


@pytest.mark.parametrize(
    'spec, message',
    [
        ('X=does_not_exist.pth', 'not a shipped model name, an existing checkpoint'),
        ('X={type: NoSuchNet}@msk_plain.pth', 'not a registered arch'),
        ('X={type: [unclosed@msk_plain.pth', 'neither a file nor valid inline YAML'),
        ('X={num_feat: 8}@msk_plain.pth', 'must be a dict with a `type`'),
        ('X=arch.yml@msk_plain.pth', 'arch option file not found'),
        (f'X={INLINE}@missing.pth', 'missing.pth'),
        ('X={type: MSKResNet, num_in_ch: 3, num_feat: 16}@msk_plain.pth', 'X={type: MSKResNet'),  # wrong shapes
    ])
def test_bad_model_specs(bench, capsys, monkeypatch, spec, message):
    monkeypatch.chdir(bench['work'])
    code, _, err = run_main(['--model', spec, '--set', 'tiny=clean', '--quiet'], capsys)
    assert code == 2, err
    assert message in err and 'Traceback' not in err
    assert spec.split('@')[0][:12] in err  # names the spec
    if 'shipped' in message:
        assert 'Accepted forms of --model' in err and 'ARCH.yml@CHECKPOINT.pth' in err


def test_bad_arguments_and_no_overwrite(bench, capsys, monkeypatch):
    monkeypatch.chdir(bench['work'])
    for args, message in (
        (['--set', 'tiny=clean'], 'Nothing to benchmark'),
        (['--model', 'M=msk.pth'], 'No test images'),
        (['--model', 'M=msk.pth', '--set', 'clean'], 'expected NAME=VALUE'),
        (['--model', 'M=msk.pth', '--pairs', 'p=clean'], 'NAME=GT_DIR_OR_LMDB,NOISY_DIR_OR_LMDB'),
        (['--model', 'M=msk.pth', '--set', 'x=no_such_folder'], 'folder not found'),
        (['--model', 'M=msk.pth', '--model', 'M=gradnet.pth', '--set', 'tiny=clean'], 'Two models are labelled'),
        (['--model', 'M=msk.pth', '--set', 'tiny=clean', '--color', 'gray'], 'takes 3-channel images'),
        (['--model', 'M=msk.pth', '--set', 'tiny=clean', '--csv', 'out.csv'], 'exists; pass --overwrite'),
    ):
        code, _, err = run_main(args + ['--quiet'], capsys)
        assert code == 2 and message in err, (args, err)


def test_tiled_inference_is_close_to_whole_images(bench, tmp_path, capsys):
    args = [
        '--model', f'M={os.path.join(bench["work"], "msk.pth")}', '--set', f'tiny={bench["images"]}', '--quiet',
        '--precision', 'fp32'
    ]
    code, _, err = run_main(args + ['--tile', '32', '--tile-overlap', '8', '--json', str(tmp_path / 't.json')], capsys)
    assert code == 0, err
    tiled = json.load(open(tmp_path / 't.json'))['results'][0]['psnr']
    whole = float(row_of(bench['rows'], 'M', '25')['psnr'])
    assert tiled != whole and abs(tiled - whole) < 0.5  # 48 px in 32 px tiles: seams blended, values close
    code, _, err = run_main(args + ['--tile', '32', '--tile-overlap', '32'], capsys)
    assert code == 2 and 'smaller than --tile' in err


def test_grey_models_and_grey_bm3d(tmp_path, capsys):
    grey = write_images(str(tmp_path / 'grey'), 2, seed=9, height=32, width=32, channels=1)
    net_opt = dict(STAGE1, num_in_ch=1)
    torch.manual_seed(1)
    save_checkpoint(str(tmp_path / 'grey.pth'), build_network(dict(net_opt)).state_dict(), network_opt=net_opt)
    has_bm3d = importlib.util.find_spec('bm3d') is not None
    args = [
        '--model', f'Grey={tmp_path / "grey.pth"}', '--set', f'g={grey}', '--quiet', '--json',
        str(tmp_path / 'g.json'), '--precision', 'fp32'
    ]
    code, out, err = run_main(args + (['--classical', 'bm3d', '--max-images', '1'] if has_bm3d else []), capsys)
    assert code == 0, err
    doc = json.load(open(tmp_path / 'g.json'))
    assert doc['settings']['color'] == 'gray'  # from the network's one input channel
    ref = reference(str(tmp_path), grey, 'grey.pth', 25, color='gray')
    row = doc['results'][0]
    assert row['model'] == 'Grey'
    count = row['images']
    assert row['psnr'] == pytest.approx(np.mean(ref['psnr'][:count]), rel=1e-12)
    assert row['psnr_smooth'] == pytest.approx(np.mean(ref['psnr_smooth'][:count]), rel=1e-12)
    if has_bm3d:
        assert doc['results'][1]['model'] == 'bm3d' and doc['results'][1]['psnr'] > 25


def test_shipped_model_by_name(bench, tmp_path, monkeypatch, capsys):
    """A pretrained name from the zoo's manifest (here a tiny one in $GRADNET_WEIGHTS_DIR) is a valid SPEC."""
    weights = tmp_path / 'weights'
    weights.mkdir()
    data = open(os.path.join(bench['work'], 'msk.pth'), 'rb').read()
    (weights / 'tiny_msk.pth').write_bytes(data)
    entry = {'file': 'tiny_msk.pth', 'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data), 'color': 'rgb'}
    (weights / 'manifest.json').write_text(json.dumps({'models': {'tiny_msk': entry}}))
    monkeypatch.setenv('GRADNET_WEIGHTS_DIR', str(weights))
    code, out, err = run_main(
        ['--model', 'S=tiny_msk', '--set', f'tiny={bench["images"]}', '--quiet', '--precision', 'fp32'], capsys)
    assert code == 0, err
    line = [line for line in out.splitlines() if line.startswith('| S | tiny | sigma 25 | 3 |')]
    assert line and f'| {float(row_of(bench["rows"], "M", "25")["psnr"]):.2f} |' in line[0]
    code, _, err = run_main(['--model', 'S=tiny_ms', '--set', f'tiny={bench["images"]}', '--quiet'], capsys)
    assert code == 2 and 'a shipped pretrained model (tiny_msk)' in err
