"""Every option file under options/ parses with BasicSR's parser, passes the plugin's checks, builds its net and
datasets on stand-in data, and agrees with the files it depends on; the generated ones are current."""
import copy
import cv2
import glob
import importlib.util
import json
import lmdb
import numpy as np
import os
import pytest
import re
import shutil
import sys
import tempfile
import torch
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.utils.options import parse_options, yaml_load
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from conftest import REPO, run_python, synthetic_image, write_images

import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.archs.predenoiser import LOAD_KEYS
from gradnet_arch.errors import OptionError
from gradnet_arch.models.gradnet_model import TRAIN_KEYS
from gradnet_arch.option_check import check_options

OPTION_FILES = sorted(
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, 'options', '**', '*.yml'), recursive=True))
_CACHE = {}


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Paper-size nets on small inputs: one thread is as fast and cannot be starved by other processes' threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load(rel_path):
    """The options of a file (parsed once; callers get their own copy)."""
    if rel_path not in _CACHE:
        _CACHE[rel_path] = yaml_load(os.path.join(REPO, rel_path))
    return copy.deepcopy(_CACHE[rel_path])


TRAIN_FILES = [path for path in OPTION_FILES if load(path).get('train') is not None]
TEST_FILES = [path for path in OPTION_FILES if path not in TRAIN_FILES]
INFERENCE_FILES = [
    path for path in TEST_FILES if all(d['type'] == 'SingleImageDataset' for d in load(path)['datasets'].values())
]
ABLATION_REFERENCE = 'options/awgn_color/train_gradnet_cbsd432_sigma25.yml'
ABLATION_FILES = [path for path in TRAIN_FILES if path.startswith('options/ablation/')]
EXPERIMENT_PATH = re.compile(r'^experiments/(?P<name>[^/]+)/models/net_g_latest\.pth$')
NOISE_KEYS = ('sigma', 'sigma_range', 'sigma_list')
INIT_KEYS = ('init_from_predenoiser', )  # how a network's training starts, not what it computes


def arch_options(opt):
    """The arch options of a network dict: without the load and init keys, recursively (a predenoiser's included)."""
    return {k: arch_options(v) if isinstance(v, dict) else v for k, v in opt.items() if k not in LOAD_KEYS + INIT_KEYS}


def saved_param_keys(train_opt):
    """The keys SRModel (and so GradNetModel) writes into net_g_*.pth for this `train` section."""
    return {'params', 'params_ema'} if train_opt.get('ema_decay', 0) > 0 else {'params'}


# The shipped weights (gradnet_arch/pretrained/weights/) and the option files that trained them.
SHIPPED_TRAINING = {
    'gradnet_arch/pretrained/weights/gradnet_color_sigma25.pth':
    'options/pretrained/train_gradnet_cbsd432_sigma25_cpu.yml',
    'gradnet_arch/pretrained/weights/gradnet_gray_sigma25.pth':
    'options/pretrained/train_gradnet_train400_sigma25_cpu.yml',
    'gradnet_arch/pretrained/weights/gradnet_color_blind.pth':
    'options/pretrained/train_gradnet_cbsd432_blind_cpu.yml',
    # scripts/run_ablation.py writes this from the shipped colour model's `predenoiser.` weights (its stage 1)
    'experiments/gradnet_ablation_cpu_predenoiser/net_g_stage1.pth':
    'options/pretrained/train_mskresnet_cbsd432_sigma25_cpu.yml',
}


def producer_of(path):
    """The training option file whose run writes checkpoint `path` (experiments/<name>/models/net_g_latest.pth, or a
    shipped weight file)."""
    if path in SHIPPED_TRAINING:
        return SHIPPED_TRAINING[path]
    match = EXPERIMENT_PATH.match(path)
    assert match, f'{path} is not experiments/<name>/models/net_g_latest.pth'
    producers = [p for p in TRAIN_FILES if load(p)['name'] == match['name']]
    assert len(producers) == 1, f'no (or several) training option files named {match["name"]!r}: {producers}'
    return producers[0]


# ---------------------------------------------------------------------------------------------------------------------
# Stand-in data of the kind each dataset entry reads.


def write_lmdb(path, images):
    """A BasicSR image LMDB: png-encoded values under the key (image name without extension), meta_info.txt."""
    os.makedirs(path)
    env = lmdb.open(path, map_size=1 << 28)
    with env.begin(write=True) as txn, open(os.path.join(path, 'meta_info.txt'), 'w') as meta:
        for key, img in images.items():
            ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            txn.put(key.encode('ascii'), buf.tobytes())
            h, w = img.shape[:2]
            meta.write(f'{key}.png ({h},{w},{img.shape[2] if img.ndim == 3 else 1}) 1\n')
    env.close()
    return path


_LMDB_PROBE = {}


def _gaussian_lmdb_unsupported():
    """None if GaussianNoiseDataset reads io_backend lmdb, else why not (the LMDB backend is being added)."""
    if not _LMDB_PROBE:
        root = tempfile.mkdtemp()
        try:
            path = write_lmdb(os.path.join(root, 'probe.lmdb'), {'probe': synthetic_image(0)})
            build_dataset({
                'name': 'probe',
                'type': 'GaussianNoiseDataset',
                'phase': 'val',
                'dataroot_gt': path,
                'io_backend': {
                    'type': 'lmdb'
                },
                'sigma': 25
            })
            _LMDB_PROBE['reason'] = None
        except OptionError as error:
            if 'io_backend' not in str(error):
                raise
            _LMDB_PROBE['reason'] = f'GaussianNoiseDataset does not accept io_backend lmdb yet ({error})'
        finally:
            shutil.rmtree(root)
    return _LMDB_PROBE['reason']


def stand_in_data(dataset, root):
    """Point a dataset entry's data roots at tiny data of the kind it reads; returns (clean or input images by key,
    channels). The images of GaussianNoiseDataset and PairedImageDataset's GT are clean; SingleImageDataset's are the
    noisy inputs themselves."""
    size = max(48, dataset.get('gt_size') or 0) + 8
    kind, backend = dataset['type'], (dataset.get('io_backend') or {}).get('type', 'disk')
    if kind == 'GaussianNoiseDataset':
        channels = 1 if dataset.get('color') == 'gray' else 3
        images = {f'img_{i:03d}': synthetic_image(i, size, size + 4, channels) for i in range(2)}
        if backend == 'lmdb':
            reason = _gaussian_lmdb_unsupported()
            if reason:
                pytest.skip(reason)
            name = os.path.basename(dataset['dataroot_gt'])
            assert name.endswith('.lmdb'), f'an LMDB dataroot_gt ends in .lmdb (BasicSR\'s convention): {name}'
            dataset['dataroot_gt'] = write_lmdb(os.path.join(root, name), images)
        else:
            dataset['dataroot_gt'] = write_images(
                os.path.join(root, 'gt'), 2, height=size, width=size + 4, channels=channels)
            if dataset.get('meta_info_file'):  # a subset list shipped with the options: it exists, then list stand-ins
                assert os.path.isfile(os.path.join(REPO, dataset['meta_info_file'])), dataset['meta_info_file']
                dataset['meta_info_file'] = os.path.join(root, 'meta_info.txt')
                with open(dataset['meta_info_file'], 'w') as fout:
                    fout.write(''.join(f'{name}\n' for name in sorted(os.listdir(dataset['dataroot_gt']))))
        return images, channels
    if kind == 'PairedImageDataset':
        gt = {f'{i:04d}_{j:02d}': synthetic_image(10 * i + j, size, size + 4) for i in range(2) for j in range(2)}
        noisy = {
            key:
            np.clip(img.astype(np.int16) + np.random.RandomState(1).randint(-20, 21, img.shape), 0,
                    255).astype(np.uint8)
            for key, img in gt.items()
        }
        if backend == 'lmdb':
            dataset['dataroot_gt'] = write_lmdb(os.path.join(root, 'gt', os.path.basename(dataset['dataroot_gt'])), gt)
            dataset['dataroot_lq'] = write_lmdb(
                os.path.join(root, 'lq', os.path.basename(dataset['dataroot_lq'])), noisy)
        else:
            tmpl = dataset.get('filename_tmpl', '{}')
            for sub, images in (('gt', gt), ('lq', noisy)):
                os.makedirs(os.path.join(root, sub))
                for key, img in images.items():
                    cv2.imwrite(os.path.join(root, sub, f'{key if sub == "gt" else tmpl.format(key)}.png'), img)
            dataset['dataroot_gt'], dataset['dataroot_lq'] = os.path.join(root, 'gt'), os.path.join(root, 'lq')
        return gt, 3
    if kind == 'SingleImageDataset':
        assert backend == 'disk', 'stand-in data for SingleImageDataset is a PNG folder'
        # small: the inference test runs paper-size nets on them on the CPU
        noisy = {f'01_{j:02d}': synthetic_image(j, 24, 28) for j in (1, 2)}
        os.makedirs(os.path.join(root, 'lq'))
        for key, img in noisy.items():
            cv2.imwrite(os.path.join(root, 'lq', f'{key}.png'), img)
        dataset['dataroot_lq'] = os.path.join(root, 'lq')
        return noisy, 3
    pytest.fail(f'no stand-in data for dataset type {kind!r}: extend stand_in_data in {__file__}')


def as_tensor(img):
    """What BasicSR's readers give for an 8-bit HWC (BGR) or HW image: CHW RGB float32 in [0, 1]."""
    img = img[..., ::-1] if img.ndim == 3 and img.shape[2] == 3 else img.reshape(img.shape[0], img.shape[1], 1)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32) / 255.)


# ---------------------------------------------------------------------------------------------------------------------


def test_option_files_found():
    for path in ('options/train_mskresnet_sidd.yml', 'options/train_gradnet_sidd.yml', 'options/test_gradnet_sidd.yml',
                 'options/test_gradnet_sidd_benchmark.yml', 'options/test_gradnet_dnd.yml',
                 'options/demo/train_demo_stage1_mskresnet.yml', 'options/demo/train_demo_stage2_gradnet.yml'):
        assert path in OPTION_FILES
    for folder in ('polyu', 'awgn_color', 'awgn_gray', 'ablation'):
        assert any(path.startswith(f'options/{folder}/') for path in OPTION_FILES), folder
    assert len(INFERENCE_FILES) == 2 and len(ABLATION_FILES) == 6


def test_generated_files_are_current():
    """`scripts/generate_options.py --check`: no generated file was edited by hand or is out of date."""
    proc = run_python([os.path.join('scripts', 'generate_options.py'), '--check'], cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def generate_options_module():
    spec = importlib.util.spec_from_file_location('generate_options',
                                                  os.path.join(REPO, 'scripts', 'generate_options.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_yaml_writer_keeps_comments_and_basicsr_notation():
    """The generator's writer: PyYAML's text, comments placed by key, BasicSR's `!!float`, flow lists, no anchors."""
    gen = generate_options_module()
    shared = [1, 2]
    train = {'lr': gen.Sci('1e-3'), 'milestones': gen.note(shared, above=('first line', 'second line'))}
    train.update(again=shared, empty=None)
    options = {'name': 'x', 'num_gpu': gen.note('auto', 'every visible GPU'), 'train': gen.note(train, 'the section')}
    options['tail'] = 'a: b'
    text = gen.to_yaml(['header'], options)
    assert text == ('# header\nname: x\nnum_gpu: auto  # every visible GPU\n\ntrain:  # the section\n'
                    '  lr: !!float 1e-3\n  # first line\n  # second line\n  milestones: [1, 2]\n  again: [1, 2]\n'
                    '  empty: ~\n\ntail: \'a: b\'\n')
    assert yaml_load(text)['train']['lr'] == 1e-3  # BasicSR's loader reads the notation as a float
    # a value PyYAML does not keep on its key's line (a string with a line break) fails instead of misplacing comments
    with pytest.raises(AssertionError, match='lines for 2 keys'):
        gen.to_yaml([], {'a': gen.note('line one\nline two', 'x'), 'b': 1})


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_parses_and_passes_checks(rel_path, monkeypatch, tmp_path):
    opt = load(rel_path)
    check_options(opt, rel_path)
    assert opt['model_type'] in MODEL_REGISTRY
    assert opt['network_g']['type'] in ARCH_REGISTRY
    # BasicSR's own command-line parser, as `basicsr/train.py` / `basicsr/test.py` run it
    is_train = rel_path in TRAIN_FILES
    monkeypatch.setattr(sys, 'argv', ['basicsr', '-opt', os.path.join(REPO, rel_path)])
    parsed, _ = parse_options(str(tmp_path), is_train=is_train)
    assert isinstance(parsed['num_gpu'], int)
    assert all(d['phase'] in (('train', 'val') if is_train else ('test', )) for d in parsed['datasets'].values())
    if not is_train:
        assert 'suffix' in opt['val'], 'BasicSR\'s test pipeline reads val.suffix'
        assert opt['path'].get('pretrain_network_g'), 'a test file loads a trained network'
    names = [d['name'] for d in opt['datasets'].values()]
    assert len(set(names)) == len(names), 'BasicSR files results and metrics under the dataset name'


_BUILT = set()


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_network_builds(rel_path, tmp_path):
    """Each distinct network_g is built once (and its pre-denoiser checkpoint loaded), then run on a small input."""
    net_opt = load(rel_path)['network_g']
    key = json.dumps(
        [arch_options(net_opt), bool((net_opt.get('predenoiser') or {}).get('pretrained'))], sort_keys=True)
    if key in _BUILT:
        return
    pre = net_opt.get('predenoiser')
    expected = None
    if pre is not None and pre.get('pretrained') is not None:
        # A real checkpoint of the predenoiser arch, holding both keys BasicSR may have written.
        expected = build_network(arch_options(pre)).state_dict()
        ckpt = tmp_path / 'predenoiser.pth'
        torch.save({'params': expected, 'params_ema': expected}, ckpt)
        pre['pretrained'] = str(ckpt)
    net = build_network(net_opt)
    if expected is not None:
        loaded = net.predenoiser.state_dict()
        assert loaded.keys() == expected.keys()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)
        assert not any(p.requires_grad for p in net.predenoiser.parameters())
    x = torch.rand(1, net_opt.get('num_in_ch', 3), 16, 16)
    with torch.no_grad():
        out = net.eval()(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    _BUILT.add(key)


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_datasets_build(rel_path, tmp_path):
    opt = load(rel_path)
    for key, dataset in opt['datasets'].items():
        dataset['phase'] = key.split('_')[0]  # as BasicSR's parse_options: val_1 -> val, test_2 -> test
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        images, channels = stand_in_data(dataset, str(tmp_path / key))
        data = build_dataset(dataset)
        assert len(data) == len(images)
        item = data[0]
        first = images[sorted(images)[0]]
        if dataset['type'] == 'SingleImageDataset':  # noisy input only, no ground truth
            assert 'gt' not in item
            assert torch.allclose(item['lq'], as_tensor(first), atol=1e-6), f'datasets.{key}: input read wrongly'
            continue
        if dataset['phase'] == 'train':
            assert item['gt'].shape == (channels, dataset['gt_size'], dataset['gt_size'])
        else:
            assert torch.allclose(item['gt'], as_tensor(first), atol=1e-6), f'datasets.{key}: ground truth read wrongly'
        assert item['lq'].shape == item['gt'].shape
        assert not torch.equal(item['lq'], item['gt'])
        assert 0 <= item['gt'].min() and item['gt'].max() <= 1


@pytest.mark.parametrize('rel_path', TRAIN_FILES)
def test_train_section_uses_gradnet_model_keys(rel_path):
    opt = load(rel_path)
    assert opt['model_type'] == 'GradNetModel'
    unknown = set(opt['train']) - set(TRAIN_KEYS)
    assert not unknown, f'{rel_path}: train keys GradNetModel does not accept: {sorted(unknown)}'
    assert opt['train'].get('pixel_opt') or opt['train'].get('gradient_opt')
    scheduler = opt['train']['scheduler']
    if scheduler['type'] == 'CosineAnnealingRestartLR':  # the periods cover the run exactly, one weight each
        assert sum(scheduler['periods']) == opt['train']['total_iter']
        assert len(scheduler['restart_weights']) == len(scheduler['periods'])
    else:
        milestones = scheduler['milestones']
        assert milestones == sorted(milestones) and milestones[-1] < opt['train']['total_iter']


@pytest.mark.parametrize('rel_path', [p for p in TRAIN_FILES if load(p)['network_g']['type'] != 'GradNet'])
def test_stage1_trains_with_the_pixel_loss_only(rel_path):
    """The naive denoise block is a plain denoiser: the released code trains it with L1 alone."""
    train = load(rel_path)['train']
    assert train['pixel_opt']['type'] == 'L1Loss'
    assert not train.get('gradient_opt') and not train.get('perceptual_opt')


@pytest.mark.parametrize('rel_path', [p for p in TRAIN_FILES if load(p)['network_g']['type'] == 'GradNet'])
def test_gradnet_trains_with_the_papers_loss(rel_path):
    """L = L1 + 0.1 * gradient consistency (mean reductions), except in the ablations that drop the gradient loss."""
    train = load(rel_path)['train']
    assert train['pixel_opt'] == {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}
    if rel_path.endswith(('_no_grad_loss.yml', '_grad_none.yml', '_no_gradient_loss.yml', '_no_gradient.yml')):
        assert not train.get('gradient_opt')
    else:
        assert train['gradient_opt'] == {'type': 'GradientConsistencyLoss', 'loss_weight': 0.1, 'reduction': 'mean'}


def test_run_names_are_unique():
    for files in (TRAIN_FILES, TEST_FILES):
        names = [load(p)['name'] for p in files]
        assert len(set(names)) == len(names), 'two runs would write the same experiments/ or results/ folder'


def _checkpoint_users():
    """Pairs (file, what) where `what` is a stage-1 or stage-2 checkpoint path another option file trains."""
    pairs = []
    for rel_path in OPTION_FILES:
        opt = load(rel_path)
        pre = opt['network_g'].get('predenoiser') or {}
        if pre.get('pretrained'):
            pairs.append((rel_path, 'predenoiser'))
        if (opt.get('path') or {}).get('pretrain_network_g'):
            pairs.append((rel_path, 'pretrain_network_g'))
    return pairs


@pytest.mark.parametrize('rel_path,what', _checkpoint_users())
def test_checkpoint_paths_match_the_training_file(rel_path, what):
    """A checkpoint named experiments/<name>/... comes from the option file called <name>, of the same arch, and
    the param_key asked for is one that file's training saves (GradNetModel has no params_ema -> params fallback)."""
    opt = load(rel_path)
    if what == 'predenoiser':
        pre = opt['network_g']['predenoiser']
        path, param_key, wanted = pre['pretrained'], pre.get('param_key'), arch_options(pre)
    else:
        path, param_key = opt['path']['pretrain_network_g'], opt['path'].get('param_key_g', 'params')
        wanted = arch_options(opt['network_g'])
    producer = load(producer_of(path))
    assert arch_options(producer['network_g']) == wanted
    if param_key is not None:
        assert param_key in saved_param_keys(producer['train'])


def _noise(dataset):
    return {k: dataset[k] for k in NOISE_KEYS if dataset.get(k) is not None}


@pytest.mark.parametrize('rel_path',
                         [p for p, what in _checkpoint_users() if what == 'predenoiser' and p in TRAIN_FILES])
def test_stage1_trained_on_the_same_data_and_noise(rel_path):
    """The paper trains the naive denoiser first, on the same data at the same noise level."""
    opt = load(rel_path)
    stage1 = load(producer_of(opt['network_g']['predenoiser']['pretrained']))
    for phase in ['train'] + [p for p in ('val', ) if p in opt['datasets']]:  # the CPU ablation has no validation
        mine, theirs = opt['datasets'][phase], stage1['datasets'][phase]
        for key in ('type', 'dataroot_gt', 'dataroot_lq', 'color', 'io_backend', 'gt_size', 'noise_seed', *NOISE_KEYS):
            assert mine.get(key) == theirs.get(key), f'datasets.{phase}.{key}'


@pytest.mark.parametrize('rel_path', [p for p in TEST_FILES if load(p)['datasets']['test_1'].get('color')])
def test_synthetic_test_noise_is_within_the_training_noise(rel_path):
    opt = load(rel_path)
    trained = load(producer_of(opt['path']['pretrain_network_g']))['datasets']['train']
    for key, dataset in opt['datasets'].items():
        assert dataset['type'] == 'GaussianNoiseDataset' and dataset['color'] == trained['color']
        assert dataset.get('noise_seed') == 0, f'datasets.{key}: the field\'s seed-0-per-image noise'
        sigma = dataset['sigma']
        if trained.get('sigma') is not None:
            assert sigma == trained['sigma'], f'datasets.{key}: a non-blind model is tested at its own sigma'
        else:
            low, high = trained['sigma_range']
            assert low <= sigma <= high, f'datasets.{key}'
        assert f'sigma{sigma}' in dataset['name'], f'datasets.{key}: the name says the noise level'


def _differences(a, b, prefix=''):
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k), b.get(k), f'{prefix}{k}.')]
    return [] if a == b else [prefix.rstrip('.')]


EXPECTED_ABLATION = {
    'fusion1': ['network_g.fusion'],
    'fusion3': ['network_g.fusion'],
    'fusion4': ['network_g.fusion'],
    'grad_noisy': ['network_g.gradient_source', 'network_g.predenoiser'],
    'grad_none': ['network_g.fusion', 'network_g.gradient_source', 'network_g.predenoiser', 'train.gradient_opt'],
    'no_grad_loss': ['train.gradient_opt'],
}


@pytest.mark.parametrize('rel_path', ABLATION_FILES)
def test_ablation_differs_from_the_reference_only_in_the_ablated_option(rel_path):
    """Same data, iterations, seed, validation and network size as the main colour sigma-25 GradNet."""
    tag = re.match(r'.*_sigma25_(?P<tag>.+)\.yml$', rel_path)['tag']
    reference, opt = load(ABLATION_REFERENCE), load(rel_path)
    changed = _differences(opt, reference)
    changed = sorted({d if d.startswith('name') else '.'.join(d.split('.')[:2]) for d in changed})
    assert changed == sorted(['name'] + EXPECTED_ABLATION[tag])
    pre = opt['network_g'].get('predenoiser')
    if pre:  # the reference's stage 1 is reused
        assert pre == reference['network_g']['predenoiser']


@pytest.fixture(scope='module')
def inference_runs(tmp_path_factory):
    """Every inference-only file (no ground truth) through `gradnet-test`'s pipeline, on stand-in inputs and a random
    checkpoint of its network, all in one fresh interpreter. Returns {file: (work dir, options, inputs by dataset)}."""
    runs, commands = {}, []
    for i, rel_path in enumerate(INFERENCE_FILES):
        work = tmp_path_factory.mktemp(f'inference{i}')
        opt = load(rel_path)
        opt['num_gpu'] = 0
        inputs = {}
        for key, dataset in opt['datasets'].items():
            inputs[dataset['name']], _ = stand_in_data(dataset, str(work / 'data' / key))
        torch.save({'params': build_network(arch_options(opt['network_g'])).state_dict()}, work / 'net.pth')
        opt['path']['pretrain_network_g'] = str(work / 'net.pth')
        with open(work / 'test.yml', 'w') as f:
            json.dump(opt, f)  # JSON is YAML
        commands.append(f'os.chdir({str(work)!r}); main(["-opt", "test.yml"])')
        runs[rel_path] = (work, opt, inputs)
    script = '; '.join(['import os', 'from gradnet_arch.test import main'] + commands)
    proc = run_python(['-c', script],
                      cwd=str(tmp_path_factory.getbasetemp()),
                      env={'OMP_NUM_THREADS': '1'},
                      timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '# psnr' not in proc.stdout + proc.stderr
    return runs


@pytest.mark.parametrize('rel_path', INFERENCE_FILES)
def test_inference_file_runs_basicsr_test_pipeline(rel_path, inference_runs):
    """One denoised PNG per input, of the input's size, where the file's header says (no metrics: no ground truth)."""
    work, opt, inputs = inference_runs[rel_path]
    for name, images in inputs.items():
        folder = work / 'results' / opt['name'] / 'visualization' / name
        assert sorted(os.listdir(folder)) == sorted(f'{key}_{opt["name"]}.png' for key in images)
        for key, img in images.items():
            assert cv2.imread(str(folder / f'{key}_{opt["name"]}.png')).shape == img.shape


def test_dnd_16bit_crops_are_read_at_8_bits(tmp_path):
    """What options/test_gradnet_dnd.yml says: BasicSR's SingleImageDataset decodes the 16-bit DND crops to 8 bits
    (an error below one grey level). If this fails, BasicSR reads them at full depth now: update the file's caveat."""
    dataset = load('options/test_gradnet_dnd.yml')['datasets']['test_1']
    dataset['phase'] = 'test'
    rng = np.random.RandomState(0)
    img16 = rng.randint(0, 65536, (40, 44, 3)).astype(np.uint16)
    os.makedirs(tmp_path / 'crops')
    cv2.imwrite(str(tmp_path / 'crops' / '0001_01.png'), img16)
    dataset['dataroot_lq'] = str(tmp_path / 'crops')
    lq = build_dataset(dataset)[0]['lq']
    exact = torch.from_numpy(img16[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 65535.)
    assert (lq - exact).abs().max() < 1 / 255
    assert torch.allclose(lq * 255, (lq * 255).round(), atol=1e-3), 'read at 8 bits'
