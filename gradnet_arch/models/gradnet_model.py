"""GradNetModel: BasicSR's SRModel with GradNet's pixel + gradient-consistency objective."""
import collections
import difflib
import os
import torch
import torch.distributed as dist
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info, master_only
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.utils.data import default_collate
from tqdm import tqdm

from gradnet_arch.archs.predenoiser import load_into, load_state_dict
from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import CheckpointKeyError, NonFiniteLossError, OptionError
from gradnet_arch.precision import amp_precision, autocast, memory_format, to_memory_format
from gradnet_arch.registry import register

TRAIN_KEYS = ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'gradient_opt',
              'perceptual_opt')
_COLOR_CHANNELS = {'rgb': 3, 'gray': 1}


@register(MODEL_REGISTRY)
class GradNetModel(SRModel):
    """SRModel (EMA, schedulers, PSNR/SSIM validation, checkpoints with `params`/`params_ema`, resume states) whose
    objective is `pixel_opt` + `gradient_opt` (GradNet's L = L_p + lambda * L_g), logged as `l_pix` and `l_grad`.

    Works for any arch, so the stage-1 MSKResNet and the baselines train through the same model. For GradNet, the
    frozen pre-denoiser is left out of the optimizer (silently: no per-parameter warnings), kept in eval mode, and
    BatchNorm statistics are copied into the EMA net (BasicSR's EMA averages parameters only).

    Options beyond SRModel's:
        amp (str | false, top level): Mixed precision of the forward passes in training, validation and testing:
            `bf16` (CPUs with native bf16, Ampere or later GPUs), `fp16` (CUDA only, with a gradient scaler whose
            state is kept in the resume state) or `false` (float32, BasicSR's behaviour). Weights, EMA, optimizer
            and checkpoints stay float32, and losses and metrics are computed in float32. On a CPU without native
            bf16, `bf16` falls back to float32 with one log line (emulated bf16 is slower there). Default: false.
        channels_last (bool, top level): Keep the networks and their inputs in channels_last (NHWC) memory format,
            which oneDNN and cuDNN run fastest, especially with `amp`. Checkpoints are saved in the usual layout.
            Default: false.
        gradient_opt (dict, optional, in `train`): The gradient-consistency loss, e.g.
            {type: GradientConsistencyLoss, loss_weight: 0.1, reduction: mean}.
    """

    def __init__(self, opt):
        _check_train_options(opt)
        _check_channels(opt)
        # Set before SRModel builds the network: model_to_device converts the memory format.
        self.precision, fallback = amp_precision(
            opt.get('amp', False), torch.device('cuda' if opt.get('num_gpu', 0) != 0 else 'cpu'))
        self.channels_last = bool(opt.get('channels_last', False))
        self.grad_scaler = None
        super().__init__(opt)
        if self.precision == 'fp16' and self.is_train:
            self.grad_scaler = torch.amp.GradScaler('cuda')
        logger = get_root_logger()
        if fallback:
            logger.warning(fallback)
        logger.info(f'Precision: {_PRECISION_TEXT[self.precision]}; memory format: '
                    f'{"channels_last (NHWC)" if self.channels_last else "contiguous (NCHW)"}.')

    def init_training_settings(self):
        net = self.get_bare_model(self.net_g)
        if getattr(net, 'gradient_source', None) == 'denoised' and net.predenoiser_path is None \
                and not self.opt['path'].get('pretrain_network_g'):
            raise OptionError('GradNet is being trained with gradient_source "denoised" but its pre-denoiser has no '
                              'weights: set network_g.predenoiser.pretrained to the stage-1 checkpoint (e.g. '
                              'experiments/<stage1 name>/models/net_g_latest.pth), or pretrain_network_g to a full '
                              'GradNet checkpoint.')
        super().init_training_settings()
        if hasattr(self, 'net_g_ema'):
            self.net_g_ema.to(memory_format=memory_format(self.channels_last))
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

    def model_to_device(self, net):
        """As BasicSR's, in the configured memory format, and DDP also works on CPU (gloo): device_ids only for CUDA."""
        net = net.to(self.device, memory_format=memory_format(self.channels_last))
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            net = DistributedDataParallel(
                net, device_ids=device_ids, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    def model_ema(self, decay=0.999):
        super().model_ema(decay)
        # BatchNorm running statistics are buffers, which BasicSR's EMA skips: without this the EMA net would
        # validate with its initial statistics.
        net_g = self.get_bare_model(self.net_g)
        ema_buffers = dict(self.net_g_ema.named_buffers())
        for name, buf in net_g.named_buffers():
            if name in ema_buffers:
                ema_buffers[name].data.copy_(buf.data)

    def feed_data(self, data):
        self.lq = to_memory_format(data['lq'].to(self.device), self.channels_last)
        if 'gt' in data:
            self.gt = to_memory_format(data['gt'].to(self.device), self.channels_last)

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with autocast(self.precision, self.device):
            output = self.net_g(self.lq)
        self.output = output.float()  # the losses run in float32, outside autocast

        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_grad:
            l_grad = self.cri_grad(self.output, self.gt)
            l_total += l_grad
            loss_dict['l_grad'] = l_grad
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    l_total += value
                    loss_dict[key] = value
        loss_dict['l_total'] = l_total
        self._stop_if_not_finite(l_total, loss_dict, current_iter)

        if self.grad_scaler is None:
            l_total.backward()
            self.optimizer_g.step()
        else:  # fp16: scaled loss; steps with inf/NaN gradients are skipped and the scale lowered
            self.grad_scaler.scale(l_total).backward()
            self.grad_scaler.step(self.optimizer_g)
            self.grad_scaler.update()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _stop_if_not_finite(self, l_total, loss_dict, current_iter):
        """Stop before the optimizer step (weights stay good) when the loss is NaN/Inf on any rank."""
        finite = torch.isfinite(l_total.detach()).float()
        if self.opt['dist']:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            values = ', '.join(f'{k}={v.item():.4g}' for k, v in loss_dict.items())
            raise NonFiniteLossError(
                f'The loss is not finite at iteration {current_iter} ({values}; on this or another rank). Training '
                f'stopped before the update, so the checkpoints in {self.opt["path"].get("models")} are intact. Lower '
                f'the learning rate or check the data, then continue with --auto_resume.')

    def test(self):
        """SRModel's test (the EMA net when there is one), with the configured precision; output in float32."""
        net = getattr(self, 'net_g_ema', self.net_g)
        net.eval()
        with torch.no_grad(), autocast(self.precision, self.device):
            output = net(self.lq)
        self.output = output.float().contiguous()
        if net is self.net_g and self.is_train:
            self.net_g.train()

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """Validate on every rank, each on its share of the images; the metrics equal a single-process run's."""
        rank, world_size = get_dist_info() if self.opt['dist'] else (0, 1)
        self._validate(dataloader.dataset, current_iter, tb_logger, save_img, rank, world_size)

    def _validate(self, dataset, current_iter, tb_logger, save_img, rank, world_size):
        dataset_name = dataset.opt['name']
        metrics_opt = self.opt['val'].get('metrics')
        if world_size > 1:
            self._broadcast_validation_net()
        indices = list(range(rank, len(dataset), world_size))
        pbar = tqdm(total=len(indices), unit='image') if self.opt['val'].get('pbar', False) and rank == 0 else None
        local = {}
        for idx in indices:
            val_data = default_collate([dataset[idx]])  # what BasicSR's val loader (batch 1, no workers) yields
            img_name = os.path.splitext(os.path.basename(val_data['lq_path'][0]))[0]
            self.feed_data(val_data)
            self.test()
            visuals = self.get_current_visuals()
            metric_data = {'img': tensor2img([visuals['result']])}
            if 'gt' in visuals:
                metric_data['img2'] = tensor2img([visuals['gt']])
                del self.gt
            del self.lq
            del self.output
            if save_img:
                imwrite(metric_data['img'], self._visualization_path(dataset_name, img_name, current_iter))
            if metrics_opt:
                local[idx] = {name: calculate_metric(metric_data, opt_) for name, opt_ in metrics_opt.items()}
            if pbar is not None:
                pbar.update(1)
                pbar.set_description(f'Test {img_name}')
        if pbar is not None:
            pbar.close()
        if not metrics_opt:
            return
        if world_size > 1:
            shards = [None] * world_size
            dist.all_gather_object(shards, local)
            local = {idx: values for shard in shards for idx, values in shard.items()}
        if rank != 0:
            return
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = {}
        for name in metrics_opt:
            total = 0  # summed in image order, as BasicSR's single-process loop does, so results match bit for bit
            for idx in sorted(local):
                total += local[idx][name]
            self.metric_results[name] = total / len(local)
            self._update_best_metric_result(dataset_name, name, self.metric_results[name], current_iter)
        self._log_validation_metric_values(current_iter, dataset_name, tb_logger)

    def _visualization_path(self, dataset_name, img_name, current_iter):
        """BasicSR's file naming for saved validation/test images."""
        root = self.opt['path']['visualization']
        if self.opt['is_train']:
            return os.path.join(root, img_name, f'{img_name}_{current_iter}.png')
        suffix = self.opt['val'].get('suffix') or self.opt['name']
        return os.path.join(root, dataset_name, f'{img_name}_{suffix}.png')

    def _broadcast_validation_net(self):
        """Give every rank rank 0's validation net: BatchNorm statistics drift apart per rank during training."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        with torch.no_grad():
            for tensor in list(net.parameters()) + list(net.buffers()):
                dist.broadcast(tensor.data, src=0)

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BasicSR's load_network with safe loading and errors that name the file, the keys and the shapes."""
        net = self.get_bare_model(net)
        try:
            state = load_state_dict(load_path, param_key, what='network')
        except CheckpointKeyError:
            if param_key != 'params_ema':
                raise
            # BasicSR's rule: a checkpoint saved without EMA has only `params`
            get_root_logger().info(f'Loading: params_ema does not exist in {load_path}, use params.')
            param_key = 'params'
            state = load_state_dict(load_path, param_key, what='network')
        if not strict:  # BasicSR's behaviour: keys of another size are ignored
            own = net.state_dict()
            state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
        load_into(net, state, load_path, strict=strict, what='network')
        get_root_logger().info(f'Loaded {type(net).__name__} from {load_path} [{param_key}].')

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        """BasicSR's save_network, written to a temporary file and renamed, so a kill never leaves a torn file."""
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        save_dict = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            # contiguous: the usual NCHW layout whatever the training memory format (safetensors needs it too)
            save_dict[key] = {(k[7:] if k.startswith('module.') else k): v.cpu().contiguous() for k, v in state.items()}
        label = 'latest' if current_iter == -1 else current_iter
        save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        _atomic_save(save_dict, save_path)

    @master_only
    def save_training_state(self, epoch, current_iter):
        """Save the resume state atomically, in a form torch's safe loader (weights_only=True) accepts.

        MultiStepRestartLR keeps its milestones in a `collections.Counter`, which the safe unpickler refuses; it is
        stored as a plain dict and turned back into a Counter by `resume_training`. This also makes upstream's own
        `basicsr/train.py --auto_resume` (which loads with torch's default, safe, loader) work for GradNet runs.
        """
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [_plain_scheduler_state(s.state_dict()) for s in self.schedulers],
        }
        if self.grad_scaler is not None:
            state['grad_scaler'] = self.grad_scaler.state_dict()
        _atomic_save(state, os.path.join(self.opt['path']['training_states'], f'{current_iter}.state'))

    def resume_training(self, resume_state):
        for state in resume_state['schedulers']:
            if isinstance(state.get('milestones'), dict):
                state['milestones'] = collections.Counter(state['milestones'])
        super().resume_training(resume_state)
        if self.grad_scaler is not None and 'grad_scaler' in resume_state:
            self.grad_scaler.load_state_dict(resume_state['grad_scaler'])


def _atomic_save(obj, path):
    """torch.save to `path.tmp`, flush to disk, then rename: readers (and auto-resume) see old or new, never half."""
    with atomic_open(path, temp_path=f'{path}.tmp') as f:  # auto-resume skips a `.tmp` left by a killed write
        torch.save(obj, f)


_PRECISION_TEXT = {
    'fp32': 'float32 (amp off)',
    'bf16': 'bf16 autocast (weights, EMA, losses and checkpoints float32)',
    'fp16': 'fp16 autocast with a gradient scaler (weights, EMA, losses and checkpoints float32)'
}


def _plain_scheduler_state(state):
    state = dict(state)
    if isinstance(state.get('milestones'), collections.Counter):
        state['milestones'] = dict(state['milestones'])
    return state


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
