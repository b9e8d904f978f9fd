"""Every option file under options/ parses, passes the plugin's checks, and builds its net, datasets and model type."""
import copy
import cv2
import glob
import lmdb
import numpy as np
import os
import pytest
import re
import torch
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.utils.options import yaml_load
from basicsr.utils.registry import ARCH_REGISTRY, MODEL_REGISTRY
from conftest import REPO, synthetic_image, write_images

import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.archs.predenoiser import LOAD_KEYS
from gradnet_arch.models.gradnet_model import TRAIN_KEYS
from gradnet_arch.option_check import check_options

OPTION_FILES = sorted(
    os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, 'options', '**', '*.yml'), recursive=True))
TRAIN_FILES = [path for path in OPTION_FILES if yaml_load(os.path.join(REPO, path)).get('train') is not None]
EXPERIMENT_PATH = re.compile(r'^experiments/(?P<name>[^/]+)/models/net_g_latest\.pth$')


def load(rel_path):
    return yaml_load(os.path.join(REPO, rel_path))


def arch_options(opt):
    """The arch options of a network dict: without the load keys, recursively (a predenoiser's included)."""
    return {k: arch_options(v) if isinstance(v, dict) else v for k, v in opt.items() if k not in LOAD_KEYS}


def saved_param_keys(train_opt):
    """The keys SRModel (and so GradNetModel) writes into net_g_*.pth for this `train` section."""
    return {'params', 'params_ema'} if train_opt.get('ema_decay', 0) > 0 else {'params'}


def write_lmdb(path, images):
    """A BasicSR image LMDB: png-encoded values under the key (image name without extension), meta_info.txt."""
    os.makedirs(path)
    env = lmdb.open(path, map_size=1 << 28)
    with env.begin(write=True) as txn, open(os.path.join(path, 'meta_info.txt'), 'w') as meta:
        for key, img in images.items():
            ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            assert ok
            txn.put(key.encode('ascii'), buf.tobytes())
            h, w, c = img.shape
            meta.write(f'{key}.png ({h},{w},{c}) 1\n')
    env.close()
    return path


def stand_in_data(dataset, root):
    """Point a dataset entry's data roots at tiny data of the kind it reads; returns the clean images by key."""
    size = max(48, dataset.get('gt_size') or 0) + 8
    kind, backend = dataset['type'], (dataset.get('io_backend') or {}).get('type', 'disk')
    if kind == 'GaussianNoiseDataset':
        channels = 1 if dataset.get('color') == 'gray' else 3
        dataset['dataroot_gt'] = write_images(
            os.path.join(root, 'gt'), 2, height=size, width=size + 4, channels=channels)
        return {f'img_{i:03d}': synthetic_image(i, size, size + 4, channels) for i in range(2)}
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
        return gt
    pytest.fail(f'no stand-in data for dataset type {kind!r}: extend stand_in_data in {__file__}')


def test_option_files_found():
    assert 'options/train_mskresnet_sidd.yml' in OPTION_FILES
    assert 'options/train_gradnet_sidd.yml' in OPTION_FILES
    assert 'options/test_gradnet_sidd.yml' in OPTION_FILES


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_parses_and_passes_checks(rel_path):
    opt = load(rel_path)
    check_options(opt, rel_path)
    assert opt['model_type'] in MODEL_REGISTRY
    assert opt['network_g']['type'] in ARCH_REGISTRY


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_network_builds(rel_path, tmp_path):
    net_opt = copy.deepcopy(load(rel_path)['network_g'])
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
    own = net.own_parameters() if hasattr(net, 'own_parameters') else list(net.parameters())
    if sum(p.numel() for p in own) < 2e6:
        x = torch.rand(1, net_opt.get('num_in_ch', 3), 16, 16)
        with torch.no_grad():
            out = net.eval()(x)
        assert out.shape == x.shape
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('rel_path', OPTION_FILES)
def test_datasets_build(rel_path, tmp_path):
    opt = load(rel_path)
    for key, dataset_opt in opt['datasets'].items():
        dataset = copy.deepcopy(dataset_opt)
        dataset['phase'] = key.split('_')[0]  # as BasicSR's parse_options: val_1 -> val, test_2 -> test
        if 'scale' in opt:
            dataset['scale'] = opt['scale']
        clean = stand_in_data(dataset, str(tmp_path / key))
        data = build_dataset(dataset)
        assert len(data) == len(clean)
        item = data[0]
        channels = clean[next(iter(clean))].shape[2]
        if dataset['phase'] == 'train':
            assert item['gt'].shape == (channels, dataset['gt_size'], dataset['gt_size'])
        else:
            key0 = sorted(clean)[0]
            img = clean[key0][..., ::-1] if channels == 3 else clean[key0]  # BGR -> RGB
            expected = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255.)
            assert torch.allclose(item['gt'], expected, atol=1e-6), f'datasets.{key}: ground truth read wrongly'
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


def _checkpoint_producers():
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


@pytest.mark.parametrize('rel_path,what', _checkpoint_producers())
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
    match = EXPERIMENT_PATH.match(path)
    assert match, f'{rel_path}: {path} is not experiments/<name>/models/net_g_latest.pth'
    producers = [load(p) for p in TRAIN_FILES if load(p)['name'] == match['name']]
    assert len(producers) == 1, f'{rel_path}: no (or several) training option files named {match["name"]!r}'
    producer = producers[0]
    assert arch_options(producer['network_g']) == wanted
    if param_key is not None:
        assert param_key in saved_param_keys(producer['train'])
