"""Tiny option files that run BasicSR's real train/test pipelines on the CPU in seconds."""
import copy
import os
import yaml

TINY_NET = {'num_in_ch': 3, 'num_feat': 8, 'num_modules': 1, 'num_units': 1}
METRICS = {
    'psnr': {
        'type': 'calculate_psnr',
        'crop_border': 0,
        'test_y_channel': False
    },
    'ssim': {
        'type': 'calculate_ssim',
        'crop_border': 0,
        'test_y_channel': False
    },
}


def make_train_options(name,
                       dirs,
                       network,
                       total_iter=6,
                       checkpoint_freq=3,
                       ema_decay=0.0,
                       gradient_loss=False,
                       color='rgb',
                       save_img=False):
    """A GradNetModel training option dict (BasicSR keys) on the image folders of `dirs`."""
    train = {
        'ema_decay': ema_decay,
        'optim_g': {
            'type': 'Adam',
            'lr': 1e-3,
            'betas': [0.9, 0.999]
        },
        'scheduler': {
            'type': 'MultiStepLR',
            'milestones': [4],
            'gamma': 0.5
        },
        'total_iter': total_iter,
        'warmup_iter': -1,
        'pixel_opt': {
            'type': 'L1Loss',
            'loss_weight': 1.0,
            'reduction': 'mean'
        },
    }
    if gradient_loss:
        train['gradient_opt'] = {'type': 'GradientConsistencyLoss', 'loss_weight': 0.1, 'reduction': 'mean'}
    return {
        'name': name,
        'model_type': 'GradNetModel',
        'num_gpu': 0,
        'manual_seed': 7,
        'datasets': {
            'train': {
                'name': 'tiny_train',
                'type': 'GaussianNoiseDataset',
                'dataroot_gt': dirs['train'],
                'color': color,
                'sigma': 25,
                'gt_size': 24,
                'use_hflip': True,
                'use_rot': True,
                'io_backend': {
                    'type': 'disk'
                },
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 2,
                'dataset_enlarge_ratio': 2,
                'prefetch_mode': None
            },
            'val': {
                'name': 'tiny_val',
                'type': 'GaussianNoiseDataset',
                'dataroot_gt': dirs['val'],
                'color': color,
                'sigma': 25,
                'io_backend': {
                    'type': 'disk'
                }
            },
        },
        'network_g': copy.deepcopy(network),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None
        },
        'train': train,
        'val': {
            'val_freq': checkpoint_freq,
            'save_img': save_img,
            'metrics': copy.deepcopy(METRICS)
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': checkpoint_freq,
            'use_tb_logger': False,
            'wandb': {
                'project': None,
                'resume_id': None
            }
        },
        'dist_params': {
            'backend': 'nccl',
            'port': 29500
        },
    }


def make_test_options(name, val_dir, network, checkpoint, param_key='params', color='rgb'):
    """A BasicSR test-pipeline option dict that loads `checkpoint` and validates on `val_dir` with images saved."""
    return {
        'name': name,
        'model_type': 'GradNetModel',
        'num_gpu': 0,
        'manual_seed': 7,
        'datasets': {
            'test_1': {
                'name': 'tiny_val',
                'type': 'GaussianNoiseDataset',
                'dataroot_gt': val_dir,
                'color': color,
                'sigma': 25,
                'io_backend': {
                    'type': 'disk'
                }
            },
        },
        'network_g': copy.deepcopy(network),
        'path': {
            'pretrain_network_g': checkpoint,
            'param_key_g': param_key,
            'strict_load_g': True
        },
        'val': {
            'save_img': True,
            'suffix': None,
            'metrics': copy.deepcopy(METRICS)
        },
    }


def write_yaml(opt, path):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return str(path)


def stage1_network():
    return dict(TINY_NET, type='MSKResNet')


def gradnet_options(channels, size, stage1_checkpoint=None):
    """A GradNet option dict with `size` (num_feat / num_modules / num_units) and a pre-denoiser of the same size."""
    predenoiser = dict(size, type='MSKResNet', num_in_ch=channels)
    if stage1_checkpoint is not None:
        predenoiser['pretrained'] = stage1_checkpoint
    return dict(size, type='GradNet', num_in_ch=channels, global_residual=True, predenoiser=predenoiser)


def stage1_checkpoint(path, seed=0):
    """Write a tiny stage-1 MSKResNet checkpoint (`params`) whose BatchNorm statistics are not the initial ones."""
    import torch

    from gradnet_arch import MSKResNet

    torch.manual_seed(seed)
    net = MSKResNet(**{k: v for k, v in stage1_network().items() if k != 'type'}).train()
    net(torch.rand(4, 3, 24, 24))
    torch.save({'params': net.state_dict()}, path)
    return str(path)


def gradnet_network(stage1_checkpoint, **extra):
    return dict(
        TINY_NET,
        type='GradNet',
        global_residual=True,
        predenoiser=dict(TINY_NET, type='MSKResNet', pretrained=stage1_checkpoint),
        **extra)
