"""The resumable sampler and the per-sample seeding of gradnet_arch.resumable_data (fast, no training loop)."""
import numpy as np
import random
import torch
from torch.utils import data

from gradnet_arch.resumable_data import ResumableSampler, SeededSamples


class _RandomItems(data.Dataset):
    """Each item draws from the three global random states, as BasicSR's crops, flips and noise do."""

    def __len__(self):
        return 5

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), float(torch.rand(()))


def _tokens(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_sampler_skips_exactly_the_trained_part_of_an_epoch():
    dataset = _RandomItems()
    full = _tokens(ResumableSampler(dataset, num_replicas=1, rank=0, ratio=3), epoch=2)
    assert len(full) == 15 and sorted(t % 5 for t in full) == sorted(list(range(5)) * 3)
    resumed = ResumableSampler(dataset, num_replicas=1, rank=0, ratio=3)
    resumed.skip_samples(epoch=2, count=7)
    assert _tokens(resumed, epoch=2) == full[7:] and len(resumed) == 8
    assert _tokens(resumed, epoch=3) == _tokens(ResumableSampler(dataset, 1, 0, 3), epoch=3)  # later epochs whole
    # running numbers never repeat across epochs, so no two samples of a run share a seed
    assert not set(full) & set(_tokens(ResumableSampler(dataset, 1, 0, 3), epoch=3))


def test_ranks_share_one_permutation_without_overlap():
    dataset = _RandomItems()
    ranks = [_tokens(ResumableSampler(dataset, num_replicas=2, rank=r, ratio=2), epoch=0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 5
    single = _tokens(ResumableSampler(dataset, 1, 0, 2), epoch=0)
    assert sorted(t % 5 for t in ranks[0] + ranks[1]) == sorted(t % 5 for t in single)


def test_a_sample_is_the_same_whatever_was_drawn_before():
    samples = SeededSamples(_RandomItems(), seed=10, rank=0)
    first = samples[12]
    random.random(), np.random.rand(), torch.rand(3)  # what a worker or an earlier batch consumed
    assert samples[12] == first and first[0] == 12 % 5
    assert samples[17][1:] != first[1:]  # same image (index 2), next number: other crops and noise
    assert SeededSamples(_RandomItems(), seed=11, rank=0)[12][1:] != first[1:]
    assert SeededSamples(_RandomItems(), seed=10, rank=1)[12][1:] != first[1:]
