"""Datasets: importing this package registers GaussianNoiseDataset in BasicSR's DATASET_REGISTRY."""
from gradnet_arch.data.gaussian_noise_dataset import GaussianNoiseDataset

__all__ = ['GaussianNoiseDataset']
