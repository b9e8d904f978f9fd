"""Tiled inference: run a network on overlapping tiles of one image and blend the results without seams.

Tiles have one size (`tile`, or the image's side where that is smaller), so several go through the network in one
batch, and the network's activations scale with the tile, not the photo. Tiles start every `tile - overlap` pixels
and the last one ends on the image's last pixel. Each tile's output is weighted by a separable window: 1 inside and
along the image's own borders; across a strip shared with a neighbour it drops the outer quarter of the strip (where
the tile's zero padding distorts the network's output most), rises over the middle half with a raised-cosine
(half-Hann) ramp, and the two neighbours' weights sum to exactly 1 everywhere in the strip. So every pixel has
weight, the blend is smooth, and a constant image gives a constant result wherever the network's border effects are
shallower than a quarter of the overlap. Accumulation is in float32 on the CPU, whatever the device and precision of
the network.
"""
import math
import numpy as np
import torch
from torch.nn import functional as F

from gradnet_arch.errors import OptionError
from gradnet_arch.precision import to_memory_format


def check_tiling(tile, overlap):
    """Clear errors for impossible tile options (tile 0 means the whole image at once)."""
    if tile < 0 or overlap < 0:
        raise OptionError(f'tile ({tile}) and tile overlap ({overlap}) must be >= 0; tile 0 means the whole image.')
    if tile and overlap >= tile:
        raise OptionError(f'tile overlap ({overlap}) must be smaller than the tile size ({tile}); e.g. --tile 256 '
                          f'--tile-overlap 32.')


def tile_starts(length, tile, overlap):
    """Start offsets of tiles of size min(tile, length) covering [0, length), the last one flush with the end."""
    if tile <= 0 or tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def axis_windows(starts, size):
    """Blending weights along one axis: one float32 vector of `size` per tile start (see the module docstring)."""
    windows = []
    for i, start in enumerate(starts):
        window = np.ones(size, np.float32)
        if i > 0:  # the strip shared with the previous tile: rise across it
            shared = starts[i - 1] + size - start
            window[:shared] *= strip_weights(shared)
        if i + 1 < len(starts):  # the strip shared with the next tile: fall across it
            shared = start + size - starts[i + 1]
            window[size - shared:] *= strip_weights(shared)[::-1]
        windows.append(window)
    return windows


def strip_weights(length):
    """Rising weights across a shared strip: 0 on its first quarter, a sin^2 ramp, 1 on its last quarter.

    `strip_weights(n) + strip_weights(n)[::-1]` is 1 at every pixel, so two neighbours blend to a partition of unity.
    """
    margin = length // 4
    ramp = length - 2 * margin
    pos = (np.arange(ramp, dtype=np.float64) + 0.5) / ramp
    rising = np.sin(0.5 * math.pi * pos)**2
    return np.concatenate([np.zeros(margin), rising, np.ones(margin)]).astype(np.float32)


def pad_to_multiple(x, multiple):
    """Pad a (N, C, H, W) batch at the bottom and right to multiples of `multiple` (reflect; replicate if too small)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if not pad_h and not pad_w:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def tiled_apply(fn, img, tile=256, overlap=32, batch=1, device='cpu', multiple=1, channels_last=False, progress=None):
    """Apply `fn` to an image tile by tile and blend its outputs.

    Args:
        fn (callable): Takes a float32 batch (N, C, h, w) on `device` and returns a tensor (N, C_k, h, w) or a tuple
            of such tensors (e.g. the denoised tiles and the gradient maps), any float dtype.
        img (Tensor): float32 (C, H, W) image on the CPU.
        tile (int): Tile side; 0 (or at least the image's sides) runs the whole image at once. Default: 256.
        overlap (int): Pixels shared by neighbouring tiles (blended). Default: 32.
        batch (int): Tiles per call of `fn`. Default: 1.
        device (str | torch.device): Where `fn` runs. Default: 'cpu'.
        multiple (int): Pad each input of `fn` (reflect) to multiples of this and crop the outputs back, for networks
            that need it (window attention); 1 for GradNet. Default: 1.
        channels_last (bool): Give `fn` its batches in channels_last (NHWC) memory format (outputs come back
            contiguous either way). Default: False.
        progress (callable | None): Called as `progress(tiles_done, tiles_total)` after every call of `fn` (once,
            with (1, 1), for an image that is a single tile), e.g. to drive a progress bar. Default: None.

    Returns:
        tuple[Tensor]: float32 (C_k, H, W) CPU tensors, one per output of `fn`.
    """
    check_tiling(tile, overlap)
    if batch < 1:
        raise OptionError(f'tile batch must be >= 1, got {batch}.')
    _, height, width = img.shape
    size_h, size_w = (height, width) if tile <= 0 else (min(tile, height), min(tile, width))
    starts_h, starts_w = tile_starts(height, size_h, overlap), tile_starts(width, size_w, overlap)
    boxes = [(y, x) for y in starts_h for x in starts_w]
    if len(boxes) == 1:
        outs = _run(fn, img[None], device, multiple, channels_last)
        if progress is not None:
            progress(1, 1)
        return tuple(out[0] for out in outs)
    windows_h = dict(zip(starts_h, axis_windows(starts_h, size_h)))
    windows_w = dict(zip(starts_w, axis_windows(starts_w, size_w)))
    sums = None
    weight = torch.zeros(height, width)
    for first in range(0, len(boxes), batch):
        chunk = boxes[first:first + batch]
        tiles = torch.stack([img[:, y:y + size_h, x:x + size_w] for y, x in chunk])
        outs = _run(fn, tiles, device, multiple, channels_last)
        if sums is None:
            sums = [torch.zeros(out.shape[1], height, width) for out in outs]
        for i, (y, x) in enumerate(chunk):
            window = torch.from_numpy(np.outer(windows_h[y], windows_w[x]))
            weight[y:y + size_h, x:x + size_w] += window
            for total, out in zip(sums, outs):
                total[:, y:y + size_h, x:x + size_w] += out[i] * window
        if progress is not None:
            progress(first + len(chunk), len(boxes))
    # every pixel is in some tile's positive-weight part (the dropped quarters never meet), checked to be sure
    if float(weight.min()) <= 0:
        raise RuntimeError(f'tiling left pixels without weight (tile {tile}, overlap {overlap}); please report this')
    return tuple(total.div_(weight) for total in sums)  # in place: a photo-sized accumulator is not copied


def _run(fn, tiles, device, multiple, channels_last=False):
    """`fn` on one batch: pad, move to `device` (channels_last if asked), crop and bring back as contiguous float32
    CPU tensors."""
    h, w = tiles.shape[-2:]
    outs = fn(to_memory_format(pad_to_multiple(tiles, multiple).to(device), channels_last))
    outs = outs if isinstance(outs, (tuple, list)) else (outs, )
    return [out[..., :h, :w].float().cpu().contiguous() for out in outs]
