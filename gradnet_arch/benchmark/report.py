"""Benchmark output: a Markdown table, CSV, JSON, and a PSNR-vs-time plot (matplotlib, the optional `plot` extra).

The report files are written whole or not at all (atomic_io); a destination that cannot be written, or a --plot
without matplotlib installed, is refused before the benchmark runs, and a write that fails later (a full disk) raises
OutputError: one line, exit status 2.
"""
import csv
import io
import json
import math
import os

from gradnet_arch.atomic_io import atomic_open, check_writable_folder
from gradnet_arch.benchmark.classical import MissingDependencyError
from gradnet_arch.errors import OptionError

# file extension -> matplotlib's format name (JPEG and TIFF go through Pillow, a dependency of matplotlib)
PLOT_FORMATS = {
    '.png': 'png',
    '.jpg': 'jpeg',
    '.jpeg': 'jpeg',
    '.tif': 'tiff',
    '.tiff': 'tiff',
    '.pdf': 'pdf',
    '.svg': 'svg'
}
PLOT_INSTALL_HINT = 'pip install gradnet-basicsr[plot]'
PLOT_DPI = 120
# one marker per set and noise level (cycled); models take matplotlib's colour cycle 'C0'...'C9'
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*', '<', '>')

COLUMNS = ('model', 'kind', 'set', 'noise', 'images', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth', 'texture_images',
           'smooth_images', 'eps', 'params', 'flops_per_pixel', 'sec_per_mp', 'device', 'precision', 'memory_format')
PER_IMAGE_COLUMNS = ('model', 'set', 'noise', 'image', 'height', 'width', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth',
                     'seconds', 'input_sha256')


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


def plot_points(rows):
    """(model, set and noise, x = seconds per megapixel, y = PSNR) of the rows that can be plotted, in row order."""
    points = []
    for row in rows:
        x, y = row.get('sec_per_mp'), row.get('psnr')
        if _missing(x) or _missing(y) or x <= 0 or not math.isfinite(y):
            continue
        noise = 'real noise' if row['noise'] == 'real' else f'sigma {row["noise"]}'
        points.append((row['model'], f'{row["set"]}, {noise}', x, y))
    return points


def _import_matplotlib():
    """matplotlib's Figure and Line2D, or a MissingDependencyError saying how to install the `plot` extra."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as error:
        raise MissingDependencyError(
            f'--plot needs matplotlib, which is not installed; install it with '
            f'`{PLOT_INSTALL_HINT}` (or `pip install matplotlib`), or run without --plot.') from error
    return Figure, Line2D


def draw_plot(rows, title='PSNR vs time per megapixel'):
    """PSNR (y) against seconds per megapixel (x), one labelled point per model, set and noise level.

    One colour per model, one marker per set and noise level, a legend for both. The time axis is logarithmic when
    the times span a factor of 10 or more (a network on a GPU next to BM3D), linear otherwise.

    Returns:
        matplotlib.figure.Figure: The figure (not attached to pyplot: no global state, no display needed).
    """
    Figure, Line2D = _import_matplotlib()
    fig = Figure(figsize=(9, 5.5), dpi=PLOT_DPI, layout='constrained')
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel('time per megapixel (s)')
    ax.set_ylabel('PSNR (dB)')
    points = plot_points(rows)
    if not points:
        message = 'nothing to plot (no timed result with a finite PSNR)'
        ax.text(0.5, 0.5, message, ha='center', va='center', transform=ax.transAxes)
        return fig
    models = list(dict.fromkeys(model for model, _, _, _ in points))
    cases = list(dict.fromkeys(case for _, case, _, _ in points))
    colours = {model: f'C{i % 10}' for i, model in enumerate(models)}
    markers = {case: MARKERS[i % len(MARKERS)] for i, case in enumerate(cases)}
    for model, case, x, y in points:
        ax.plot(x, y, linestyle='none', marker=markers[case], markersize=8, color=colours[model])
        ax.annotate(
            f'{model} {y:.2f}', (x, y), xytext=(6, 5), textcoords='offset points', fontsize=8, color=colours[model])
    xs = [x for _, _, x, _ in points]
    if max(xs) / min(xs) >= 10:
        ax.set_xscale('log')
    ax.margins(x=0.15, y=0.15)  # room for the labels beside the outermost points
    ax.grid(True, which='major', color='0.9')
    handles = [Line2D([], [], linestyle='none', marker='o', color=colours[m], label=m) for m in models]
    handles += [Line2D([], [], linestyle='none', marker=markers[c], color='0.3', label=c) for c in cases]
    fig.legend(handles=handles, loc='outside right upper', fontsize=8, title='model / set, noise', title_fontsize=8)
    return fig


def write_plot(path, rows, device='', overwrite=True):
    """Draw the plot and write it (PNG for a .png path, else the format its extension names), whole or not at all."""
    _check_plot_name(path)
    title = 'PSNR vs time per megapixel' + (f' ({device})' if device else '')
    fig = draw_plot(rows, title)
    buf = io.BytesIO()
    fig.savefig(buf, format=PLOT_FORMATS[os.path.splitext(path)[1].lower()])
    with atomic_open(path, overwrite=overwrite) as fout:
        fout.write(buf.getvalue())


def _check_plot_name(path):
    if os.path.splitext(path)[1].lower() not in PLOT_FORMATS:
        raise OptionError(f'--plot {path}: the plot is an image; give a file name ending in .png (or '
                          f'{", ".join(list(PLOT_FORMATS)[1:])}).')


def check_new_outputs(paths, overwrite=False, plot=None):
    """Refuse (before any work) output files that could not be written: existing ones unless `overwrite`, folders,
    files in folders that do not exist or cannot be written, and a `plot` that is not an image file name or that
    matplotlib, not installed, cannot draw."""
    if plot:
        _check_plot_name(plot)
        _import_matplotlib()
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
