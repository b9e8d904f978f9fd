"""speed/bench_training.py's in-process BasicSR iteration: BasicSR's own options, data loader and GradNetModel, trained
an iteration at a time as its train_pipeline does."""
import math
import os
import sys
import torch
from conftest import REPO
from torch import nn

sys.path.insert(0, os.path.join(REPO, 'speed'))
import bench_training  # noqa: E402


def test_basicsr_iteration_trains_the_model_basicsr_builds(tmp_path):
    root = str(tmp_path)
    folder = bench_training.write_images(os.path.join(root, 'images'), count=2)
    stage1 = bench_training.stage1_checkpoint(root, 'cpu')
    iteration = bench_training.basicsr_iteration(root, folder, stage1, 'cpu', False, False, 'cpu', print_freq=2)
    model = iteration.model
    assert type(model).__name__ == 'GradNetModel' and model.opt['network_g']['type'] == 'GradNet'
    before = {k: v.clone() for k, v in model.net_g.state_dict().items() if not k.startswith('predenoiser.')}
    for _ in range(3):  # the MessageLogger line runs at iteration 2
        iteration()
    assert iteration.state['iter'] == 3
    log = model.get_current_log()
    assert {'l_pix', 'l_grad'} <= set(log) and all(math.isfinite(v) for v in log.values())
    after = model.net_g.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the optimizer stepped
    assert model.get_current_learning_rate() == [1e-3]


def test_rounds_below_one_are_one_line_errors():
    from conftest import run_python

    for script, flag in (('speed/bench_training.py', '--rounds'), ('speed/bench_fast_path.py', '--train-rounds')):
        proc = run_python([script, flag, '0'], cwd=REPO)
        assert proc.returncode == 2 and f'{flag} must be at least 1, got 0' in proc.stderr
        assert 'Traceback' not in proc.stderr
        proc = run_python([script, flag, 'many'], cwd=REPO)  # not an integer: argparse's own one-line error
        assert proc.returncode == 2 and 'invalid int value' in proc.stderr and 'Traceback' not in proc.stderr


def test_torch_modules_variant_is_the_same_net_on_the_old_path(tmp_path):
    """--modules-ab's baseline: torch's BatchNorm2d in every ResUnit, torch's AdaptiveAvgPool2d in every channel
    attention and no per-call pre-denoiser fold, the same weights and function (fp32 outputs equal to 1e-5), and its
    bf16 step still trains."""
    import copy
    from basicsr.archs import build_network

    from gradnet_arch.archs.batch_norm import FastBatchNorm2d
    from gradnet_arch.archs.mskresnet_arch import ChannelAttention, ResUnit
    from gradnet_arch.archs.pooling import GlobalAvgPool2d

    stage1 = bench_training.stage1_checkpoint(str(tmp_path), 'cpu')
    net = build_network(bench_training.network(stage1, 'cpu')).eval()
    old = bench_training.use_torch_modules(copy.deepcopy(net))
    units = [m for m in old.modules() if isinstance(m, ResUnit)]
    assert units and not any(isinstance(m, (FastBatchNorm2d, GlobalAvgPool2d)) for m in old.modules())
    assert all(type(m.body[0]) is nn.AdaptiveAvgPool2d for m in old.modules() if isinstance(m, ChannelAttention))
    assert any(isinstance(m, GlobalAvgPool2d) for m in net.modules())
    assert not any(unit.fold_frozen_bn for unit in units)
    assert any(m.fold_frozen_bn for m in net.modules() if isinstance(m, ResUnit))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(old(x), net(x), atol=1e-5)
    step = bench_training.bare_step(stage1, 'cpu', 'bf16', False, 'cpu', torch_modules=True)
    step(x, x)  # a bf16 channels_last step on the old path runs


def test_two_instead_modes_are_a_one_line_error():
    from conftest import run_python

    proc = run_python(['speed/bench_training.py', '--modules-ab', '--conv-ceiling'], cwd=REPO)
    assert proc.returncode == 2 and 'not allowed with argument' in proc.stderr and 'Traceback' not in proc.stderr
