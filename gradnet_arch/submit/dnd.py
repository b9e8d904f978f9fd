"""DND sRGB benchmark: images_srgb/NNNN.mat + info.mat -> one NNNN.mat per image, the bundle the DND site takes.

Each output `OUTDIR/0001.mat` ... (MATLAB v5, compressed) holds:

- `Idenoised`: a 1 x 20 cell, element k the denoised crop of bounding box k of that image, float32 H x W x 3 RGB
  in [0, 1];
- `israw`: false (these are sRGB results);
- `eval_version`: '1.0'.

Upload the folder's .mat files (zipped) to the DND site. Inputs are read with gradnet_arch.prep.dnd's readers
(info.mat's boxes, MATLAB v7.3 images, boxes 1-based and inclusive, rows first); see that module for the layout.

`submit_dnd` denoises each crop alone (the usual convention: the network sees the 512 x 512 crop, not the whole
image), after clipping the noisy values to [0, 1] as the prep module does. `bundle_dnd_folder` collects results
already saved as PNGs named by prep's crop keys, `{image:04d}_{box:02d}.png`, optionally followed by the `_<suffix>`
BasicSR's test pipeline appends; 8-bit PNGs become x / 255, 16-bit ones x / 65535.
"""
import numpy as np
import os
import warnings
from tqdm import tqdm

from gradnet_arch.errors import DataError
from gradnet_arch.prep.dnd import dnd_key, image_paths, read_crops
from gradnet_arch.submit.files import (SubmitReport, check_keys, find_keyed_pngs, full_grid, read_result_png,
                                       staged_folder)
from gradnet_arch.submit.inference import Denoiser, check_rgb_model, load_net

RELEASE_COUNTS = (50, 20)  # images, boxes per image
BUNDLE_PATTERN = r'^\d{4}\.mat$'
KEY_PATTERN = r'(\d{4})_(\d{2})'


def bundle_name(number):
    """File name of image `number`'s bundle (1-based): 0001.mat."""
    return f'{number:04d}.mat'


def _warn_counts(boxes, source):
    counts = {len(b) for b in boxes}
    if len(boxes) != RELEASE_COUNTS[0] or counts != {RELEASE_COUNTS[1]}:
        warnings.warn(f'{source}: {len(boxes)} image(s) with {"/".join(map(str, sorted(counts)))} box(es) each, not '
                      f'the release\'s {RELEASE_COUNTS[0]} x {RELEASE_COUNTS[1]}; the DND site accepts only the full '
                      f'benchmark.')


def box_shape(box):
    """(height, width) of a 1-based inclusive box [first-axis from, second-axis from, first-axis to, ...]."""
    r1, c1, r2, c2 = box
    return r2 - r1 + 1, c2 - c1 + 1


def read_noisy_crops(path, number, boxes):
    """The crops of one DND image as float32 H x W x 3 RGB arrays clipped to [0, 1] (prep.dnd.read_crops).

    Args:
        path (str): images_srgb/NNNN.mat (MATLAB v7.3).
        number (int): The image's 1-based number (for messages).
        boxes (np.ndarray): (K, 4) 1-based inclusive boxes from read_boxes.
    """
    return [np.ascontiguousarray(np.clip(crop, 0, 1), dtype=np.float32) for crop in read_crops(path, number, boxes)]


def write_dnd_bundle(path, crops):
    """One image's bundle: Idenoised (1 x K cell of float32 crops), israw false, eval_version '1.0'."""
    import scipy.io

    cell = np.empty((1, len(crops)), dtype=object)
    for index, crop in enumerate(crops):
        cell[0, index] = np.asarray(crop, dtype=np.float32)
    with open(path, 'wb') as fout:
        scipy.io.savemat(fout, {'Idenoised': cell, 'israw': False, 'eval_version': '1.0'}, do_compression=True)


def submit_dnd(model,
               root,
               out_dir,
               device='cpu',
               network_opt=None,
               param_key=None,
               overwrite=False,
               quiet=False,
               precision='auto'):
    """Denoise the crops of every DND image with `model` and write one bundle per image into `out_dir`.

    Args:
        model (str | nn.Module): A model SPEC for gradnet_arch.pretrained (shipped name, checkpoint, option YAML) or
            a network already loaded.
        root (str): The DND folder holding info.mat and images_srgb/.
        out_dir (str): Folder for 0001.mat ...; files appear only once all are written.
        device (str | torch.device): Where the model runs ('auto': cuda if available).
        network_opt (str | dict | None): Network options for a checkpoint without embedded ones.
        param_key (str | None): State-dict key of the checkpoint.
        overwrite (bool): Replace bundles already in `out_dir`.
        quiet (bool): No progress bar.
        precision (str): 'auto', 'fp32', 'bf16' or 'fp16' (see `inference.Denoiser`). Default: 'auto'.

    Returns:
        SubmitReport: What was written.
    """
    staged = staged_folder(out_dir, BUNDLE_PATTERN, overwrite)  # refuses before the slow part
    boxes, paths = image_paths(root)
    _warn_counts(boxes, root)
    net, device = load_net(model, device, network_opt, param_key)
    check_rgb_model(net, 'DND')
    denoise = Denoiser(net, device, precision)
    with staged, tqdm(total=sum(len(b) for b in boxes), unit='crop', desc='DND crops', disable=quiet) as bar:
        for number, (path, image_boxes) in enumerate(zip(paths, boxes), 1):
            results = []
            for crop in read_noisy_crops(path, number, image_boxes):
                results.append(denoise(crop))
                bar.update()
            write_dnd_bundle(os.path.join(staged.temp(out_dir), bundle_name(number)), results)
    return SubmitReport('dnd', [out_dir], sum(len(b) for b in boxes), denoise.seconds_per_megapixel, str(device))


def bundle_dnd_folder(folder, out_dir, dnd_root=None, suffix=None, overwrite=False, quiet=False):
    """Bundle already-denoised crops saved as PNGs (`{image:04d}_{box:02d}[_suffix].png`) per image.

    Args:
        folder (str): The PNG folder (8- or 16-bit RGB PNGs).
        out_dir (str): Folder for 0001.mat ...
        dnd_root (str | None): The DND folder; with it, every box of info.mat must have a result of its size.
            None: the images and boxes are taken from the largest keys and must be complete.
        suffix (str | None): Only PNGs with this suffix after the key ('' = none); None: any, one per key.
        overwrite (bool): Replace bundles already in `out_dir`.
        quiet (bool): No progress bar.

    Returns:
        SubmitReport: What was written.
    """
    staged = staged_folder(out_dir, BUNDLE_PATTERN, overwrite)
    found = find_keyed_pngs(folder, KEY_PATTERN, '0001_01.png', suffix)
    if dnd_root is not None:
        boxes, _ = image_paths(dnd_root)
        expected = {
            (n, k): box_shape(box)
            for n, image_boxes in enumerate(boxes, 1)
            for k, box in enumerate(image_boxes, 1)
        }
        check_keys(found, list(expected), folder, _name)
    else:
        check_keys(found, full_grid(found), folder, _name)
        expected = dict.fromkeys(found)
    images = max(n for n, _ in found)
    per_image = [sorted(k for n, k in found if n == number) for number in range(1, images + 1)]
    _warn_counts(per_image, folder)
    with staged, tqdm(total=len(found), unit='crop', desc='DND crops', disable=quiet) as bar:
        for number, indices in enumerate(per_image, 1):
            results = []
            for index in indices:
                path = found[number, index]
                img = read_result_png(path)
                shape = expected[number, index]
                if shape is not None and img.shape[:2] != shape:
                    raise DataError(f'{path} is {img.shape[0]}x{img.shape[1]} but box {index} of image {number} is '
                                    f'{shape[0]}x{shape[1]}; every result must keep its crop\'s size.')
                results.append(img.astype(np.float32) / np.float32(np.iinfo(img.dtype).max))
                bar.update()
            write_dnd_bundle(os.path.join(staged.temp(out_dir), bundle_name(number)), results)
    return SubmitReport('dnd', [out_dir], len(found))


def _name(key):
    return dnd_key(*key)
