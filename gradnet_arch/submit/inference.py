"""The model side of a submission: load a network from a SPEC, denoise one RGB array at a time, time it."""
import numpy as np
import time
import torch

from gradnet_arch.common.devices import resolve_device
from gradnet_arch.errors import DataError, OptionError
from gradnet_arch.precision import autocast, to_memory_format
from gradnet_arch.pretrained.description import describe


def load_net(model, device='auto', network_opt=None, param_key=None):
    """The network and its device for `model`, a network or a SPEC for gradnet_arch.pretrained.load_model.

    Args:
        model (str | nn.Module): A shipped model name, a checkpoint (.pth / .safetensors; its embedded options are
            used), a BasicSR option YAML (its network_g and path.pretrain_network_g), or a network.
        device (str | torch.device): 'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:N'. Default: 'auto'.
        network_opt (str | dict | None): The network's options (a YAML's path or a network_g dict) for a checkpoint
            that does not embed them.
        param_key (str | None): State-dict key in the checkpoint (None: params_ema if present, else params).

    Returns:
        tuple[nn.Module, torch.device]: The network in eval mode with gradients off (from a SPEC: BatchNorm folded
        and weights channels_last, `load_pretrained`'s defaults), and the device.
    """
    device = resolve_device(device)
    if isinstance(model, torch.nn.Module):
        if network_opt is not None or param_key is not None:
            raise OptionError('network_opt and param_key apply to a model SPEC, not to a network already loaded.')
        return model.eval().requires_grad_(False).to(device), device
    if not isinstance(model, str) or not model:
        raise OptionError(f'the model must be a shipped name, a checkpoint path or an option YAML, got {model!r}.')
    from gradnet_arch.pretrained import load_model

    net = load_model(model, device=device, param_key=param_key, network_opt=network_opt, options_flag='--network-opt')
    return net, device


def check_rgb_model(net, benchmark):
    """OptionError unless `net` takes 3-channel images (SIDD and DND are colour benchmarks)."""
    channels = describe(net).input_channels  # None: the forward pass will tell
    if channels not in (None, 3):
        raise OptionError(f'{benchmark} is a colour (RGB) benchmark but the model {type(net).__name__} takes '
                          f'{channels}-channel images; use a colour model (e.g. gradnet_color_sigma25 or a '
                          f'checkpoint trained with num_in_ch: 3).')


class Denoiser:
    """Runs a network on single H x W x 3 RGB float images in [0, 1] and adds up the time spent per megapixel.

    The whole array goes through the network at once (no tiling, no padding), under `precision`'s autocast on a
    channels_last input (a network whose weights are NCHW works too), and the output is brought back to float32 and
    clamped to [0, 1], as BasicSR's tensor2img does before quantising.

    Args:
        net (nn.Module): The network (eval mode).
        device (torch.device): Where `net` lives.
        precision (str): 'auto', 'fp32', 'bf16' or 'fp16' (`gradnet_arch.precision.resolve_precision` for
            `device`; fp16 on the CPU is an OptionError). Default: 'auto'.
        channels_last (bool): Give the network channels_last (NHWC) inputs. Default: True.
    """

    def __init__(self, net, device, precision='auto', channels_last=True):
        self.net = net
        self.device = torch.device(device)
        self.precision = describe(net).precision(precision, self.device)
        self.channels_last = bool(channels_last)
        self.seconds = 0.0
        self.megapixels = 0.0

    def __call__(self, img):
        """Denoise `img` (H x W x 3 float32 RGB in [0, 1]); returns the same layout, float32, clamped to [0, 1]."""
        start = time.perf_counter()
        tensor = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
        with torch.inference_mode(), autocast(self.precision, self.device):
            try:
                out = self.net(to_memory_format(tensor.to(self.device), self.channels_last))
            except RuntimeError as error:
                if 'out of memory' in str(error):
                    raise DataError(f'the device ran out of memory on a {img.shape[0]}x{img.shape[1]} image; use '
                                    f'a larger device or --device cpu.') from None
                raise
            if isinstance(out, (list, tuple)):  # some BasicSR archs return (output, extras)
                out = out[0]
            out = out.float().clamp_(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        # the clock includes the copies to and from the device: what a user of the method would wait for
        self.seconds += time.perf_counter() - start
        self.megapixels += img.shape[0] * img.shape[1] / 1e6
        if out.shape != img.shape:
            raise DataError(f'the model turned a {img.shape} image into {out.shape}; a denoiser must keep the size '
                            f'and channels (is this a super-resolution model?).')
        return np.ascontiguousarray(out)

    @property
    def seconds_per_megapixel(self):
        """Measured seconds per megapixel so far (0 before the first image)."""
        return self.seconds / self.megapixels if self.megapixels else 0.0


def method_defaults(net=None):
    """SIDD's OptionalData defaults: GradNet's paper for a GradNet (or no model), the class name otherwise."""
    name = 'GradNet' if net is None else type(net).__name__
    if name != 'GradNet':
        return dict(MethodName=name, Authors='', PaperTitle='', Venue='')
    return dict(
        MethodName='GradNet',
        Authors='Liu, Anwar, Zheng, Tian',
        PaperTitle='GradNet Image Denoising',
        Venue='CVPR 2020 Workshops')
