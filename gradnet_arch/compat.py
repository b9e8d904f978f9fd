"""Small, scoped fixes around BasicSR's own train/test pipelines.

Inside `gradnet_arch.train` / `gradnet_arch.test`, three module attributes of BasicSR are swapped for the duration
of the run (BasicSR's files are never changed):

- `basicsr.train.load_resume_state` maps the resume state to `torch.cuda.current_device()`, which fails without
  CUDA, and finds auto-resume states under `./experiments` even when `path.experiments_root` says otherwise.
- `basicsr.train.create_train_val_dataloader` gets exactly resumable, per-sample seeded training data
  (see resumable_data.py).
- `basicsr.utils.options.init_dist` always initialises NCCL and calls `torch.cuda.set_device`; without CUDA the
  process group is created with gloo instead.

The last one is also installed when the plugin is imported on a machine without CUDA
(`install_cpu_dist_fallback`), so upstream's own `basicsr/train.py --launcher pytorch` runs on gloo there; on CUDA
machines nothing is swapped outside the entry points.
"""
import atexit
import collections
import contextlib
import os
import torch
import torch.distributed as dist

from gradnet_arch.errors import BadFileError, MissingFileError, OptionError


def load_resume_state(opt):
    """BasicSR's load_resume_state, device-agnostic and with torch's safe loader."""
    from basicsr.utils import check_resume, scandir

    resume_state_path = None
    if opt['auto_resume']:
        state_path = opt['path'].get('training_states') or os.path.join('experiments', opt['name'], 'training_states')
        if os.path.isdir(state_path):
            states = [float(v.split('.state')[0]) for v in scandir(state_path, suffix='state', recursive=False)]
            if states:
                resume_state_path = os.path.join(state_path, f'{max(states):.0f}.state')
                opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
    if resume_state_path is None:
        return None
    if not os.path.isfile(resume_state_path):
        raise MissingFileError(f'Resume state not found: {resume_state_path}. Fix path.resume_state or remove it.')
    device = f'cuda:{torch.cuda.current_device()}' if opt['num_gpu'] != 0 and torch.cuda.is_available() else 'cpu'
    # States written by upstream's SRModel keep MultiStepRestartLR milestones as a Counter: allow exactly that type.
    with torch.serialization.safe_globals([collections.Counter]):
        try:
            resume_state = torch.load(resume_state_path, map_location=device, weights_only=True)
        except Exception as error:
            raise BadFileError(f'Cannot read resume state {resume_state_path}: {type(error).__name__}: {error}. The '
                               f'file is corrupt or truncated; delete it to resume from the previous one.') from error
    check_resume(opt, resume_state['iter'])
    opt['_resume_iter'], opt['_resume_epoch'] = resume_state['iter'], resume_state['epoch']
    return resume_state


def init_dist(launcher, backend='nccl', **kwargs):
    """BasicSR's init_dist on CUDA machines; gloo on machines without CUDA."""
    from basicsr.utils import dist_util

    if torch.cuda.is_available():
        return dist_util.init_dist(launcher, backend, **kwargs)
    if launcher == 'slurm':  # let BasicSR derive the env (RANK, MASTER_ADDR...) but never touch CUDA
        raise OptionError('--launcher slurm needs CUDA devices; use torchrun with --launcher pytorch on CPU.')
    if launcher != 'pytorch':
        raise OptionError(f'Invalid launcher type: {launcher}')
    if 'RANK' not in os.environ:
        raise OptionError('--launcher pytorch expects the environment set by torchrun (RANK, WORLD_SIZE, ...). '
                          'Start with: torchrun --nproc_per_node=N -m gradnet_arch.train -opt X.yml --launcher pytorch')
    dist.init_process_group(backend='gloo', **kwargs)
    # BasicSR never destroys the process group; a gloo group still alive at interpreter exit can abort the process
    # ("terminate called without an active exception") once its rank finishes before the others.
    atexit.register(_destroy_process_group)


def _destroy_process_group():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def pipeline_fixes():
    """Swap the BasicSR functions above in, restoring the originals afterwards."""
    import basicsr.train
    import basicsr.utils.options

    from gradnet_arch.resumable_data import create_train_val_dataloader

    swaps = [(basicsr.train, 'load_resume_state', load_resume_state),
             (basicsr.train, 'create_train_val_dataloader', create_train_val_dataloader),
             (basicsr.utils.options, 'init_dist', init_dist)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, new in swaps:
        setattr(module, name, new)
    try:
        yield
    finally:
        for module, name, old in saved:
            setattr(module, name, old)


def install_cpu_dist_fallback():
    """On machines without CUDA, let upstream's parse_options initialise distributed runs with gloo."""
    import basicsr.utils.options

    if not torch.cuda.is_available():
        basicsr.utils.options.init_dist = init_dist
