"""The Sobel operator, shared by the GradNet arch (grad filter), the gradient-consistency loss and metrics."""
import torch
from torch import nn
from torch.nn import functional as F

# Horizontal derivative (responds to vertical edges) and its transpose; the standard Sobel pair (see the spec: the
# paper prints one sign of S_V wrongly).
SOBEL_H = ((-1., 0., 1.), (-2., 0., 2.), (-1., 0., 1.))
SOBEL_V = ((-1., -2., -1.), (0., 0., 0.), (1., 2., 1.))


class Sobel(nn.Module):
    """Depthwise 3x3 Sobel filtering with zero padding 1.

    The kernels are a non-persistent buffer: they follow `.to()` / dtype casts but never appear in a state dict, so
    checkpoints stay compatible whatever uses this module.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer('kernel', torch.tensor([SOBEL_H, SOBEL_V]).unsqueeze(1), persistent=False)

    def responses(self, x):
        """Signed horizontal and vertical responses.

        Args:
            x (Tensor): Images of shape (N, C, H, W).

        Returns:
            tuple[Tensor, Tensor]: G_H and G_V, each of shape (N, C, H, W).
        """
        if x.dim() != 4:
            raise ValueError(f'Sobel expects a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}.')
        n, c, h, w = x.shape
        kernel = self.kernel.to(dtype=x.dtype).repeat(c, 1, 1, 1)  # (2C, 1, 3, 3): [H, V] for each channel
        out = F.conv2d(x, kernel, padding=1, groups=c).view(n, c, 2, h, w)
        return out[:, :, 0], out[:, :, 1]

    def magnitude(self, x):
        """Per-channel gradient magnitude sqrt(G_H^2 + G_V^2), shape (N, C, H, W); up to 4*sqrt(2) on [0, 1]."""
        g_h, g_v = self.responses(x)
        squared = g_h * g_h + g_v * g_v
        # Exact value, and a zero (not NaN/inf) gradient where the image is flat.
        nonzero = squared > 0
        root = torch.sqrt(torch.where(nonzero, squared, torch.ones_like(squared)))
        return torch.where(nonzero, root, torch.zeros_like(squared))

    def forward(self, x):
        return self.magnitude(x)
