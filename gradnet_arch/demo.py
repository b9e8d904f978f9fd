"""End-to-end demo on an embedded default: both GradNet stages on scikit-image's bundled photos, on the CPU.

    python -m gradnet_arch.demo            (from the repository root; a few minutes on 2 CPU cores)

1. writes 5 training photos and 1 validation photo from `skimage.data` to datasets/skimage_demo/ (no download);
2. trains stage 1 (a small MSKResNet pre-denoiser) with BasicSR's training loop (options/demo/...stage1...yml);
3. trains stage 2 (a small GradNet fed the Sobel gradient of the frozen stage-1 output);
4. prints PSNR/SSIM (BasicSR's metrics: RGB, crop 0, 8-bit) of the noisy input, stage 1 and GradNet on the
   validation photo with reproducible AWGN sigma 25.

The option files train with bf16 autocast and channels_last tensors (float32 on CPUs without native bf16);
`--amp false` trains and evaluates both stages in float32 instead, for comparison.
"""
import argparse
import os

import gradnet_arch  # noqa: F401  (registers the plugin)

TRAIN_PHOTOS = ('astronaut', 'coffee', 'rocket', 'immunohistochemistry', 'hubble_deep_field')
VAL_PHOTOS = ('chelsea', )
STAGES = ('train_demo_stage1_mskresnet.yml', 'train_demo_stage2_gradnet.yml')


def write_photos(root):
    """Write the bundled scikit-image photos as PNG (BGR for OpenCV); returns the train and val folders."""
    import cv2
    from skimage import data as skdata

    folders = {}
    for split, names in (('train', TRAIN_PHOTOS), ('val', VAL_PHOTOS)):
        folder = os.path.join(root, split)
        os.makedirs(folder, exist_ok=True)
        for name in names:
            path = os.path.join(folder, f'{name}.png')
            if not os.path.isfile(path):
                cv2.imwrite(path, cv2.cvtColor(getattr(skdata, name)(), cv2.COLOR_RGB2BGR))
        folders[split] = folder
    return folders


def evaluate(opt_files, amp=None):
    """PSNR/SSIM of the noisy input and of each stage's final network on the validation set, in the precision and
    memory format of the option files (`amp` overrides their `amp`)."""
    import torch
    from basicsr.archs import build_network
    from basicsr.data import build_dataset
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from basicsr.utils import tensor2img

    from gradnet_arch.option_check import read_option_file
    from gradnet_arch.precision import amp_precision, autocast, to_memory_format
    from gradnet_arch.pretrained import load_weights

    rows = []
    val_opt = None
    for opt_file in opt_files:
        opt = read_option_file(opt_file)
        val_opt = dict(opt['datasets']['val'], phase='val')
        net = build_network(opt['network_g'])
        path = os.path.join('experiments', opt['name'], 'models', 'net_g_latest.pth')
        load_weights(net, path, 'params')
        precision, _ = amp_precision(opt.get('amp', False) if amp is None else amp, 'cpu')
        channels_last = opt.get('channels_last', False) and amp is not False
        net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        rows.append((f'{opt["network_g"]["type"]} ({opt["name"]}, {precision})', net.eval(), precision, channels_last))
    dataset = build_dataset(val_opt)
    results = []
    for label, net, precision, channels_last in [('noisy input', None, 'fp32', False)] + rows:
        psnr = ssim = 0.
        for item in dataset:
            with torch.no_grad(), autocast(precision, 'cpu'):
                lq = to_memory_format(item['lq'][None], channels_last)
                out = lq if net is None else net(lq).float()
            img, gt = tensor2img([out]), tensor2img([item['gt'][None]])
            psnr += calculate_psnr(img, gt, crop_border=0)
            ssim += calculate_ssim(img, gt, crop_border=0)
        results.append((label, psnr / len(dataset), ssim / len(dataset)))
    return results


def main(argv=None):
    from gradnet_arch import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt-dir', default=os.path.join('options', 'demo'), help='folder of the two demo YAMLs')
    parser.add_argument('--data-root', default=os.path.join('datasets', 'skimage_demo'))
    parser.add_argument(
        '--amp',
        choices=('bf16', 'false'),
        help='override the option files\' amp (bf16 + channels_last): false trains and evaluates in float32')
    args = parser.parse_args(argv)
    amp = None if args.amp is None else (args.amp if args.amp == 'bf16' else False)
    force = [] if amp is None else ['--force_yml', f'amp={args.amp}', f'channels_last={amp is not False}']
    opt_files = [os.path.join(args.opt_dir, name) for name in STAGES]
    missing = [f for f in opt_files if not os.path.isfile(f)]
    if missing:
        raise SystemExit(f'Demo option files not found: {missing}. Run from the repository root or pass --opt-dir.')
    print(f'[demo] writing scikit-image photos to {args.data_root}', flush=True)
    write_photos(args.data_root)
    for i, opt_file in enumerate(opt_files, 1):
        print(f'[demo] stage {i}/2: gradnet-train -opt {opt_file}', flush=True)
        train.main(['-opt', opt_file] + force)
    results = evaluate(opt_files, amp)
    print('\n[demo] validation photo, AWGN sigma 25 (seeded), BasicSR metrics on RGB, crop 0:')
    print(f'| {"model":<52} | PSNR (dB) | SSIM   |\n|{"-" * 54}|-----------|--------|')
    for label, psnr, ssim in results:
        print(f'| {label:<52} | {psnr:9.2f} | {ssim:.4f} |')


if __name__ == '__main__':
    main()
