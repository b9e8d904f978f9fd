"""Small, scoped fixes around BasicSR's own train/test pipelines.

Inside `gradnet_arch.train` / `gradnet_arch.test` (`pipeline_fixes`), three module attributes of BasicSR are swapped
for the duration of the run and restored afterwards (BasicSR's files are never changed):

- `basicsr.train.load_resume_state` maps the resume state to `torch.cuda.current_device()`, which fails without
  CUDA, finds auto-resume states under `./experiments` even when `path.experiments_root` says otherwise, stops on
  the first unreadable state and on any file in training_states/ not named `<number>.state`.
- `basicsr.train.create_train_val_dataloader` gets exactly resumable, per-sample seeded training data
  (see resumable_data.py). The resume point goes from the first function to the second through `PipelineRun`.
- `basicsr.utils.options.init_dist` always initialises NCCL and calls `torch.cuda.set_device`; without CUDA the
  process group is created with gloo instead.

Importing the plugin changes nothing in BasicSR, with one exception: a process whose main program is BasicSR's own
`basicsr/train.py` or `basicsr/test.py`, on a machine without CUDA, gets the gloo `init_dist`
(`install_upstream_script_fixes`), so upstream's `--launcher pytorch` runs there. Its `parse_options` initialises
the process group before anything of the plugin runs, so this cannot wait for the model.

tests/unit/glue/test_compat.py checks that the swapped BasicSR functions still look as these replacements expect.
"""
import atexit
import collections
import contextlib
import os
import re
import sys
import torch
import torch.distributed as dist

from gradnet_arch.errors import BadFileError, MissingFileError, OptionError, UnsafeFileError
from gradnet_arch.safe_load import safe_torch_load

_STATE_NAME = re.compile(r'(\d+)\.state')
_UPSTREAM_MODULES = {'basicsr.train', 'basicsr.test'}


def load_resume_state(opt):
    """BasicSR's load_resume_state, device-agnostic, with torch's safe loader, and robust to damaged states.

    With --auto_resume the newest *readable* state of `path.training_states` is used: a state that cannot be read
    (or whose network checkpoint cannot) is skipped with a warning and left where it is, and files that are not
    `<iter>.state` (notes, `.tmp` files of an interrupted write) are ignored. An explicit `path.resume_state` must be
    readable. A state that holds objects other than tensors and plain containers is never loaded.
    """
    from basicsr.utils import check_resume

    device = f'cuda:{torch.cuda.current_device()}' if opt['num_gpu'] != 0 and torch.cuda.is_available() else 'cpu'
    if opt['auto_resume']:
        state_path = opt['path'].get('training_states') or os.path.join('experiments', opt['name'], 'training_states')
        resume_state_path, resume_state = _newest_readable_state(opt, state_path, device)
        if resume_state_path is None:
            return None
        opt['path']['resume_state'] = resume_state_path
    elif opt['path'].get('resume_state'):
        resume_state_path = opt['path']['resume_state']
        if not os.path.isfile(resume_state_path):
            raise MissingFileError(f'Resume state not found: {resume_state_path}. Fix path.resume_state or remove it.')
        try:
            resume_state = _read_state(resume_state_path, device)
        except UnsafeFileError:
            raise
        except BadFileError as error:
            raise BadFileError(f'{error} Set path.resume_state to another state of that run (or leave it empty and '
                               f'use --auto_resume, which takes the newest readable one).') from None
    else:
        return None
    check_resume(opt, resume_state['iter'])
    return resume_state


def _read_state(path, device):
    """A training state (a dict with `iter` and `epoch`), read with torch's safe loader."""
    # States written by upstream's SRModel keep MultiStepRestartLR milestones as a Counter: allow exactly that type.
    state = safe_torch_load(path, 'resume state', map_location=device, allowed_globals=[collections.Counter])
    if not isinstance(state, dict) or not isinstance(state.get('iter'), int) or not isinstance(state.get('epoch'), int):
        raise BadFileError(f'Cannot use resume state {path}: it is not a BasicSR training state (a dict with iter and '
                           f'epoch).')
    return state


def _state_files(state_path):
    """The `<iter>.state` files of a training_states folder, newest (highest iteration) first."""
    if not os.path.isdir(state_path):
        return []
    states = []
    with os.scandir(state_path) as entries:
        for entry in entries:
            match = _STATE_NAME.fullmatch(entry.name)
            if match and entry.is_file():
                states.append((int(match.group(1)), entry.path))
    return [path for _, path in sorted(states, reverse=True)]


def _network_files(opt, resume_iter):
    """The network checkpoints BasicSR's check_resume will load when resuming from `resume_iter`."""
    ignored = opt['path'].get('ignore_resume_networks') or ()
    models = opt['path'].get('models') or os.path.join(os.path.dirname(opt['path']['training_states']), 'models')
    return [
        os.path.join(models, f'net_{key[len("network_"):]}_{resume_iter}.pth') for key in opt
        if key.startswith('network_') and key not in ignored
    ]


def _newest_readable_state(opt, state_path, device):
    """(path, state) of the newest state that, with its network checkpoints, reads; (None, None) if there is none."""
    candidates = _state_files(state_path)
    skipped = []
    for path in candidates:
        try:
            state = _read_state(path, device)
            for network_file in _network_files(opt, state['iter']):
                safe_torch_load(network_file, 'network checkpoint')
        except UnsafeFileError:
            raise  # not a torn write: someone put it there, so stop rather than quietly resume from an older one
        except (BadFileError, MissingFileError) as error:
            skipped.append(path)
            if opt.get('rank', 0) == 0:
                print(
                    f'Warning: --auto_resume skips {path}: {error} Trying the previous state; nothing is deleted.',
                    file=sys.stderr,
                    flush=True)
            continue
        return path, state
    if skipped:
        raise BadFileError(f'--auto_resume found no readable training state in {state_path} (unreadable: '
                           f'{", ".join(os.path.basename(p) for p in skipped)}). Set path.resume_state to a good '
                           f'state, or train under another name to start afresh.')
    return None, None


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


class PipelineRun:
    """The swapped functions of one train pipeline run, sharing what the resume loader found.

    BasicSR's `train_pipeline` calls `load_resume_state(opt)` and then `create_train_val_dataloader(opt, logger)`;
    the point to resume from (the state's iteration and epoch) goes from the first to the second through this
    object.

    Attributes:
        resume (ResumePoint | None): Set by `load_resume_state`; None for a fresh run.
    """

    def __init__(self):
        self.resume = None

    def load_resume_state(self, opt):
        """`load_resume_state(opt)` (above), remembering the resume point."""
        from gradnet_arch.resumable_data import ResumePoint

        state = load_resume_state(opt)
        self.resume = None if state is None else ResumePoint(state['iter'], state['epoch'])
        return state

    def create_train_val_dataloader(self, opt, logger):
        """resumable_data's `create_train_val_dataloader`, continuing from the remembered resume point."""
        from gradnet_arch.resumable_data import create_train_val_dataloader

        return create_train_val_dataloader(opt, logger, resume=self.resume)


@contextlib.contextmanager
def pipeline_fixes():
    """Swap the BasicSR functions above in, restoring the originals afterwards.

    Yields:
        PipelineRun: The run whose functions are swapped in.
    """
    import basicsr.train
    import basicsr.utils.options

    run = PipelineRun()
    swaps = [(basicsr.train, 'load_resume_state', run.load_resume_state),
             (basicsr.train, 'create_train_val_dataloader', run.create_train_val_dataloader),
             (basicsr.utils.options, 'init_dist', init_dist)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in swaps]
    for module, name, new in swaps:
        setattr(module, name, new)
    try:
        yield run
    finally:
        for module, name, old in saved:
            setattr(module, name, old)


def running_upstream_script():
    """Whether this process's main program is BasicSR's own `train.py` / `test.py` (as a file, under torchrun, or
    with `python -m basicsr.train`)."""
    main = sys.modules.get('__main__')
    spec = getattr(main, '__spec__', None)
    if _UPSTREAM_MODULES & {getattr(spec, 'name', None), _main_module_from_argv()}:
        return True
    main_file = getattr(main, '__file__', None)
    basicsr = sys.modules.get('basicsr')
    if not main_file or basicsr is None or not getattr(basicsr, '__file__', None):
        return False
    folder = os.path.dirname(os.path.realpath(basicsr.__file__))
    return os.path.realpath(main_file) in (os.path.join(folder, 'train.py'), os.path.join(folder, 'test.py'))


def _main_module_from_argv():
    """The module of `python [options] -m MODULE ...`, else None.

    Needed because `-m basicsr.train` imports the `basicsr` package (and, through the autoload hook, the plugin)
    before `__main__` is that module.
    """
    args = iter(getattr(sys, 'orig_argv', [])[1:])
    for arg in args:
        if arg == '-m':
            return next(args, None)
        if arg.startswith('-m'):
            return arg[2:]
        if arg in ('-X', '-W'):  # the interpreter options that take a separate value
            next(args, None)
        elif arg in ('-', '-c') or not arg.startswith('-'):  # stdin, a command or a script
            return None
    return None


def install_upstream_script_fixes():
    """In upstream's own `basicsr/train.py` / `test.py` on a machine without CUDA, let its parse_options initialise
    distributed runs with gloo (for that process, which is that script). Anywhere else: nothing.

    Returns:
        bool: Whether `basicsr.utils.options.init_dist` was swapped.
    """
    if not running_upstream_script() or torch.cuda.is_available():
        return False
    import basicsr.utils.options

    basicsr.utils.options.init_dist = init_dist
    return True
