"""gradnet_arch.atomic_io: whole-or-nothing files (atomic_open, write_files) and folders (StagedFolders)."""
import os
import pytest

from gradnet_arch.atomic_io import StagedFolders, atomic_open, commit_files, write_files
from gradnet_arch.errors import OptionError, OutputExistsError


def dead_pid():
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid += 1


def write(folder, name, text):
    with open(os.path.join(folder, name), 'w') as fout:
        fout.write(text)


def test_atomic_open_names_the_file_only_when_complete(tmp_path):
    path, temp = str(tmp_path / 'w.bin'), str(tmp_path / '.w.bin.mine')
    with atomic_open(path, temp_path=temp) as fout:
        fout.write(b'new')
        assert not os.path.exists(path) and os.path.exists(temp)
    assert open(path, 'rb').read() == b'new' and not os.path.exists(temp)
    with pytest.raises(OutputExistsError, match='exists; pass --overwrite'):
        with atomic_open(path, overwrite=False) as fout:
            fout.write(b'other')
    with pytest.raises(RuntimeError):
        with atomic_open(path) as fout:
            fout.write(b'half')
            raise RuntimeError('interrupted')
    assert open(path, 'rb').read() == b'new' and os.listdir(tmp_path) == ['w.bin']


def test_write_files_and_commit_files_are_all_or_nothing(tmp_path):
    (tmp_path / 'b').write_bytes(b'old')
    with pytest.raises(OutputExistsError):
        write_files([(str(tmp_path / 'a'), b'1'), (str(tmp_path / 'b'), b'2')], overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ['b'] and (tmp_path / 'b').read_bytes() == b'old'
    (tmp_path / 't1').write_bytes(b'1')
    assert commit_files([(str(tmp_path / 't1'), str(tmp_path / 'a'))]) == [str(tmp_path / 'a')]
    assert sorted(os.listdir(tmp_path)) == ['a', 'b']


def test_write_files_with_an_overwrite_of_their_own(tmp_path):
    """A file may carry its own overwrite (a manifest always replaced next to weight files that may not be)."""
    (tmp_path / 'manifest').write_bytes(b'old')
    paths = [str(tmp_path / 'w'), str(tmp_path / 'manifest')]
    assert write_files([(paths[0], b'w'), (paths[1], b'new', True)], overwrite=False) == paths
    assert (tmp_path / 'manifest').read_bytes() == b'new' and (tmp_path / 'w').read_bytes() == b'w'
    with pytest.raises(OutputExistsError):  # w exists: v (created) is removed again, the manifest never named
        write_files([(str(tmp_path / 'v'), b'v', False), (paths[0], b'w2'), (paths[1], b'newer', True)],
                    overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ['manifest', 'w'] and (tmp_path / 'manifest').read_bytes() == b'new'


def test_staged_folders_appear_together_or_not_at_all(tmp_path):
    a, b = str(tmp_path / 'out' / 'a'), str(tmp_path / 'b')
    with StagedFolders([a, b]) as staged:
        write(staged.temp(a), 'x', 'a')
        write(staged.temp(b), 'y', 'b')
        assert not os.path.exists(a) and not os.path.exists(b)
        assert os.path.basename(staged.temp(b)).startswith(f'.b.partial-{os.getpid()}-')
    assert os.listdir(a) == ['x'] and os.listdir(b) == ['y']
    assert sorted(os.listdir(tmp_path)) == ['b', 'out']
    with pytest.raises(KeyboardInterrupt):
        with StagedFolders([str(tmp_path / 'c')]) as staged:
            write(staged.temp(str(tmp_path / 'c')), 'z', 'c')
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ['b', 'out']
    with pytest.raises(OptionError, match='same path'):
        StagedFolders([a, os.path.join(a, '..', 'a')])


def test_staged_folder_replaces_only_with_overwrite(tmp_path):
    first, second = str(tmp_path / 'first'), str(tmp_path / 'second')
    os.makedirs(second)
    write(second, 'theirs', 'another run')
    with pytest.raises(OutputExistsError, match='appeared while this run was writing it'):
        with StagedFolders([first, second]) as staged:
            write(staged.temp(first), 'x', '1')
            write(staged.temp(second), 'x', '2')
    # the first target, already named, was put back: neither output appeared, the other run's folder is untouched
    assert sorted(os.listdir(tmp_path)) == ['second'] and os.listdir(second) == ['theirs']
    with StagedFolders([second], overwrite=True) as staged:
        write(staged.temp(second), 'mine', 'new')
    assert os.listdir(second) == ['mine'] and sorted(os.listdir(tmp_path)) == ['second']


def test_merged_folder_keeps_other_files(tmp_path):
    out = str(tmp_path / 'sub')
    os.makedirs(out)
    for name in ('readme.txt', '0001.mat', '0003.mat'):
        write(out, name, 'old')
    with pytest.raises(OutputExistsError):
        with StagedFolders([out], merge=r'^\d{4}\.mat$') as staged:
            for name in ('0000.mat', '0001.mat'):
                write(staged.temp(out), name, 'new')
    assert sorted(os.listdir(out)) == ['0001.mat', '0003.mat', 'readme.txt']  # 0000.mat was taken back
    with StagedFolders([out], overwrite=True, merge=r'^\d{4}\.mat$') as staged:
        for name in ('0001.mat', '0002.mat'):
            write(staged.temp(out), name, 'new')
    # this run's files, the unrelated file, and not the earlier run's 0003.mat
    assert sorted(os.listdir(out)) == ['0001.mat', '0002.mat', 'readme.txt']
    assert open(os.path.join(out, '0001.mat')).read() == 'new' and sorted(os.listdir(tmp_path)) == ['sub']


def test_stale_staging_of_a_killed_run_is_removed(tmp_path):
    pid = dead_pid()
    stale = tmp_path / f'.t.partial-{pid}-0123abcd'
    stale.mkdir()
    (stale / 'half').write_bytes(b'x')
    alive = tmp_path / f'.t.partial-{os.getpid()}-0123abcd'  # a running process's: left alone
    alive.mkdir()
    with StagedFolders([str(tmp_path / 't')]) as staged:
        write(staged.temp(str(tmp_path / 't')), 'done', '1')
    assert sorted(os.listdir(tmp_path)) == [alive.name, 't']
