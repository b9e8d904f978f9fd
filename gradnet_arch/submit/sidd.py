"""SIDD sRGB benchmark: BenchmarkNoisyBlocksSrgb.mat -> SubmitSrgb.mat, the file the SIDD site takes.

SubmitSrgb.mat (MATLAB v5, compressed) holds:

- `DenoisedBlocksSrgb`: a 40 x 32 cell (images x blocks), each a uint8 256 x 256 x 3 RGB block; cell `{ii, bb}`
  is the result for noisy block `(ii, bb, :, :, :)` of the benchmark file.
- `TimeMPSrgb`: seconds per megapixel, measured on this run (network, host<->device copies, quantisation excluded).
- `OptionalData`: a struct with MethodName, Authors, PaperTitle and Venue (strings).

Two ways to fill it: `submit_sidd` denoises every block with a model (the whole 256 x 256 block at once), and
`bundle_sidd_folder` collects results already saved as PNGs named by gradnet_arch.prep's block keys,
`{ii:02d}_{bb:02d}.png` (1-based, as `prep sidd-benchmark` names the noisy inputs), optionally followed by the
`_<suffix>` that BasicSR's test pipeline appends (`01_01_GradNet_SIDD.png`). Other grids and block sizes are
accepted (small test files), with a warning: the site takes 40 x 32 blocks of 256 x 256 only.
"""
import numpy as np
import os
import warnings
from tqdm import tqdm

from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.prep.sidd import BENCHMARK_NOISY_VARIABLE, block_key, load_blocks
from gradnet_arch.submit.files import (SubmitReport, atomic_savemat, check_keys, check_output_file, find_keyed_pngs,
                                       full_grid, read_result_png)
from gradnet_arch.submit.inference import Denoiser, check_rgb_model, load_net, method_defaults

SUBMIT_NAME = 'SubmitSrgb.mat'
RELEASE_SHAPE = (40, 32, 256, 256, 3)
KEY_PATTERN = r'(\d{2})_(\d{2})'
METHOD_FIELDS = ('MethodName', 'Authors', 'PaperTitle', 'Venue')


def output_path(path):
    """`path`, or `path/SubmitSrgb.mat` when `path` is an existing folder."""
    return os.path.join(path, SUBMIT_NAME) if os.path.isdir(path) else path


def _warn_shape(shape, source):
    if tuple(shape) != RELEASE_SHAPE:
        warnings.warn(
            f'{source}: the blocks form an array of shape {tuple(shape)}, not the release\'s {RELEASE_SHAPE}; '
            f'the SIDD site accepts only the full benchmark.')


def optional_data(method=None, net=None):
    """The OptionalData struct: `method` (dict of METHOD_FIELDS, None values = default) over method_defaults(net)."""
    data = method_defaults(net)
    for key, value in (method or {}).items():
        if key not in METHOD_FIELDS:
            raise OptionError(f'unknown OptionalData field {key!r}; SIDD takes {", ".join(METHOD_FIELDS)}.')
        if value is not None:
            data[key] = str(value)
    return data


def write_sidd_submission(path, blocks, time_mp, method_data, overwrite=False):
    """Write SubmitSrgb.mat (atomically).

    Args:
        path (str): The .mat file to write.
        blocks (np.ndarray): (images, blocks) object array of uint8 H x W x 3 RGB arrays.
        time_mp (float): Seconds per megapixel.
        method_data (dict): OptionalData fields (strings).
        overwrite (bool): Replace an existing file.
    """
    atomic_savemat(
        path, {
            'DenoisedBlocksSrgb': blocks,
            'TimeMPSrgb': np.float64(time_mp),
            'OptionalData': {
                key: str(method_data[key])
                for key in METHOD_FIELDS
            }
        },
        overwrite=overwrite)


def submit_sidd(model,
                noisy_mat,
                out_path,
                device='cpu',
                network_opt=None,
                param_key=None,
                method=None,
                overwrite=False,
                quiet=False,
                variable=BENCHMARK_NOISY_VARIABLE,
                precision='auto'):
    """Denoise every SIDD benchmark block with `model` and write SubmitSrgb.mat.

    Args:
        model (str | nn.Module): A model SPEC for gradnet_arch.pretrained (shipped name, checkpoint, option YAML) or
            a network already loaded (eval mode, on `device`).
        noisy_mat (str): BenchmarkNoisyBlocksSrgb.mat (MATLAB v5 or v7.3).
        out_path (str): SubmitSrgb.mat to write (a folder: SubmitSrgb.mat inside it).
        device (str | torch.device): Where the model runs ('auto': cuda if available).
        network_opt (str | dict | None): Network options for a checkpoint without embedded ones.
        param_key (str | None): State-dict key of the checkpoint.
        method (dict | None): OptionalData fields; missing ones get defaults.
        overwrite (bool): Replace an existing output file.
        quiet (bool): No progress bar.
        variable (str): Variable holding the noisy blocks.
        precision (str): 'auto', 'fp32', 'bf16' or 'fp16' (see `inference.Denoiser`). Default: 'auto'.

    Returns:
        SubmitReport: What was written.
    """
    out_path = output_path(out_path)
    check_output_file(out_path, overwrite)  # before the slow part
    noisy = load_blocks(noisy_mat, variable)
    _warn_shape(noisy.shape, noisy_mat)
    net, device = load_net(model, device, network_opt, param_key)
    check_rgb_model(net, 'SIDD')
    method_data = optional_data(method, net)
    scale = float(np.iinfo(noisy.dtype).max)
    denoise = Denoiser(net, device, precision)
    images, count = noisy.shape[:2]
    results = np.empty((images, count), dtype=object)
    with tqdm(total=images * count, unit='block', desc='SIDD blocks', disable=quiet) as bar:
        for image in range(images):
            for block in range(count):
                out = denoise(noisy[image, block].astype(np.float32) / np.float32(scale))
                results[image, block] = np.round(out * 255.).astype(np.uint8)  # as BasicSR's tensor2img
                bar.update()
    write_sidd_submission(out_path, results, denoise.seconds_per_megapixel, method_data, overwrite)
    return SubmitReport('sidd', [out_path], images * count, time_mp=denoise.seconds_per_megapixel, device=str(device))


def bundle_sidd_folder(folder,
                       out_path,
                       noisy_mat=None,
                       time_mp=None,
                       suffix=None,
                       method=None,
                       overwrite=False,
                       quiet=False,
                       variable=BENCHMARK_NOISY_VARIABLE):
    """Bundle already-denoised blocks saved as PNGs (`{ii:02d}_{bb:02d}[_suffix].png`) into SubmitSrgb.mat.

    Args:
        folder (str): The PNG folder (8- or 16-bit RGB PNGs; 16-bit ones are rounded to 8 bit).
        out_path (str): SubmitSrgb.mat to write (a folder: SubmitSrgb.mat inside it).
        noisy_mat (str | None): BenchmarkNoisyBlocksSrgb.mat, to check that every block is there with the right
            size. None: the grid is taken from the largest keys and must be complete.
        time_mp (float | None): TimeMPSrgb in seconds per megapixel, as measured when the PNGs were made. None
            writes 0 with a warning.
        suffix (str | None): Only PNGs with this suffix after the key ('' = none); None: any, one per key.
        method (dict | None): OptionalData fields; missing ones get GradNet's.
        overwrite (bool): Replace an existing output file.
        quiet (bool): No progress bar.
        variable (str): Variable holding the noisy blocks in `noisy_mat`.

    Returns:
        SubmitReport: What was written.
    """
    out_path = output_path(out_path)
    check_output_file(out_path, overwrite)
    if time_mp is not None and not (np.isfinite(time_mp) and time_mp >= 0):
        raise OptionError(f'--time-mp must be a number of seconds >= 0, got {time_mp!r}.')
    method_data = optional_data(method)
    found = find_keyed_pngs(folder, KEY_PATTERN, '01_01.png', suffix)
    if noisy_mat is not None:
        noisy = load_blocks(noisy_mat, variable)
        images, count = noisy.shape[:2]
        expected_shape = noisy.shape[2:]
        check_keys(found, [(i, b) for i in range(1, images + 1) for b in range(1, count + 1)], folder, _name)
    else:
        check_keys(found, full_grid(found), folder, _name)
        images, count = max(i for i, _ in found), max(b for _, b in found)
        expected_shape = None
    results = np.empty((images, count), dtype=object)
    for (image, block), path in tqdm(sorted(found.items()), unit='block', desc='SIDD blocks', disable=quiet):
        img = read_result_png(path)
        if expected_shape is None:
            expected_shape = img.shape
        if img.shape != tuple(expected_shape):
            raise DataError(f'{path} is {img.shape[0]}x{img.shape[1]} but the blocks are '
                            f'{expected_shape[0]}x{expected_shape[1]}; every result must keep its block\'s size.')
        if img.dtype == np.uint16:
            img = np.round(img / 257.).astype(np.uint8)  # 65535 -> 255 exactly
        results[image - 1, block - 1] = img
    _warn_shape((images, count) + tuple(expected_shape), folder)
    if time_mp is None:
        warnings.warn('TimeMPSrgb is not known when bundling a folder; writing 0. Pass --time-mp with the seconds per '
                      'megapixel measured when the results were made.')
        time_mp = 0.0
    write_sidd_submission(out_path, results, time_mp, method_data, overwrite)
    return SubmitReport('sidd', [out_path], images * count, time_mp=time_mp)


def _name(key):
    return block_key(key[0] - 1, key[1] - 1)
