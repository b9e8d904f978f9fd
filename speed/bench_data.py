"""What one training sample of GaussianNoiseDataset costs a loader worker, with and without `cache_images`.

    python speed/bench_data.py [--folder ../shared/data/train/CBSD432] [--gt-size 64] [--samples 400] [--repeats 5]

Draws `samples` random training samples (crop, flips, noise, tensors) in one thread, as a loader worker does, after
one pass that fills the cache, alternating the two modes `repeats` times; prints the median milliseconds per sample as
a Markdown table. Without `--folder` it writes 32 synthetic 481x321 JPEGs (CBSD432's size) to a temporary folder.
"""
import argparse
import os
import random
import statistics
import tempfile
import time


def synthetic_folder(root, count=32):
    import cv2
    import numpy as np

    rng = np.random.RandomState(0)
    for i in range(count):
        img = cv2.GaussianBlur(rng.randint(0, 256, (321, 481, 3)).astype(np.uint8), (0, 0), 1.5)
        cv2.imwrite(os.path.join(root, f'{i:03d}.jpg'), img)
    return root


def time_samples(dataset, order):
    start = time.perf_counter()
    for index in order:
        dataset[index]
    return (time.perf_counter() - start) / len(order)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--folder', help='a folder of clean training images (default: synthetic JPEGs)')
    parser.add_argument('--gt-size', type=int, default=64)
    parser.add_argument('--samples', type=int, default=400)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    for flag in ('gt_size', 'samples', 'repeats'):
        if getattr(args, flag) < 1:
            parser.error(f'--{flag.replace("_", "-")} must be at least 1, got {getattr(args, flag)}')
    if args.folder and not os.path.isdir(args.folder):
        parser.error(f'--folder {args.folder}: no such folder')
    import torch

    import gradnet_arch  # noqa: F401  (registers the plugin)
    from gradnet_arch.data import GaussianNoiseDataset

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        folder = args.folder or synthetic_folder(root)
        datasets = {}
        for cache in (False, True):
            opt = {
                'name': 'bench',
                'type': 'GaussianNoiseDataset',
                'phase': 'train',
                'dataroot_gt': folder,
                'sigma': 25,
                'gt_size': args.gt_size,
                'cache_images': cache
            }
            datasets[cache] = GaussianNoiseDataset(opt)
            for index in range(len(datasets[cache])):  # fills the cache (and the OS file cache for both)
                datasets[cache][index]
        order = [random.Random(i).randrange(len(datasets[False])) for i in range(args.samples)]
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for cache, dataset in datasets.items():
                times[cache].append(time_samples(dataset, order))
        images = len(datasets[False])
    print(f'\nGaussianNoiseDataset, {images} images from {args.folder or "synthetic 481x321 JPEGs"}, '
          f'{args.gt_size}x{args.gt_size} training samples, 1 thread, torch {torch.__version__}, median of '
          f'{args.repeats}\n')
    print('| cache_images | ms per sample | samples/s |\n|---|---:|---:|')
    for cache, values in times.items():
        ms = 1e3 * statistics.median(values)
        print(f'| {str(cache).lower()} | {ms:.2f} | {1e3 / ms:.0f} |')


if __name__ == '__main__':
    main()
