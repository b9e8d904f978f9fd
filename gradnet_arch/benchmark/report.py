"""Benchmark output: a Markdown table, CSV, JSON, and a PSNR-vs-time plot drawn with OpenCV (no matplotlib).

The report files are written whole or not at all (atomic_io); a destination that cannot be written is refused
before the benchmark runs, and a write that fails later (a full disk) raises OutputError: one line, exit status 2.
"""
import csv
import cv2
import io
import json
import math
import numpy as np
import os

from gradnet_arch.atomic_io import atomic_open, check_writable_folder
from gradnet_arch.errors import OptionError

PLOT_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')

COLUMNS = ('model', 'kind', 'set', 'noise', 'images', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth', 'texture_images',
           'smooth_images', 'eps', 'params', 'flops_per_pixel', 'sec_per_mp', 'device', 'precision', 'memory_format')
PER_IMAGE_COLUMNS = ('model', 'set', 'noise', 'image', 'height', 'width', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth',
                     'seconds', 'input_sha256')
# BGR colours, one per model (cycled)
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))


def _missing(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _human(value, unit=''):
    """1234567 -> '1.23 M' (None -> 'n/a')."""
    if _missing(value):
        return 'n/a'
    for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
        if abs(value) >= factor:
            return f'{value / factor:.3g} {prefix}{unit}'
    return f'{value:.3g} {unit}'.rstrip()


def _fixed(value, digits):
    if _missing(value):
        return 'n/a'
    return 'inf' if math.isinf(value) else f'{value:.{digits}f}'


def _precision(row):
    """'bf16, channels_last' for a network's row; 'n/a' for a classical method (float64 numpy)."""
    parts = [row.get(key) for key in ('precision', 'memory_format') if row.get(key)]
    return ', '.join(parts) if parts else 'n/a'


def markdown_table(rows):
    """The summary rows as a GitHub Markdown table."""
    header = ('Model', 'Set', 'Noise', 'Images', 'PSNR', 'SSIM', 'PSNR texture', 'PSNR smooth', 'Params', 'FLOPs/px',
              'Time/MP', 'Device', 'Precision')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * 3 + ['---:'] * 8 + ['---'] * 2) + '|']
    for row in rows:
        noise = row['noise'] if row['noise'] == 'real' else f'sigma {row["noise"]}'
        cells = (row['model'], row['set'], noise, str(row['images']), _fixed(row['psnr'], 2), _fixed(row['ssim'], 4),
                 _fixed(row['psnr_texture'], 2), _fixed(row['psnr_smooth'],
                                                        2), f'{row["params"]:,d}', _human(row['flops_per_pixel']),
                 _human(row['sec_per_mp'], 's') if row['sec_per_mp'] else 'n/a', row['device'], _precision(row))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def _csv_value(value):
    return '' if value is None else value


def _write_text(path, text, overwrite=True):
    """Write `text` (UTF-8) whole or not at all; without `overwrite` an existing file is never replaced."""
    with atomic_open(path, overwrite=overwrite) as fout:
        fout.write(text.encode('utf-8'))


def write_csv(path, rows, columns=COLUMNS, overwrite=True):
    """One line per row; empty cells for values that do not apply (FLOPs of a classical method)."""
    text = io.StringIO(newline='')
    writer = csv.DictWriter(text, fieldnames=list(columns), extrasaction='ignore')
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    _write_text(path, text.getvalue(), overwrite)


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ('inf' if value > 0 else '-inf')
    return value


def write_json(path, rows, per_image, settings, overwrite=True):
    """Summary rows, per-image values (with the SHA-256 of each input) and the run's settings."""
    doc = {
        'settings': settings,
        'results': [{
            key: _json_value(row.get(key))
            for key in COLUMNS
        } for row in rows],
        'per_image': [{
            key: _json_value(row.get(key))
            for key in PER_IMAGE_COLUMNS
        } for row in per_image],
    }
    _write_text(path, json.dumps(doc, indent=2) + '\n', overwrite)


def _nice_step(span, target=6):
    raw = span / target
    magnitude = 10**math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def plot_points(rows):
    """(label, x = seconds per megapixel, y = PSNR, colour) of the rows that can be plotted."""
    models = []
    for row in rows:
        if row['model'] not in models:
            models.append(row['model'])
    points = []
    for row in rows:
        x, y = row.get('sec_per_mp'), row.get('psnr')
        if _missing(x) or _missing(y) or x <= 0 or not math.isfinite(y):
            continue
        noise = 'real' if row['noise'] == 'real' else f's{row["noise"]}'
        points.append(
            (f'{row["model"]} ({row["set"]} {noise})', x, y, PALETTE[models.index(row['model']) % len(PALETTE)]))
    return points


def _overlaps(box, boxes):
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def _label_position(label, px, py, placed, font, width, height):
    """Bottom-left corner for a point's label: the first of four spots around the point that stays inside the
    picture and clear of the labels already placed (else the first spot inside). Appends the chosen box to `placed`.
    """
    (tw, th), _ = cv2.getTextSize(label, font, 0.45, 1)
    spots = [(px + 9, py - 6), (px + 9, py + th + 6), (px - 9 - tw, py - 6), (px - 9 - tw, py + th + 6)]
    boxes = [(x, y - th, x + tw, y + 3) for x, y in spots]
    inside = [i for i, b in enumerate(boxes) if b[0] >= 2 and b[2] <= width - 2 and b[1] >= 2 and b[3] <= height - 2]
    free = [i for i in inside if not _overlaps(boxes[i], placed)]
    choice = (free or inside or [0])[0]
    placed.append(boxes[choice])
    return spots[choice]


def draw_plot(rows, title='PSNR vs time per megapixel', width=1000, height=650):
    """PSNR (y) against seconds per megapixel (x, log scale), one labelled point per model, set and noise level.

    Returns:
        ndarray: The BGR image (uint8).
    """
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 80, 50, 60, 60
    font = cv2.FONT_HERSHEY_SIMPLEX
    (title_width, _), _ = cv2.getTextSize(title, font, 0.6, 1)
    cv2.putText(img, title, (max(5, (width - title_width) // 2), 25), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    points = plot_points(rows)
    if not points:
        cv2.putText(img, 'nothing to plot (no timed result with a finite PSNR)', (left, height // 2), font, 0.6,
                    (0, 0, 255), 1, cv2.LINE_AA)
        return img
    log_x = [math.log10(x) for _, x, _, _ in points]
    ys = [y for _, _, y, _ in points]
    x_lo, x_hi = math.floor(min(log_x)), math.ceil(max(log_x))
    if x_hi - x_lo < 1:
        x_hi = x_lo + 1
    y_step = _nice_step(max(max(ys) - min(ys), 0.5))
    y_lo = math.floor(min(ys) / y_step) * y_step - y_step / 2
    y_hi = math.ceil(max(ys) / y_step) * y_step + y_step / 2
    x0, x1, y0, y1 = left, width - right, height - bottom, top

    def to_px(log_value, y):
        return (int(round(x0 + (log_value - x_lo) / (x_hi - x_lo) * (x1 - x0))),
                int(round(y0 - (y - y_lo) / (y_hi - y_lo) * (y0 - y1))))

    grid, axis = (225, 225, 225), (0, 0, 0)
    for decade in range(x_lo, x_hi + 1):
        px, _ = to_px(decade, y_lo)
        cv2.line(img, (px, y0), (px, y1), grid, 1)
        for minor in range(2, 10):  # log-scale minor ticks
            if decade < x_hi:
                mx, _ = to_px(decade + math.log10(minor), y_lo)
                cv2.line(img, (mx, y0), (mx, y0 - 5), axis, 1)
        text = f'{10.0**decade:g}'
        cv2.putText(img, text, (px - 4 * len(text), y0 + 20), font, 0.45, axis, 1, cv2.LINE_AA)
    tick = math.ceil(y_lo / y_step) * y_step
    while tick <= y_hi:
        _, py = to_px(x_lo, tick)
        cv2.line(img, (x0, py), (x1, py), grid, 1)
        cv2.putText(img, f'{tick:g}', (x0 - 55, py + 5), font, 0.45, axis, 1, cv2.LINE_AA)
        tick += y_step
    cv2.rectangle(img, (x0, y1), (x1, y0), axis, 1)
    cv2.putText(img, 'seconds per megapixel (log scale)', ((x0 + x1) // 2 - 140, height - 15), font, 0.5, axis, 1,
                cv2.LINE_AA)
    cv2.putText(img, 'PSNR (dB)', (10, y1 - 12), font, 0.5, axis, 1, cv2.LINE_AA)
    placed = []
    for label, x, y, colour in points:
        px, py = to_px(math.log10(x), y)
        cv2.circle(img, (px, py), 6, colour, -1, cv2.LINE_AA)
        tx, ty = _label_position(label, px, py, placed, font, width, height)
        cv2.putText(img, label, (tx, ty), font, 0.45, colour, 1, cv2.LINE_AA)
    return img


def write_plot(path, rows, device='', overwrite=True):
    """Draw the plot and write it as an image (PNG for a .png path)."""
    _check_plot_name(path)
    title = 'PSNR vs time per megapixel' + (f' ({device})' if device else '')
    ok, buf = cv2.imencode(os.path.splitext(path)[1].lower(), draw_plot(rows, title))
    if not ok:
        raise OptionError(f'Cannot encode the plot as {path}; use a .png file name.')
    with atomic_open(path, overwrite=overwrite) as fout:
        fout.write(buf.tobytes())


def _check_plot_name(path):
    if os.path.splitext(path)[1].lower() not in PLOT_EXTENSIONS:
        raise OptionError(f'--plot {path}: the plot is an image; give a file name ending in .png (or '
                          f'{", ".join(PLOT_EXTENSIONS[1:])}).')


def check_new_outputs(paths, overwrite=False, plot=None):
    """Refuse (before any work) output files that could not be written: existing ones unless `overwrite`, folders,
    files in folders that do not exist or cannot be written, and a `plot` that is not an image file name."""
    if plot:
        _check_plot_name(plot)
    for path in paths:
        if not path:
            continue
        if os.path.isdir(path):
            raise OptionError(f'Output {path} is a folder; give a file name.')
        if os.path.lexists(path) and not overwrite:
            raise OptionError(f'Output {path} exists; pass --overwrite to replace it.')
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise OptionError(f'Output {path}: {folder} is a file, not a folder; give a path in a folder.')
        if not os.path.isdir(folder):
            raise OptionError(f'Output folder {folder} does not exist; create it first.')
        check_writable_folder(folder)
