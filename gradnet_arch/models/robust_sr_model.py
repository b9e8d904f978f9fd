"""RobustSRModel: BasicSR's SRModel with the infrastructure GradNetModel trains on, and no method of its own.

What it changes of SRModel, each for a reason a run can hit:

- Checkpoints and resume states are written whole or not at all (`atomic_io.atomic_open`): a kill during a save
  never leaves a torn file for --auto_resume to pick.
- Resume states are readable by torch's safe loader (weights_only=True): the scheduler's `collections.Counter` is
  stored as a plain dict and turned back into a Counter on resume.
- Networks load with the safe loader and with errors that name the file, the keys and the shapes.
- DDP also runs on the CPU (gloo): `device_ids` only for CUDA.
- Validation runs on every rank, each on its share of the images, and averages exactly as a single process does.
- The EMA net also gets the BatchNorm statistics (buffers), which BasicSR's EMA skips.
- `amp` (autocast with float32 weights, losses and checkpoints; a GradScaler for fp16, kept in the resume state),
  `channels_last` (NHWC networks and inputs) and `compile` (torch.compile of the training forward and backward).
- The training step stops before the update when the loss is not finite on any rank.

A subclass states its objective in `compute_losses(output, gt)`; this class runs the step around it (autocast,
backward, optimizer or GradScaler step, loss logging, EMA). Not registered: BasicSR builds only its subclasses.
"""
import collections
import os
import shutil
import torch
import torch.distributed as dist
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.dist_util import get_dist_info, master_only
from collections import OrderedDict
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.utils.data import default_collate
from tqdm import tqdm

from gradnet_arch.atomic_io import atomic_open
from gradnet_arch.errors import CheckpointKeyError, NonFiniteLossError, OptionError
from gradnet_arch.precision import amp_precision, autocast, memory_format, to_memory_format
from gradnet_arch.pretrained.checkpoint_io import clean_state_dict, load_state, read_checkpoint, select_state_dict

_PRECISION_TEXT = {
    'fp32': 'float32 (amp off)',
    'bf16': 'bf16 autocast (weights, EMA, losses and checkpoints float32)',
    'fp16': 'fp16 autocast with a gradient scaler (weights, EMA, losses and checkpoints float32)'
}


class RobustSRModel(SRModel):
    """SRModel (EMA, schedulers, PSNR/SSIM validation, checkpoints with `params`/`params_ema`, resume states) that is
    safe to interrupt and resume, runs DDP and sharded validation on the CPU, and trains in mixed precision.

    Options beyond SRModel's:
        amp (str | false, top level): Mixed precision of the forward passes in training, validation and testing:
            `bf16` (CPUs with native bf16, Ampere or later GPUs), `fp16` (CUDA only, with a gradient scaler whose
            state is kept in the resume state) or `false` (float32, BasicSR's behaviour). Weights, EMA, optimizer
            and checkpoints stay float32, and losses and metrics are computed in float32. On a CPU without native
            bf16, `bf16` falls back to float32 with one log line (emulated bf16 is slower there). Default: false.
        channels_last (bool, top level): Keep the networks and their inputs in channels_last (NHWC) memory format,
            which oneDNN and cuDNN run fastest, especially with `amp`. Checkpoints are saved in the usual layout.
            Default: false.
        compile (bool, top level): Run the training forward and backward through `torch.compile` (inductor), which
            fuses BatchNorm, ReLU and the additions between the convolutions into generated kernels. Compiling takes
            half a minute or more at the first iteration; validation, testing, the EMA net and checkpoints use the
            plain network (checkpoint keys are unchanged). Needs a C++ compiler on the CPU. Default: false.
    """

    def __init__(self, opt):
        # Set before SRModel builds the network: model_to_device converts the memory format.
        self.precision, fallback = amp_precision(
            opt.get('amp', False), torch.device('cuda' if opt.get('num_gpu', 0) != 0 else 'cpu'))
        self.channels_last = bool(opt.get('channels_last', False))
        self.compile = bool(opt.get('compile', False))
        if self.compile and opt.get('num_gpu', 0) == 0 and not any(map(shutil.which, ('c++', 'g++', 'clang++'))):
            raise OptionError('compile: true needs a C++ compiler on the CPU (torch.compile\'s inductor builds its '
                              'kernels with it): install g++ or clang++, or set compile: false.')
        self.grad_scaler = None
        self.train_net = None  # what the training step calls: net_g, or its torch.compile wrapper
        super().__init__(opt)
        if self.precision == 'fp16' and self.is_train:
            self.grad_scaler = torch.amp.GradScaler('cuda')
        logger = get_root_logger()
        if fallback:
            logger.warning(fallback)
        logger.info(f'Precision: {_PRECISION_TEXT[self.precision]}; memory format: '
                    f'{"channels_last (NHWC)" if self.channels_last else "contiguous (NCHW)"}.')

    def init_training_settings(self):
        super().init_training_settings()
        if hasattr(self, 'net_g_ema'):
            self.net_g_ema.to(memory_format=memory_format(self.channels_last))
        # The wrapper shares net_g's parameters and buffers; only the training step calls it (validation images of
        # varying sizes would each need a new graph).
        self.train_net = torch.compile(self.net_g) if self.compile else self.net_g
        if self.compile:
            get_root_logger().info('torch.compile: the training forward and backward are compiled at the first '
                                   'iteration (inductor); validation and checkpoints use the plain network.')

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

    # ------------------------------------------------------------------------------------------------------------
    # Training step

    def compute_losses(self, output, gt):
        """The training objective on a float32 `output`: SRModel's pixel and perceptual losses.

        Subclasses add their terms here (call this, then add to the total and the dict).

        Args:
            output (Tensor): The network's output, float32.
            gt (Tensor): The ground truth.

        Returns:
            tuple[Tensor, OrderedDict]: The total loss, and the terms to log by name (`l_pix`, `l_percep`, ...).
        """
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(output, gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(output, gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    l_total += value
                    loss_dict[key] = value
        return l_total, loss_dict

    def optimize_parameters(self, current_iter):
        self.optimizer_g.zero_grad()
        with autocast(self.precision, self.device):
            output = self.train_net(self.lq)
        self.output = output.float()  # the losses run in float32, outside autocast

        l_total, loss_dict = self.compute_losses(self.output, self.gt)
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

    # ------------------------------------------------------------------------------------------------------------
    # Testing and validation

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
        indices = shard_indices(len(dataset), rank, world_size)
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
            local = merge_shards(shards)
        if rank != 0:
            return
        self._initialize_best_metric_results(dataset_name)
        self.metric_results = average_metrics(local, metrics_opt)
        for name, value in self.metric_results.items():
            self._update_best_metric_result(dataset_name, name, value, current_iter)
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

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints and resume states

    def load_network(self, net, load_path, strict=True, param_key='params'):
        """BasicSR's load_network with safe loading and errors that name the file, the keys and the shapes."""
        net = self.get_bare_model(net)
        what = 'network checkpoint'
        ckpt = read_checkpoint(load_path, what, hint="Check the option file's path.pretrain_network_g.")
        try:
            _, state = select_state_dict(ckpt, load_path, param_key, what)
        except CheckpointKeyError:
            if param_key != 'params_ema':
                raise
            # BasicSR's rule: a checkpoint saved without EMA has only `params`
            get_root_logger().info(f'Loading: params_ema does not exist in {load_path}, use params.')
            param_key = 'params'
            _, state = select_state_dict(ckpt, load_path, param_key, what)
        if not strict:  # BasicSR's behaviour: keys of another size are ignored
            own = net.state_dict()
            state = {k: v for k, v in state.items() if k not in own or own[k].shape == v.shape}
        load_state(net, state, load_path, strict=strict, what=what)
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
            save_dict[key] = clean_state_dict(state, to_cpu=True)
        label = 'latest' if current_iter == -1 else current_iter
        save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
        with atomic_open(save_path, temp_path=f'{save_path}.tmp') as f:
            torch.save(save_dict, f)

    @master_only
    def save_training_state(self, epoch, current_iter):
        """Save the resume state atomically, in a form torch's safe loader (weights_only=True) accepts.

        MultiStepRestartLR keeps its milestones in a `collections.Counter`, which the safe unpickler refuses; it is
        stored as a plain dict and turned back into a Counter by `resume_training`. This also makes upstream's own
        `basicsr/train.py --auto_resume` (which loads with torch's default, safe, loader) work for these runs.
        """
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [plain_scheduler_state(s.state_dict()) for s in self.schedulers],
        }
        if self.grad_scaler is not None:
            state['grad_scaler'] = self.grad_scaler.state_dict()
        save_path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
        # `<iter>.state.tmp` is what a kill leaves: not named `<iter>.state`, so auto-resume never picks it
        with atomic_open(save_path, temp_path=f'{save_path}.tmp') as f:
            torch.save(state, f)

    def resume_training(self, resume_state):
        for state in resume_state['schedulers']:
            if isinstance(state.get('milestones'), dict):
                state['milestones'] = collections.Counter(state['milestones'])
        super().resume_training(resume_state)
        if self.grad_scaler is not None and 'grad_scaler' in resume_state:
            self.grad_scaler.load_state_dict(resume_state['grad_scaler'])


def plain_scheduler_state(state):
    """A scheduler's state dict with a `collections.Counter` of milestones as a plain dict (safe-loader readable)."""
    state = dict(state)
    if isinstance(state.get('milestones'), collections.Counter):
        state['milestones'] = dict(state['milestones'])
    return state


def shard_indices(length, rank, world_size):
    """The dataset indices rank `rank` of `world_size` validates: every world_size-th from `rank` (uneven shards
    differ by one image; every image is validated exactly once)."""
    return list(range(rank, length, world_size))


def merge_shards(shards):
    """One {index: metrics} dict from the ranks' {index: metrics} shards."""
    return {idx: values for shard in shards for idx, values in shard.items()}


def average_metrics(per_image, names):
    """{name: mean over the images of `per_image` ({index: {name: value}})}, summed in image order as BasicSR's
    single-process loop does, so sharded results equal a single process's bit for bit."""
    means = {}
    for name in names:
        total = 0
        for idx in sorted(per_image):
            total += per_image[idx][name]
        means[name] = total / len(per_image)
    return means
