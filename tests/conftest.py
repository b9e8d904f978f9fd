"""Shared fixtures: tiny synthetic image folders and option dicts that run BasicSR's real loops in seconds."""
import cv2
import numpy as np
import os
import pytest
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), 'shared', 'data')


def synthetic_image(seed, height=40, width=48, channels=3):
    """A smooth gradient plus a few rectangles and stripes: edges and texture for the gradient branch."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, channels), np.float32)
    for c in range(channels):
        img[..., c] = 0.3 + 0.3 * np.sin(xx / (5 + 3 * c + seed % 4)) * np.cos(yy / (7 + seed % 5))
    for _ in range(3):
        y0, x0 = rng.randint(0, height - 8), rng.randint(0, width - 8)
        img[y0:y0 + rng.randint(4, 12), x0:x0 + rng.randint(4, 12)] = rng.uniform(0, 1, channels)
    img[:, ::6] += 0.15
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def write_images(folder, count, seed=0, height=40, width=48, channels=3):
    """Write `count` PNGs to `folder`; returns the folder path."""
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        img = synthetic_image(seed + i, height, width, channels)
        cv2.imwrite(os.path.join(folder, f'img_{i:03d}.png'), img if channels == 3 else img[..., 0])
    return str(folder)


@pytest.fixture
def image_dirs(tmp_path):
    """Colour train (4 images) and val (2 images) folders."""
    return {
        'train': write_images(tmp_path / 'train', 4, seed=0),
        'val': write_images(tmp_path / 'val', 2, seed=100, height=32, width=36),
    }


@pytest.fixture
def gray_dirs(tmp_path):
    return {
        'train': write_images(tmp_path / 'gray_train', 4, seed=0, channels=1),
        'val': write_images(tmp_path / 'gray_val', 2, seed=100, height=32, width=36, channels=1),
    }


def run_python(args, cwd, env=None, timeout=900):
    """Run `python args...` in a subprocess (a real, separate interpreter); returns the CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')  # 2 shared cores: no oversubscription
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable] + list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
