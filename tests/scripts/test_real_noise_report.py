"""scripts/real_noise_report.py: the MAD noise estimate, the side-by-side pictures, no silent overwrite."""
import cv2
import numpy as np
import os
import pytest
import sys
from conftest import REPO, write_images
from sample_data import gradnet_options, save_tiny

sys.path.insert(0, os.path.join(REPO, 'scripts'))
import real_noise_report as report  # noqa: E402


@pytest.mark.parametrize('sigma', [5., 15., 40.])
def test_estimate_recovers_the_sigma_of_white_noise_on_a_smooth_image(sigma):
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:256, 0:320]
    clean = 0.4 + 0.2 * np.sin(xx / 40.) * np.cos(yy / 50.)
    noisy = clean[..., None] + rng.normal(0, sigma / 255., (256, 320, 3))
    assert report.estimate_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    assert report.estimate_sigma(clean) < 0.1
    as_uint16 = np.clip(np.round(noisy * 65535), 0, 65535).astype(np.uint16)
    assert report.estimate_sigma(as_uint16) == pytest.approx(sigma, rel=0.05)


def test_pictures_and_table_for_every_photo(tmp_path, capsys):
    photos = write_images(tmp_path / 'photos', 2, height=40, width=48)
    ckpt_a = save_tiny(tmp_path / 'a.pth', gradnet_options(3), seed=0)
    ckpt_b = save_tiny(tmp_path / 'b.pth', gradnet_options(3), seed=1)
    out, table = tmp_path / 'out', tmp_path / 'noise.csv'
    argv = [
        '--model', f'A={ckpt_a}', '--model', f'B={ckpt_b}', '--input', photos, '--out',
        str(out), '--crop', '32', '--csv',
        str(table)
    ]
    report.main(argv)
    pictures = sorted(os.listdir(out))
    assert pictures == ['img_000.png', 'img_001.png']
    picture = cv2.imread(str(out / 'img_000.png'))
    assert picture.shape == (32, 3 * 32 + 2 * 4, 3)  # noisy | A | B with 4-pixel bars
    noisy = cv2.imread(os.path.join(photos, 'img_000.png'))
    assert np.array_equal(picture[:, :32], noisy[4:36, 8:40])  # the centre crop, colours unchanged
    rows = open(table).read().splitlines()
    assert rows[0] == 'image,noisy,A,B' and rows[-1].startswith('median,') and len(rows) == 4
    assert '| median |' in capsys.readouterr().out
    before = picture.copy()
    with pytest.raises(SystemExit, match='error: .*exists'):
        report.main(argv)  # nothing replaced without --overwrite
    assert np.array_equal(cv2.imread(str(out / 'img_000.png')), before)


def test_bad_model_spec_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match='expected LABEL=NAME_OR_CHECKPOINT'):
        report.main(['--model', 'nolabel', '--input', str(tmp_path), '--out', str(tmp_path / 'o')])


@pytest.mark.parametrize('problem,argv_extra,message', [
    ('crop too small', ['--crop', '8'], 'at least 16 pixels'),
    ('missing folder', ['--input', 'no_such_folder'], 'is not a folder of photos'),
    ('empty folder', ['--input', 'EMPTY'], 'holds no images'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, problem, argv_extra, message):
    empty = tmp_path / 'empty'
    empty.mkdir()
    photos = write_images(tmp_path / 'photos', 1, height=24, width=24)
    argv = ['--model', 'A=gradnet_color_sigma25', '--input', photos, '--out', str(tmp_path / 'out')]
    folders = {'EMPTY': str(empty), 'no_such_folder': str(tmp_path / 'no_such_folder')}
    argv_extra = [folders.get(value, value) for value in argv_extra]
    with pytest.raises(SystemExit, match=message):
        report.main(argv + argv_extra)
    assert not (tmp_path / 'out').exists()
