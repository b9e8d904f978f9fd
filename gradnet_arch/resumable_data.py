"""Training data that resumes exactly: the same samples, in the same order, with the same random crops and noise.

BasicSR's loop restarts the interrupted epoch from its first batch on resume, and its dataloader workers are
re-seeded identically at every epoch, so a resumed run sees different data than an uninterrupted one. Here each
training sample gets a number (epoch, position in the rank's share) and its own seed derived from (manual_seed,
rank, that number); the sampler can start an epoch part-way. Used by `gradnet-train` (not by upstream's script).
"""
import dataclasses
import math
import numpy as np
import random
import torch
from basicsr.data.data_sampler import EnlargedSampler
from torch.utils import data

from gradnet_arch.errors import DataError


class ResumableSampler(EnlargedSampler):
    """BasicSR's EnlargedSampler (same permutation per epoch) that yields sample tokens and can skip ahead.

    A token encodes the dataset index and the sample's running number: token = number * len(dataset) + index.

    Args:
        dataset (Dataset): The (wrapped) training set.
        num_replicas (int): World size.
        rank (int): This process's rank.
        ratio (int): BasicSR's dataset_enlarge_ratio.
    """

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.skip_epoch, self.skip = None, 0

    def skip_samples(self, epoch, count):
        """Make epoch `epoch` start `count` samples in (the part a resumed run already trained on).

        Applies to every iterator of that epoch: BasicSR's prefetcher creates one at construction and another at
        its reset, and both must agree.
        """
        self.skip_epoch, self.skip = epoch, count

    def _start(self):
        return self.skip if self.epoch == self.skip_epoch else 0

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.epoch)
        size = len(self.dataset)
        indices = torch.randperm(self.total_size, generator=g).tolist()[self.rank:self.total_size:self.num_replicas]
        first = self.epoch * self.num_samples
        return iter([(first + pos) * size + indices[pos] % size for pos in range(self._start(), self.num_samples)])

    def __len__(self):
        return self.num_samples - self._start()


class SeededSamples(data.Dataset):
    """Wraps a training set: sample `token` is item `token % len` drawn with its own seeded random state.

    `random`, `numpy.random` and torch's generator are seeded from (seed, rank, sample number) before the item is
    read, so crops, flips and noise depend neither on dataloader workers nor on where a run was resumed.
    """

    def __init__(self, dataset, seed, rank):
        self.dataset = dataset
        self.seed = int(seed)
        self.rank = int(rank)

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # `opt` and friends of the wrapped BasicSR dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, token):
        size = len(self.dataset)
        number, index = divmod(int(token), size)
        state = np.random.SeedSequence([self.seed, self.rank, number]).generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[1]))
        torch.manual_seed(int(state[0]))
        return self.dataset[index]


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: the `iter` and `epoch` of the training state it resumes from."""
    iteration: int
    epoch: int


def create_train_val_dataloader(opt, logger, resume=None):
    """BasicSR's `create_train_val_dataloader` with a SeededSamples / ResumableSampler training set.

    Args:
        opt (dict): BasicSR's parsed options.
        logger (logging.Logger): BasicSR's root logger.
        resume (ResumePoint | None): The state being resumed (compat.PipelineRun passes what the resume loader
            found): the sampler skips the part of the interrupted epoch that was already trained on, so training
            continues with exactly the batches an uninterrupted run would see. None: a fresh run.
    """
    from basicsr.data import build_dataloader, build_dataset

    train_loader, train_sampler, val_loaders, total_epochs, total_iters = None, None, [], 0, 0
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = SeededSamples(build_dataset(dataset_opt), opt['manual_seed'], opt['rank'])
            train_sampler = ResumableSampler(train_set, opt['world_size'], opt['rank'], ratio)
            train_loader = build_dataloader(
                train_set,
                dataset_opt,
                num_gpu=opt['num_gpu'],
                dist=opt['dist'],
                sampler=train_sampler,
                seed=opt['manual_seed'])
            # drop_last: a rank yields exactly this many batches per epoch
            iters_per_epoch = len(train_sampler) // train_loader.batch_size
            if iters_per_epoch == 0:
                raise DataError(f'datasets.train: one epoch has {len(train_sampler)} samples per process, fewer than '
                                f'a batch ({train_loader.batch_size}); lower batch_size_per_gpu, add images or raise '
                                f'dataset_enlarge_ratio.')
            total_iters = int(opt['train']['total_iter'])
            total_epochs = math.ceil(total_iters / iters_per_epoch)
            if resume is not None and resume.iteration:
                # BasicSR resumes at the saved epoch's first batch; skip what that epoch already trained on.
                done = resume.iteration - resume.epoch * iters_per_epoch
                if not 0 <= done <= iters_per_epoch:  # a state from another loop / batch size: best effort
                    logger.warning(f'Resume state (epoch {resume.epoch}, iter {resume.iteration}) does not match '
                                   f'{iters_per_epoch} iterations per epoch; data order will differ.')
                    done = resume.iteration % iters_per_epoch
                train_sampler.skip_samples(resume.epoch, done * train_loader.batch_size)
            logger.info('Training statistics:'
                        f'\n\tNumber of train images: {len(train_set)}'
                        f'\n\tDataset enlarge ratio: {ratio}'
                        f'\n\tBatch size per gpu: {dataset_opt["batch_size_per_gpu"]}'
                        f'\n\tWorld size (gpu number): {opt["world_size"]}'
                        f'\n\tRequire iter number per epoch: {iters_per_epoch}'
                        f'\n\tTotal epochs: {total_epochs}; iters: {total_iters}.')
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loader = build_dataloader(
                val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None, seed=opt['manual_seed'])
            logger.info(f'Number of val images/folders in {dataset_opt["name"]}: {len(val_set)}')
            val_loaders.append(val_loader)
        else:
            raise ValueError(f'Dataset phase {phase} is not recognized.')
    return train_loader, train_sampler, val_loaders, total_epochs, total_iters
