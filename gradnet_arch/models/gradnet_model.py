"""GradNetModel: GradNet's training objective (pixel + gradient-consistency loss) with a frozen pre-denoiser."""
import difflib
import torch
import torch.distributed as dist
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from gradnet_arch.errors import OptionError
from gradnet_arch.models.robust_sr_model import RobustSRModel
from gradnet_arch.registry import register

TRAIN_KEYS = ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'gradient_opt',
              'perceptual_opt')
_COLOR_CHANNELS = {'rgb': 3, 'gray': 1}


@register(MODEL_REGISTRY)
class GradNetModel(RobustSRModel):
    """SRModel whose objective is `pixel_opt` + `gradient_opt` (GradNet's L = L_p + lambda * L_g), logged as `l_pix`
    and `l_grad`.

    Works for any arch, so the stage-1 MSKResNet and the baselines train through the same model. For GradNet, the
    frozen pre-denoiser is left out of the optimizer (silently: no per-parameter warnings) and checked to be the same
    on every rank. Checkpoints, resume, DDP on the CPU, sharded validation, EMA statistics, `amp` and `channels_last`
    come from RobustSRModel (robust_sr_model.py).

    Options beyond RobustSRModel's:
        gradient_opt (dict, optional, in `train`): The gradient-consistency loss, e.g.
            {type: GradientConsistencyLoss, loss_weight: 0.1, reduction: mean}.
    """

    def __init__(self, opt):
        _check_train_options(opt)
        _check_channels(opt)
        super().__init__(opt)

    def init_training_settings(self):
        net = self.get_bare_model(self.net_g)
        if getattr(net, 'gradient_source', None) == 'denoised' and net.predenoiser_path is None \
                and not self.opt['path'].get('pretrain_network_g'):
            raise OptionError('GradNet is being trained with gradient_source "denoised" but its pre-denoiser has no '
                              'weights: set network_g.predenoiser.pretrained to the stage-1 checkpoint (e.g. '
                              'experiments/<stage1 name>/models/net_g_latest.pth), or pretrain_network_g to a full '
                              'GradNet checkpoint.')
        super().init_training_settings()
        train_opt = self.opt['train']
        self.cri_grad = build_loss(train_opt['gradient_opt']).to(self.device) if train_opt.get('gradient_opt') else None
        if self.opt['dist'] and getattr(net, 'predenoiser', None) is not None:
            self._check_predenoiser_identical(net.predenoiser)

    def _check_predenoiser_identical(self, predenoiser):
        """Under DDP, verify once that every rank holds the same frozen pre-denoiser (DDP syncs it from rank 0)."""
        with torch.no_grad():
            checksum = torch.stack([t.double().sum() for t in predenoiser.state_dict().values()]).sum()
        sums = [None] * dist.get_world_size()
        dist.all_gather_object(sums, checksum.item())
        if len(set(sums)) != 1:
            raise RuntimeError(f'The frozen pre-denoiser differs between ranks (checksums {sums}).')
        get_root_logger().info(f'Pre-denoiser identical on all {len(sums)} ranks (checksum {sums[0]:.6f}).')

    def setup_optimizers(self):
        train_opt = self.opt['train']
        params = [
            p for name, p in self.get_bare_model(self.net_g).named_parameters()
            if p.requires_grad and not name.startswith('predenoiser.')
        ]
        frozen = sum(p.numel() for name, p in self.get_bare_model(self.net_g).named_parameters()
                     if not p.requires_grad or name.startswith('predenoiser.'))
        if frozen:
            get_root_logger().info(f'Frozen (not optimized): {frozen:,d} parameters (the pre-denoiser).')
        optim_opt = dict(train_opt['optim_g'])
        self.optimizer_g = self.get_optimizer(optim_opt.pop('type'), params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def compute_losses(self, output, gt):
        """L = L_p + lambda * L_g: SRModel's pixel (and perceptual) terms plus the gradient-consistency loss."""
        l_total, loss_dict = super().compute_losses(output, gt)
        if self.cri_grad:
            l_grad = self.cri_grad(output, gt)
            l_total += l_grad
            loss_dict['l_grad'] = l_grad
        return l_total, loss_dict


def _check_train_options(opt):
    train = opt.get('train') if opt.get('is_train') else None
    if not train:
        return
    unknown = [k for k in train if k not in TRAIN_KEYS]
    if unknown:
        hints = [
            f'{k!r}' + (f' (did you mean {m[0]!r}?)' if (m := difflib.get_close_matches(k, TRAIN_KEYS, 1)) else '')
            for k in unknown
        ]
        raise OptionError(
            f'GradNetModel: unknown key(s) in `train`: {", ".join(hints)}. Valid: {", ".join(TRAIN_KEYS)}.')
    if not train.get('pixel_opt') and not train.get('gradient_opt') and not train.get('perceptual_opt'):
        raise OptionError('GradNetModel: `train` needs at least one of pixel_opt, gradient_opt, perceptual_opt.')


def _check_channels(opt):
    """Stop before any work when a dataset's colour mode cannot feed the network."""
    net_ch = opt.get('network_g', {}).get('num_in_ch')
    if net_ch is None:
        return
    for phase, dataset in opt.get('datasets', {}).items():
        data_ch = _COLOR_CHANNELS.get(dataset.get('color'))
        if data_ch is not None and data_ch != net_ch:
            raise OptionError(f'datasets.{phase} ({dataset.get("name")}) gives {dataset["color"]} images '
                              f'({data_ch} channel{"s" if data_ch > 1 else ""}) but network_g has num_in_ch={net_ch}. '
                              f'Set color: {"gray" if net_ch == 1 else "rgb"} or num_in_ch: {data_ch}.')
