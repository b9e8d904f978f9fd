"""What gets exported: the training-layout state dict, the network options and the reference network of a MODEL."""
import copy
import os
import torch

from gradnet_arch.pretrained import describe, load_model, read_checkpoint, select_state_dict
from gradnet_arch.version import __version__

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
        parameters (int): The network's parameter count.
    """

    def __init__(self, model, network_opt=None, param_key=None):
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
        description = describe(self.reference)
        self.channels = description.channels()
        self.parameters = description.parameters

    def _load(self, fast):
        # The training layout (BatchNorm kept, NCHW) unless `fast`.
        layout = {} if fast else {'fold_batchnorm': False, 'channels_last': False}
        return load_model(
            self.model,
            device='cpu',
            param_key=self._param_key,
            network_opt=self._network_opt,
            options_flag='--opt',
            **layout)

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
