"""scripts/preset_sweep.py: candidates differ from the shipped preset in one change, train on the split, validate on the
held-out images; the report reads BasicSR's logs; the held-out split files."""
import os
import pytest
import sys
from conftest import REPO, SHARED_DATA

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import preset_sweep as sweep  # noqa: E402

META = os.path.join(REPO, 'options', 'pretrained', 'meta')


def flatten(opt, prefix=''):
    out = {}
    for key, value in opt.items():
        if isinstance(value, dict):
            out.update(flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def test_every_candidate_is_the_base_with_only_its_own_change():
    reference = flatten(sweep.candidate_options({}, 'x', 250))
    for name, _, overrides in sweep.CANDIDATES:
        opt = flatten(sweep.candidate_options(overrides, 'x', 250))
        changed = {key for key in reference if opt[key] != reference[key]}
        assert changed == {key for key, value in overrides.items() if reference[key] != value}, name


def test_candidates_train_on_the_split_and_validate_on_held_out_training_images():
    from gradnet_arch.option_check import read_option_file

    opt = sweep.candidate_options({}, 'base', 250)
    base = read_option_file(sweep.BASE)
    train, val = opt['datasets']['train'], opt['datasets']['val']
    assert train['meta_info_file'].endswith('cbsd432_train416.txt')
    assert val['meta_info_file'].endswith('cbsd432_holdout16.txt')
    assert val['dataroot_gt'] == train['dataroot_gt'] == base['datasets']['train']['dataroot_gt']
    assert 'CBSD68' not in str(val)  # never a test set
    assert opt['train']['ema_decay'] == 0 and opt['val']['val_freq'] == 250
    assert opt['network_g'] == base['network_g']


def test_written_candidate_files_pass_the_option_checks(tmp_path, monkeypatch):
    from gradnet_arch.option_check import read_option_file

    monkeypatch.chdir(tmp_path)
    path = sweep.write_options('wide48', '48 features', {'network_g.num_feat': 48}, 250)
    assert read_option_file(path)['network_g']['num_feat'] == 48
    assert sweep.write_options('wide48', '48 features', {'network_g.num_feat': 48}, 250) == path  # same: kept
    with pytest.raises(SystemExit, match='exists with other options'):
        sweep.write_options('wide48', '48 features', {'network_g.num_feat': 64}, 250)


LOG = """2026-12-01 14:02:00,805 INFO: Network [MSKResNet] is created.
2026-12-01 14:02:00,806 INFO: Network: MSKResNet, with parameters: 113,220
2026-12-01 14:02:01,000 INFO: Start training from epoch: 0, iter: 0
2026-12-01 14:02:30,000 INFO: [sweep..][epoch:  0, iter:     250, lr:(1.000e-03,)] [eta: 1 day] l_pix: 3.7e-02
2026-12-01 14:02:31,000 INFO: Validation CBSD432_holdout16
\t # psnr: 29.0936\tBest: 29.0936 @ 250 iter
\t # ssim: 0.7900\tBest: 0.7900 @ 250 iter
2026-12-01 14:03:01,000 INFO: [sweep..][epoch:  0, iter:     500, lr:(1.000e-03,)] [eta: 1 day] l_pix: 3.1e-02
2026-12-01 14:03:02,000 INFO: Validation CBSD432_holdout16
\t # psnr: 29.7060\tBest: 29.7060 @ 500 iter
"""


def test_report_reads_the_curve_from_basicsrs_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs('experiments/sweep_base')
    with open('experiments/sweep_base/train_sweep_base_20261201_140201.log', 'w') as f:
        f.write(LOG)
    curve, params = sweep.read_curve('base')
    assert params == 113220
    assert curve == [(30.0, 250, 29.0936), (61.0, 500, 29.706)]
    sweep.report('report')
    table = open('report/summary.md').read()
    assert '| base |' in table and '29.706 (best)' in table and '| 61 | 500 |' in table
    assert open('report/runs.csv').read().splitlines()[0].startswith('candidate,change,parameters,seconds')


@pytest.mark.parametrize('stem,folder,count', [('cbsd432', 'CBSD432', 432), ('train400', 'Train400', 400)])
def test_held_out_split_is_disjoint_and_covers_the_training_set(stem, folder, count):
    held = open(os.path.join(META, f'{stem}_holdout16.txt')).read().split()
    train = open(os.path.join(META, f'{stem}_train{count - 16}.txt')).read().split()
    assert len(held) == 16 and len(set(held)) == 16 and len(train) == len(set(train)) == count - 16
    assert not set(held) & set(train)
    root = os.path.join(SHARED_DATA, 'train', folder)
    if not os.path.isdir(root):
        pytest.skip(f'{root} not present: the split covers the folder is checked where the data is')
    assert set(held) | set(train) == set(os.listdir(root))
