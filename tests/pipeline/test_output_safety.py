"""Outputs of every tool: no input is ever replaced, outputs are created exclusively, and write failures (read-only or
full disk, a folder in the way, a path below a file) and hostile or garbage inputs end in one line, never a traceback.

Tests run as root in CI, where chmod does not stop writes: `unwritable` then makes the folder refuse new files by
failing every create below it with EACCES, as the kernel would for a user without permission.
"""
import builtins
import cv2
import errno
import json
import lmdb
import numpy as np
import os
import pytest
import scipy.io
import struct
import subprocess
import sys
import threading
from conftest import REPO, synthetic_image, write_images
from sample_data import dnd_root, gradnet_options, save_tiny, sidd_noisy
from tiny_options import make_train_options, stage1_network, write_yaml

from gradnet_arch.data import GaussianNoiseDataset
from gradnet_arch.denoise import cli as denoise_cli
from gradnet_arch.denoise import runner, write_image
from gradnet_arch.errors import BadFileError, OutputExistsError
from gradnet_arch.prep import lmdb_writer, prepare_crops, stamps
from gradnet_arch.prep.__main__ import main as prep_main
from gradnet_arch.pretrained import load_pretrained


@pytest.fixture(scope='module')
def ckpt(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp('ckpt') / 'color.pth', gradnet_options(3), 0)


def run_main(main, argv, capsys):
    """(exit status, stdout, stderr) of a command's main() in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        status = main(argv)
        raise SystemExit(status)
    captured = capsys.readouterr()
    assert 'Traceback' not in captured.err, captured.err
    return exit_info.value.code, captured.out, captured.err


def denoise(argv, capsys):
    return run_main(denoise_cli.main, argv + ['--device', 'cpu', '--quiet', '--tile', '0'], capsys)


def one_error(err):
    """The one `Error: ` line of a command that stopped (any other line is a warning)."""
    lines = [line for line in err.strip().splitlines() if not line.startswith('Warning: ')]
    assert len(lines) == 1 and lines[0].startswith('Error: '), err
    return lines[0]


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith('error:')]


def leftovers(folder):
    """Temporary files or folders left in `folder` (at any depth)."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [name for name in dirs + files if name.endswith('.tmp') or '.partial-' in name or '.tmp-' in name]
    return found


def unwritable(folder, monkeypatch):
    """Make `folder` refuse new files and folders below it (chmod for a user; for root, EACCES from every create)."""
    folder = os.path.realpath(folder)
    if os.geteuid() != 0:
        os.chmod(folder, 0o555)
        return
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def below(path):
        if isinstance(path, int):
            return False
        path = os.path.realpath(os.path.abspath(os.fsdecode(path)))
        return path.startswith(folder + os.sep)

    def denied(path):
        return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    def guarded_open(file, mode='r', *args, **kwargs):
        if any(c in mode for c in 'wax+') and below(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and below(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if below(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', guarded_open)
    monkeypatch.setattr(os, 'open', guarded_os_open)
    monkeypatch.setattr(os, 'mkdir', guarded_mkdir)


def disk_full_after(folder, files, monkeypatch):
    """Files written below `folder` after the first `files` ones fail with ENOSPC half-way through their first write."""
    folder = os.path.realpath(folder)
    real_open = builtins.open
    opened = []

    class FullDisk:

        def __init__(self, f):
            self._f = f

        def write(self, data):
            self._f.write(data[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def guarded_open(file, mode='r', *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and 'w' in mode and \
                os.path.realpath(os.path.abspath(file)).startswith(folder + os.sep):
            opened.append(file)
            if len(opened) > files:
                return FullDisk(f)
        return f

    monkeypatch.setattr(builtins, 'open', guarded_open)


# ---------------------------------------------------------------------------------------------------------------------
# gradnet-denoise: inputs are never replaced


def mixed_folder(folder):
    """a.png and a.jpg (one stem, two formats), b.png and c.jpg; returns {name: bytes}."""
    os.makedirs(folder, exist_ok=True)
    for index, name in enumerate(('a.png', 'a.jpg', 'b.png', 'c.jpg')):
        cv2.imwrite(os.path.join(folder, name), synthetic_image(index, 24, 32))
    return {name: open(os.path.join(folder, name), 'rb').read() for name in os.listdir(folder)}


def test_no_input_is_replaced_even_with_overwrite(tmp_path, ckpt, capsys):
    folder = str(tmp_path / 'photos')
    before = mixed_folder(folder)
    # the case: a.jpg's output a.png is an input; b.png's is itself; only c.jpg -> c.png may be written
    status, out, err = denoise([folder, '-o', folder, '--format', 'png', '--overwrite', '--weights', ckpt], capsys)
    assert status == 1 and '1 denoised, 0 skipped (output exists), 3 failed' in out
    lines = error_lines(err)
    assert len(lines) == 3 and len(err.strip().splitlines()) == 3
    assert any('a.jpg' in line and f'is the input {os.path.join(folder, "a.png")}' in line for line in lines)
    assert sum('is the input itself' in line for line in lines) == 2
    for name, data in before.items():
        assert open(os.path.join(folder, name), 'rb').read() == data, name
    assert sorted(os.listdir(folder)) == ['a.jpg', 'a.png', 'b.png', 'c.jpg', 'c.png']
    assert cv2.imread(os.path.join(folder, 'c.png')).shape == (24, 32, 3)
    # the same folder under another name (a symbolic link) is still the input folder (c.png is an input now)
    before = {name: open(os.path.join(folder, name), 'rb').read() for name in os.listdir(folder)}
    os.symlink(folder, tmp_path / 'alias')
    status, out, err = denoise([folder, '-o', str(tmp_path / 'alias'), '--overwrite', '--weights', ckpt], capsys)
    assert status == 1 and len(error_lines(err)) == 5 and '0 denoised' in out
    for name, data in before.items():
        assert open(os.path.join(folder, name), 'rb').read() == data, name


def test_two_inputs_with_one_output_name_write_neither(tmp_path, ckpt, capsys):
    folder = str(tmp_path / 'photos')
    mixed_folder(folder)
    out_dir = tmp_path / 'out'
    status, out, err = denoise([folder, '-o', str(out_dir), '--format', 'png', '--weights', ckpt], capsys)
    assert status == 1 and '2 denoised, 0 skipped (output exists), 2 failed' in out
    lines = error_lines(err)
    assert len(lines) == 2 and all(f'{out_dir / "a.png"} is also an output of' in line for line in lines)
    assert any(line.startswith(f'error: {os.path.join(folder, "a.png")}:') for line in lines)
    assert any(line.startswith(f'error: {os.path.join(folder, "a.jpg")}:') for line in lines)
    assert sorted(os.listdir(out_dir)) == ['b.png', 'c.png']


def test_denoise_input_mistakes_are_one_line_each(tmp_path, ckpt, capsys):
    folder = write_images(tmp_path / 'in', 1, height=24, width=32)
    (tmp_path / 'in' / 'notes.png').write_text('a text file named like an image')
    (tmp_path / 'in' / 'folder.png').mkdir()  # a folder where an image file is expected
    argv = [folder, str(tmp_path / 'in' / 'folder.png'), str(tmp_path / 'gone.png'), '-o', str(tmp_path / 'out')]
    status, out, err = denoise(argv + ['--weights', ckpt], capsys)
    assert status == 1 and '1 denoised, 0 skipped (output exists), 3 failed' in out
    lines = error_lines(err)
    assert len(lines) == 3 == len(err.strip().splitlines()), err
    assert any('notes.png' in line and 'cannot decode' in line for line in lines)
    assert any('folder.png' in line and 'no ' in line for line in lines)
    assert any('gone.png' in line and 'no such file' in line for line in lines)
    assert os.listdir(tmp_path / 'out') == ['img_000.png']


# ---------------------------------------------------------------------------------------------------------------------
# exclusive creation: two writers of one output


def test_racing_writers_exactly_one_wins(tmp_path):
    path = str(tmp_path / 'race.png')
    images = [np.full((8, 8, 3), 30 * i, np.uint8) for i in range(6)]
    for _ in range(3):
        if os.path.exists(path):
            os.remove(path)
        barrier, results = threading.Barrier(len(images)), [None] * len(images)

        def write(index):
            barrier.wait()
            try:
                write_image(path, images[index])
                results[index] = 'won'
            except OutputExistsError as error:
                results[index] = str(error)

        threads = [threading.Thread(target=write, args=(i, )) for i in range(len(images))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results.count('won') == 1, results
        assert all(r == f'{path} exists; pass --overwrite to replace it' for r in results if r != 'won')
        np.testing.assert_array_equal(cv2.imread(path), images[results.index('won')])
        assert os.listdir(tmp_path) == ['race.png']
    write_image(path, images[0], overwrite=True)  # --overwrite: replaced, atomically, no temporary file left
    np.testing.assert_array_equal(cv2.imread(path), images[0])
    assert os.listdir(tmp_path) == ['race.png']


def test_output_written_by_another_run_meanwhile_is_kept(tmp_path, ckpt, capsys, monkeypatch):
    folder = write_images(tmp_path / 'in', 1, height=24, width=32)
    dest = tmp_path / 'out' / 'img_000.png'
    real = runner.denoise_image

    def another_run_writes_first(*args, **kwargs):
        result = real(*args, **kwargs)
        dest.parent.mkdir(exist_ok=True)
        dest.write_bytes(b'written by another run')  # after every check of this run, before its write
        return result

    monkeypatch.setattr(runner, 'denoise_image', another_run_writes_first)
    status, out, err = denoise([folder, '-o', str(dest.parent), '--weights', ckpt], capsys)
    assert status == 0 and '0 denoised, 1 skipped (output exists), 0 failed' in out
    assert err.strip() == f'skipped: {os.path.join(folder, "img_000.png")}: {dest} exists; pass --overwrite to ' \
                          f'replace it'
    assert dest.read_bytes() == b'written by another run' and os.listdir(dest.parent) == ['img_000.png']
    status, out, _ = denoise([folder, '-o', str(dest.parent), '--weights', ckpt, '--overwrite'], capsys)
    assert status == 0 and '1 denoised' in out and cv2.imread(str(dest)).shape == (24, 32, 3)
    assert os.listdir(dest.parent) == ['img_000.png']


def test_two_denoise_processes_on_one_output_folder(tmp_path, ckpt):
    folder = write_images(tmp_path / 'in', 6, height=32, width=32)
    out_dir = str(tmp_path / 'out')
    cmd = [sys.executable, '-m', 'gradnet_arch.denoise', folder, '-o', out_dir, '--weights', ckpt, '--device', 'cpu']
    env = dict(os.environ, OMP_NUM_THREADS='1')
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    counts = [[int(word) for word in out.split(':')[1].split() if word.isdigit()] for out, _ in outputs]
    assert counts[0][0] + counts[1][0] == 6 and counts[0][1] + counts[1][1] == 6, outputs  # each file written once
    assert all('Traceback' not in err for _, err in outputs)
    assert sorted(os.listdir(out_dir)) == [f'img_{i:03d}.png' for i in range(6)]
    assert all(cv2.imread(os.path.join(out_dir, name)).shape == (32, 32, 3) for name in os.listdir(out_dir))


# ---------------------------------------------------------------------------------------------------------------------
# gradnet-denoise: write failures, one line per file


@pytest.mark.parametrize('kind',
                         ['read-only', 'disk-full', 'folder-in-the-way', 'folder-in-the-way-overwrite', 'below-a-file'])
def test_denoise_write_failures_are_reported_per_file(tmp_path, ckpt, capsys, monkeypatch, kind):
    folder = write_images(tmp_path / 'in', 3, height=24, width=32)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    extra, written, reason = [], [], None
    if kind == 'read-only':
        unwritable(out_dir, monkeypatch)
        reason = 'Permission denied; choose a folder you can write to'
    elif kind == 'disk-full':
        disk_full_after(out_dir, 1, monkeypatch)
        written, reason = ['img_000.png'], 'No space left on device; free some space'
    elif kind.startswith('folder-in-the-way'):
        (out_dir / 'img_001.png').mkdir()
        extra = ['--overwrite'] if kind.endswith('overwrite') else []
        written, reason = ['img_000.png', 'img_002.png'], 'a folder has that name'
    else:
        (tmp_path / 'file.txt').write_text('a file, not a folder')
        out_dir = tmp_path / 'file.txt' / 'out'
        reason = 'a part of the path is a file, not a folder'
    status, out, err = denoise([folder, '-o', str(out_dir), '--weights', ckpt] + extra, capsys)
    failed = 3 - len(written)
    assert status == 1 and f'{len(written)} denoised, 0 skipped (output exists), {failed} failed' in out
    lines = error_lines(err)
    assert len(lines) == failed == len(err.strip().splitlines()), err
    assert all(reason in line and 'cannot write' in line for line in lines), lines
    monkeypatch.undo()
    if kind == 'below-a-file':
        assert (tmp_path / 'file.txt').read_text() == 'a file, not a folder'
        return
    names = sorted(os.listdir(out_dir))
    assert names == sorted(written + (['img_001.png'] if kind.startswith('folder') else [])), names
    for name in written:  # whole images, not halves
        assert cv2.imread(str(out_dir / name)).shape == (24, 32, 3)
    assert not leftovers(out_dir)


# ---------------------------------------------------------------------------------------------------------------------
# hostile .safetensors: deeply nested JSON


def safetensors_with_header(path, header_bytes):
    header_bytes += b' ' * (-len(header_bytes) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(header_bytes)) + header_bytes)
    return str(path)


def test_deeply_nested_safetensors_header_is_refused(tmp_path, capsys):
    deep = safetensors_with_header(tmp_path / 'deep.safetensors', b'[' * 100000)
    shape = safetensors_with_header(
        tmp_path / 'shape.safetensors',
        b'{"w":{"dtype":"F32","shape":' + b'[' * 5000 + b']' * 5000 + b',"data_offsets":[0,0]}}')
    options = json.dumps('[' * 50000)  # a JSON string in the metadata, itself deeply nested JSON
    meta = safetensors_with_header(tmp_path / 'meta.safetensors',
                                   b'{"__metadata__":{"network_g":' + options.encode() + b'}}')
    for path in (deep, shape):
        with pytest.raises(BadFileError, match='nested too deeply'):
            load_pretrained(path)
    with pytest.raises(BadFileError, match="'network_g' metadata is JSON nested too deeply"):
        load_pretrained(meta)
    folder = write_images(tmp_path / 'in', 1, height=16, width=16)
    status, _, err = denoise([folder, '-o', str(tmp_path / 'out'), '--weights', deep], capsys)
    assert status == 2 and err.strip().count('\n') == 0 and 'nested too deeply' in err and deep in err
    assert not (tmp_path / 'out').exists()
    from gradnet_arch.benchmark.cli import main as benchmark_main

    status, _, err = run_main(benchmark_main, ['--model', f'M={deep}', '--set', f'S={folder}', '--device', 'cpu'],
                              capsys)
    assert status == 2 and 'nested too deeply' in one_error(err)
    noisy = str(tmp_path / 'noisy.mat')
    scipy.io.savemat(noisy, {'BenchmarkNoisyBlocksSrgb': sidd_noisy(shape=(1, 1, 16, 16, 3))})
    status, _, err = submit(['sidd', '--model', deep, '--noisy', noisy, '-o', str(tmp_path / 'S.mat')], capsys)
    assert status == 2 and 'nested too deeply' in one_error(err) and not (tmp_path / 'S.mat').exists()


# ---------------------------------------------------------------------------------------------------------------------
# garbage LMDBs and a dataset smaller than one batch


def lmdb_options(root, phase='val'):
    opt = dict(
        name='t',
        type='GaussianNoiseDataset',
        phase=phase,
        dataroot_gt=str(root),
        io_backend={'type': 'lmdb'},
        sigma=25)
    return dict(opt, gt_size=16) if phase == 'train' else opt


@pytest.fixture
def garbage_lmdbs(tmp_path):
    """{case: path} of LMDB folders that are broken in different ways (and one good LMDB, 'good')."""
    good = str(tmp_path / 'good.lmdb')
    prepare_crops(write_images(tmp_path / 'clean', 2, height=32, width=32), good, crop_size=32, step=32)
    other = str(tmp_path / 'other.lmdb')
    prepare_crops(write_images(tmp_path / 'clean2', 1, seed=9, height=32, width=32), other, crop_size=16, step=16)
    cases = {'good': good}
    rng = np.random.RandomState(0)
    for case in ('random_data', 'garbage_meta', 'no_meta', 'wrong_meta'):
        path = tmp_path / f'{case}.lmdb'
        path.mkdir()
        if case == 'random_data':
            (path / 'data.mdb').write_bytes(rng.bytes(64 * 1024))
        else:
            (path / 'data.mdb').write_bytes(open(os.path.join(good, 'data.mdb'), 'rb').read())
        if case == 'garbage_meta':
            (path / 'meta_info.txt').write_bytes(b'\xff\xfe\x00' + rng.bytes(300))
        elif case == 'wrong_meta':  # meta_info.txt of another LMDB: its keys are not in this data.mdb
            (path / 'meta_info.txt').write_text(open(os.path.join(other, 'meta_info.txt')).read())
        elif case == 'random_data':
            (path / 'meta_info.txt').write_text('img_000_s001.png (32,32,3) 1\n')
        cases[case] = str(path)
    return cases


GARBAGE_MESSAGES = {
    'random_data': 'data.mdb is not a readable LMDB',
    'garbage_meta': 'meta_info.txt',
    'no_meta': 'is not a BasicSR LMDB',
    'wrong_meta': 'keys listed in',
}


def test_garbage_lmdb_in_the_dataset(garbage_lmdbs):
    assert len(GaussianNoiseDataset(lmdb_options(garbage_lmdbs['good']))) == 2
    for case, message in GARBAGE_MESSAGES.items():
        with pytest.raises(BadFileError, match=message) as info:
            GaussianNoiseDataset(lmdb_options(garbage_lmdbs[case]))
        assert garbage_lmdbs[case] in str(info.value) and 'python -m gradnet_arch.prep' in str(info.value)


def test_garbage_lmdb_in_the_benchmark(garbage_lmdbs, ckpt, capsys):
    from gradnet_arch.benchmark.cli import main

    for case, message in GARBAGE_MESSAGES.items():
        path = garbage_lmdbs[case]
        status, _, err = run_main(main,
                                  ['--model', f'M={ckpt}', '--pairs', f'X={path},{path}', '--device', 'cpu', '--quiet'],
                                  capsys)
        assert status == 2 and message in err and err.strip().count('\n') == 0, err


@pytest.fixture
def train(tmp_path, monkeypatch, capsys):
    """gradnet-train in this process, in tmp_path: (exit status, stderr) of an option dict."""
    from gradnet_arch import train as train_module

    monkeypatch.chdir(tmp_path)

    def run(opt):
        return run_main(train_module.main, ['-opt', write_yaml(opt, tmp_path / 'opt.yml')], capsys)[::2]

    return run


def test_garbage_lmdb_in_training(train, image_dirs, garbage_lmdbs):
    for case, message in GARBAGE_MESSAGES.items():
        opt = make_train_options(f'g_{case}', image_dirs, stage1_network())
        opt['datasets']['train'].update(dataroot_gt=garbage_lmdbs[case], io_backend={'type': 'lmdb'})
        status, err = train(opt)
        assert status == 2 and message in err and 'Error: ' in err, err


def test_dataset_smaller_than_one_batch(train, image_dirs):
    opt = make_train_options('small', image_dirs, stage1_network())
    opt['datasets']['train'].update(batch_size_per_gpu=8, dataset_enlarge_ratio=1)  # 4 images, batches of 8
    status, err = train(opt)
    assert status == 2 and 'fewer than a batch (8)' in err and 'lower batch_size_per_gpu' in err
    assert [line for line in err.splitlines() if line.startswith('Error:')] == [err.strip().splitlines()[-1]]


# ---------------------------------------------------------------------------------------------------------------------
# gradnet-submit and gradnet-benchmark: an unwritable destination is one exit-2 line


def submit(argv, capsys):
    from gradnet_arch.submit.cli import main

    return run_main(main, argv + ['--device', 'cpu', '--quiet', '--precision', 'fp32'], capsys)


@pytest.mark.parametrize('kind', ['read-only', 'disk-full', 'below-a-file', 'written-meanwhile'])
def test_submit_unwritable_destination(tmp_path, ckpt, capsys, monkeypatch, kind):
    noisy = str(tmp_path / 'noisy.mat')
    scipy.io.savemat(noisy, {'BenchmarkNoisyBlocksSrgb': sidd_noisy(shape=(1, 2, 16, 16, 3))})
    out_dir = tmp_path / 'sub'
    out_dir.mkdir()
    out = out_dir / 'SubmitSrgb.mat'
    if kind == 'read-only':
        unwritable(out_dir, monkeypatch)
        reason = 'Permission denied'
    elif kind == 'disk-full':
        disk_full_after(out_dir, 0, monkeypatch)
        reason = 'No space left on device'
    elif kind == 'below-a-file':
        (tmp_path / 'file.txt').write_text('x')
        out = tmp_path / 'file.txt' / 'SubmitSrgb.mat'
        reason = 'is a file, not a folder'
    else:
        real = scipy.io.savemat

        def another_run_writes_first(*args, **kwargs):
            out.write_bytes(b'written by another run')
            return real(*args, **kwargs)

        monkeypatch.setattr(scipy.io, 'savemat', another_run_writes_first)
        reason = 'exists; pass --overwrite'
    status, _, err = submit(['sidd', '--model', ckpt, '--noisy', noisy, '-o', str(out)], capsys)
    assert status == 2 and reason in one_error(err), err
    monkeypatch.undo()
    if kind != 'below-a-file':
        assert os.listdir(out_dir) == (['SubmitSrgb.mat'] if kind == 'written-meanwhile' else [])
    if kind == 'written-meanwhile':
        assert out.read_bytes() == b'written by another run'


def test_submit_dnd_disk_full_leaves_nothing(tmp_path, ckpt, capsys, monkeypatch):
    root, _ = dnd_root(tmp_path / 'dnd')
    out_dir = tmp_path / 'bundles'
    disk_full_after(tmp_path, 1, monkeypatch)  # the first bundle fits, the second does not
    status, _, err = submit(['dnd', '--model', ckpt, '--dnd-root', root, '-o', str(out_dir)], capsys)
    assert status == 2 and 'No space left on device' in one_error(err), err
    monkeypatch.undo()
    assert not out_dir.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize('kind', ['read-only', 'disk-full', 'below-a-file', 'written-meanwhile'])
def test_benchmark_unwritable_report(tmp_path, ckpt, capsys, monkeypatch, kind):
    from gradnet_arch.benchmark import cli

    images = write_images(tmp_path / 'clean', 1, height=16, width=16)
    out_dir = tmp_path / 'report'
    out_dir.mkdir()
    csv_path = out_dir / 'r.csv'
    if kind == 'read-only':
        unwritable(out_dir, monkeypatch)
        reason = 'Permission denied'
    elif kind == 'disk-full':
        disk_full_after(out_dir, 1, monkeypatch)  # the CSV fits, the JSON does not
        reason = 'No space left on device'
    elif kind == 'below-a-file':
        (tmp_path / 'file.txt').write_text('x')
        csv_path = tmp_path / 'file.txt' / 'r.csv'
        reason = 'is a file, not a folder'
    else:
        real = cli.markdown_table

        def another_run_writes_first(rows):
            csv_path.write_text('written by another run')
            return real(rows)

        monkeypatch.setattr(cli, 'markdown_table', another_run_writes_first)
        reason = 'exists; pass --overwrite'
    argv = [
        '--model', f'M={ckpt}', '--set', f'S={images}', '--device', 'cpu', '--quiet', '--csv',
        str(csv_path), '--json',
        str(out_dir / 'r.json')
    ]
    status, _, err = run_main(cli.main, argv, capsys)
    assert status == 2 and reason in one_error(err), err
    monkeypatch.undo()
    if kind == 'disk-full':
        assert os.listdir(out_dir) == ['r.csv']  # written whole; the JSON not at all
    elif kind == 'written-meanwhile':
        assert csv_path.read_text() == 'written by another run' and os.listdir(out_dir) == ['r.csv']
    elif kind == 'read-only':
        assert os.listdir(out_dir) == []


# ---------------------------------------------------------------------------------------------------------------------
# prep: write failures and two runs at once


@pytest.mark.parametrize('kind', ['read-only', 'disk-full', 'below-a-file'])
def test_prep_write_failures(tmp_path, capsys, monkeypatch, kind):
    folder = write_images(tmp_path / 'clean', 3, height=32, width=32)
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    target = out_dir / 'c.lmdb'
    if kind == 'read-only':
        unwritable(out_dir, monkeypatch)
        reason = 'Permission denied'
    elif kind == 'disk-full':
        real = lmdb_writer.LmdbWriter.flush

        def flush(self):
            if self._pending:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(self)

        monkeypatch.setattr(lmdb_writer.LmdbWriter, 'flush', flush)
        reason = 'No space left on device'
    else:
        (tmp_path / 'file.txt').write_text('x')
        target = tmp_path / 'file.txt' / 'c.lmdb'
        reason = 'is a file, not a folder'
    argv = ['crops', folder, '--out', str(target), '--crop-size', '16', '--workers', '1']
    status, _, err = run_main(prep_main, argv, capsys)
    assert status == 2 and err.startswith('Error: cannot ') and reason in err and err.strip().count('\n') == 0, err
    monkeypatch.undo()
    assert not os.path.exists(target) and not leftovers(tmp_path)


def test_prep_output_written_by_another_run_meanwhile_is_kept(tmp_path):
    folder = write_images(tmp_path / 'clean', 2, height=32, width=32)
    target = str(tmp_path / 'c.lmdb')
    real = stamps.AtomicOutputs._commit
    calls = []

    def commit(self):
        calls.append(self)
        if len(calls) == 1:  # the first run, about to rename its output into place: another one finishes first
            prepare_crops(folder, target, crop_size=16, step=16)
        real(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stamps.AtomicOutputs, '_commit', commit)
        with pytest.raises(OutputExistsError, match='appeared while this run was writing it'):
            prepare_crops(folder, target, crop_size=32, step=32)
    env = lmdb.open(target, readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.stat()['entries'] == 8  # the other run's 16-pixel crops, untouched
    env.close()
    assert os.listdir(tmp_path) == ['clean', 'c.lmdb']
