"""Numeric precision and memory format: what a device runs fast, and the autocast / channels_last helpers shared by
training, validation and inference.

Weights always stay float32; reduced precision means `torch.autocast` (convolutions and matrix products in bf16 or
fp16, reductions in float32). On this project's CPU (AVX-512 with bf16) autocast only pays off together with
channels_last (NHWC) tensors: oneDNN's fast bf16 convolutions are NHWC ones, and NCHW inputs are reordered on every
call (speed/bench_fast_path.py measures each combination).
"""
import contextlib
import platform
import torch

from gradnet_arch.errors import OptionError

PRECISIONS = ('fp32', 'bf16', 'fp16')
_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def cpu_has_native_bf16():
    """True when this CPU computes bf16 in hardware (AVX512-BF16 or AMX on x86, the BF16 extension on Arm).

    Without it oneDNN emulates bf16, which is slower than float32: such CPUs should stay in fp32.
    """
    for probe in ('_is_avx512_bf16_supported', '_is_amx_tile_supported'):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None and fn():
            return True
    if platform.machine().lower() in ('aarch64', 'arm64'):
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def cuda_has_bf16(device):
    """True when the CUDA device computes bf16 natively (compute capability 8.0 and later)."""
    index = torch.device(device).index
    major, _ = torch.cuda.get_device_capability(index)
    return major >= 8


def bf16_supported(device):
    """True when `device` (CPU or CUDA) runs bf16 natively."""
    device = torch.device(device)
    if device.type == 'cuda':
        return cuda_has_bf16(device)
    return device.type == 'cpu' and cpu_has_native_bf16()


def check_precision(precision, device):
    """Raise OptionError for a precision `device` cannot run: fp16 on the CPU, bf16 on a GPU without it.

    Args:
        precision (str): 'fp32', 'bf16' or 'fp16'.
        device (str | torch.device): Where the network runs.
    """
    if precision not in PRECISIONS:
        raise OptionError(f'precision must be one of {", ".join(PRECISIONS)} (or auto), got {precision!r}.')
    device = torch.device(device)
    if precision == 'fp16' and device.type != 'cuda':
        raise OptionError('fp16 runs on CUDA GPUs only; on the CPU use bf16 (or fp32).')
    if precision == 'bf16' and device.type == 'cuda' and not cuda_has_bf16(device):
        raise OptionError(f'this GPU ({torch.cuda.get_device_name(device)}) has no bf16 support (it needs compute '
                          f'capability 8.0, Ampere, or later); use fp16 or fp32.')


def auto_precision(device):
    """The fastest precision whose accuracy loss is measured to be negligible on `device` (see the README).

    bf16 where the device has it natively (CPUs with AVX512-BF16 / AMX / Arm BF16, Ampere and later GPUs); fp16 on
    older GPUs; fp32 on CPUs without native bf16 (emulated bf16 is slower than fp32 there).
    """
    device = torch.device(device)
    if device.type == 'cuda':
        return 'bf16' if cuda_has_bf16(device) else 'fp16'
    return 'bf16' if bf16_supported(device) else 'fp32'


def resolve_precision(precision, device):
    """`precision` checked against `device`, with 'auto' (or None) replaced by `auto_precision(device)`."""
    if precision in (None, 'auto'):
        return auto_precision(device)
    check_precision(precision, device)
    return precision


PRECISION_HELP = ('auto (bf16 where the device runs it natively, else fp16 on a GPU or fp32 on a CPU), fp32, bf16 '
                  '(torch.autocast, CPU or CUDA) or fp16 (CUDA only); outputs are float32 either way (default auto)')


def add_precision_argument(parser, what='the network'):
    """The `--precision auto|fp32|bf16|fp16` option of the command-line tools, resolved with `resolve_precision`."""
    parser.add_argument(
        '--precision', choices=('auto', ) + PRECISIONS, default='auto', help=f'precision of {what}: {PRECISION_HELP}')


# BasicSR option `amp` -> precision
AMP_OPTIONS = {'bf16': 'bf16', 'fp16': 'fp16', False: 'fp32', None: 'fp32'}


def amp_precision(amp, device):
    """The training precision for GradNetModel's top-level `amp` option on `device`.

    Args:
        amp (str | bool | None): 'bf16', 'fp16', or false / None for float32.
        device (str | torch.device): Where the model trains (BasicSR's: cuda when num_gpu != 0, else cpu).

    Returns:
        tuple[str, str | None]: The precision ('fp32', 'bf16' or 'fp16') and, when bf16 was asked for on a CPU without
        native bf16 (which would be slower than float32 there), the message saying it falls back to float32.
    """
    if not isinstance(amp, (str, bool, type(None))) or amp not in AMP_OPTIONS:
        raise OptionError(f'amp: {amp!r} is not a mixed-precision mode; use bf16, fp16 or false.')
    precision, device = AMP_OPTIONS[amp], torch.device(device)
    if precision == 'bf16' and device.type == 'cpu' and not cpu_has_native_bf16():
        return 'fp32', ('amp: bf16 asked for, but this CPU has no native bf16 (AVX512-BF16, AMX or Arm BF16), where '
                        'it would be slower than float32: running in float32 instead.')
    if precision == 'fp16' and device.type != 'cuda':
        raise OptionError('amp: fp16 runs on CUDA GPUs only (num_gpu: 0 runs on the CPU); use amp: bf16 on the CPU.')
    check_precision(precision, device)
    return precision, None


def autocast(precision, device):
    """`torch.autocast` for 'bf16' / 'fp16' on `device`'s type; a no-op context for 'fp32'."""
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision])


def memory_format(channels_last):
    """The torch memory format for a `channels_last` flag."""
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(tensor, channels_last):
    """A 4-D tensor in channels_last (NHWC) or contiguous (NCHW) layout; other tensors unchanged."""
    if tensor.dim() != 4:
        return tensor
    return tensor.contiguous(memory_format=memory_format(channels_last))


def compiling():
    """True while torch.compile traces the code (inductor then generates its own fused kernels)."""
    compiler = getattr(torch, 'compiler', None)  # torch.compiler.is_compiling: torch >= 2.3
    return bool(getattr(compiler, 'is_compiling', lambda: False)())
