"""`--model LABEL=SPEC` -> a network on the device, wrapped as a denoiser callable with its cost figures.

Every form of SPEC is loaded through `gradnet_arch.pretrained.load_model`:

- a shipped pretrained name, e.g. `gradnet_color_sigma25`;
- a checkpoint with embedded options (`.pth` / `.safetensors` written by `save_checkpoint`);
- a BasicSR option YAML (`network_g` + `path.pretrain_network_g`, optionally `path.param_key_g`);
- `ARCH@CHECKPOINT`: ARCH a YAML file (a bare arch dict or a BasicSR option file, whose `network_g` is used) or inline
  YAML such as `{type: RIDNet, in_channels: 3, out_channels: 3, num_feat: 64}`, for plain BasicSR checkpoints.
"""
import os
import re
import torch
import yaml
from torch import nn

from gradnet_arch.benchmark.cost import PROBE_SIZE, count_parameters, flops_per_pixel
from gradnet_arch.denoise.tiling import tiled_apply
from gradnet_arch.errors import OptionError, UserError
from gradnet_arch.precision import autocast, to_memory_format
from gradnet_arch.pretrained.description import describe

SPEC_FORMS = ('Accepted forms of --model LABEL=SPEC:\n'
              '  LABEL=NAME                      a shipped pretrained model ({names})\n'
              '  LABEL=CHECKPOINT.pth            a checkpoint with embedded options (.pth or .safetensors)\n'
              '  LABEL=OPTIONS.yml               a BasicSR option file (network_g + path.pretrain_network_g)\n'
              '  LABEL=ARCH.yml@CHECKPOINT.pth   an arch option file (or BasicSR option file) + a plain checkpoint\n'
              '  LABEL="{{type: RIDNet, ...}}@CHECKPOINT.pth"   inline arch options (YAML) + a plain checkpoint')
_LABEL = re.compile(r'^[\w.+-]+$')
_YAML_EXTENSIONS = ('.yml', '.yaml')


def shipped_names():
    """Names of the shipped pretrained models (empty if the zoo cannot be listed)."""
    from gradnet_arch.pretrained import list_pretrained

    listed = list_pretrained()
    return sorted(listed) if isinstance(listed, (dict, list, tuple, set)) else sorted(list(listed))


def spec_forms():
    return SPEC_FORMS.format(names=', '.join(shipped_names()) or 'none shipped')


def parse_model_arg(text):
    """Split `LABEL=SPEC`; without a label (or when the text before `=` is no plain label) the label is derived."""
    label, sep, spec = text.partition('=')
    if sep and _LABEL.match(label.strip()) and spec.strip():
        return label.strip(), spec.strip()
    spec = text.strip()
    if not spec:
        raise OptionError('--model needs a value: LABEL=SPEC.\n' + spec_forms())
    base = os.path.basename(spec.rsplit('@', 1)[-1])
    return os.path.splitext(base)[0] or spec, spec


def _arch_options(text, model_arg):
    """The arch option dict of the ARCH part of ARCH@CHECKPOINT: a YAML file or inline YAML."""
    path = os.path.expanduser(text)
    if os.path.isfile(path):
        try:
            with open(path) as fin:
                opt = yaml.safe_load(fin)
        except (OSError, yaml.YAMLError) as error:
            raise OptionError(f'--model {model_arg}: cannot read the arch options {path}: {error}') from None
    elif text.lower().endswith(_YAML_EXTENSIONS):
        raise OptionError(f'--model {model_arg}: arch option file not found: {path}')
    else:
        try:
            opt = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise OptionError(f'--model {model_arg}: the arch part {text!r} is neither a file nor valid inline YAML '
                              f'({str(error).splitlines()[0]}).\n{spec_forms()}') from None
    if isinstance(opt, dict) and isinstance(opt.get('network_g'), dict):
        opt = opt['network_g']  # a whole BasicSR option file
    if not isinstance(opt, dict) or 'type' not in opt:
        raise OptionError(f'--model {model_arg}: the arch part must be a dict with a `type` (a registered arch), '
                          f'e.g. {{type: RIDNet, in_channels: 3, out_channels: 3}}; got {text!r}.\n{spec_forms()}')
    return opt


def load_spec(spec, device='cpu', label=None):
    """Load the network a SPEC names (see the module docstring), in eval mode on `device`.

    Args:
        spec (str): The SPEC part of `--model LABEL=SPEC`.
        device (str | torch.device): Target device. Default: 'cpu'.
        label (str | None): The label, for error messages.

    Returns:
        nn.Module: The network.
    """
    from gradnet_arch.pretrained import load_model as load

    model_arg = f'{label}={spec}' if label else spec
    path = os.path.expanduser(spec)
    try:
        if spec in shipped_names():
            return load(spec, device=device)
        if os.path.isfile(path):  # a checkpoint or an option YAML
            return load(path, device=device)
        if '@' in spec:
            arch, checkpoint = spec.rsplit('@', 1)
            checkpoint = os.path.expanduser(checkpoint.strip())
            if not checkpoint:
                raise OptionError(f'--model {model_arg}: nothing after "@"; give the checkpoint file.\n{spec_forms()}')
            return load(checkpoint, device=device, network_opt=_arch_options(arch.strip(), model_arg))
    except UserError as error:
        if str(error).startswith('--model '):
            raise
        hint = ''
        if 'network_opt' in str(error):  # the loader's advice is for Python callers; say it the command-line way
            hint = ('\nOn the command line, give the arch options with the checkpoint: --model '
                    f'{label or "LABEL"}=ARCH.yml@{spec} or --model "{label or "LABEL"}={{type: ..., ...}}@{spec}".')
        raise type(error)(f'--model {model_arg}: {error}{hint}') from None
    except (RuntimeError, ValueError, TypeError, KeyError) as error:  # building/loading the arch from user options
        raise OptionError(f'--model {model_arg}: cannot build or load the network: {error}') from None
    raise OptionError(f'--model {model_arg}: {spec!r} is not a shipped model name, an existing checkpoint or option '
                      f'file, or ARCH@CHECKPOINT.\n{spec_forms()}')


class NetDenoiser:
    """A network as a denoiser of (1, C, H, W) noisy tensors on its device.

    Whole images go straight through the network, as in BasicSR's validation (`net_g(lq)`). With `tile`, or for a
    network that needs its input sides to be multiples of a window size (SwinIR), the image goes through
    `gradnet_arch.denoise`'s `tiled_apply` (blended tiles; padding to the multiple and cropping back). The network
    runs under `precision`'s autocast on channels_last inputs (unless `channels_last` is False); outputs come back
    contiguous, and are float32 when scored.

    Args:
        label (str): Its name in the report.
        net (nn.Module): The network, in eval mode on `device`.
        device (torch.device): Where it runs.
        tile (int | None): Tile side for tiled inference; None or 0: whole images. Default: None.
        tile_overlap (int): Overlap of the tiles. Default: 32.
        precision (str): 'auto', 'fp32', 'bf16' or 'fp16' (`describe(net).precision` for `device`). Default: 'auto'.
        channels_last (bool): Give the network channels_last (NHWC) inputs. Default: True.
    """

    kind = 'network'

    def __init__(self, label, net, device, tile=None, tile_overlap=32, precision='auto', channels_last=True):
        self.label = label
        self.net = net
        self.device = torch.device(device)
        description = describe(net)
        self.description = description  # also the noise it was trained for (a sigma, a blind range, or unknown)
        self.precision = description.precision(precision, self.device)
        self.channels_last = bool(channels_last)
        self.memory_format = 'channels_last' if self.channels_last else 'contiguous'
        self.channels = description.channels()
        self.params = count_parameters(net)
        self.tile = int(tile or 0)
        self.tile_overlap = int(tile_overlap)
        self.multiple = description.size_multiple
        self._tiled = bool(self.tile or self.multiple > 1)
        probe_multiple = max(self.multiple, 1)
        self.flops_per_pixel = flops_per_pixel(
            net, self.channels, self.device, size=-(-PROBE_SIZE // probe_multiple) * probe_multiple)

    def run(self, lq):
        """Denoise a tensor that is already on the device; returns the output (on the device when untiled)."""
        with torch.no_grad(), autocast(self.precision, self.device):
            if not self._tiled:
                return self.net(to_memory_format(lq, self.channels_last)).contiguous()
            (out, ) = tiled_apply(
                self.net,
                lq[0].cpu(),
                self.tile,
                self.tile_overlap,
                1,
                self.device,
                self.multiple,
                channels_last=self.channels_last)
            return out[None]


def load_model(text, device='cpu', tile=None, tile_overlap=32, precision='auto'):
    """`LABEL=SPEC` -> NetDenoiser (BatchNorm folded and weights channels_last, as `load_pretrained` does)."""
    label, spec = parse_model_arg(text)
    net = load_spec(spec, device, label)
    if not isinstance(net, nn.Module):
        raise OptionError(f'--model {label}={spec}: the loader returned {type(net).__name__}, not a network.')
    return NetDenoiser(label, net.eval(), device, tile, tile_overlap, precision)
