"""Pretrained weights: safe checkpoint I/O (.pth, .safetensors), the shipped models, scripts/package_weights.py."""
import copy
import importlib.util
import json
import numpy as np
import os
import pickle
import pytest
import struct
import torch
import yaml
from basicsr.archs import build_network
from basicsr.metrics import calculate_psnr
from basicsr.models.base_model import BaseModel
from basicsr.utils import tensor2img
from conftest import REPO, run_python
from tiny_options import TINY_NET, make_test_options, write_yaml

import gradnet_arch
from gradnet_arch.errors import BadFileError, CheckpointKeyError, MissingFileError, OptionError
from gradnet_arch.pretrained import (ModelDescription, clean_state_dict, describe, list_pretrained, load_model,
                                     load_pretrained, load_weights, read_checkpoint, read_safetensors, save_checkpoint,
                                     write_safetensors, zoo)

EXPECTED_SHIPPED = ('gradnet_color_sigma25', 'gradnet_gray_sigma25')


def gradnet_opt(channels=3):
    net = dict(TINY_NET, num_in_ch=channels)
    return dict(net, type='GradNet', global_residual=True, predenoiser=dict(net, type='MSKResNet', pretrained=None))


def make_net(opt, seed):
    """A net built by BasicSR's own build_network, with random weights and BatchNorm statistics."""
    torch.manual_seed(seed)
    net = build_network(opt)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith('running_mean'):
                buf.uniform_(-0.1, 0.1)
            elif name.endswith('running_var'):
                buf.uniform_(0.5, 1.5)
    return net.eval()


def run(net, channels=3, size=32):
    torch.manual_seed(123)
    with torch.no_grad():
        return net(torch.rand(1, channels, size, size))


def same_outputs(loaded, reference, channels=3):
    """True when `loaded` (load_pretrained's default layout: BatchNorm folded into the convolutions, weights
    channels_last) computes what `reference` computes. Folding and the NHWC kernels reorder the float32 arithmetic,
    so outputs agree to 1e-5 (absolute, and relative for the large outputs of random RIDNets) rather than bitwise;
    the two weight sets of `nets` differ by ~0.1, so a wrong weight set still fails (the training layout,
    fold_batchnorm=False, is compared bitwise in test_round_trip_outputs_identical)."""
    return torch.allclose(run(loaded, channels), run(reference, channels), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def nets():
    """(network_g, training net, EMA net) of a tiny colour GradNet whose two weight sets differ."""
    opt = gradnet_opt()
    return opt, make_net(opt, 1), make_net(opt, 2)


def save_gradnet(path, nets, **kwargs):
    opt, net, ema = nets
    kwargs.setdefault('network_opt', opt)
    save_checkpoint(str(path), net.state_dict(), ema.state_dict(), **kwargs)
    return str(path)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize('ext', ['.pth', '.safetensors'])
def test_round_trip_outputs_identical(tmp_path, nets, ext):
    opt, net, ema = nets
    path = save_gradnet(tmp_path / f'g{ext}', nets, meta={'name': 'tiny', 'sigma': 25})
    loaded = load_pretrained(path)
    assert type(loaded).__name__ == 'GradNet' and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert loaded.predenoiser is not None and not loaded.predenoiser.training
    assert same_outputs(loaded, ema)  # params_ema is the default, pre-denoiser included
    info = loaded.pretrained_info
    assert info['batchnorm_folded'] == 2 and info['channels_last'] is True  # one ResUnit in GradNet, one in stage 1
    assert info['parameters'] == sum(p.numel() for p in ema.parameters())  # the trained net's count, not the folded
    unfolded = load_pretrained(path, fold_batchnorm=False, channels_last=False)  # the training layout, bitwise
    assert torch.equal(run(unfolded), run(ema)) and unfolded.state_dict().keys() == ema.state_dict().keys()
    assert unfolded.pretrained_info['batchnorm_folded'] == 0 and not unfolded.training
    assert not any(p.requires_grad for p in unfolded.parameters())
    assert torch.equal(loaded.predenoiser.head[0].weight, ema.predenoiser.head[0].weight)
    assert info['param_key'] == 'params_ema' and info['meta'] == {'name': 'tiny', 'sigma': 25}
    assert info['network_g'] == opt and info['source'] == path and info['name'] is None
    ckpt = read_checkpoint(path)
    assert ckpt['network_g'] == opt and ckpt['meta']['sigma'] == 25
    if ext == '.pth':  # both weight sets are kept; safetensors holds one state dict
        assert same_outputs(load_pretrained(path, param_key='params'), net)
        assert set(ckpt) == {'params', 'params_ema', 'network_g', 'meta'}
    else:
        assert set(ckpt) == {'params_ema', 'network_g', 'meta'}
        _, metadata = read_safetensors(path)
        assert metadata['format'] == 'pt' and metadata['param_key'] == 'params_ema'
        assert json.loads(metadata['network_g']) == opt and json.loads(metadata['meta'])['name'] == 'tiny'
        assert metadata['name'] == 'tiny' and metadata['sigma'] == '25'  # readable copies of the meta fields


def test_safetensors_without_ema_stores_params(tmp_path, nets):
    opt, net, _ = nets
    path = str(tmp_path / 'p.safetensors')
    save_checkpoint(path, net.state_dict(), network_opt=opt)
    assert read_safetensors(path)[1]['param_key'] == 'params'
    assert same_outputs(load_pretrained(path), net)


def test_safetensors_stage1_file_is_a_predenoiser(tmp_path):
    """GradNet's `predenoiser.pretrained` takes a .safetensors stage-1 file as well as a .pth."""
    stage1_opt = dict(gradnet_opt()['predenoiser'])
    stage1 = make_net({k: v for k, v in stage1_opt.items() if k != 'pretrained'}, 3)
    path = str(tmp_path / 'stage1.safetensors')
    save_checkpoint(path, stage1.state_dict(), stage1.state_dict())
    opt = gradnet_opt()
    opt['predenoiser'] = dict(opt['predenoiser'], pretrained=path, param_key='params_ema')
    net = build_network(opt)
    for key, value in stage1.state_dict().items():
        assert torch.equal(net.predenoiser.state_dict()[key], value), key
    opt['predenoiser']['param_key'] = 'params_old'
    with pytest.raises(CheckpointKeyError, match='params_old'):
        build_network(opt)


def test_safetensors_dtypes_shapes_and_official_reader(tmp_path):
    torch.manual_seed(0)
    tensors = {
        'f32': torch.randn(3, 4),
        'f16': torch.randn(5).half(),
        'bf16': torch.randn(2, 3).bfloat16(),
        'f64': torch.randn(2, dtype=torch.float64),
        'i64': torch.tensor(7),  # 0-d, like BatchNorm's num_batches_tracked
        'i32': torch.arange(-3, 3, dtype=torch.int32),
        'i16': torch.tensor([-2, 300], dtype=torch.int16),
        'i8': torch.tensor([-128, 127], dtype=torch.int8),
        'u8': torch.tensor([0, 255], dtype=torch.uint8),
        'bool': torch.tensor([True, False, True]),
        'empty': torch.zeros(0, 3),
        'strided': torch.arange(12.).reshape(3, 4).t(),  # non-contiguous
    }
    path = str(tmp_path / 'd.safetensors')
    write_safetensors(path, tensors, {'k': 'v'})
    with open(path, 'rb') as f:
        header_len = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(header_len))
    assert header_len % 8 == 0 and header['bf16']['dtype'] == 'BF16' and header['i64']['shape'] == []
    back, metadata = read_safetensors(path)
    assert metadata == {'k': 'v'} and set(back) == set(tensors)  # the package stores them sorted, not in dict order
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name
    official = pytest.importorskip('safetensors.torch')
    theirs = official.load_file(path)
    assert all(torch.equal(theirs[k], v) for k, v in tensors.items())
    official.save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / 'o.safetensors'), {'a': 'b'})
    mine, metadata = read_safetensors(str(tmp_path / 'o.safetensors'))
    assert metadata == {'a': 'b'} and all(torch.equal(mine[k], v) for k, v in tensors.items())


def test_safetensors_writer_rejects_what_it_cannot_store(tmp_path):
    with pytest.raises(OptionError, match='complex64'):
        write_safetensors(str(tmp_path / 'c.safetensors'), {'c': torch.zeros(2, dtype=torch.complex64)})
    with pytest.raises(OptionError, match='str to str'):
        write_safetensors(str(tmp_path / 'm.safetensors'), {'a': torch.zeros(1)}, {'n': 3})
    assert os.listdir(tmp_path) == []  # nothing half-written is left behind
    with pytest.raises(OptionError, match='must end with'):
        save_checkpoint(str(tmp_path / 'x.bin'), {'a': torch.zeros(1)})
    with pytest.raises(OptionError, match='meta must hold only'):
        save_checkpoint(str(tmp_path / 'x.pth'), {'a': torch.zeros(1)}, meta={'bad': object()})


def test_safetensors_shared_and_sparse_tensors_and_reads_independent_of_the_file(tmp_path):
    base = torch.arange(6.)
    path = str(tmp_path / 's.safetensors')
    # tied weights and views of one storage (which the package itself refuses) are written as separate copies
    write_safetensors(path, {'a': base, 'b': base[2:5], 'c': base.reshape(2, 3).t()})
    back, _ = read_safetensors(path)
    assert torch.equal(back['b'], base[2:5]) and torch.equal(back['c'], base.reshape(2, 3).t())
    with open(path, 'r+b') as f:  # the tensors read are in memory, not views of the file
        f.write(bytes(os.path.getsize(path)))
    assert torch.equal(back['a'], base)
    back['a'].add_(1)  # and writable
    with pytest.raises(OptionError, match="dense tensors only; 'sp'"):
        write_safetensors(str(tmp_path / 'sp.safetensors'), {'sp': torch.eye(2).to_sparse()})
    with pytest.raises(OptionError, match='named'):
        write_safetensors(str(tmp_path / 'n.safetensors'), {'__metadata__': torch.zeros(1)})
    assert sorted(os.listdir(tmp_path)) == ['s.safetensors']


def test_clean_state_dict():
    weight = torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last)
    state = {'module.head.weight': weight, 'tail.module.bias': torch.zeros(2), 'module.tied': weight}
    clean = clean_state_dict(state)
    assert list(clean) == ['head.weight', 'tail.module.bias', 'tied']  # only a leading prefix, order kept
    assert clean['head.weight'] is weight  # without to_cpu the tensors are the same objects
    memo = {}
    stored = clean_state_dict(state, to_cpu=True, memo=memo)
    assert stored['head.weight'].is_contiguous() and not weight.is_contiguous()
    assert torch.equal(stored['head.weight'], weight) and stored['tied'] is stored['head.weight']
    assert clean_state_dict({'w': weight}, to_cpu=True, memo=memo)['w'] is stored['head.weight']  # one memo: shared


def test_load_weights_and_its_errors(tmp_path):
    opt = dict(TINY_NET, type='MSKResNet')
    source, target = make_net(opt, 1), make_net(opt, 2)
    path = str(tmp_path / 'm.pth')
    torch.save({'params': {f'module.{k}': v for k, v in source.state_dict().items()}}, path)
    assert load_weights(target, path) == 'params'
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
    with pytest.raises(MissingFileError, match=r'^Thing not found: .*nowhere\.pth\. Look elsewhere\.$'):
        load_weights(target, str(tmp_path / 'nowhere.pth'), what='Thing', hint='Look elsewhere.')
    with pytest.raises(CheckpointKeyError, match="no key 'params_ema'"):
        load_weights(target, path, param_key='params_ema')
    other = make_net(dict(opt, num_modules=2), 3)
    with pytest.raises(OptionError, match=r'network checkpoint .*m\.pth does not match MSKResNet:\n  missing in'):
        load_weights(other, path, what='network checkpoint')
    load_weights(other, path, strict=False)  # non-strict: the keys it has are loaded
    assert torch.equal(other.head[0].weight, source.head[0].weight)


def test_archs_load_the_predenoiser_through_the_registry_hook(tmp_path, monkeypatch):
    """The archs import no weights code: BasicSR's build_network loads the stage-1 checkpoint through the hook that
    gradnet_arch.pretrained installed; without it the error says what is missing."""
    import ast

    from gradnet_arch import archs, registry
    from gradnet_arch.pretrained import load_weights

    assert registry._weights_loader is load_weights
    folder = os.path.dirname(archs.__file__)
    for name in os.listdir(folder):
        if name.endswith('.py'):
            tree = ast.parse(open(os.path.join(folder, name)).read())
            modules = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
            modules += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
            assert not any('pretrained' in str(module) for module in modules), name
            calls = [node.func for node in ast.walk(tree) if isinstance(node, ast.Call)]
            assert not any(isinstance(f, ast.Name) and f.id == 'open' for f in calls), name
            assert not any(isinstance(f, ast.Attribute) and f.attr == 'load' for f in calls), name
    stage1 = make_net(dict(TINY_NET, type='MSKResNet'), 4)
    path = str(tmp_path / 'stage1.pth')
    torch.save({'params': stage1.state_dict()}, path)
    opt = gradnet_opt()
    opt['predenoiser']['pretrained'] = path
    calls = []
    monkeypatch.setattr(registry, '_weights_loader', lambda net, p, **kw: calls.append(
        (p, kw)) or load_weights(net, p, **kw))
    net = build_network(opt)
    assert torch.equal(net.predenoiser.head[0].weight, stage1.head[0].weight)
    assert calls == [(path, {
        'param_key': None,
        'strict': True,
        'what': 'pre-denoiser checkpoint',
        'hint': 'Train stage 1 first (its models/ folder holds net_g_latest.pth) or fix the path.'
    })]
    monkeypatch.setattr(registry, '_weights_loader', None)
    with pytest.raises(RuntimeError, match='No weights loader is installed; import gradnet_arch'):
        build_network(opt)


# ---------------------------------------------------------------- the model description


class Windowed(torch.nn.Module):
    """A stand-in for window attention: a conv with a `window_size`, no channel attribute."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
        self.conv.window_size = 8

    def forward(self, x):
        return self.conv(x)


def test_model_description(tmp_path, nets):
    import dataclasses

    path = save_gradnet(tmp_path / 'g.pth', nets)
    net = load_pretrained(path)
    description = describe(net)
    assert description is net.model_description  # built once, at load
    assert description == ModelDescription(
        arch='GradNet',
        input_channels=3,
        size_multiple=1,
        precisions=('fp32', 'bf16', 'fp16'),
        tiling='approximate',  # the channel attention pools over the whole input
        has_gradient=True,
        parameters=net.pretrained_info['parameters'])
    assert description.parameters > sum(p.numel() for p in net.parameters())  # the trained count, before folding
    with pytest.raises(dataclasses.FrozenInstanceError):
        description.input_channels = 1
    assert describe(nets[1]) == description  # read from the unfolded training net: the same description
    grey = describe(make_net(dict(TINY_NET, type='GradNet', num_in_ch=1, gradient_source='none'), 1))
    assert (grey.input_channels, grey.has_gradient) == (1, False)
    plain = describe(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.ReLU()))
    assert (plain.arch, plain.input_channels, plain.tiling, plain.size_multiple) == ('Sequential', 4, 'exact', 1)
    windowed = describe(Windowed())
    assert (windowed.input_channels, windowed.size_multiple) == (1, 8)
    unknown = describe(torch.nn.Identity())
    assert unknown.input_channels is None and unknown.parameters == 0
    with pytest.raises(OptionError, match='Cannot tell how many image channels Identity takes'):
        unknown.channels()
    assert description.precision('auto', 'cpu') in ('fp32', 'bf16') and description.precision('fp32', 'cpu') == 'fp32'
    with pytest.raises(OptionError, match='CUDA GPUs only'):
        description.precision('fp16', 'cpu')
    with pytest.raises(OptionError, match='does not run in bf16'):
        dataclasses.replace(description, precisions=('fp32', )).precision('bf16', 'cpu')


def test_load_model_takes_an_option_yaml(tmp_path, nets):
    opt, net, ema = nets
    bare = str(tmp_path / 'bare.pth')
    torch.save({'params': net.state_dict()}, bare)
    yml = write_yaml(make_test_options('t', str(tmp_path), opt, bare), tmp_path / 'o.yml')
    loaded = load_model(yml)
    assert same_outputs(loaded, net) and describe(loaded).input_channels == 3
    with pytest.raises(OptionError, match=r'o\.yml is an option YAML, which already names the network; drop --opt\.'):
        load_model(yml, network_opt=opt, options_flag='--opt')
    assert same_outputs(load_model(bare, network_opt=opt), net)


# ---------------------------------------------------------------- BasicSR's own loaders


def test_file_loads_with_basicsr_build_network_and_load_network(tmp_path, nets):
    opt, net, ema = nets
    path = save_gradnet(tmp_path / 'g.pth', nets, meta={'name': 'tiny'})
    ckpt = torch.load(path, weights_only=True)
    model = BaseModel({'num_gpu': 0, 'is_train': False})
    for key, reference in (('params', net), ('params_ema', ema)):
        built = build_network(ckpt['network_g'])  # BasicSR's builder on the embedded options
        model.load_network(built, path, strict=True, param_key=key)  # extra top-level keys are ignored
        assert torch.equal(run(built.eval()), run(reference))


# ---------------------------------------------------------------- bad files


class Payload:
    """Unpickling this creates a folder: the proof that a pickle ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker, )


@pytest.mark.parametrize('writer', ['torch', 'pickle'])
def test_malicious_pickle_is_refused_not_executed(tmp_path, writer):
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    obj = {'params': {'w': torch.zeros(1)}, 'network_g': Payload(marker)}
    with open(path, 'wb') as f:
        if writer == 'torch':
            torch.save(obj, f)
        else:
            pickle.dump(obj, f)
    for load in (read_checkpoint, load_pretrained):
        with pytest.raises(BadFileError) as info:
            load(path)
        assert path in str(info.value) and not os.path.exists(marker)
    if writer == 'torch':
        assert 'Refusing to load' in str(info.value) and 'GLOBAL posix.mkdir' in str(info.value)
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is live: plain unpickling does run it
    assert os.path.isdir(marker)


def test_corrupt_truncated_and_missing_pth(tmp_path, nets):
    good = save_gradnet(tmp_path / 'g.pth', nets)
    data = open(good, 'rb').read()
    cases = {'truncated.pth': data[:len(data) // 2], 'garbage.pth': os.urandom(2000), 'empty.pth': b''}
    for name, content in cases.items():
        path = str(tmp_path / name)
        with open(path, 'wb') as f:
            f.write(content)
        with pytest.raises(BadFileError, match='corrupt, truncated') as info:
            load_pretrained(path)
        assert path in str(info.value)
    with pytest.raises(MissingFileError, match='must name an existing'):
        load_pretrained(str(tmp_path / 'nowhere.pth'))
    torch.save([1, 2], str(tmp_path / 'list.pth'))
    with pytest.raises(BadFileError, match='holds a list'):
        read_checkpoint(str(tmp_path / 'list.pth'))
    torch.save({'epoch': 1, 'iter': 5}, str(tmp_path / 'state.pth'))
    with pytest.raises(BadFileError, match='holds no state dict'):
        read_checkpoint(str(tmp_path / 'state.pth'))


def raw_safetensors(path, header, data, header_len=None):
    blob = json.dumps(header).encode() if isinstance(header, dict) else header
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(blob) if header_len is None else header_len) + blob + data)
    return str(path)


F32_2 = {'dtype': 'F32', 'shape': [2], 'data_offsets': [0, 8]}


@pytest.mark.parametrize(
    'header, data, header_len, message',
    [
        ({
            'a': F32_2
        }, bytes(8), 10**6, 'header length field says 1000000'),
        (b'{"a": [', bytes(8), None, 'not valid JSON'),
        (b'[1, 2]', b'', None, 'not an object'),
        ({
            'a': dict(F32_2, dtype='F7')
        }, bytes(8), None, 'unknown variant `F7`'),
        (
            {
                'a': dict(F32_2, dtype='F8_E4M3')  # a dtype the package knows: 2 bytes, not 8
            },
            bytes(8),
            None,
            "tensor 'a' of dtype F8_E4M3 and shape \\[2\\] needs 2 bytes"),
        ({
            'a': F32_2
        }, bytes(4), None, 'need 8 bytes of data but the file holds 4'),
        ({
            'a': dict(F32_2, data_offsets=[0, 12])
        }, bytes(12), None, 'needs 8 bytes'),
        ({
            'a': F32_2,
            'b': dict(F32_2, data_offsets=[4, 12])
        }, bytes(12), None, 'overlaps'),
        ({
            'a': dict(F32_2, data_offsets=[4, 12])
        }, bytes(12), None, 'gap'),
        ({
            'a': F32_2
        }, bytes(16), None, 'not described'),
        ({
            'a': dict(F32_2, data_offsets=[8, 0])
        }, bytes(8), None, 'invalid data_offsets'),
        ({
            'a': dict(F32_2, shape=[-2])
        }, bytes(8), None, 'invalid shape'),
        ({
            'a': F32_2,
            '__metadata__': {
                'n': 1
            }
        }, bytes(8), None, '__metadata__'),
    ])
def test_invalid_safetensors_is_refused(tmp_path, header, data, header_len, message):
    path = raw_safetensors(tmp_path / 'bad.safetensors', header, data, header_len)
    with pytest.raises(BadFileError, match=message) as info:
        read_checkpoint(path)
    assert path in str(info.value)


def test_tiny_safetensors_file(tmp_path):
    path = str(tmp_path / 'tiny.safetensors')
    open(path, 'wb').write(b'\x01\x02')
    with pytest.raises(BadFileError, match='fewer than the 8-byte'):
        read_safetensors(path)
    assert read_safetensors(raw_safetensors(tmp_path / 'ok.safetensors', {'a': F32_2}, bytes(8)))[0]['a'].sum() == 0


# ---------------------------------------------------------------- options, keys and shapes


def test_missing_network_options_then_dict_or_yaml(tmp_path, nets):
    opt, net, ema = nets
    bare = str(tmp_path / 'bare.pth')
    torch.save({'params': net.state_dict()}, bare)  # BasicSR's own format: no network_g inside
    with pytest.raises(OptionError, match='pass network_opt='):
        load_pretrained(bare)
    assert same_outputs(load_pretrained(bare, network_opt=opt), net)
    yml = write_yaml(make_test_options('t', str(tmp_path), opt, bare, param_key='params_ema'), tmp_path / 'o.yml')
    assert same_outputs(load_pretrained(bare, network_opt=yml), net)
    # The YAML alone: path.pretrain_network_g; BasicSR's rule falls back from a missing params_ema to params.
    assert same_outputs(load_pretrained(network_opt=yml), net)
    state_only = str(tmp_path / 'state_only.pth')
    torch.save(ema.state_dict(), state_only)  # torch.save(net.state_dict()) works too
    assert same_outputs(load_pretrained(state_only, network_opt=opt), ema)
    with pytest.raises(OptionError, match='needs a shipped model name'):
        load_pretrained()
    with pytest.raises(MissingFileError, match='Option file not found'):
        load_pretrained(bare, network_opt=str(tmp_path / 'no.yml'))
    with pytest.raises(OptionError, match="'GradNett' is not a registered arch. Did you mean 'GradNet'"):
        load_pretrained(bare, network_opt=dict(opt, type='GradNett'))


def test_mismatched_shapes_and_keys_are_listed(tmp_path, nets):
    opt, net, ema = nets
    path = save_gradnet(tmp_path / 'g.pth', nets)
    with pytest.raises(CheckpointKeyError) as info:
        load_pretrained(path, network_opt=dict(opt, num_feat=16))
    text = str(info.value)
    assert path in text and 'shape mismatches' in text
    assert 'shape mismatches (15): body.blocks.0.attention.body.1.weight: checkpoint (1, 11, 1, 1) vs net' in text
    with pytest.raises(CheckpointKeyError, match=r'missing in the file \(\d+\): body\.blocks\.0\.units\.1\.'):
        load_pretrained(path, network_opt=dict(opt, num_units=2))
    # Options embedded in the file that do not fit its weights: the file is at fault.
    liar = save_gradnet(tmp_path / 'liar.safetensors', nets, network_opt=dict(opt, num_modules=2))
    with pytest.raises(BadFileError, match='embedded in the file'):
        load_pretrained(liar)
    # A stage-1 checkpoint is no GradNet: the pre-denoiser would stay random.
    stage1 = str(tmp_path / 'stage1.pth')
    torch.save({'params': ema.predenoiser.state_dict()}, stage1)
    with pytest.raises(CheckpointKeyError, match='holds no pre-denoiser weights'):
        load_pretrained(stage1, network_opt=opt)
    loaded = load_pretrained(stage1, network_opt=dict(type='MSKResNet', **TINY_NET))
    assert same_outputs(loaded, ema.predenoiser)


def test_param_key_choice_and_module_prefix(tmp_path, nets):
    opt, net, ema = nets
    path = save_gradnet(tmp_path / 'g.pth', nets)
    with pytest.raises(
            CheckpointKeyError, match=r"no key 'params_emma'; its state dicts are \['params', 'params_ema'\]"):
        load_pretrained(path, param_key='params_emma')
    only_params = str(tmp_path / 'p.pth')
    ddp = {f'module.{k}': v for k, v in net.state_dict().items()}  # DDP-wrapped names
    save_checkpoint(only_params, ddp, network_opt=opt)
    loaded = load_pretrained(only_params)
    assert loaded.pretrained_info['param_key'] == 'params' and same_outputs(loaded, net)
    with pytest.raises(CheckpointKeyError, match=r"its state dicts are \['params'\]\. Set param_key"):
        load_pretrained(only_params, param_key='params_ema')


def test_other_registered_archs(tmp_path):
    for opt, channels in ((dict(type='MSKResNet', **dict(TINY_NET, num_in_ch=1)), 1),
                          (dict(type='RIDNet', in_channels=3, mid_channels=16, out_channels=3, num_block=1), 3)):
        net = make_net(opt, 3)
        for ext in ('.pth', '.safetensors'):
            path = str(tmp_path / f'{opt["type"]}{ext}')
            save_checkpoint(path, net.state_dict(), network_opt=opt)
            loaded = load_pretrained(path)
            assert type(loaded).__name__ == opt['type'] and same_outputs(loaded, net, channels)


def test_device_argument(tmp_path, nets):
    path = save_gradnet(tmp_path / 'g.pth', nets)
    assert next(load_pretrained(path, device=torch.device('cpu')).parameters()).device.type == 'cpu'
    with pytest.raises(OptionError, match='Unknown device'):
        load_pretrained(path, device='gpu0')
    if not torch.cuda.is_available():
        for device in ('cuda', 'cuda:1'):
            with pytest.raises(OptionError, match='no CUDA GPU'):
                load_pretrained(path, device=device)
    else:  # pragma: no cover - CPU-only machine
        net = load_pretrained(path, device='cuda')
        assert next(net.parameters()).is_cuda
        with pytest.raises(OptionError, match='does not exist'):
            load_pretrained(path, device=f'cuda:{torch.cuda.device_count()}')


# ---------------------------------------------------------------- the zoo


@pytest.fixture
def tmp_zoo(tmp_path, nets):
    """A weights folder with one model in the manifest's earlier layout (one .pth, no `basicsr` record), which is
    still read."""
    directory = tmp_path / 'weights'
    path = save_gradnet(directory / 'tiny_color.pth', nets, meta={'name': 'tiny_color'})
    entry = {
        'file': 'tiny_color.pth',
        'sha256': zoo.sha256_of(path),
        'size': os.path.getsize(path),
        'description': 'tiny test model',
        'color': 'rgb',
        'sigma': 25,
        'card': 'docs/model_cards/tiny_color.md'
    }
    zoo.write_manifest({'tiny_color': entry}, str(directory))
    return str(directory), path, entry


def test_zoo_load_by_name_and_env_var(tmp_zoo, nets, monkeypatch):
    directory, path, entry = tmp_zoo
    assert list_pretrained(directory) == {'tiny_color': 'tiny test model'}
    net = load_pretrained('tiny_color', weights_dir=directory)
    assert net.pretrained_info['name'] == 'tiny_color' and same_outputs(net, nets[2])
    monkeypatch.setenv(zoo.ENV_VAR, directory)
    assert list(list_pretrained()) == ['tiny_color'] and gradnet_arch.load_pretrained('tiny_color') is not None
    with pytest.raises(MissingFileError) as info:
        load_pretrained('tiny_colour')
    assert "'tiny_colour' is neither a shipped model" in str(info.value) and 'Shipped models: tiny_color' in str(
        info.value) and 'must name an existing' in str(info.value)


def test_zoo_checksum_is_verified_once_per_unchanged_file(tmp_zoo, monkeypatch):
    directory, path, entry = tmp_zoo
    calls = []
    real = zoo.sha256_of
    monkeypatch.setattr(zoo, 'sha256_of', lambda p: calls.append(p) or real(p))
    for _ in range(3):
        load_pretrained('tiny_color', weights_dir=directory)
    assert calls == [path]
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
    with open(path, 'wb') as f:
        f.write(data)
    os.utime(path, ns=(1, 1))  # make sure the modification is seen even on a coarse clock
    with pytest.raises(BadFileError) as info:
        load_pretrained('tiny_color', weights_dir=directory)
    text = str(info.value)
    assert path in text and f'expected {entry["sha256"]}' in text and zoo.sha256_of(path) in text
    assert 'Reinstall the package' in text


def test_zoo_truncated_missing_and_bad_manifest(tmp_zoo):
    directory, path, entry = tmp_zoo
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:100])
    with pytest.raises(BadFileError, match=f'has 100 bytes but the manifest expects {entry["size"]}'):
        load_pretrained('tiny_color', weights_dir=directory)
    os.remove(path)
    with pytest.raises(MissingFileError, match='weight file .* is missing. Reinstall'):
        load_pretrained('tiny_color', weights_dir=directory)
    with open(os.path.join(directory, zoo.MANIFEST), 'w') as f:
        f.write('{"models": ')
    with pytest.raises(BadFileError, match='manifest .* cannot be read'):
        list_pretrained(directory)


REAL_MODELS = zoo.read_manifest(zoo.PACKAGE_WEIGHTS_DIR)


def test_every_shipped_model_loads_and_matches_its_checksum():
    assert set(EXPECTED_SHIPPED) <= set(REAL_MODELS)
    for name, entry in REAL_MODELS.items():
        assert entry['file'] == f'{name}.safetensors' and entry['basicsr']['file'] == f'{name}.pth', name
        for record in (entry, entry['basicsr']):
            path = os.path.join(zoo.PACKAGE_WEIGHTS_DIR, record['file'])
            assert os.path.getsize(path) == record['size'] and zoo.sha256_of(path) == record['sha256'], path
        net = load_pretrained(name, weights_dir=zoo.PACKAGE_WEIGHTS_DIR)
        assert net.pretrained_info['source'] == zoo.shipped_path(name) and net.pretrained_info['param_key'] == 'params'
        channels = {'rgb': 3, 'gray': 1}[entry['color']]
        meta = net.pretrained_info['meta']
        assert meta['color'] == entry['color'] and meta['description'] == entry['description'], name
        assert (meta['sigma'], meta.get('sigma_range')) == (entry['sigma'], entry.get('sigma_range')), name
        out = run(net, channels, 24)
        assert out.shape == (1, channels, 24, 24) and torch.isfinite(out).all(), name


@pytest.mark.parametrize('name', EXPECTED_SHIPPED)
def test_shipped_safetensors_is_tensors_with_the_options_in_its_metadata(name):
    """What a pipeline without this package reads: the safetensors package's own reader gives the whole state dict
    (pre-denoiser included) and str-to-str metadata from which BasicSR's build_network makes the net."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    entry = zoo.model_info(name)
    with safe_open(entry['path'], framework='pt') as f:
        metadata = f.metadata()
    tensors = load_file(entry['path'])
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    assert any(k.startswith('predenoiser.') for k in tensors) and any(k.startswith('body.') for k in tensors)
    network_g = json.loads(metadata['network_g'])
    assert network_g['type'] == 'GradNet' and network_g['predenoiser']['pretrained'] is None
    assert metadata['format'] == 'pt' and metadata['param_key'] == 'params'
    for key in ('description', 'color'):
        assert metadata[key] == entry[key], key
    assert metadata['name'] == name and json.loads(metadata['sigma']) == entry['sigma']
    assert metadata['source'].endswith('net_g_latest.pth')
    assert json.loads(metadata['meta'])['iterations'] == int(metadata['iterations']) > 0
    built = build_network(network_g)
    built.load_state_dict(tensors, strict=True)
    channels = {'rgb': 3, 'gray': 1}[entry['color']]
    reference = load_model(name, fold_batchnorm=False, channels_last=False)  # the tools' loader, training layout
    assert torch.equal(run(built.eval(), channels, 24), run(reference, channels, 24))


@pytest.mark.parametrize('name', EXPECTED_SHIPPED)
def test_shipped_pth_loads_with_basicsr_like_load_model(name):
    """BasicSR's own build_network + load_network (param_key 'params', strict) on the shipped .pth: the tensors of
    the .safetensors, so the outputs of load_model (the default fast layout to 1e-5, the training layout exactly)."""
    entry = zoo.model_info(name)
    pth = zoo.shipped_path(name, basicsr=True)
    assert pth == entry['basicsr_path'] and pth.endswith(f'{name}.pth')
    ckpt = torch.load(pth, weights_only=True)
    assert set(ckpt) == {'params', 'network_g', 'meta'}
    built = build_network(ckpt['network_g'])
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(built, pth, strict=True, param_key='params')
    built.eval()
    safetensors_state = read_safetensors(entry['path'])[0]
    assert ckpt['params'].keys() == safetensors_state.keys()
    assert all(torch.equal(v, safetensors_state[k]) for k, v in ckpt['params'].items())
    channels = {'rgb': 3, 'gray': 1}[entry['color']]
    torch.testing.assert_close(run(load_model(name), channels, 24), run(built, channels, 24), rtol=1e-5, atol=1e-5)
    plain = load_model(name, fold_batchnorm=False, channels_last=False)
    assert torch.equal(run(plain, channels, 24), run(built, channels, 24))
    # the option file of BasicSR's test loop names this file and key
    with open(os.path.join(REPO, 'options', 'pretrained', f'test_{name}.yml')) as f:
        test_opt = yaml.safe_load(f)
    assert test_opt['path']['pretrain_network_g'] == f'gradnet_arch/pretrained/weights/{name}.pth'
    assert test_opt['path']['param_key_g'] == 'params'


@pytest.fixture
def corrupt_copy(tmp_path, monkeypatch):
    """A copy of the shipped weights folder as $GRADNET_WEIGHTS_DIR, and a function that flips one byte of a file."""
    import shutil

    directory = str(tmp_path / 'weights')
    shutil.copytree(zoo.PACKAGE_WEIGHTS_DIR, directory)
    monkeypatch.setenv(zoo.ENV_VAR, directory)

    def corrupt(name):
        path = os.path.join(directory, name)
        data = bytearray(open(path, 'rb').read())
        data[len(data) // 2] ^= 0xFF  # same size, one flipped byte
        with open(path, 'wb') as f:
            f.write(bytes(data))
        return path

    return directory, corrupt


def test_both_shipped_files_are_checked_against_the_manifest(corrupt_copy):
    directory, corrupt = corrupt_copy
    name = EXPECTED_SHIPPED[0]
    entry = zoo.read_manifest(directory)[name]
    assert load_pretrained(name).pretrained_info['source'] == os.path.join(directory, entry['file'])
    pth = corrupt(entry['basicsr']['file'])
    assert load_pretrained(name) is not None  # the .safetensors is intact
    # by name, and by a path into the folder (what gradnet-test's option file and --weights give)
    for load in (lambda: zoo.shipped_path(name, basicsr=True), lambda: read_checkpoint(pth),
                 lambda: load_pretrained(pth)):
        with pytest.raises(BadFileError) as info:
            load()
        text = str(info.value)
        assert '\n' not in text and text.startswith(f"Shipped model '{name}': weight file {pth} is corrupt: SHA-256")
        assert f'expected {entry["basicsr"]["sha256"]}' in text and 'Reinstall the package' in text
    safetensors = corrupt(entry['file'])
    for load in (lambda: load_pretrained(name), lambda: load_model(safetensors)):
        with pytest.raises(
                BadFileError,
                match=r'^Shipped model .* weight file .*\.safetensors is corrupt: SHA-256 '
                r'[0-9a-f]{64}, expected ' + entry['sha256']) as info:
            load()
        assert '\n' not in str(info.value)
    with open(safetensors, 'ab') as f:
        f.write(b'x')
    with pytest.raises(BadFileError, match=f'has {entry["size"] + 1} bytes but the manifest expects {entry["size"]}'):
        load_pretrained(name)


def test_blind_manifest_entry(tmp_path, nets):
    """A blind model: `sigma` null and `sigma_range` in the manifest and the metadata; it loads like any other, its
    description says so, and the benchmark notes levels outside its range."""
    from gradnet_arch.benchmark.cli import note_untrained_sigmas
    from gradnet_arch.benchmark.models import NetDenoiser
    from gradnet_arch.pretrained.description import training_noise

    directory = tmp_path / 'weights'
    path = save_gradnet(directory / 'tiny_blind.safetensors', nets, meta={'sigma': None, 'sigma_range': [0, 55]})
    data = open(path, 'rb').read()
    entry = dict(zoo.file_record('tiny_blind.safetensors', data), color='rgb', sigma=None, sigma_range=[0, 55])
    zoo.write_manifest({'tiny_blind': entry}, str(directory))
    assert read_safetensors(path)[1]['sigma_range'] == '[0, 55]'
    net = load_pretrained('tiny_blind', weights_dir=str(directory))
    description = describe(net)
    assert description.blind and (description.sigma, description.sigma_range) == (None, (0., 55.))
    assert description.noise() == 'blind, AWGN sigma 0-55'
    assert (description.fits_sigma(0), description.fits_sigma(55), description.fits_sigma(60)) == (True, True, False)
    assert zoo.model_info('tiny_blind', str(directory))['basicsr_path'] is None
    with pytest.raises(MissingFileError, match="'tiny_blind' has no BasicSR .pth file"):
        zoo.shipped_path('tiny_blind', str(directory), basicsr=True)
    notes = []
    note_untrained_sigmas([NetDenoiser('B', net, 'cpu', precision='fp32')], [15., 25., 70.], log=notes.append)
    assert notes == ['Note: B was trained for blind, AWGN sigma 0-55; it is also tested at sigma 70.']
    fixed = describe(load_pretrained(save_gradnet(tmp_path / 's.pth', nets, meta={'sigma': 25})))
    assert not fixed.blind and fixed.noise() == 'AWGN sigma 25'
    assert (fixed.fits_sigma(25.0), fixed.fits_sigma(15)) == (True, False)
    assert describe(nets[1]).noise() is None and describe(nets[1]).fits_sigma(25) is None  # nothing says
    assert training_noise({'sigma': 15}) == (15., None) and training_noise({}) == (None, None)
    bad_noise = [
        dict(sigma_range=[55, 0]),
        dict(sigma_range=[0]),
        dict(sigma=-1),
        dict(sigma='25'),
        dict(sigma=True),
        dict(sigma=25, sigma_range=[0, 55])
    ]
    for bad in bad_noise:
        with pytest.raises(OptionError):
            training_noise(bad)
        zoo.write_manifest({'tiny_blind': dict(entry, **{'sigma': None, 'sigma_range': None, **bad})}, str(directory))
        with pytest.raises(BadFileError, match=r"manifest .*: model 'tiny_blind': (give )?sigma"):
            list_pretrained(str(directory))


@pytest.mark.parametrize('name', EXPECTED_SHIPPED)
def test_shipped_models_denoise_a_photo(name):
    """On a scikit-image photo at the model's sigma (seeded), the shipped net gains well over 5 dB on the noisy input
    and agrees with BasicSR's own loader reading the same file."""
    skdata = pytest.importorskip('skimage.data')
    net = load_pretrained(name)
    gray = net.pretrained_info['meta']['color'] == 'gray'
    img = (skdata.camera()[96:224, 160:288, None] if gray else skdata.astronaut()[0:128, 160:288]).astype(np.float32)
    clean = torch.from_numpy(img.transpose(2, 0, 1) / 255.)[None]
    noisy = clean + torch.from_numpy(np.random.RandomState(0).normal(0, 25 / 255., clean.shape).astype(np.float32))
    with torch.no_grad():
        out = net(noisy)

    def psnr(x):
        return calculate_psnr(tensor2img([x[0].clone()]), tensor2img([clean[0].clone()]),
                              0)  # tensor2img clamps in place

    assert psnr(out) > psnr(noisy) + 5, name
    path = zoo.model_info(name)['basicsr_path']
    built = build_network(torch.load(path, weights_only=True)['network_g'])
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(built, path, strict=True, param_key='params')
    with torch.no_grad():
        assert torch.allclose(built.eval()(noisy), out, atol=1e-6)


# ---------------------------------------------------------------- scripts/package_weights.py


def load_script():
    spec = importlib.util.spec_from_file_location('package_weights', os.path.join(REPO, 'scripts',
                                                                                  'package_weights.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def trained_run(tmp_path, nets):
    """A BasicSR experiment folder as GradNetModel leaves it, and its option YAML."""
    opt, net, ema = nets
    models = tmp_path / 'experiments' / 'run' / 'models'
    states = tmp_path / 'experiments' / 'run' / 'training_states'
    os.makedirs(models)
    os.makedirs(states)
    checkpoint = str(models / 'net_g_latest.pth')
    torch.save({'params': net.state_dict(), 'params_ema': ema.state_dict()}, checkpoint)
    for it in (3, 6):
        open(states / f'{it}.state', 'wb').close()
    network = copy.deepcopy(opt)
    network['predenoiser']['pretrained'] = str(tmp_path / 'stage1' / 'net_g_latest.pth')  # as in a real stage 2
    yml = write_yaml(make_test_options('run', str(tmp_path), network, checkpoint), tmp_path / 'test.yml')
    return yml, checkpoint


def test_package_weights_end_to_end(tmp_path, nets, trained_run):
    opt, net, ema = nets
    yml, checkpoint = trained_run
    weights = str(tmp_path / 'weights')
    args = [
        os.path.join(REPO, 'scripts',
                     'package_weights.py'), '--opt', yml, '--checkpoint', checkpoint, '--name', 'gradnet_color_sigma25',
        '--color', 'rgb', '--sigma', '25', '--description', 'tiny colour model', '--weights-dir', weights
    ]
    result = run_python(args, cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr
    path = os.path.join(weights, 'gradnet_color_sigma25.safetensors')
    pth = os.path.join(weights, 'gradnet_color_sigma25.pth')
    assert f'Wrote {path} (' in result.stdout and f'{pth} (' in result.stdout
    # the card is named in the manifest; a missing one is pointed out
    assert ('model card docs/model_cards/gradnet_color_sigma25.md does not exist'
            in result.stdout) != os.path.isfile(os.path.join(REPO, 'docs', 'model_cards', 'gradnet_color_sigma25.md'))
    entry = zoo.read_manifest(weights)['gradnet_color_sigma25']
    assert entry == {
        'file': 'gradnet_color_sigma25.safetensors',
        'sha256': zoo.sha256_of(path),
        'size': os.path.getsize(path),
        'basicsr': {
            'file': 'gradnet_color_sigma25.pth',
            'sha256': zoo.sha256_of(pth),
            'size': os.path.getsize(pth)
        },
        'description': 'tiny colour model',
        'color': 'rgb',
        'sigma': 25,
        'card': 'docs/model_cards/gradnet_color_sigma25.md'
    }
    # .safetensors: the EMA tensors (the default source key), the options and the fields in the metadata
    tensors, metadata = read_safetensors(path)
    assert tensors.keys() == ema.state_dict().keys()
    assert all(torch.equal(tensors[k], v) for k, v in ema.state_dict().items())
    assert json.loads(metadata['network_g'])['predenoiser']['pretrained'] is None
    meta = json.loads(metadata['meta'])
    assert meta['iterations'] == 6 and meta['source'] == os.path.join('experiments', 'run', 'models',
                                                                      'net_g_latest.pth')
    assert meta['gradnet_basicsr_version'] == gradnet_arch.__version__ and meta['source_param_key'] == 'params_ema'
    assert (metadata['description'], metadata['color'], metadata['sigma']) == ('tiny colour model', 'rgb', '25')
    # .pth: BasicSR's params layout with the same tensors, read by BasicSR's own builder and loader
    ckpt = torch.load(pth, weights_only=True)
    assert set(ckpt) == {'params', 'network_g', 'meta'} and ckpt['meta'] == meta
    assert all(torch.equal(ckpt['params'][k], v) for k, v in tensors.items())
    built = build_network(ckpt['network_g'])
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(built, pth, strict=True, param_key='params')
    assert torch.equal(run(built.eval()), run(ema))
    loaded = load_pretrained('gradnet_color_sigma25', weights_dir=weights)
    assert loaded.pretrained_info['source'] == path and same_outputs(loaded, ema)

    # In-process runs of the same script: no overwrite without --force; --force replaces both files and the entry.
    script = load_script()
    before = {p: open(p, 'rb').read() for p in (path, pth)}
    with pytest.raises(SystemExit) as info:
        script.main(args[1:])
    assert info.value.code == 2 and all(open(p, 'rb').read() == data for p, data in before.items())
    script.main(args[1:] + ['--force', '--iterations', '9'])
    assert read_checkpoint(path)['meta']['iterations'] == read_checkpoint(pth)['meta']['iterations'] == 9
    assert zoo.read_manifest(weights)['gradnet_color_sigma25']['basicsr']['sha256'] == zoo.sha256_of(pth)
    # --source-key params ships the training weights (in both files)
    script.main(args[1:] + ['--force', '--source-key', 'params'])
    assert read_checkpoint(path)['meta']['source_param_key'] == 'params'
    assert same_outputs(load_pretrained('gradnet_color_sigma25', weights_dir=weights), net)
    assert same_outputs(load_pretrained(pth), net)

    # A blind model: --sigma-range; sigma is null in the manifest and the files.
    blind = args[1:args.index('--sigma')] + [
        '--sigma-range', '0', '55', '--description', 'tiny blind model', '--weights-dir', weights
    ]
    blind[blind.index('--name') + 1] = 'tiny_blind'
    script.main(blind)
    entry = zoo.read_manifest(weights)['tiny_blind']
    assert (entry['sigma'], entry['sigma_range']) == (None, [0, 55])
    assert read_safetensors(os.path.join(weights, 'tiny_blind.safetensors'))[1]['sigma_range'] == '[0, 55]'
    description = describe(load_pretrained('tiny_blind', weights_dir=weights))
    assert description.blind and description.noise() == 'blind, AWGN sigma 0-55'
    assert set(zoo.read_manifest(weights)) == {'gradnet_color_sigma25', 'tiny_blind'}  # the other entry is kept

    # Re-packaging a shipped .pth (its options embedded: no --opt): the tensors and the training provenance stay.
    again = str(tmp_path / 'again')
    script.main([
        '--checkpoint', pth, '--name', 'gradnet_color_sigma25', '--color', 'rgb', '--sigma', '25', '--description',
        'tiny colour model', '--weights-dir', again
    ])
    old, new = read_checkpoint(pth), read_checkpoint(os.path.join(again, 'gradnet_color_sigma25.safetensors'))
    assert new['meta'] == old['meta'] and new['network_g'] == old['network_g']
    assert all(torch.equal(new['params'][k], v) for k, v in old['params'].items())


def test_package_weights_refuses_bad_inputs(tmp_path, trained_run, capsys):
    yml, checkpoint = trained_run
    script = load_script()
    out = tmp_path / 'w'
    base = ['--checkpoint', checkpoint, '--description', 'd', '--weights-dir', str(out)]
    small = yaml.safe_load(open(yml))
    small['network_g']['num_feat'] = 4
    cases = [
        (['--opt', yml, '--sigma', '25', '--name', 'g', '--color', 'gray'], '--color gray means 1 channel(s)'),
        (['--opt', yml, '--sigma', '25', '--name', '../g', '--color', 'rgb'], 'must be letters'),
        (['--opt', write_yaml(small, tmp_path / 's.yml'), '--sigma', '25', '--name', 'g', '--color',
          'rgb'], 'shape mismatch'),
        (['--opt', yml, '--sigma-range', '55', '0', '--name', 'g', '--color', 'rgb'], '--sigma-range: sigma_range'),
        (['--opt', yml, '--sigma', '-5', '--name', 'g', '--color', 'rgb'], '--sigma: sigma must be'),
        (['--sigma', '25', '--name', 'g', '--color', 'rgb'], 'does not embed its network options'),
        (['--opt', yml, '--sigma', '25', '--sigma-range', '0', '55', '--name', 'g', '--color',
          'rgb'], 'not allowed with argument'),  # argparse: one of the two
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as info:
            script.main(base + extra)
        assert info.value.code == 2 and message in capsys.readouterr().err, message
    assert not os.path.exists(out / 'g.pth') and not os.path.exists(out / 'g.safetensors')
    # one existing file of the pair: refused, and nothing written (neither the other file nor the manifest)
    os.makedirs(out)
    (out / 'g.pth').write_bytes(b'theirs')
    with pytest.raises(SystemExit):
        script.main(base + ['--opt', yml, '--sigma', '25', '--name', 'g', '--color', 'rgb'])
    assert 'g.pth already exists; pass --force' in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ['g.pth'] and (out / 'g.pth').read_bytes() == b'theirs'
