"""spandrel integration: detection of every GradNet / MSKResNet the options build, none of spandrel's own archs, and
real weights (the shipped models) loaded by spandrel's ModelLoader with load_pretrained's outputs."""
import copy
import importlib
import pytest
import sys
import torch
from basicsr.archs import build_network

from gradnet_arch.integrations import MissingExtraError
from gradnet_arch.pretrained import list_pretrained, load_pretrained, zoo

spandrel = pytest.importorskip('spandrel')
gs = pytest.importorskip('gradnet_arch.integrations.spandrel')

SHIPPED = sorted(list_pretrained())
TINY = {'num_feat': 8, 'num_modules': 1, 'num_units': 1}


def gradnet(channels=3, source='denoised', **extra):
    opts = dict(TINY, type='GradNet', num_in_ch=channels, gradient_source=source)
    if source == 'denoised':
        opts['predenoiser'] = dict(TINY, type='MSKResNet', num_in_ch=channels, pretrained=None)
    opts.update(extra)
    return opts


CONFIGS = [
    dict(TINY, type='MSKResNet', num_in_ch=3),
    dict(TINY, type='MSKResNet', num_in_ch=1, batch_norm=False, reduction=2, global_residual=False),
    dict(TINY, type='MSKResNet', num_in_ch=3, num_out_ch=1, global_residual=False, num_feat=6),
    gradnet(),
    gradnet(1),
    gradnet(num_feat=12, num_modules=2, num_units=3),
    gradnet(batch_norm=False, reduction=2, global_residual=True),
    gradnet(
        reduction=4,
        predenoiser=dict(
            type='MSKResNet', num_feat=4, num_units=2, batch_norm=False, reduction=2, global_residual=False)),
    gradnet(source='none'),
    gradnet(1, source='none', global_residual=True),
] + [
    gradnet(channels, source, fusion=fusion) for channels in (1, 3) for source in ('denoised', 'noisy')
    for fusion in ('I', 'II', 'III', 'IV')
]
# A net with no gradient channels (gradient 'none', or 'noisy' multiplied in at IV) has a plain MSKResNet's tensors.
PLAIN = [
    opts.get('gradient_source') == 'none' or (opts.get('gradient_source') == 'noisy' and opts.get('fusion') == 'IV')
    for opts in CONFIGS
]


def config_id(opts):
    return ','.join(f'{k}={v}' for k, v in opts.items() if k != 'predenoiser')


def random_state(opts, seed=0):
    torch.manual_seed(seed)
    return build_network(copy.deepcopy(opts)).state_dict()


def spandrel_only_registry():
    """spandrel's own entries (another test module may already have installed ours into MAIN_REGISTRY)."""
    ours = {support.architecture.id for support in gs.arch_supports()}
    reg = spandrel.ArchRegistry()
    reg.add(*[s for s in spandrel.MAIN_REGISTRY.architectures('insertion') if s.architecture.id not in ours])
    return reg


@pytest.fixture(scope='module')
def registry():
    reg = spandrel_only_registry()
    assert len(gs.install(reg)) == 2 and gs.install(reg) == []  # idempotent
    return reg


def first_detecting(registry, state_dict):
    return next((s.architecture.id for s in registry.architectures('detection') if s.detect(state_dict)), None)


@pytest.mark.parametrize('opts,plain', list(zip(CONFIGS, PLAIN)), ids=[config_id(o) for o in CONFIGS])
def test_every_config_is_detected_and_rebuilt_from_shapes(registry, opts, plain):
    state = random_state(opts)
    expected = 'MSKResNet' if opts['type'] == 'MSKResNet' or plain else 'GradNet'
    assert gs.classify(state) == expected
    assert first_detecting(registry, state) == expected  # no spandrel arch claims it first
    inferred = gs.structural_options(state)
    assert inferred['type'] == expected
    for key, default in (('num_in_ch', None), ('num_feat', None), ('num_modules', None), ('num_units', None),
                         ('batch_norm', True)):
        assert inferred[key] == opts.get(key, default), key
    if expected == 'GradNet':
        assert inferred['gradient_source'] == opts['gradient_source']
        assert inferred['fusion'] == opts.get('fusion', 'II')
        assert ('predenoiser' in inferred) == (opts['gradient_source'] == 'denoised')
    descriptor = registry.load(state)  # builds the inferred net and loads the state dict strictly
    assert descriptor.purpose == 'Restoration' and descriptor.scale == 1
    assert descriptor.input_channels == opts['num_in_ch']
    assert descriptor.output_channels == (opts.get('num_out_ch') or opts['num_in_ch'])
    rebuilt = descriptor.model.state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in state.items()}
    assert all(torch.equal(rebuilt[k], state[k]) for k in state)


def spandrel_models():
    """(id, state dict) of every spandrel arch whose model class builds with its default hyperparameters, on the
    meta device where it can (shapes only: nothing is allocated; detection reads only keys and shapes)."""
    found = []
    for support in spandrel_only_registry().architectures('detection'):
        module = importlib.import_module(f'spandrel.architectures.{support.architecture.id}')
        for name in [n for n in module.__all__ if not n.endswith('Arch')]:
            model = None
            for device in ('meta', 'cpu'):  # a few models compute values in __init__, which meta tensors cannot
                try:
                    with torch.device(device):
                        model = getattr(module, name)()
                    break
                except Exception:  # needs hyperparameters without defaults
                    continue
            if model is None:
                continue
            found.append((support.architecture.id, model.state_dict()))
    return found


def test_no_false_positives_on_spandrels_own_archs(registry):
    models = spandrel_models()
    pristine = spandrel_only_registry()
    assert len({arch for arch, _ in models}) >= 35
    for arch, state in models:
        assert gs.classify(state) is None, arch
        assert not gs.detect_gradnet(state) and not gs.detect_mskresnet(state), arch
        own = first_detecting(pristine, state)
        if own is not None:  # spandrel's own detection is unchanged by the install
            assert first_detecting(registry, state) == own, arch


def test_reduction_is_recovered_up_to_an_identical_net():
    for channels in range(1, 80):
        for r in (1, 2, 3, 4, 5, 8, 16, 17, 64, 200):
            hidden = max(1, channels // r)
            assert max(1, channels // gs.reduction_for(channels, hidden)) == hidden


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_models_load_through_spandrel(name, registry):
    ref = load_pretrained(name, fold_batchnorm=False, channels_last=False)
    descriptor = spandrel.ModelLoader(registry=registry).load_from_file(zoo.shipped_path(name))
    assert descriptor.architecture.id == 'GradNet' and isinstance(descriptor, spandrel.ImageModelDescriptor)
    expected = copy.deepcopy(ref.pretrained_info['network_g'])
    for key in ('pretrained', 'param_key', 'strict'):
        expected['predenoiser'].pop(key, None)
    assert descriptor.model.spandrel_options == expected  # global residuals (True) chosen by the probe too
    x = torch.rand(1, ref.num_in_ch, 37, 45, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected_out = ref(x).clamp(0, 1)  # spandrel's call clamps to [0, 1]
    assert (descriptor(x) - expected_out).abs().max().item() <= 1e-4
    assert descriptor.tiling == spandrel.ModelTiling.SUPPORTED and descriptor.size_requirements.none
    assert descriptor(torch.rand(1, ref.num_in_ch, 1, 1)).shape == (1, ref.num_in_ch, 1, 1)  # no minimum size


def test_reduced_precision_outputs_stay_close(registry):
    """The supports_half / supports_bfloat16 flags: outputs in fp16 / bf16 stay within a few 8-bit levels."""
    name = SHIPPED[0]
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    loader = spandrel.ModelLoader(registry=registry)
    full = loader.load_from_file(zoo.shipped_path(name))(x)
    for dtype, flag, bound in ((torch.float16, 'supports_half', 2 / 255), (torch.bfloat16, 'supports_bfloat16',
                                                                           4 / 255)):
        descriptor = loader.load_from_file(zoo.shipped_path(name))
        assert getattr(descriptor, flag)
        out = descriptor.to(dtype)(x.to(dtype)).float()
        assert torch.isfinite(out).all()
        assert (out - full).abs().max().item() < bound, dtype


def test_foreign_predenoiser_is_refused_clearly():
    state = random_state(gradnet())
    state = {k: v for k, v in state.items() if not k.startswith('predenoiser.body')}
    state['predenoiser.model.0.weight'] = torch.zeros(8, 3, 3, 3)
    assert gs.detect_gradnet(state)
    with pytest.raises(spandrel.UnsupportedModelError, match='not an MSKResNet'):
        gs.structural_options(state)


def test_missing_spandrel_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'spandrel', None)  # as if not installed; monkeypatch restores both entries
    monkeypatch.delitem(sys.modules, 'gradnet_arch.integrations.spandrel')
    with pytest.raises(ImportError, match=r'pip install "gradnet-basicsr\[spandrel\]"') as info:
        importlib.import_module('gradnet_arch.integrations.spandrel')
    assert isinstance(info.value, MissingExtraError) and '\n' not in str(info.value)
