"""Mistakes in options, data and checkpoints stop the command early with a message, not a traceback."""
import os
import pytest
import torch
from conftest import run_python, write_images
from tiny_options import gradnet_network, make_train_options, stage1_network, write_yaml


@pytest.fixture
def run_train(tmp_path, monkeypatch, capsys):
    """Run `gradnet-train` in-process in tmp_path; returns (exit code, stderr)."""
    from gradnet_arch import train

    monkeypatch.chdir(tmp_path)

    def run(opt_or_file):
        opt_file = opt_or_file if isinstance(opt_or_file, str) else write_yaml(opt_or_file, tmp_path / 'opt.yml')
        with pytest.raises(SystemExit) as exit_info:
            train.main(['-opt', opt_file])
        return exit_info.value.code, capsys.readouterr().err

    return run


@pytest.fixture
def stage1_ckpt(tmp_path):
    from gradnet_arch import MSKResNet

    path = str(tmp_path / 'stage1.pth')
    net = MSKResNet(**{k: v for k, v in stage1_network().items() if k != 'type'})
    torch.save({'params': net.state_dict()}, path)
    return path


def test_misspelled_arch_option(run_train, image_dirs):
    network = dict(stage1_network(), num_feats=8)
    code, err = run_train(make_train_options('e1', image_dirs, network))
    assert code == 2 and "'num_feats' (did you mean 'num_feat'?)" in err and 'Traceback' not in err


def test_missing_predenoiser_checkpoint(run_train, image_dirs, tmp_path):
    missing = str(tmp_path / 'nowhere' / 'net_g_latest.pth')
    code, err = run_train(make_train_options('e2', image_dirs, gradnet_network(missing)))
    assert code == 2 and f'pre-denoiser checkpoint not found: {missing}' in err


def test_mismatched_predenoiser_checkpoint_names_file_and_keys(run_train, image_dirs, stage1_ckpt):
    network = gradnet_network(stage1_ckpt)
    network['predenoiser']['num_modules'] = 2  # the checkpoint has one module
    code, err = run_train(make_train_options('e3', image_dirs, network))
    assert code == 2 and stage1_ckpt in err and 'body.blocks.1.' in err and 'missing in the file' in err


def test_wrong_param_key_lists_the_keys(run_train, image_dirs, stage1_ckpt):
    network = gradnet_network(stage1_ckpt)
    network['predenoiser']['param_key'] = 'params_emma'
    code, err = run_train(make_train_options('e4', image_dirs, network))
    assert code == 2 and "no key 'params_emma'" in err and "['params']" in err


def test_corrupt_predenoiser_checkpoint(run_train, image_dirs, tmp_path):
    bad = tmp_path / 'corrupt.pth'
    bad.write_bytes(b'not a checkpoint at all')
    code, err = run_train(make_train_options('e5', image_dirs, gradnet_network(str(bad))))
    assert code == 2 and 'corrupt, truncated or not a PyTorch checkpoint' in err and str(bad) in err


def test_grey_data_into_colour_net(run_train, image_dirs):
    code, err = run_train(make_train_options('e6', image_dirs, stage1_network(), color='gray'))
    assert code == 2 and 'gives gray images (1 channel) but network_g has num_in_ch=3' in err


def test_dataset_folder_without_images(run_train, image_dirs, tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    code, err = run_train(make_train_options('e7', dict(image_dirs, train=str(empty)), stage1_network()))
    assert code == 2 and 'no images' in err and str(empty) in err


def test_untrained_predenoiser_refused(run_train, image_dirs):
    network = gradnet_network(None)
    code, err = run_train(make_train_options('e8', image_dirs, network))
    assert code == 2 and 'pre-denoiser has no weights' in err


def test_option_file_problems(run_train, image_dirs, tmp_path):
    code, err = run_train(str(tmp_path / 'missing.yml'))
    assert code == 2 and 'option file not found' in err
    opt = make_train_options('e9', image_dirs, stage1_network())
    opt['network_G'] = opt.pop('network_g')
    code, err = run_train(opt)
    assert code == 2 and "unknown top-level key 'network_G'; did you mean 'network_g'?" in err
    opt = make_train_options('e10', image_dirs, stage1_network())
    opt['train']['gradient_opts'] = opt['train']['pixel_opt']
    code, err = run_train(opt)
    assert code == 2 and "'gradient_opts' (did you mean 'gradient_opt'?)" in err
    opt = make_train_options('e11', image_dirs, dict(stage1_network(), type='GradNett'))
    code, err = run_train(opt)
    assert code == 2 and "'GradNett' is not registered" in err and "did you mean 'GradNet'?" in err


def test_command_line_error_has_no_traceback(tmp_path):
    """The real console entry point, in a fresh interpreter: exit status 2, one message, no traceback."""
    dirs = {'train': write_images(tmp_path / 'train', 2), 'val': write_images(tmp_path / 'val', 1)}
    opt_file = write_yaml(
        make_train_options('cli', dirs, gradnet_network(str(tmp_path / 'nope.pth'))), tmp_path / 'o.yml')
    proc = run_python(['-m', 'gradnet_arch.train', '-opt', opt_file], cwd=str(tmp_path))
    assert proc.returncode == 2
    assert 'Error: pre-denoiser checkpoint not found' in proc.stderr and 'Traceback' not in proc.stderr
    assert not os.path.exists(tmp_path / 'experiments' / 'cli' / 'models' / 'net_g_latest.pth')
