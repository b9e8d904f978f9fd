"""The weights layer: the one place that reads and writes network weights (`.pth` and `.safetensors`), builds
networks from options, knows the shipped models and describes a loaded model to the tools.

    from gradnet_arch.pretrained import load_pretrained, list_pretrained
    net = load_pretrained('gradnet_color_sigma25', device='cuda')   # or a checkpoint path

Importing it installs `load_weights` as gradnet_arch.registry's weights loader (a GradNet's pre-denoiser checkpoint).
"""
from gradnet_arch.common.devices import resolve_device
from gradnet_arch.pretrained.checkpoint_io import (clean_state_dict, load_state, load_weights, read_checkpoint,
                                                   save_checkpoint, select_state_dict)
from gradnet_arch.pretrained.description import ModelDescription, describe
from gradnet_arch.pretrained.loader import build_from_options, load_model, load_pretrained
from gradnet_arch.pretrained.safetensors_io import read_safetensors, write_safetensors
from gradnet_arch.pretrained.zoo import list_pretrained, model_info

__all__ = [
    'load_pretrained', 'load_model', 'list_pretrained', 'model_info', 'save_checkpoint', 'read_checkpoint',
    'select_state_dict', 'clean_state_dict', 'load_state', 'load_weights', 'build_from_options', 'describe',
    'ModelDescription', 'resolve_device', 'read_safetensors', 'write_safetensors'
]
