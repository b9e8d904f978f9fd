#!/usr/bin/env python
"""Model-card tables from `gradnet-benchmark --json` files: methods side by side, and paired per-image differences.

    python scripts/card_tables.py eval/classical_cbsd68_s25.json eval/gradnet_color_sigma25_cbsd68.json \
        --diff GradNet:bm3d --diff GradNet:stage1

The files must hold the same images with the same noise (same set names, noise levels, noise seed and the SHA-256
of every noisy input): a table never mixes noisy images that differ. For each (set, noise) it prints a markdown table
of every method (PSNR, SSIM, texture and smooth PSNR, the benchmark's means over images) and, for each --diff A:B,
the mean per-image PSNR difference A - B with its 95% t-interval over images (scipy's t quantile) and how many
images A wins.
"""
import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # ablation_report.py sits beside it
from ablation_report import mean_spread  # noqa: E402

METRICS = ('psnr', 'ssim', 'psnr_texture', 'psnr_smooth')


def load(paths):
    """(summary rows, {(model, set, noise): {image: per-image row}}) of several benchmark JSON files, checked to
    describe identical noisy images."""
    rows, per_image, inputs, seeds = [], {}, {}, set()
    for path in paths:
        try:
            with open(path, encoding='utf-8') as f:
                doc = json.load(f)
        except (OSError, ValueError) as error:
            sys.exit(f'error: cannot read {path} ({error}); give files written by gradnet-benchmark --json.')
        seeds.add(doc.get('settings', {}).get('noise_seed'))
        rows += doc['results']
        for row in doc['per_image']:
            key = (row['set'], str(row['noise']), row['image'])
            digest = row.get('input_sha256')  # of the noisy input the method saw
            if inputs.setdefault(key, digest) != digest:
                sys.exit(f'error: {path}: image {row["image"]} of {row["set"]} is not the noisy input of an earlier '
                         f'file (other noise or another image); compare runs on identical noisy images.')
            per_image.setdefault((row['model'], row['set'], str(row['noise'])), {})[row['image']] = row
    if len(seeds) > 1:
        sys.exit(f'error: the files used different noise seeds ({sorted(seeds, key=str)}): their noisy images differ.')
    return rows, per_image


def fmt(value, digits):
    return '--' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.{digits}f}'


def method_table(rows, set_name, noise):
    lines = [
        '| method | images | PSNR (dB) | SSIM | texture PSNR | smooth PSNR |',
        '| --- | ---: | ---: | ---: | ---: | ---: |'
    ]
    for row in rows:
        if row['set'] == set_name and str(row['noise']) == noise:
            lines.append(f'| {row["model"]} | {row["images"]} | {fmt(row["psnr"], 2)} | {fmt(row["ssim"], 4)} | '
                         f'{fmt(row["psnr_texture"], 2)} | {fmt(row["psnr_smooth"], 2)} |')
    return lines


def paired(per_image, a, b, set_name, noise):
    """(mean A - B, 95% half-width, A's wins, images) of the per-image PSNRs; None when either is missing."""
    left, right = per_image.get((a, set_name, noise)), per_image.get((b, set_name, noise))
    if not left or not right:
        return None
    images = sorted(set(left) & set(right))
    diffs = [left[i]['psnr'] - right[i]['psnr'] for i in images]
    mean, _, half = mean_spread(diffs)  # the ablation report's t-interval, not a second one
    return mean, half, sum(d > 0 for d in diffs), len(diffs)


def diff_table(per_image, pairs, set_name, noise):
    lines = ['| difference | mean PSNR difference (dB) | 95% interval | images A wins |', '| --- | ---: | --- | ---: |']
    for a, b in pairs:
        result = paired(per_image, a, b, set_name, noise)
        if result is None:
            continue
        mean, half, wins, n = result
        lines.append(f'| {a} - {b} | {mean:+.3f} | [{mean - half:+.3f}, {mean + half:+.3f}] | {wins} / {n} |')
    return lines if len(lines) > 2 else []


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('json', nargs='+', help='gradnet-benchmark --json files')
    parser.add_argument('--diff', action='append', default=[], metavar='A:B', help='paired difference A - B')
    args = parser.parse_args(argv)
    pairs = []
    for spec in args.diff:
        a, sep, b = spec.partition(':')
        if not sep or not a or not b:
            sys.exit(f'error: --diff {spec!r}: expected A:B, two model labels of the files.')
        pairs.append((a, b))
    rows, per_image = load(args.json)
    seen = []
    for row in rows:
        key = (row['set'], str(row['noise']))
        if key not in seen:
            seen.append(key)
    for set_name, noise in seen:
        print(f'\n{set_name}, noise {noise}\n')
        print('\n'.join(method_table(rows, set_name, noise)))
        diffs = diff_table(per_image, pairs, set_name, noise)
        if diffs:
            print('\n' + '\n'.join(diffs))


if __name__ == '__main__':
    main()
