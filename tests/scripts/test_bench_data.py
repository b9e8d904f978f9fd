"""speed/bench_data.py stops with one line on bad arguments, before reading or writing anything."""
import pytest
from conftest import REPO, run_python


@pytest.mark.parametrize('args, message', [
    (['--folder', 'no/such/folder'], 'no such folder'),
    (['--samples', '0'], '--samples must be at least 1, got 0'),
    (['--repeats', '-1'], '--repeats must be at least 1, got -1'),
    (['--gt-size', '0'], '--gt-size must be at least 1, got 0'),
])
def test_bad_arguments_are_one_line_errors(args, message):
    proc = run_python(['speed/bench_data.py'] + args, cwd=REPO)
    assert proc.returncode == 2 and message in proc.stderr and 'Traceback' not in proc.stderr
