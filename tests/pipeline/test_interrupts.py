"""Ctrl-C: every tool stops promptly with one line and exit status 130, ends its worker processes, and leaves no
partial output (prep: nothing at the target names; gradnet-denoise: only complete images).

The prep and denoise commands get a real SIGINT sent to their whole process group, as a terminal sends it, once they
are visibly at work (staged output growing); the bounds below are hang checks, generous on a shared machine, not
speed limits.
"""
import cv2
import numpy as np
import os
import pytest
import scipy.io
import signal
import subprocess
import sys
import time
from conftest import REPO, write_images
from sample_data import gradnet_options, save_tiny, sidd_noisy, write_dnd, write_pairs, write_sidd_medium

STARTUP_S = 300  # importing torch and BasicSR on a loaded 2-core machine
EXIT_S = 60
INTERRUPTED = 'Interrupted; no output was written.'


def group_members(pgid):
    """Process ids whose process group is `pgid` (Linux /proc)."""
    members = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as fin:
                fields = fin.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            members.append(int(entry))
    return members


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(args, ready):
    """Start `python args...` in its own process group, send SIGINT to the group once `ready(pid)` holds.

    Returns:
        tuple: (exit status, stdout, stderr, number of processes in the group when it was interrupted).
    """
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    proc = subprocess.Popen(
        [sys.executable] + args,
        cwd=REPO,
        env=env,
        start_new_session=True,
        # a shell's background jobs (and so a test run started with `&`) inherit SIGINT ignored, and Python keeps an
        # ignored SIGINT ignored: give the command the terminal's default, as a user's Ctrl-C meets it
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not ready(proc.pid):
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate()
                pytest.fail(f'the command ended (or never got to work) before it could be interrupted: '
                            f'{proc.returncode}\n{out}\n{err}')
            time.sleep(0.02)
        members = len(group_members(proc.pid))
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=EXIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f'still running {EXIT_S} s after Ctrl-C: it hangs')
        deadline = time.monotonic() + EXIT_S
        while group_members(proc.pid) and time.monotonic() < deadline:  # workers end with the main process
            time.sleep(0.05)
        assert not group_members(proc.pid), 'worker processes outlived the interrupted command'
        return proc.returncode, out, err, members
    finally:
        if proc.poll() is None or group_members(proc.pid):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def staged(root):
    """Hidden `.partial-` folders of the outputs below `root`, or of `root` itself (next to it)."""
    parent, name = os.path.split(root)
    found = [entry for entry in os.listdir(parent) if entry.startswith(f'.{name}.partial-')]
    return found + [entry for _, dirs, _ in os.walk(root) for entry in dirs if '.partial-' in entry]


def workers_at_work(root, workers=2):
    """ready(pid): the command staged its output below `root` (a hidden `.partial-` folder) and its worker processes
    are running."""

    def ready(pid):
        return staged(root) and len(group_members(pid)) >= 1 + workers

    return ready


def everything_below(root):
    return sorted(
        os.path.relpath(os.path.join(folder, name), root) for folder, dirs, files in os.walk(root)
        for name in dirs + files)


def random_pngs(folder, count, size):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    for i in range(count):
        cv2.imwrite(os.path.join(folder, f'img_{i:03d}.png'), rng.randint(0, 256, size + (3, ), np.uint8))
    return str(folder)


def prep_workload(kind, tmp_path):
    """(arguments after `python -m gradnet_arch.prep`, output root) of a run that takes well over a few seconds."""
    out = str(tmp_path / 'out')
    small_crops = ['--crop-size', '32', '--step', '8']
    if kind == 'crops':
        return ['crops', random_pngs(tmp_path / 'clean', 40, (256, 256)), '--out', f'{out}/c.lmdb'] + small_crops, out
    if kind == 'paired':
        write_pairs(str(tmp_path / 'pairs'), [f'p{i:02d}' for i in range(20)], size=(256, 256))
        return [
            'paired', '--lq',
            str(tmp_path / 'pairs'), '--lq-suffix', '_real', '--gt-suffix', '_mean', '--val-count', '2', '--out', out
        ] + small_crops, out
    if kind == 'sidd-train':
        write_sidd_medium(str(tmp_path / 'sidd'), captures=[f'{i:03d}' for i in range(6)], size=(256, 256))
        return ['sidd-train', str(tmp_path / 'sidd'), '--out', out] + small_crops, out
    if kind == 'sidd-val':
        blocks = np.random.RandomState(0).randint(0, 256, (40, 32, 128, 128, 3)).astype(np.uint8)
        noisy, gt = str(tmp_path / 'noisy.mat'), str(tmp_path / 'gt.mat')
        scipy.io.savemat(noisy, {'ValidationNoisyBlocksSrgb': blocks})
        scipy.io.savemat(gt, {'ValidationGtBlocksSrgb': blocks})
        return ['sidd-val', '--noisy', noisy, '--gt', gt, '--out', out], out
    rng = np.random.RandomState(0)
    images = [rng.uniform(0, 1, (480, 480, 3)).astype(np.float32) for _ in range(20)]
    boxes = [[[1 + 8 * k, 1, 320 + 8 * k, 320] for k in range(20)] for _ in images]
    return ['dnd', write_dnd(str(tmp_path / 'dnd'), images, boxes), '--out', out], out


@pytest.mark.parametrize('kind', ['crops', 'paired', 'sidd-train', 'sidd-val', 'dnd'])
def test_prep_ctrl_c_ends_the_workers_and_writes_nothing(tmp_path, kind):
    args, out = prep_workload(kind, tmp_path)
    status, stdout, stderr, members = interrupt(['-m', 'gradnet_arch.prep'] + args + ['--workers', '2'],
                                                workers_at_work(out))
    assert members >= 3, 'the command and its 2 workers were running'
    assert status == 130 and stderr.strip() == INTERRUPTED and 'Traceback' not in stderr, stderr
    assert stdout == ''
    left = everything_below(out)  # at most the empty folders made for the outputs: no output, no staged folder
    assert all(os.path.isdir(os.path.join(out, name)) and not os.listdir(os.path.join(out, name)) for name in left)
    assert not any('.lmdb' in name or '.partial-' in name or name.endswith('.png') for name in left), left
    assert not staged(out)


def test_denoise_ctrl_c_leaves_only_complete_images(tmp_path):
    ckpt = save_tiny(tmp_path / 'color.pth', gradnet_options(3), 0)
    folder = write_images(tmp_path / 'in', 60, height=160, width=160)
    out = tmp_path / 'out'
    args = ['-m', 'gradnet_arch.denoise', folder, '-o', str(out), '--weights', ckpt, '--device', 'cpu', '--quiet']
    status, _, stderr, _ = interrupt(args, lambda _: out.is_dir() and any(n.endswith('.png') for n in os.listdir(out)))
    assert status == 130 and 'Traceback' not in stderr, stderr
    assert stderr.strip() == ('Interrupted; the outputs written so far are complete, the one in progress was not '
                              'written.')
    names = os.listdir(out)
    assert 0 < len(names) < 60 and all(name.endswith('.png') and not name.startswith('.') for name in names), names
    for name in names:  # every file there is a whole image
        assert cv2.imread(str(out / name)).shape == (160, 160, 3), name


def test_benchmark_ctrl_c_writes_no_report(tmp_path, monkeypatch, capsys):
    from gradnet_arch.benchmark import cli

    ckpt = save_tiny(tmp_path / 'color.pth', gradnet_options(3), 0)
    images = write_images(tmp_path / 'clean', 2, height=16, width=16)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, 'run_benchmark', ctrl_c)  # Ctrl-C while the models run
    with pytest.raises(SystemExit) as exit_info:
        cli.main([
            '--model', f'M={ckpt}', '--set', f'S={images}', '--device', 'cpu', '--quiet', '--csv',
            str(tmp_path / 'r.csv')
        ])
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and err.strip() == ('Interrupted; report files are written at the end, each '
                                                           'whole or not at all.')
    assert not (tmp_path / 'r.csv').exists()


def test_submit_ctrl_c_while_writing_leaves_nothing(tmp_path, monkeypatch, capsys):
    from gradnet_arch.submit.cli import main

    ckpt = save_tiny(tmp_path / 'color.pth', gradnet_options(3), 0)
    noisy = str(tmp_path / 'noisy.mat')
    scipy.io.savemat(noisy, {'BenchmarkNoisyBlocksSrgb': sidd_noisy(shape=(1, 1, 16, 16, 3))})
    real = scipy.io.savemat

    def ctrl_c_half_way(file, *args, **kwargs):
        file.write(b'half a file')
        raise KeyboardInterrupt

    monkeypatch.setattr(scipy.io, 'savemat', ctrl_c_half_way)
    out = tmp_path / 'sub'
    with pytest.raises(SystemExit) as exit_info:
        main([
            'sidd', '--model', ckpt, '--noisy', noisy, '-o',
            str(out / 'SubmitSrgb.mat'), '--device', 'cpu', '--quiet'
        ])
    monkeypatch.setattr(scipy.io, 'savemat', real)
    err = capsys.readouterr().err
    assert exit_info.value.code == 130 and err.strip().splitlines()[-1] == INTERRUPTED
    assert 'Traceback' not in err and os.listdir(out) == []  # neither the file nor its temporary copy
