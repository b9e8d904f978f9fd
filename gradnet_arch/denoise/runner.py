"""Denoising one photo with a loaded network: channels, tiling, precision and the gradient map.

Use from Python (any uint8/uint16/float image as a numpy array, RGB channel order by default)::

    from gradnet_arch.denoise import denoise_image
    from gradnet_arch.pretrained import load_pretrained
    net = load_pretrained('gradnet_color_sigma25')           # or a checkpoint path; device='cuda' for a GPU
    out = denoise_image(net, img)                            # same shape and dtype as img
    out, grad = denoise_image(net, img, return_gradient=True, tile=512, precision='fp32')

Defaults are the fast path: `precision='auto'` (bf16 autocast where the device computes bf16 natively, see
`gradnet_arch.precision`), channels_last network inputs, and `load_pretrained`'s BatchNorm folding and channels_last
weights. `precision='fp32', channels_last=False` with `load_pretrained(..., fold_batchnorm=False,
channels_last=False)` is the plain float32 NCHW path.

`denoise_file` is the per-file pipeline of the `gradnet-denoise` command (read upright, denoise, write at the input's
depth, optional gradient map and side-by-side comparison).
"""
import numpy as np
import os
import torch

from gradnet_arch.atomic_io import check_new_file, make_folder, write_files
from gradnet_arch.denoise.image_io import (encode_image, gradient_to_uint8, merge_alpha, read_image, side_by_side,
                                           split_alpha)
from gradnet_arch.denoise.tiling import check_tiling, tiled_apply
from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.precision import autocast, to_memory_format
from gradnet_arch.pretrained.description import describe

# Measured with speed/bench_tiling.py (docs/model_cards): with 256-pixel tiles, tiled minus whole-image PSNR on
# CBSD68 / BSD68 averages +0.005 / +0.012 dB (at most 0.02 / 0.064 dB on one image), because the channel attention
# pools over the tile; 512-pixel tiles keep photos up to 512 x 512 whole and bound activations to one 512 x 512 tile.
# The CLI's defaults come from here too.
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
DEFAULT_TILE_BATCH = 1


def net_device(net):
    """The device of the network's parameters (the CPU for a network without any)."""
    param = next(net.parameters(), None)
    return param.device if param is not None else torch.device('cpu')


def gradient_module(net):
    """The module whose output is the gradient map a GradNet is given (its Sobel filter), or None."""
    return getattr(net, 'sobel', None) if getattr(net, 'gradient_source', 'none') != 'none' else None


class _GradientCapture:
    """Keeps the last output of the gradient module (a forward hook), so the map costs no second pre-denoiser run."""

    def __init__(self, module):
        self.value = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.value = output

    def take(self):
        value, self.value = self.value, None
        if value is None:
            raise RuntimeError('the network ran without calling its gradient module; cannot capture the gradient map')
        return value

    def close(self):
        self.handle.remove()


def channel_mode(net_ch, img_ch, per_channel=False):
    """How an image with `img_ch` colour channels goes through a network taking `net_ch` channels.

    Returns:
        str: 'same'; 'replicate' (grey image, colour model: the grey in R, G and B, the mean of the three outputs
        written back); or 'per_channel' (colour image, grey model: R, G and B as three grey images, only when
        `per_channel` is set; otherwise DataError).
    """
    if net_ch == img_ch:
        return 'same'
    if net_ch == 3 and img_ch == 1:
        return 'replicate'
    if net_ch == 1 and img_ch == 3:
        if per_channel:
            return 'per_channel'
        raise DataError('a grey model (1 channel) cannot denoise a colour image. Use a colour model (e.g. --model '
                        'gradnet_color_sigma25) or --per-channel to denoise R, G and B separately with the grey model.')
    raise DataError(f'the network takes {net_ch}-channel images; this image has {img_ch} colour channel(s).')


def _apply_fn(net, mode, capture, channels_last=False):
    """A function batch (N, C_img, h, w) -> (output[, gradient]) with the image's channels, for `tiled_apply`.

    The network's input is made channels_last (after the channel replication / split, which would undo it) when
    `channels_last` is set; `tiled_apply` brings the outputs back contiguous.
    """

    def back(y, shape):
        if mode == 'replicate':
            return y.float().mean(1, keepdim=True)
        return y.reshape(shape) if mode == 'per_channel' else y

    def fn(x):
        n, c, h, w = x.shape
        inp = x.repeat(1, 3, 1, 1) if mode == 'replicate' else x.reshape(n * c, 1, h, w) if mode == 'per_channel' else x
        outs = [net(to_memory_format(inp, channels_last))] + ([capture.take()] if capture is not None else [])
        return tuple(back(y, x.shape) for y in outs)

    return fn


def denoise_image(net,
                  img,
                  tile=DEFAULT_TILE,
                  overlap=DEFAULT_OVERLAP,
                  tile_batch=DEFAULT_TILE_BATCH,
                  precision='auto',
                  per_channel=False,
                  return_gradient=False,
                  bgr=False,
                  multiple=None,
                  channels_last=True,
                  progress=None):
    """Denoise one image with `net` on the device of its parameters.

    Channels: a colour model on a grey image sees the grey replicated to R, G, B and the mean of its three output
    channels is returned; a grey model on a colour image is refused unless `per_channel` (R, G and B denoised as three
    grey images). An alpha channel is returned unchanged; the network sees only the colour.

    Args:
        net (nn.Module): Denoiser in eval mode taking RGB (or grey) float images in [0, 1], e.g. `load_pretrained`'s.
        img (ndarray): (H, W) grey, (H, W, 1), (H, W, 2) grey + alpha, (H, W, 3) colour or (H, W, 4) colour + alpha;
            uint8 (0-255), uint16 (0-65535) or float (0-1).
        tile (int): Tile side for tiled inference (memory bounded by the tile, not the image); 0 = whole image.
            Default: DEFAULT_TILE.
        overlap (int): Pixels shared by neighbouring tiles, blended with smooth weights. Default: DEFAULT_OVERLAP.
        tile_batch (int): Tiles per forward pass. Default: DEFAULT_TILE_BATCH.
        precision (str): 'auto', 'fp32', 'bf16' (torch.autocast, CPU or CUDA) or 'fp16' (CUDA only). 'auto' is
            `gradnet_arch.precision.auto_precision` of the network's device: bf16 where it runs natively (CPUs with
            AVX512-BF16 / AMX, Ampere and later GPUs), fp16 on older GPUs, fp32 on other CPUs. Outputs are float32
            after the network either way. Default: 'auto'.
        per_channel (bool): Let a grey model denoise a colour image channel by channel. Default: False.
        return_gradient (bool): Also return the Sobel gradient map the GradNet was given (computed per tile and
            blended like the output in tiled runs). Default: False.
        bgr (bool): The colour channels are in OpenCV's BGR order (the network gets RGB). Default: False (RGB).
        multiple (int | None): Pad network inputs (reflect) to multiples of this and crop back; None takes the
            network's `describe(net).size_multiple` (its window size; 1 for GradNet). Default: None.
        channels_last (bool): Give the network channels_last (NHWC) inputs, whatever the layout of its weights: on
            the CPU an NCHW network gets the same speed-up from NHWC inputs as a channels_last one (oneDNN reorders
            the weights; measured in speed/bench_fast_path.py), and outputs are the same to 1e-5 in float32.
            False gives NCHW inputs. Default: True.
        progress (callable | None): Called as `progress(tiles_done, tiles_total)` after each forward pass (see
            `tiled_apply`). Default: None.

    Returns:
        ndarray | tuple[ndarray, ndarray]: The denoised image, of the input's shape and dtype (integers rounded and
        clipped; float input gives unclipped float32); with `return_gradient`, also the float32 gradient map,
        (H, W) or (H, W, 3) in the image's channel order.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise DataError(f'denoise_image takes an (H, W) or (H, W, C) image with C in 1-4, got shape {img.shape}.')
    if img.dtype not in (np.uint8, np.uint16) and not np.issubdtype(img.dtype, np.floating):
        raise DataError(f'denoise_image takes uint8, uint16 or float images, got {img.dtype}.')
    if min(img.shape[:2]) < 1:
        raise DataError(f'denoise_image got an empty image of shape {img.shape}.')
    check_tiling(tile, overlap)
    device = net_device(net)
    description = describe(net)
    precision = description.precision(precision, device)
    sobel = gradient_module(net) if return_gradient else None
    if return_gradient and sobel is None:
        raise OptionError(f'{type(net).__name__} has no gradient branch, so there is no gradient map to return. '
                          f'It needs a GradNet with gradient_source "denoised" or "noisy".')
    colour, alpha = split_alpha(img)
    net_ch = description.input_channels or colour.shape[2]  # a network that does not tell: let its forward pass
    if per_channel and net_ch != 1:
        raise OptionError('per_channel (--per-channel) is for grey (1-channel) models; this model is colour.')

    scale = {np.dtype(np.uint8): 255., np.dtype(np.uint16): 65535.}.get(img.dtype, 1.)
    x = colour.astype(np.float32) / np.float32(scale)
    if bgr and x.shape[2] == 3:
        x = x[..., ::-1]
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))

    capture = _GradientCapture(sobel) if sobel is not None else None
    try:
        fn = _apply_fn(net, channel_mode(net_ch, x.shape[0], per_channel), capture, channels_last)
        with torch.inference_mode(), autocast(precision, device):
            outs = tiled_apply(
                fn, x, tile, overlap, tile_batch, device, multiple or description.size_multiple, progress=progress)
    finally:
        if capture is not None:
            capture.close()

    if scale != 1.:
        outs = (_quantise(outs[0], scale, img.dtype), ) + tuple(outs[1:])
    results = []
    for out in outs:
        out = out.numpy().transpose(1, 2, 0)
        if bgr and out.shape[2] == 3:
            out = out[..., ::-1]
        results.append(np.ascontiguousarray(out))
    denoised = results[0].astype(img.dtype, copy=False)
    if alpha is not None:
        denoised = merge_alpha(denoised, alpha)
    elif img.ndim == 2:
        denoised = denoised[..., 0]
    if not return_gradient:
        return denoised
    grad = results[1]
    return denoised, grad[..., 0] if grad.shape[2] == 1 else grad


def _quantise(out, scale, dtype):
    """Round a float (C, H, W) result in [0, 1] to `dtype`'s integers in place: a photo-sized float result gets no
    float temporaries (what numpy's clip / multiply / round would each allocate)."""
    with torch.inference_mode():  # the result may be an inference tensor, which only changes in place in this mode
        out = out.clamp_(0, 1).mul_(scale).round_()
        return out.to(torch.int32 if dtype == np.uint16 else torch.uint8)


def output_paths(dest, save_gradient=False, side_by_side=False):
    """The files `denoise_file` writes for output `dest`: the image, `<stem>_gradient.png`, `<stem>_compare.png`."""
    stem = os.path.splitext(dest)[0]
    paths = [dest]
    if save_gradient:
        paths.append(f'{stem}_gradient.png')
    if side_by_side:
        paths.append(f'{stem}_compare.png')
    return paths


def denoise_file(net, src, dest, overwrite=False, save_gradient=False, compare=False, **kwargs):
    """Read `src` upright, denoise it and write `dest` (format by extension, the input's depth, no EXIF).

    The outputs of one input (image, gradient map, comparison) are written as a unit (atomic_io.write_files): each
    whole, and none of them if one cannot be written; without `overwrite` none replaces an existing file, even one
    that another process wrote while this one was denoising.

    Args:
        net (nn.Module): The denoiser.
        src (str): Input image (PNG, JPEG, TIFF, BMP; 8/16-bit; grey, colour, with or without alpha).
        dest (str): Output image path (its folder is created if needed).
        overwrite (bool): Replace existing outputs; otherwise an existing one raises OutputExistsError (before any
            work when it exists already).
        save_gradient (bool): Also write `<stem>_gradient.png`, the gradient map scaled for viewing (8-bit).
        compare (bool): Also write `<stem>_compare.png`: input | denoised | gradient (the last when the network has a
            gradient branch), separated by thin white bars.
        **kwargs: `denoise_image` options (tile, overlap, tile_batch, precision, per_channel).

    Returns:
        list[str]: The files written.

    Raises:
        OutputExistsError: An output exists and `overwrite` is off.
        OutputError: An output cannot be written (read-only or full disk, a folder in the way, ...).
    """
    paths = output_paths(dest, save_gradient, compare)
    for path in paths:  # refused before any work
        check_new_file(path, overwrite)
    make_folder(os.path.dirname(dest))
    img = read_image(src)
    want_gradient = save_gradient or (compare and gradient_module(net) is not None)
    result = denoise_image(net, img, bgr=True, return_gradient=want_gradient, **kwargs)
    out, grad = result if want_gradient else (result, None)
    files = [(dest, encode_image(dest, out))]
    grad_view = gradient_to_uint8(grad) if grad is not None else None
    if save_gradient:
        files.append((paths[1], encode_image(paths[1], grad_view)))
    if compare:
        panels = [img, out] + ([grad_view] if grad_view is not None else [])
        files.append((paths[-1], encode_image(paths[-1], side_by_side(panels))))
    return write_files(files, overwrite=overwrite)
