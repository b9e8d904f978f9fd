#!/usr/bin/env python
"""Denoisers on real noisy photos without clean references (RNI15): side-by-side pictures and the noise left.

    python scripts/real_noise_report.py --model blind=gradnet_color_blind --model sigma25=gradnet_color_sigma25 \
        --input datasets/RNI15 --out results/rni15_compare --csv results/rni15_compare/noise.csv

For every photo: each model's output (`gradnet_arch.denoise.denoise_image`, the defaults of `gradnet-denoise`) and a
side-by-side picture `<stem>.png` of the noisy centre crop and each model's (`--crop` pixels square, in the order of
--model), written exclusively (existing files are kept unless --overwrite). Without a clean image PSNR is undefined, so
the table gives the noise level each image still carries, estimated as Donoho's median absolute deviation of the
finest diagonal Haar detail (sigma ~ median(|HH|) / 0.6745, on the 0-255 scale, averaged over the channels). It falls
with denoising but also with over-smoothing: read it beside the pictures, not as a quality score. The networks get
the photos as float images and return float outputs, so their estimates are not quantised; an 8-bit input's own
estimate moves in steps of 0.74 (half a grey level / 0.6745).
"""
import argparse
import csv
import io
import numpy as np
import os
import sys

from gradnet_arch.errors import UserError


def estimate_sigma(img):
    """Noise sigma (0-255 scale) of an image by the MAD of its finest diagonal Haar coefficients.

    Args:
        img (ndarray): (H, W) or (H, W, C), uint8 / uint16 / float in [0, 1].

    Returns:
        float: The estimate, the mean over channels.
    """
    arr = np.asarray(img)
    scale = 255. / {np.dtype(np.uint8): 255., np.dtype(np.uint16): 65535.}.get(arr.dtype, 1.)
    arr = arr.astype(np.float64) * scale
    arr = arr[..., None] if arr.ndim == 2 else arr
    h, w = arr.shape[0] // 2 * 2, arr.shape[1] // 2 * 2
    a, b = arr[0:h:2, 0:w:2], arr[0:h:2, 1:w:2]
    c, d = arr[1:h:2, 0:w:2], arr[1:h:2, 1:w:2]
    hh = (a - b - c + d) / 2.  # orthonormal 2-D Haar: white noise of sigma s keeps sigma s here
    return float(np.mean(np.median(np.abs(hh), axis=(0, 1)) / 0.6745))


def centre_crop(img, size):
    h, w = img.shape[:2]
    size_h, size_w = min(size, h), min(size, w)
    top, left = (h - size_h) // 2, (w - size_w) // 2
    return img[top:top + size_h, left:left + size_w]


def parse_models(specs):
    models = []
    for spec in specs:
        label, sep, source = spec.partition('=')
        if not sep or not label or not source:
            raise UserError(f'--model {spec!r}: expected LABEL=NAME_OR_CHECKPOINT, e.g. blind=gradnet_color_blind.')
        models.append((label, source))
    return models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--model',
        action='append',
        required=True,
        metavar='LABEL=SPEC',
        help='a shipped model name or a checkpoint (repeatable)')
    parser.add_argument('--input', required=True, help='folder of noisy photos')
    parser.add_argument('--out', required=True, help='folder for the side-by-side pictures')
    parser.add_argument('--crop', type=int, default=256, help='side of the centre crop in the pictures (default 256)')
    parser.add_argument('--csv', help='also write the table as CSV')
    parser.add_argument('--overwrite', action='store_true', help='replace existing pictures / CSV')
    args = parser.parse_args(argv)
    try:
        run(args)
    except UserError as error:
        sys.exit(f'error: {error}')


def run(args):
    from gradnet_arch.atomic_io import atomic_open
    from gradnet_arch.common.images import list_images
    from gradnet_arch.denoise import denoise_image, read_image, write_image
    from gradnet_arch.denoise.image_io import side_by_side
    from gradnet_arch.pretrained import load_pretrained

    if args.crop < 16:
        raise UserError(f'--crop must be at least 16 pixels, got {args.crop}.')
    models = parse_models(args.model)
    if not os.path.isdir(args.input):
        raise UserError(f'--input {args.input} is not a folder of photos.')
    names = list_images(args.input)
    if not names:
        raise UserError(f'--input {args.input} holds no images.')
    nets = [(label, load_pretrained(source)) for label, source in models]
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name in names:
        noisy = read_image(os.path.join(args.input, name))
        if noisy.dtype != np.float32:  # float outputs: an 8-bit result would quantise the estimate to steps of 0.74
            noisy = noisy.astype(np.float32) / np.iinfo(noisy.dtype).max
        outputs = [denoise_image(net, noisy, bgr=True) for _, net in nets]  # read_image gives OpenCV's BGR
        rows.append([name, estimate_sigma(noisy)] + [estimate_sigma(out) for out in outputs])
        panels = [centre_crop(img, args.crop) for img in [noisy] + outputs]
        picture = side_by_side(panels)
        write_image(os.path.join(args.out, os.path.splitext(name)[0] + '.png'), picture, overwrite=args.overwrite)
        print(
            f'{name}: ' + ', '.join(f'{label} {value:.2f}'
                                    for label, value in zip(['noisy'] + [m[0] for m in models], rows[-1][1:])),
            flush=True)
    header = ['image', 'noisy'] + [label for label, _ in models]
    medians = ['median'] + [float(np.median([row[i] for row in rows])) for i in range(1, len(header))]
    print('\n| ' + ' | '.join(header) + ' |\n|' + ' --- |' + ' ---: |' * (len(header) - 1))
    for row in rows + [medians]:
        print('| ' + ' | '.join([row[0]] + [f'{v:.2f}' for v in row[1:]]) + ' |')
    if args.csv:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(header)
        writer.writerows([row[0]] + [f'{v:.4f}' for v in row[1:]] for row in rows + [medians])
        with atomic_open(args.csv, overwrite=args.overwrite) as f:
            f.write(text.getvalue().encode('utf-8'))


if __name__ == '__main__':
    main()
