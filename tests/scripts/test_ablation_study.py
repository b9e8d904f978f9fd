"""scripts/run_ablation.py and its report: the plan, the shared pre-denoiser, the per-seed option files, runs.csv."""
import csv
import os
import pytest
import sys
import torch
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import ablation_report  # noqa: E402
import run_ablation as study  # noqa: E402


def test_plan_has_every_core_variant_per_seed_and_whole_seeds_first():
    runs = study.plan([10, 11, 12], fusion_seeds=1)
    assert len(runs) == 4 * 3 + 3
    assert runs[:7] == [(variant, 10) for variant, _ in study.VARIANTS]
    assert {v for v, s in runs if s == 11} == set(study.CORE) == {v for v, s in runs if s == 12}
    assert [s for _, s in runs] == sorted(s for _, s in runs)


def test_variant_files_differ_from_the_method_only_where_ablated():
    from gradnet_arch.option_check import read_option_file

    method = read_option_file(study.base_option_path('gradnet'))
    for variant, _ in study.VARIANTS:
        opt = read_option_file(study.base_option_path(variant))
        assert opt['name'] == f'gradnet_ablation_cpu_{variant}'
        assert opt['datasets'] == method['datasets'] and opt['manual_seed'] == method['manual_seed']
        assert opt['train']['total_iter'] >= 4000 and opt['train']['optim_g'] == method['train']['optim_g']
        assert opt['train']['scheduler'] == method['train']['scheduler']
        assert {k: v for k, v in opt['network_g'].items() if k not in ('gradient_source', 'fusion', 'predenoiser')} \
            == {k: v for k, v in method['network_g'].items() if k not in ('gradient_source', 'fusion', 'predenoiser')}
        if opt['network_g'].get('predenoiser'):
            assert opt['network_g']['predenoiser'] == method['network_g']['predenoiser']


@pytest.fixture
def study_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_predenoiser_is_the_shipped_models_stage1(study_dir):
    from basicsr.archs import build_network

    from gradnet_arch.option_check import read_option_file
    from gradnet_arch.pretrained import load_pretrained

    study.write_predenoiser()
    shipped = load_pretrained(study.SHIPPED, fold_batchnorm=False, channels_last=False)
    ckpt = torch.load(study.PREDENOISER, map_location='cpu', weights_only=True)
    expected = {k[len('predenoiser.'):]: v for k, v in shipped.state_dict().items() if k.startswith('predenoiser.')}
    assert set(ckpt['params_ema']) == set(expected)
    assert all(torch.equal(ckpt['params_ema'][k], expected[k]) for k in expected)
    # the method's option file builds (with BasicSR's build_network) a GradNet whose frozen stage 1 is exactly that
    net = build_network(read_option_file(study.base_option_path('gradnet'))['network_g']).eval()
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(net.predenoiser(x), shipped.predenoiser(x))
    before = os.path.getmtime(study.PREDENOISER)
    study.write_predenoiser()  # a second call leaves the file alone
    assert os.path.getmtime(study.PREDENOISER) == before


def test_run_options_change_only_name_and_seed(study_dir):
    from gradnet_arch.option_check import read_option_file

    path = study.write_run_options('noisy_gradient', 11)
    run, base = read_option_file(path), read_option_file(study.base_option_path('noisy_gradient'))
    assert run['name'] == 'gradnet_ablation_cpu_noisy_gradient_seed11' and run['manual_seed'] == 11
    run['name'], run['manual_seed'] = base['name'], base['manual_seed']
    assert run == base
    assert study.write_run_options('noisy_gradient', 11) == path  # same content: accepted as it is
    with open(path, 'a', encoding='utf-8') as f:
        f.write('# edited\n')
    with pytest.raises(SystemExit, match='exists with other options'):
        study.write_run_options('noisy_gradient', 11)


def _fake_eval(name, psnr, texture, smooth):
    os.makedirs(os.path.join('ablation', 'eval'), exist_ok=True)
    with open(study.eval_csv(name), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['model', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth'])
        writer.writeheader()
        writer.writerow({'model': name, 'psnr': psnr, 'ssim': 0.8, 'psnr_texture': texture, 'psnr_smooth': smooth})


def test_report_writes_runs_csv_and_paired_differences(study_dir):
    runs = [('gradnet', 10), ('no_gradient', 10), ('gradnet', 11), ('no_gradient', 11), ('fusion_I', 10)]
    values = {('gradnet', 10): 30.7, ('no_gradient', 10): 30.6, ('gradnet', 11): 30.8, ('no_gradient', 11): 30.5}
    for (variant, seed), psnr in values.items():
        study.write_run_options(variant, seed)
        _fake_eval(study.run_name(variant, seed), psnr, psnr - 3, psnr + 1)
    _fake_eval(study.STAGE1_LABEL, 30.65, 27.6, 31.7)
    docs = study_dir / 'docs'
    ablation_report.write_report(runs, str(docs))  # fusion_I has no results yet: left out, named on stderr
    with open(docs / 'runs.csv', newline='') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ['variant', 'seed', 'iterations', 'psnr', 'ssim', 'psnr_texture', 'psnr_smooth']
    assert [(r['variant'], int(r['seed'])) for r in rows] == [r for r in runs if r in values]
    assert all(int(r['iterations']) == 4000 for r in rows)
    summary = (docs / 'summary.md').read_text()
    no_gradient = next(line for line in summary.splitlines() if line.startswith('| no_gradient | 2 |'))
    # diffs -0.1 and -0.3: mean -0.2, sample std 0.141
    assert '| -0.200 | 0.141 |' in no_gradient and '10: -0.100, 11: -0.300' in no_gradient
    assert 'against its own frozen pre-denoiser: +0.100 dB' in summary  # mean(30.7, 30.8) - 30.65
    assert (docs / 'ablation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
