"""What gets exported: the training-layout state dict, the network options and the reference network of a MODEL."""
import copy
import inspect
import os
import torch

from gradnet_arch.errors import OptionError
from gradnet_arch.version import __version__

YAML_EXTENSIONS = ('.yml', '.yaml')
# The odd-sized image every export is checked on (and the tests compare consumers on).
CHECK_SIZE = (37, 45)


class Source:
    """A loaded MODEL.

    Attributes:
        reference (nn.Module): The network as `load_pretrained` builds it in the training layout (BatchNorm kept,
            NCHW weights), float32 on the CPU, eval mode: what every export is checked against.
        state (dict[str, Tensor]): The state dict from the checkpoint itself (BatchNorm keys present).
        network_g (dict): The network options (a pre-denoiser's `pretrained` cleared: its weights are in `state`).
        meta (dict): The checkpoint's meta plus an `export` entry (tool, version, source, param_key).
        name (str | None): The shipped model's name, if it is one.
        path (str): The checkpoint file read.
        channels (int): Input channels.
    """

    def __init__(self, model, network_opt=None, param_key=None):
        from gradnet_arch.pretrained import read_checkpoint, select_state_dict

        self.model, self._network_opt, self._param_key = model, network_opt, param_key
        self.reference = self._load(fast=False)
        info = self.reference.pretrained_info
        self.name, self.path = info['name'], info['source']
        self.param_key, self.state = select_state_dict(read_checkpoint(self.path), self.path, info['param_key'])
        self.network_g = clean_options(info['network_g'])
        self.meta = copy.deepcopy(info['meta'] or {})
        self.meta['export'] = {
            'tool': 'gradnet-export',
            'gradnet_basicsr_version': __version__,
            'source': self.name or os.path.basename(self.path),
            'param_key': self.param_key,
        }
        self.channels = input_channels(self.reference)
        self.parameters = sum(tensor.numel() for tensor in self.reference.parameters())

    def _load(self, fast):
        from gradnet_arch.pretrained import load_pretrained

        kwargs = {'device': 'cpu', 'param_key': self._param_key}
        # The training layout (BatchNorm kept, NCHW) unless `fast`; older load_pretrained have no such keywords.
        if not fast:
            accepted = inspect.signature(load_pretrained).parameters
            kwargs.update({key: False for key in ('fold_batchnorm', 'channels_last') if key in accepted})
        model = self.model
        if isinstance(model, str) and model.lower().endswith(YAML_EXTENSIONS):
            if self._network_opt is not None:
                raise OptionError(f'MODEL {model} is an option YAML, which already names the network; drop --opt.')
            return load_pretrained(None, network_opt=model, **kwargs)
        return load_pretrained(model, network_opt=self._network_opt, **kwargs)

    def fast_network(self):
        """The network as `load_pretrained` builds it by default (BatchNorm folded where it does that)."""
        return self._load(fast=True)

    def check_inputs(self, batches=(1, 2)):
        """Seeded uniform [0, 1) inputs of the odd check size (37 x 45) and batch sizes `batches`."""
        generator = torch.Generator().manual_seed(0)
        height, width = CHECK_SIZE
        return [
            torch.rand(n, self.channels, height - 8 * i, width - 12 * i, generator=generator)
            for i, n in enumerate(batches)
        ]


def clean_options(network_g):
    """`network_g` without what only training needs: a pre-denoiser's checkpoint path (its weights are exported)."""
    opts = copy.deepcopy(dict(network_g))
    if isinstance(opts.get('predenoiser'), dict):
        opts['predenoiser']['pretrained'] = None
    return opts


def input_channels(net):
    """Input channels of a network (its `num_in_ch`, else the first convolution's)."""
    channels = getattr(net, 'num_in_ch', None)
    if isinstance(channels, int):
        return channels
    conv = next((m for m in net.modules() if isinstance(m, torch.nn.Conv2d)), None)
    if conv is None:
        raise OptionError(f'Cannot tell the input channels of {type(net).__name__}: it has no num_in_ch and no '
                          f'convolution.')
    return conv.in_channels
