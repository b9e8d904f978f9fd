"""The one device resolver of the library and the command-line tools."""
import torch

from gradnet_arch.errors import OptionError

CHOICES = 'auto, cpu, cuda or cuda:N'


def resolve_device(device='auto', option='--device'):
    """`device` as a torch.device, with a one-line OptionError when it does not exist on this machine.

    Args:
        device (str | torch.device | None): 'auto' (or None): CUDA when available, else the CPU; 'cpu', 'cuda',
            'cuda:N', 'mps' or a torch.device. Default: 'auto'.
        option (str): How the caller names the setting, in messages and their advice: '--device' for the
            command-line tools, 'device' for a Python argument. Default: '--device'.

    Returns:
        torch.device: The device.

    Raises:
        OptionError: Not a device name, a device type other than cpu / cuda / mps, or a device this machine lacks.
    """
    if device is None or device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    use_cpu = f'{option} cpu' if option.startswith('-') else f'{option}="cpu"'
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(f'Unknown device {device!r} ({option}): use {CHOICES}.') from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise OptionError(f'{option} {str(device)!r} was asked for but PyTorch sees no CUDA GPU here (no GPU '
                              f'visible, or a CPU-only PyTorch build). Use {use_cpu}.')
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise OptionError(f'{option} {str(device)!r} does not exist: PyTorch sees {count} CUDA device(s), '
                              f'cuda:0 to cuda:{count - 1}.')
    elif dev.type == 'mps':
        if not torch.backends.mps.is_available():
            raise OptionError(f'{option} "mps" was asked for but PyTorch has no MPS backend here. Use {use_cpu}.')
    elif dev.type != 'cpu':
        raise OptionError(f'{option} {str(device)!r} is not supported: use {CHOICES}.')
    return dev
