"""The fast inference path: BatchNorm folded at load, channels_last tensors, precision 'auto' (bf16 autocast where
the device computes it natively), the per-tile progress callback, and the errors for precisions a device lacks.

Every path is compared with the plain one (float32, NCHW, BatchNorm unfolded, as BasicSR builds the network):
- fp32, channels_last and/or folded: max abs difference <= 1e-5 (float32 rounding; measured <= 5e-7);
- bf16 autocast on the CPU, images in [0, 1]: max abs difference <= 0.02 and mean <= 2e-3. bf16 keeps 8 significant
  bits, so every convolution's output is rounded by up to 2^-9 relative (0.002 at 1.0), and the tiny random nets
  here add a dozen such roundings: measured max 0.009 / mean 1e-3 on them (0.005 / 7e-4 on the shipped models).
"""
import json
import numpy as np
import pytest
import scipy.io
import sys
import tiny_options
import torch
from basicsr.archs import build_network
from conftest import synthetic_image, write_images
from torch import nn

from gradnet_arch import precision as precision_module
from gradnet_arch.archs.bn_folding import fold_batchnorm
from gradnet_arch.benchmark import cli as benchmark_cli
from gradnet_arch.benchmark.cost import count_parameters
from gradnet_arch.benchmark.models import NetDenoiser
from gradnet_arch.denoise import cli as denoise_cli
from gradnet_arch.denoise import denoise_image
from gradnet_arch.denoise.tiling import tiled_apply
from gradnet_arch.precision import cpu_has_native_bf16
from gradnet_arch.pretrained import load_pretrained, save_checkpoint
from gradnet_arch.submit import cli as submit_cli
from gradnet_arch.submit.inference import Denoiser

TINY = {'num_feat': 8, 'num_modules': 1, 'num_units': 2}
FP32_ATOL = 1e-5
BF16_MAX, BF16_MEAN = 0.02, 2e-3
needs_native_bf16 = pytest.mark.skipif(
    not cpu_has_native_bf16(), reason='this CPU has no native bf16 (AVX512-BF16 / AMX / Arm BF16): auto stays fp32')
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU (torch.cuda.is_available())')


def gradnet_opt(channels):
    return tiny_options.gradnet_options(channels, TINY)


def with_bn_statistics(net, seed):
    """Random weights and non-trivial BatchNorm statistics and affine parameters (a fresh BN is the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d) and module.track_running_stats:
                module.running_mean.uniform_(-0.3, 0.3, generator=gen)
                module.running_var.uniform_(0.3, 2.0, generator=gen)
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.2, 0.2, generator=gen)
    return net.eval()


def basicsr_net(channels, seed=0):
    torch.manual_seed(seed)
    return with_bn_statistics(build_network(gradnet_opt(channels)), seed)


@pytest.fixture(scope='module')
def ckpts(tmp_path_factory):
    """Tiny colour and grey GradNets written by save_checkpoint, with the networks BasicSR builds from them."""
    root = tmp_path_factory.mktemp('fast')
    out = {}
    for channels in (3, 1):
        net = basicsr_net(channels, seed=channels)
        path = str(root / f'g{channels}.pth')
        save_checkpoint(path, net.state_dict(), network_opt=gradnet_opt(channels))
        out[channels] = (path, net)
    return out


def noisy_image(channels, seed=0, height=40, width=48):
    img = synthetic_image(seed, height, width, channels).astype(np.float32) / 255
    img = np.clip(img + np.random.RandomState(seed).normal(0, 25 / 255, img.shape).astype(np.float32), 0, 1)
    return img[..., 0] if channels == 1 else img


def run(net, x, channels_last=False):
    with torch.no_grad():
        return net(x.contiguous(memory_format=torch.channels_last) if channels_last else x).contiguous()


# ---- BatchNorm folding ----


@pytest.mark.parametrize('channels', [3, 1])
def test_folding_gradnet_is_exact(channels):
    net = basicsr_net(channels)
    x = torch.rand(2, channels, 24, 20)
    reference = run(net, x)
    units = sum(type(m).__name__ == 'ResUnit' for m in net.modules())
    assert units == 4  # 2 in GradNet's body, 2 in its frozen pre-denoiser
    assert fold_batchnorm(net) == units
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert not any('.bn.' in key for key in net.state_dict())
    assert not any(p.requires_grad for p in net.predenoiser.parameters())  # still frozen
    torch.testing.assert_close(run(net, x), reference, rtol=0, atol=FP32_ATOL)
    assert fold_batchnorm(net) == 0  # nothing left to fold


def test_folding_sequential_conv_bn_and_what_is_left_alone():
    torch.manual_seed(0)
    dncnn = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    with_bn_statistics(dncnn, 1)
    x = torch.rand(1, 3, 16, 16)
    reference = run(dncnn, x)
    assert fold_batchnorm(dncnn) == 2
    assert [type(m).__name__ for m in dncnn] == ['Conv2d', 'Identity', 'ReLU', 'Conv2d', 'Identity', 'ReLU', 'Conv2d']
    torch.testing.assert_close(run(dncnn, x), reference, rtol=0, atol=FP32_ATOL)

    # not foldable: BatchNorm without running statistics, a transposed conv, a hooked conv, a conv used twice,
    # BN before the conv, and a Sequential subclass (its forward may not run the children in order)
    class Custom(nn.Sequential):
        pass

    shared = nn.Conv2d(8, 8, 3, padding=1)
    hooked = nn.Conv2d(8, 8, 3, padding=1)
    hooked.register_forward_hook(lambda module, inputs, output: None)
    others = nn.Sequential(
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, track_running_stats=False)),
        nn.Sequential(nn.ConvTranspose2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)),
        nn.Sequential(hooked, nn.BatchNorm2d(8)),
        nn.Sequential(shared, nn.BatchNorm2d(8), shared),
        nn.Sequential(nn.BatchNorm2d(8), nn.Conv2d(8, 8, 3, padding=1)),
        Custom(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8)),
    )
    with_bn_statistics(others, 2)
    before = run(others, x)
    assert fold_batchnorm(others) == 0
    assert sum(isinstance(m, nn.BatchNorm2d) for m in others.modules()) == 6
    torch.testing.assert_close(run(others, x), before, rtol=0, atol=0)

    training = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    with pytest.raises(ValueError, match='eval'):
        fold_batchnorm(training)


@pytest.mark.parametrize('channels', [3, 1])
def test_load_pretrained_folds_a_save_checkpoint_file(ckpts, channels):
    path, reference = ckpts[channels]
    net = load_pretrained(path)
    info = net.pretrained_info
    assert info['batchnorm_folded'] == 4 and info['channels_last'] is True
    assert info['parameters'] == sum(p.numel() for p in reference.parameters())  # the trained network's count
    assert count_parameters(net) == info['parameters'] > sum(p.numel() for p in net.parameters())
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    conv = net.body.blocks[0].units[0].conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    x = torch.rand(1, channels, 28, 36)
    for channels_last in (False, True):  # an NCHW input works with channels_last weights, and the reverse
        torch.testing.assert_close(run(net, x, channels_last), run(reference, x), rtol=0, atol=FP32_ATOL)
    plain = load_pretrained(path, fold_batchnorm=False, channels_last=False)
    assert plain.pretrained_info['batchnorm_folded'] == 0 and plain.pretrained_info['channels_last'] is False
    assert plain.state_dict().keys() == reference.state_dict().keys()
    assert not plain.training and not any(p.requires_grad for p in plain.parameters())
    assert torch.equal(run(plain, x), run(reference, x))


@pytest.mark.parametrize('name', ['gradnet_color_sigma25', 'gradnet_gray_sigma25'])
def test_folding_the_shipped_models_trained_by_basicsr(name):
    """The shipped checkpoints come out of BasicSR's training loop (their cards hold the logs)."""
    folded = load_pretrained(name)
    plain = load_pretrained(name, fold_batchnorm=False, channels_last=False)
    channels = folded.num_in_ch
    assert folded.pretrained_info['batchnorm_folded'] == 8  # 2 modules x 2 ResUnits in GradNet and in its stage 1
    assert folded.pretrained_info['parameters'] == sum(p.numel() for p in plain.parameters())
    x = torch.rand(1, channels, 32, 40)
    torch.testing.assert_close(run(folded, x, True), run(plain, x), rtol=0, atol=FP32_ATOL)


# ---- precision and memory format in denoise_image ----


@pytest.mark.parametrize('channels', [3, 1])
def test_denoise_image_precisions_and_layouts_against_fp32_nchw(ckpts, channels):
    path, reference = ckpts[channels]
    net = load_pretrained(path)
    img = noisy_image(channels)
    plain = denoise_image(reference, img, tile=0, precision='fp32', channels_last=False)
    for options in (dict(channels_last=True), dict(channels_last=False)):
        np.testing.assert_allclose(
            denoise_image(net, img, tile=0, precision='fp32', **options), plain, atol=FP32_ATOL, rtol=0)
    # a user's own NCHW network (as BasicSR builds it) gets channels_last inputs too, with the same result
    np.testing.assert_allclose(denoise_image(reference, img, tile=0, precision='fp32'), plain, atol=FP32_ATOL, rtol=0)
    bf16 = denoise_image(net, img, tile=0, precision='bf16')  # natively or emulated by oneDNN: only speed differs
    diff = np.abs(bf16 - plain)
    assert 1e-4 < diff.max() <= BF16_MAX and diff.mean() <= BF16_MEAN  # it did run in bf16, and stayed close
    assert bf16.dtype == np.float32
    tiled = denoise_image(net, img, tile=24, overlap=8, precision='bf16')
    tiled_plain = denoise_image(reference, img, tile=24, overlap=8, precision='fp32', channels_last=False)
    assert np.abs(tiled - tiled_plain).max() <= BF16_MAX


def test_network_inputs_are_channels_last_and_outputs_contiguous(ckpts):
    path, _ = ckpts[3]
    net = load_pretrained(path)
    seen = []
    handle = net.register_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        denoise_image(net, noisy_image(3), tile=24, overlap=8, precision='fp32')
        denoise_image(net, noisy_image(1), tile=0, precision='fp32')  # grey replicated to R, G, B first
        assert seen and all(seen)
        seen.clear()
        denoise_image(net, noisy_image(3), tile=0, precision='fp32', channels_last=False)
        assert seen == [False]
        lq = torch.from_numpy(noisy_image(3).transpose(2, 0, 1).copy())[None]
        bench = NetDenoiser('G', net, 'cpu', precision='fp32')  # its FLOP probe runs the net once, in NCHW
        seen.clear()
        out = bench.run(lq)
        assert seen == [True] and out.is_contiguous()
        seen.clear()
        (tiled, ) = tiled_apply(net, lq[0], 24, 8, 2, 'cpu', channels_last=True)
        assert seen and all(seen) and tiled.is_contiguous()
        seen.clear()
        denoiser = Denoiser(net, 'cpu', precision='fp32')
        out = denoiser(noisy_image(3))
        assert seen == [True] and out.flags['C_CONTIGUOUS']
    finally:
        handle.remove()


def test_benchmark_and_submit_runners_in_bf16(ckpts):
    path, reference = ckpts[3]
    net = load_pretrained(path)
    img = noisy_image(3)
    lq = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    plain = run(reference, lq)
    bench = NetDenoiser('G', net, 'cpu', precision='bf16')
    assert (bench.precision, bench.memory_format) == ('bf16', 'channels_last')
    diff = (bench.run(lq).float() - plain).abs()
    assert 1e-4 < diff.max() <= BF16_MAX and diff.mean() <= BF16_MEAN
    denoiser = Denoiser(net, 'cpu', precision='bf16')
    diff = np.abs(denoiser(img) - np.clip(plain[0].numpy().transpose(1, 2, 0), 0, 1))
    assert 1e-4 < diff.max() <= BF16_MAX and diff.mean() <= BF16_MEAN


# ---- auto ----


@needs_native_bf16
def test_auto_is_bf16_on_this_cpu(ckpts):
    net = load_pretrained(ckpts[3][0])
    img = noisy_image(3)
    assert precision_module.resolve_precision('auto', 'cpu') == 'bf16'
    assert np.array_equal(denoise_image(net, img), denoise_image(net, img, precision='bf16'))
    assert not np.array_equal(denoise_image(net, img), denoise_image(net, img, precision='fp32'))
    assert NetDenoiser('G', net, 'cpu').precision == 'bf16' and Denoiser(net, 'cpu').precision == 'bf16'


def test_auto_is_fp32_without_native_bf16(ckpts, monkeypatch):
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: False)
    net = load_pretrained(ckpts[3][0])
    img = noisy_image(3)
    assert precision_module.resolve_precision('auto', 'cpu') == 'fp32'
    assert np.array_equal(denoise_image(net, img), denoise_image(net, img, precision='fp32'))
    assert NetDenoiser('G', net, 'cpu').precision == 'fp32' and Denoiser(net, 'cpu').precision == 'fp32'


def test_benchmark_records_precision_and_memory_format(ckpts, tmp_path, capsys):
    images = write_images(tmp_path / 'clean', 2, seed=3, height=32, width=32)
    results = {}
    for requested in ('auto', 'fp32'):
        out = tmp_path / f'{requested}.json'
        benchmark_cli.main([
            '--model', f'G={ckpts[3][0]}', '--set', f'tiny={images}', '--device', 'cpu', '--quiet', '--json',
            str(out), '--precision', requested
        ])
        stdout = capsys.readouterr().out
        with open(out) as f:
            doc = json.load(f)
        row = doc['results'][0]
        resolved = precision_module.auto_precision('cpu') if requested == 'auto' else 'fp32'
        assert row['precision'] == resolved and row['memory_format'] == 'channels_last'
        assert doc['settings']['precision'] == resolved and doc['settings']['precision_requested'] == requested
        assert f'| {resolved}, channels_last |' in stdout
        results[requested] = row['psnr']
    assert abs(results['auto'] - results['fp32']) < 0.05  # scored from float32 outputs either way


# ---- precisions a device cannot run ----


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('Error: ') and 'fp16 runs on CUDA GPUs only' in err[0], err
    return err[0]


def test_fp16_on_the_cpu_is_a_usage_error_in_every_command(ckpts, tmp_path, capsys):
    path = ckpts[3][0]
    folder = write_images(tmp_path / 'in', 1, height=16, width=16)
    with pytest.raises(SystemExit) as info:
        denoise_cli.main([
            folder, '-o',
            str(tmp_path / 'out'), '--weights', path, '--device', 'cpu', '--precision', 'fp16', '--quiet'
        ])
    assert info.value.code == 2
    one_error_line(capsys)
    assert not (tmp_path / 'out').exists()
    with pytest.raises(SystemExit) as info:
        benchmark_cli.main(
            ['--model', f'G={path}', '--set', f'tiny={folder}', '--device', 'cpu', '--precision', 'fp16', '--quiet'])
    assert info.value.code == 2
    one_error_line(capsys)
    mat = str(tmp_path / 'noisy.mat')
    scipy.io.savemat(mat, {'BenchmarkNoisyBlocksSrgb': np.zeros((1, 1, 8, 8, 3), np.uint8)})
    with pytest.raises(SystemExit) as info:
        submit_cli.main([
            'sidd', '--model', path, '--noisy', mat, '-o',
            str(tmp_path / 'S.mat'), '--device', 'cpu', '--precision', 'fp16', '--quiet'
        ])
    assert info.value.code == 2
    one_error_line(capsys)
    assert not (tmp_path / 'S.mat').exists()
    with pytest.raises(SystemExit) as info:  # --from-folder runs no model: a precision there is a mistake
        submit_cli.main([
            'sidd', '--from-folder', folder, '--noisy', mat, '-o',
            str(tmp_path / 'S.mat'), '--precision', 'bf16', '--quiet'
        ])
    assert info.value.code == 2 and '--precision' in capsys.readouterr().err


# ---- progress ----


@pytest.mark.parametrize('size,tile,overlap,batch', [((50, 70), 24, 8, 1), ((50, 70), 24, 8, 3), ((20, 20), 24, 8, 1),
                                                     ((64, 64), 0, 0, 1)])
def test_progress_callback_counts_every_tile_once(size, tile, overlap, batch):
    img = torch.rand(3, *size)
    calls, seen = [], []

    def fn(x):
        seen.append(x.shape[0])
        return x * 2

    (out, ) = tiled_apply(fn, img, tile, overlap, batch, progress=lambda done, total: calls.append((done, total)))
    torch.testing.assert_close(out, img * 2)
    tiles = sum(seen)  # every tile went through fn exactly once
    assert [total for _, total in calls] == [tiles] * len(calls)
    assert [done for done, _ in calls] == list(np.cumsum(seen))  # once per forward pass, each tile counted once
    assert calls[-1] == (tiles, tiles) and len(calls) == len(seen)
    if tile and max(size) > tile:
        assert tiles > 1


def test_cli_tile_bar_only_for_photos_of_several_passes(ckpts, tmp_path, capsys):
    big = write_images(tmp_path / 'big', 1, height=40, width=56)  # 2 x 3 tiles of 24 px, overlap 8
    small = write_images(tmp_path / 'small', 1, seed=4, height=16, width=16)  # one tile

    def stderr_of(folder, *extra):
        argv = [
            folder, '-o',
            str(tmp_path / 'out'), '--overwrite', '--weights', ckpts[3][0], '--tile', '24', '--tile-overlap', '8',
            '--precision', 'fp32'
        ]
        with pytest.raises(SystemExit) as info:
            denoise_cli.main(argv + list(extra))
        assert info.value.code == 0
        return capsys.readouterr().err

    err = stderr_of(big)
    assert 'tiles:' in err and '/6 ' in err and 'denoise:' in err  # the tile bar beside the per-image bar
    err = stderr_of(small)
    assert 'tiles:' not in err and 'denoise:' in err  # one forward pass: no tile bar
    assert 'tiles:' not in stderr_of(big, '--tile-batch', '6')  # all 6 tiles in one pass
    assert stderr_of(big, '--quiet') == ''  # --quiet hides both


# ---- CUDA ----


@needs_cuda
@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_reduced_precision_on_cuda(ckpts, precision):
    if precision == 'bf16' and not precision_module.bf16_supported('cuda'):
        pytest.skip('this GPU has no native bf16 (compute capability < 8.0)')
    path, reference = ckpts[3]
    net = load_pretrained(path, device='cuda')
    img = noisy_image(3)
    plain = denoise_image(reference, img, tile=0, precision='fp32', channels_last=False)
    out = denoise_image(net, img, tile=0, precision=precision)
    diff = np.abs(out - plain)
    assert diff.max() <= BF16_MAX and diff.mean() <= BF16_MEAN  # fp16 has 11 significant bits: closer still
    assert precision_module.resolve_precision('auto', 'cuda') in ('bf16', 'fp16')


if __name__ == '__main__':  # pragma: no cover
    sys.exit(pytest.main([__file__, '-q']))
