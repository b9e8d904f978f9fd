"""Classical baselines: BM3D (grey) and CBM3D (colour) from the optional `bm3d` package."""
import numpy as np
import torch

from gradnet_arch.errors import OptionError, UserError

CLASSICAL = ('bm3d', 'noisy')
INSTALL_HINT = ('pip install bm3d   (or pip install "gradnet-basicsr[bm3d]"; note the bm3d package is licensed for '
                'non-commercial use only)')


class MissingDependencyError(UserError, ImportError):
    """An optional package that the requested feature needs is not installed."""


def import_bm3d():
    """The `bm3d` module, or a clear error telling how to install it."""
    try:
        import bm3d
    except ImportError as error:
        raise MissingDependencyError(f'--classical bm3d needs the `bm3d` package, which is not installed. Install it '
                                     f'with:\n  {INSTALL_HINT}') from error
    return bm3d


class BM3DDenoiser:
    """BM3D / CBM3D as a denoiser of (1, C, H, W) RGB tensors in [0, 1], with a known noise level.

    CBM3D (`bm3d.bm3d_rgb`, opponent colour space, the package's default 'np' profile) for 3 channels; BM3D
    (`bm3d.bm3d`) for 1. It runs on the CPU with numpy whatever `--device` says.

    Args:
        sigma (float | None): Default noise level on the 0-255 scale, used for real-noise sets (where the noise level
            is unknown and must be given). Synthetic sets pass their own sigma to `__call__`.
    """

    name = 'bm3d'

    def __init__(self, sigma=None):
        self.bm3d = import_bm3d()
        self.default_sigma = sigma

    def resolve_sigma(self, sigma):
        """The noise level to use for a set: its own sigma, else the default one, else None (cannot run)."""
        return sigma if sigma is not None else self.default_sigma

    def __call__(self, lq, sigma):
        if lq.dim() != 4 or lq.shape[0] != 1 or lq.shape[1] not in (1, 3):
            raise OptionError(f'BM3D takes one grey or colour image, got a tensor of shape {tuple(lq.shape)}.')
        noisy = lq[0].permute(1, 2, 0).cpu().double().numpy()  # HWC, RGB, unclipped as the nets see it
        sigma_psd = float(sigma) / 255.
        if noisy.shape[2] == 3:
            out = self.bm3d.bm3d_rgb(noisy, sigma_psd)
        else:
            out = self.bm3d.bm3d(noisy[..., 0], sigma_psd)
        out = np.asarray(out, dtype=np.float32).reshape(noisy.shape)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))[None]


class NoisyInput:
    """The noisy input itself, scored like a denoiser: the floor every method has to beat (no parameters, no time)."""

    name = 'noisy'
    timed = False  # no work to time: its time column reads n/a and the plot leaves it out

    def resolve_sigma(self, sigma):
        return 0 if sigma is None else sigma  # runs on real-noise sets too: it needs no noise level

    def __call__(self, lq, sigma):
        return lq.clone()


def build_classical(name, sigma=None):
    """A baseline by name: 'bm3d' (BM3D / CBM3D) or 'noisy' (the noisy input, unchanged)."""
    if name not in CLASSICAL:
        raise OptionError(f'--classical {name!r}: unknown method; available: {", ".join(CLASSICAL)}.')
    return NoisyInput() if name == 'noisy' else BM3DDenoiser(sigma)
