"""gradnet_arch.common.devices.resolve_device: the one device resolver of the library and the tools."""
import pytest
import torch

from gradnet_arch.common.devices import resolve_device
from gradnet_arch.errors import OptionError


def test_auto_and_plain_devices():
    expected = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    assert resolve_device('auto') == resolve_device(None) == resolve_device() == expected
    assert resolve_device('cpu') == resolve_device(torch.device('cpu')) == torch.device('cpu')


@pytest.mark.parametrize('device, option, message', [
    ('gpu0', '--device', r"^Unknown device 'gpu0' \(--device\): use auto, cpu, cuda or cuda:N\.$"),
    ('meta', 'device', r"^device 'meta' is not supported: use auto, cpu, cuda or cuda:N\.$"),
])
def test_bad_names(device, option, message):
    with pytest.raises(OptionError, match=message):
        resolve_device(device, option=option)


@pytest.mark.skipif(torch.cuda.is_available(), reason='a machine without CUDA')
@pytest.mark.parametrize('option, advice', [('--device', 'Use --device cpu.'), ('device', 'Use device="cpu".')])
def test_cuda_without_a_gpu(option, advice):
    for name in ('cuda', 'cuda:1'):
        with pytest.raises(OptionError) as info:
            resolve_device(name, option=option)
        assert str(info.value).startswith(f"{option} '{name}' was asked for but PyTorch sees no CUDA GPU here")
        assert str(info.value).endswith(advice)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_devices():  # pragma: no cover - CPU-only machine
    count = torch.cuda.device_count()
    assert resolve_device('cuda:0') == torch.device('cuda:0')
    with pytest.raises(OptionError, match=f'does not exist: PyTorch sees {count} CUDA device'):
        resolve_device(f'cuda:{count}')
