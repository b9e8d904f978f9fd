"""gradnet-export: every format of every shipped model, loaded back by its consumer (spandrel, onnxruntime,
load_pretrained(FOLDER), torch.hub) and compared with load_pretrained's network on an odd-sized image in fp32."""
import json
import numpy as np
import os
import pytest
import sys
import torch
from conftest import REPO, run_python, write_images
from tiny_options import TINY_NET, make_test_options, make_train_options, write_yaml

from gradnet_arch.errors import OutputError
from gradnet_arch.export import TOLERANCE, export
from gradnet_arch.integrations import MissingExtraError
from gradnet_arch.pretrained import describe, list_pretrained, load_pretrained, read_checkpoint, read_safetensors, zoo

spandrel = pytest.importorskip('spandrel')
ort = pytest.importorskip('onnxruntime')
onnx = pytest.importorskip('onnx')
pytest.importorskip('huggingface_hub')
from gradnet_arch.integrations.spandrel import install  # noqa: E402

SHIPPED = sorted(list_pretrained())
MAX_DIFF = 1e-4  # what the issue asks of every consumer, fp32


def reference(model, **kwargs):
    """load_pretrained's network as a user gets it by default (BatchNorm folded, channels_last), fp32 CPU."""
    return load_pretrained(model, **kwargs)


def odd_image(channels, seed=5):
    return torch.rand(1, channels, 37, 45, generator=torch.Generator().manual_seed(seed))


def run(net, x):
    with torch.no_grad():
        return net(x)


def spandrel_output(path, x):
    install()
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == 'GradNet' and descriptor.purpose == 'Restoration'
    with torch.no_grad():  # the descriptor's __call__ clamps to [0, 1]; compare the network itself
        return descriptor.model(x)


@pytest.fixture(scope='module', params=SHIPPED)
def shipped(request, tmp_path_factory):
    name = request.param
    return name, reference(name), str(tmp_path_factory.mktemp(name))


def test_safetensors_holds_the_training_layout_and_loads_in_spandrel(shipped):
    name, ref, folder = shipped
    path = os.path.join(folder, f'{name}.safetensors')
    result = export(name, path)
    assert result['format'] == 'safetensors' and f'tolerance {TOLERANCE:g}: passed' in result['check']
    tensors, metadata = read_safetensors(path)
    params = read_checkpoint(zoo.shipped_path(name))['params']
    assert set(tensors) == set(params) and any(k.endswith('bn.running_var') for k in tensors)  # BatchNorm kept
    assert all(torch.equal(tensors[k], params[k]) for k in params)
    assert any(k.startswith('predenoiser.') for k in tensors)  # both stages in one file
    assert json.loads(metadata['network_g'])['type'] == 'GradNet' and json.loads(metadata['meta'])['name'] == name
    x = odd_image(ref.num_in_ch)
    assert (spandrel_output(path, x) - run(ref, x)).abs().max().item() <= MAX_DIFF
    assert (run(load_pretrained(path), x) - run(ref, x)).abs().max().item() <= MAX_DIFF


def test_pth_is_basicsr_params_layout_and_loads_in_spandrel(shipped):
    name, ref, folder = shipped
    path = os.path.join(folder, f'{name}.pth')
    export(name, path)
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert set(ckpt) == {'params', 'network_g', 'meta'} and ckpt['meta']['export']['source'] == name
    x = odd_image(ref.num_in_ch)
    assert (spandrel_output(path, x) - run(ref, x)).abs().max().item() <= MAX_DIFF
    from basicsr.archs import build_network
    from basicsr.models.base_model import BaseModel

    built = build_network(ckpt['network_g'])  # BasicSR's own loader, strict
    BaseModel({'num_gpu': 0, 'is_train': False}).load_network(built, path, strict=True, param_key='params')
    assert (run(built.eval(), x) - run(ref, x)).abs().max().item() <= MAX_DIFF


def test_onnx_has_dynamic_shapes_and_matches_in_onnxruntime(shipped):
    name, ref, folder = shipped
    path = os.path.join(folder, f'{name}.onnx')
    result = export(name, path)
    assert result['check'].startswith('check: onnxruntime') and 'opset 18' in result['check']
    model = onnx.load(path)
    assert any(op.domain in ('', 'ai.onnx') and op.version == 18 for op in model.opset_import)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1] == ref.num_in_ch and all(isinstance(d, str) for d in dims[2:])
    assert json.loads({p.key: p.value for p in model.metadata_props}['network_g'])['type'] == 'GradNet'
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for x in (odd_image(ref.num_in_ch),
              torch.rand(3, ref.num_in_ch, 21, 50, generator=torch.Generator().manual_seed(2))):
        out = session.run(None, {'input': x.numpy()})[0]
        assert np.abs(out - run(ref, x).numpy()).max() <= MAX_DIFF


def test_folder_is_hugging_face_layout_read_back_by_load_pretrained(shipped):
    name, ref, folder = shipped
    out = os.path.join(folder, 'hf')
    export(name, out)
    assert sorted(os.listdir(out)) == ['README.md', 'config.json', 'model.safetensors']
    config = json.load(open(os.path.join(out, 'config.json')))
    assert config['architectures'] == ['GradNet'] and config['num_parameters'] == sum(
        p.numel() for p in load_pretrained(name, fold_batchnorm=False).parameters())
    card = open(os.path.join(out, 'README.md')).read()
    assert card.startswith('---\n') and 'library_name: gradnet-basicsr' in card and f'# {name}' in card
    noise = describe(load_pretrained(name)).noise()  # 'AWGN sigma 25', or 'blind, AWGN sigma 0-55' for a blind one
    assert noise in ('AWGN sigma 25', 'blind, AWGN sigma 0-55')
    assert f'| Training noise | {noise} |' in card and '| Sigma |' not in card
    if os.path.isfile(os.path.join(REPO, 'docs', 'model_cards', f'{name}.md')):
        assert '## Original model card' in card and 'Training data' in card  # the shipped card's facts
    x = odd_image(ref.num_in_ch)
    assert (run(load_pretrained(out), x) - run(ref, x)).abs().max().item() <= MAX_DIFF
    with pytest.raises(OutputError, match='exists'):  # nothing replaced without overwrite
        export(name, out)
    export(name, out, overwrite=True)


@pytest.mark.parametrize('name', SHIPPED)
def test_torch_hub_local_loads_every_shipped_model(name):
    net = torch.hub.load(REPO, name, source='local', trust_repo=True, verbose=False)
    ref = reference(name)
    x = odd_image(ref.num_in_ch)
    assert net.pretrained_info['name'] == name
    assert (run(net, x) - run(ref, x)).abs().max().item() <= MAX_DIFF
    plain = torch.hub.load(REPO, name, source='local', fold_batchnorm=False, channels_last=False)
    assert any(k.endswith('bn.running_mean') for k in plain.state_dict())  # keywords reach load_pretrained


def test_cli_formats_and_errors(tmp_path, capsys):
    out = str(tmp_path / 'gray.safetensors')
    args = ['gradnet_gray_sigma25', '-o', out]
    result = run_python(['-m', 'gradnet_arch.export'] + args, cwd=str(tmp_path), timeout=300)  # the real command
    assert result.returncode == 0, result.stderr
    assert f'Wrote {out} (safetensors)' in result.stdout and 'max |difference| = 0, tolerance 0.0001: passed' in \
        result.stdout
    from gradnet_arch.export.cli import main

    capsys.readouterr()
    (tmp_path / 'a_file').write_text('not a folder')
    (tmp_path / 'torn.pth').write_bytes(b'garbage')
    cases = ((args, 'exists'), (['gradnet_gray_sigma25', '-o', str(tmp_path / 'x.bin')], 'Cannot tell the format'),
             (['no_such_model', '-o', str(tmp_path / 'y.safetensors')],
              'neither a shipped model'), (['gradnet_gray_sigma25', '-o',
                                            str(tmp_path / 'a_file' / 'z.safetensors')], 'is a file, not a folder'),
             ([str(tmp_path / 'torn.pth'), '-o', str(tmp_path / 'w.safetensors')], 'corrupt'))
    for argv, message in cases:
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.startswith('Error: ') and message in err and len(err.splitlines()) == 1


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(MissingExtraError, match=r'pip install "gradnet-basicsr\[onnx\]"'):
        export(SHIPPED[0], str(tmp_path / 'm.onnx'))
    assert not os.listdir(tmp_path)


@pytest.mark.slow
def test_gradnet_trained_by_gradnet_train_exports_the_same_way(tmp_path):
    """A tiny GradNet (noisy gradient: one training run) from BasicSR's real loop, exported from its option YAML."""
    dirs = {
        'train': write_images(str(tmp_path / 'data' / 'train'), 4),
        'val': write_images(str(tmp_path / 'data' / 'val'), 2, seed=100, height=32, width=36)
    }
    network = dict(TINY_NET, type='GradNet', gradient_source='noisy', global_residual=True)
    opt = make_train_options('tiny_export', dirs, network, gradient_loss=True)
    opt_file = write_yaml(opt, str(tmp_path / 'options' / 'train.yml'))
    result = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file], cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    ckpt = str(tmp_path / 'experiments' / 'tiny_export' / 'models' / 'net_g_latest.pth')
    test_yml = write_yaml(
        make_test_options('tiny_export_test', dirs['val'], network, ckpt), str(tmp_path / 'options' / 'test.yml'))
    ref = reference(None, network_opt=test_yml)
    x = odd_image(3)
    for out in ('tiny.safetensors', 'tiny.onnx'):
        path = str(tmp_path / out)
        assert 'passed' in export(test_yml, path)['check']
        if out.endswith('.onnx'):
            got = torch.from_numpy(
                ort.InferenceSession(path, providers=['CPUExecutionProvider']).run(None, {'input': x.numpy()})[0])
        else:
            got = spandrel_output(path, x)
            assert set(read_safetensors(path)[0]) == set(torch.load(ckpt, weights_only=True)['params'])
        assert (got - run(ref, x)).abs().max().item() <= MAX_DIFF
