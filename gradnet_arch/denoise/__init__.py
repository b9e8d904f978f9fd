"""Denoising real photos with a pretrained network: the `gradnet-denoise` command and its Python functions.

    from gradnet_arch.denoise import denoise_image
    from gradnet_arch.pretrained import load_pretrained
    net = load_pretrained('gradnet_color_sigma25')   # a shipped name or a checkpoint path; device='cuda' for a GPU
    out = denoise_image(net, img)                    # img: uint8/uint16/float numpy array, RGB; same shape and dtype

Modules: `image_io` (reading/writing at full depth with alpha and EXIF orientation), `tiling` (seamless tiled
inference), `runner` (`denoise_image`, `denoise_file`), `cli` (the command).
"""
from gradnet_arch.denoise.image_io import read_image, write_image
from gradnet_arch.denoise.runner import denoise_file, denoise_image
from gradnet_arch.denoise.tiling import tiled_apply

__all__ = ['denoise_image', 'denoise_file', 'read_image', 'write_image', 'tiled_apply']
