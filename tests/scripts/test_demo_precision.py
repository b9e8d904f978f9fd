"""speed/demo_precision.py: each seed and precision gets the demo's own option files, changed only where it must be."""
import os
import sys
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, 'speed'))
import demo_precision  # noqa: E402

from gradnet_arch.option_check import check_options, read_option_file  # noqa: E402

DEMO = os.path.join(REPO, 'options', 'demo')


def test_run_options_change_only_seed_precision_names_and_the_stage1_link():
    originals = [read_option_file(os.path.join(DEMO, name)) for name in demo_precision.STAGES]
    for amp in (False, 'bf16'):
        stage1, stage2 = demo_precision.run_options(DEMO, 11, amp)
        tag = 'bf16_seed11' if amp else 'fp32_seed11'
        for opt, original in zip((stage1, stage2), originals):
            assert opt['name'] == f'{original["name"]}_{tag}'
            assert opt['manual_seed'] == 11 and opt['amp'] == amp and opt['channels_last'] == bool(amp)
            assert opt['datasets'] == original['datasets'] and opt['train'] == original['train']
            check_options(opt, 'demo_precision')
        assert stage2['network_g']['predenoiser']['pretrained'] == os.path.join('experiments', stage1['name'], 'models',
                                                                                'net_g_latest.pth')
    names = {demo_precision.run_options(DEMO, s, a)[1]['name'] for s in (10, 11) for a in (False, 'bf16')}
    assert len(names) == 4  # every run writes its own experiments folder


def test_missing_option_files_are_one_line(tmp_path):
    from conftest import run_python

    proc = run_python(
        ['speed/demo_precision.py', '--opt-dir',
         str(tmp_path / 'nowhere'), '--work-dir',
         str(tmp_path / 'work')],
        cwd=REPO)
    assert proc.returncode != 0 and 'not found in --opt-dir' in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'work').exists()  # stopped before writing anything
