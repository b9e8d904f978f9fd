"""scripts/card_tables.py on real gradnet-benchmark JSON files: tables, paired differences, refusing mixed inputs."""
import json
import os
import pytest
import sys
from conftest import REPO, write_images
from sample_data import gradnet_options, save_tiny

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import card_tables  # noqa: E402


def benchmark(argv):
    from gradnet_arch.benchmark.cli import main

    main(argv + ['--quiet'])


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('card')
    images = write_images(root / 'set', 3, height=32, width=40)
    ckpt = save_tiny(root / 'net.pth', gradnet_options(3), seed=0)
    benchmark([
        '--classical', 'noisy', '--set', f'S={images}', '--sigma', '25', '--color', 'rgb', '--json',
        str(root / 'classical.json')
    ])
    benchmark(['--model', f'net={ckpt}', '--set', f'S={images}', '--sigma', '25', '--json', str(root / 'net.json')])
    benchmark([
        '--model', f'net={ckpt}', '--set', f'S={images}', '--sigma', '25', '--noise-seed', '1', '--json',
        str(root / 'other_seed.json')
    ])
    return root


def test_tables_and_paired_difference_from_the_per_image_values(runs, capsys):
    card_tables.main([str(runs / 'classical.json'), str(runs / 'net.json'), '--diff', 'net:noisy'])
    out = capsys.readouterr().out
    assert '| noisy | 3 |' in out and '| net | 3 |' in out
    per = {row['image']: row['psnr'] for row in json.load(open(runs / 'net.json'))['per_image']}
    noisy = {row['image']: row['psnr'] for row in json.load(open(runs / 'classical.json'))['per_image']}
    mean = sum(per[i] - noisy[i] for i in per) / 3
    line = next(ln for ln in out.splitlines() if ln.startswith('| net - noisy |'))
    assert f'{mean:+.3f}' in line and line.endswith(f'| {sum(per[i] > noisy[i] for i in per)} / 3 |')


def test_files_with_other_noise_are_refused(runs):
    with pytest.raises(SystemExit, match='not the noisy input of an earlier file'):
        card_tables.main([str(runs / 'classical.json'), str(runs / 'other_seed.json')])


def test_bad_diff_spec_is_one_line(runs):
    with pytest.raises(SystemExit, match='expected A:B'):
        card_tables.main([str(runs / 'net.json'), '--diff', 'net'])


def test_missing_or_foreign_file_is_one_line(runs, tmp_path):
    with pytest.raises(SystemExit, match='cannot read .* gradnet-benchmark --json'):
        card_tables.main([str(tmp_path / 'missing.json')])
    (tmp_path / 'broken.json').write_text('{not json')
    with pytest.raises(SystemExit, match='cannot read .* gradnet-benchmark --json'):
        card_tables.main([str(runs / 'net.json'), str(tmp_path / 'broken.json')])
