"""The formats of gradnet-export: `.safetensors`, `.pth`, `.onnx` and a Hugging Face-style folder.

Every writer checks what it wrote by loading it back through its consumer and comparing outputs with the reference
network (fp32, CPU) on seeded inputs of odd sizes; the check and its tolerance are returned as one line.
"""
import json
import os
import torch

from gradnet_arch.atomic_io import commit, make_folder, temp_name, write_files
from gradnet_arch.errors import BadFileError, OptionError
from gradnet_arch.integrations import require
from gradnet_arch.version import __version__

# Max absolute output difference allowed between a consumer and load_pretrained's network (fp32, [0, 1] images).
TOLERANCE = 1e-4
DEFAULT_OPSET = 18
WEIGHTS_FILE = 'model.safetensors'
CONFIG_FILE = 'config.json'
CARD_FILE = 'README.md'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The meta fields of the training noise, shown as one row of the model card.
NOISE_KEYS = ('sigma', 'sigma_range')


def max_difference(reference, run, inputs):
    """The largest |run(x) - reference(x)| over `inputs` (float32, no gradients)."""
    worst = 0.
    with torch.no_grad():
        for x in inputs:
            expected = reference(x)
            got = torch.as_tensor(run(x)).to(expected.dtype)
            if got.shape != expected.shape:
                raise BadFileError(f'the exported model returned shape {tuple(got.shape)} for input '
                                   f'{tuple(x.shape)}; expected {tuple(expected.shape)}.')
            worst = max(worst, (got - expected).abs().max().item())
    return worst


def checked(what, difference, inputs, path):
    """The one-line check report; an export that fails it is removed and refused."""
    shapes = ', '.join('x'.join(str(d) for d in x.shape) for x in inputs)
    line = (f'check: {what} vs load_pretrained (fp32, CPU) on seeded uniform [0, 1) inputs {shapes}: max |difference| '
            f'= {difference:.3g}, tolerance {TOLERANCE:g}')
    if not difference <= TOLERANCE:  # also catches NaN
        raise BadFileError(f'{line}: FAILED. The export {path} does not reproduce the network and was not kept.')
    return line + ': passed'


def _unfolded(load_pretrained):
    import inspect

    accepted = inspect.signature(load_pretrained).parameters
    return {key: False for key in ('fold_batchnorm', 'channels_last') if key in accepted}


def write_state_file(source, path, overwrite=False):
    """`.safetensors` (one state dict + `network_g` / `meta` JSON metadata) or `.pth` (BasicSR's `params` layout)."""
    from gradnet_arch.pretrained import load_pretrained, save_checkpoint

    # save_checkpoint replaces files: `export` has refused an existing one without `overwrite` already.
    save_checkpoint(path, params=source.state, network_opt=source.network_g, meta=source.meta)
    return _check_reload(source, path, load_pretrained, f'load_pretrained({os.path.basename(path)!r})')


def _check_reload(source, path, load_pretrained, what, cleanup=None):
    net = load_pretrained(path, **_unfolded(load_pretrained))
    inputs = source.check_inputs()
    try:
        return checked(what, max_difference(source.reference, net, inputs), inputs, path)
    except BadFileError:
        for name in cleanup or [path]:
            if os.path.isfile(name):
                os.remove(name)
        raise


def write_folder(source, folder, overwrite=False):
    """The Hugging Face layout: `config.json`, `model.safetensors` and a `README.md` model card."""
    from gradnet_arch.pretrained import load_pretrained, save_checkpoint

    hub = require('huggingface_hub', 'hub', 'A Hugging Face-style folder export (its model card)')
    make_folder(folder)
    weights = os.path.join(folder, WEIGHTS_FILE)
    config = {
        'architectures': [source.network_g['type']],
        'model_type': source.network_g['type'].lower(),
        'library_name': 'gradnet-basicsr',
        'weights': WEIGHTS_FILE,
        'in_channels': source.channels,
        'out_channels': source.channels,
        'num_parameters': source.parameters,
        'network_g': source.network_g,
        'meta': source.meta,
    }
    card = model_card(source, hub)
    # The weights go last: an interrupted export leaves no model.safetensors that load_pretrained would pick up.
    write_files([(os.path.join(folder, CONFIG_FILE), (json.dumps(config, indent=2) + '\n').encode('utf-8')),
                 (os.path.join(folder, CARD_FILE), card.encode('utf-8'))],
                overwrite=overwrite)
    save_checkpoint(weights, params=source.state, network_opt=source.network_g, meta=source.meta)
    return _check_reload(
        source, folder, load_pretrained, f'load_pretrained({os.path.basename(folder)!r} folder)', cleanup=[weights])


def model_card(source, hub):
    """The folder's README.md: the Hub's YAML header, the facts of the network, how to load it, the original card."""
    opts = source.network_g
    meta = {key: value for key, value in source.meta.items() if key != 'export'}
    data = hub.ModelCardData(
        license='apache-2.0',
        library_name='gradnet-basicsr',
        pipeline_tag='image-to-image',
        tags=['image-denoising', 'image-restoration', 'gradnet', 'basicsr', 'spandrel', 'safetensors'])
    title = source.name or os.path.splitext(os.path.basename(source.path))[0]
    options = ', '.join(f'{key}={value}' for key, value in opts.items() if key not in ('type', 'predenoiser'))
    rows = [('Architecture', f'{opts["type"]} ({options})'),
            ('Input / output', f'{source.channels}-channel float images in [0, 1], NCHW, any height and width'),
            ('Parameters', f'{source.parameters:,} (a pre-denoiser included)'),
            ('Weights', f'`{WEIGHTS_FILE}`: the training layout ({len(source.state)} tensors, BatchNorm kept), '
             f'from `{source.meta["export"]["source"]}` (`{source.param_key}`)')]
    if isinstance(opts.get('predenoiser'), dict):
        pre = ', '.join(f'{key}={value}' for key, value in opts['predenoiser'].items()
                        if key not in ('type', 'pretrained', 'param_key', 'strict'))
        rows.append(('Pre-denoiser', f'{opts["predenoiser"]["type"]} ({pre}), frozen, its weights under '
                     f'`predenoiser.*`'))
    noise = _noise_row(meta)
    rows += [(key.replace('_', ' ').capitalize(), str(value)) for key, value in meta.items()
             if noise is None or key not in NOISE_KEYS]
    if noise is not None:
        rows.append(('Training noise', noise))  # 'AWGN sigma 25', or 'blind, AWGN sigma 0-55' for a blind model
    table = '\n'.join(['| | |', '| --- | --- |'] + [f'| {key} | {value} |' for key, value in rows])
    body = f"""
# {title}

GradNet image denoising ([Liu et al., CVPR 2020 Workshops](https://doi.org/10.1109/CVPRW50498.2020.00262)),
exported by `gradnet-export` (gradnet-basicsr {__version__}).

{table}

## Loading

```python
from gradnet_arch import load_pretrained
net = load_pretrained('path/to/this/folder')  # model.safetensors + the network options in its metadata
```

```python
import spandrel
from gradnet_arch.integrations.spandrel import install
install()
model = spandrel.ModelLoader().load_from_file('path/to/this/folder/{WEIGHTS_FILE}')
```
"""
    original = _shipped_card(source)
    if original:
        body += '\n## Original model card\n\n' + original.split('\n', 1)[-1].lstrip('\n')
    return str(hub.ModelCard(f'---\n{data.to_yaml()}\n---\n{body}'))


def _noise_row(meta):
    """The training noise of `meta` in words, None when it does not say (or says it in a form that is not valid)."""
    from gradnet_arch.pretrained.description import noise_text, training_noise

    try:
        return noise_text(*training_noise(meta))
    except OptionError:
        return None


def _shipped_card(source):
    """The text of a shipped model's card (docs/model_cards/, in a source checkout), or None."""
    if source.name is None:
        return None
    from gradnet_arch.pretrained import model_info

    card = (model_info(source.name) or {}).get('card')
    path = os.path.join(REPO_ROOT, card) if card else None
    if path is None or not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return f.read()


def write_onnx(source, path, opset=DEFAULT_OPSET, overwrite=False):
    """ONNX with dynamic batch, height and width (input `input`, output `output`), checked with onnxruntime."""
    what = 'ONNX export'
    onnx = require('onnx', 'onnx', what)
    require('onnxscript', 'onnx', what)  # torch's ONNX exporter is built on it
    ort = require('onnxruntime', 'onnx', what)
    if not isinstance(opset, int) or opset < 18:
        raise OptionError(f'--opset must be an integer >= 18 (torch\'s ONNX exporter), got {opset!r}.')
    net = source.fast_network().to(memory_format=torch.contiguous_format)
    example = source.check_inputs((1, ))[0]
    dims = {
        0: torch.export.Dim('batch', min=1),
        2: torch.export.Dim('height', min=1),
        3: torch.export.Dim('width', min=1)
    }
    temp = temp_name(path)
    try:
        try:
            torch.onnx.export(
                net, (example, ),
                temp,
                input_names=['input'],
                output_names=['output'],
                dynamic_shapes=(dims, ),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False)
        except Exception as error:  # the exporter's many failure types all mean the same here
            raise BadFileError(f'Cannot export {type(net).__name__} to ONNX (opset {opset}): {type(error).__name__}: '
                               f'{str(error).splitlines()[0][:300] if str(error) else ""}') from None
        model = onnx.load(temp)
        info = {'network_g': json.dumps(source.network_g), 'meta': json.dumps(source.meta), 'opset': str(opset)}
        onnx.helper.set_model_props(model, info)
        onnx.save(model, temp)
        session = ort.InferenceSession(temp, providers=['CPUExecutionProvider'])
        inputs = source.check_inputs()
        line = checked(f'onnxruntime {ort.__version__} (opset {opset})',
                       max_difference(source.reference, lambda x: session.run(None, {'input': x.numpy()})[0], inputs),
                       inputs, path)
        commit(temp, path, overwrite)
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return line
