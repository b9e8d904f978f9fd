"""Pretrained weights: the shipped models and safe reading/writing of checkpoints (`.pth` and `.safetensors`).

    from gradnet_arch.pretrained import load_pretrained, list_pretrained
    net = load_pretrained('gradnet_color_sigma25', device='cuda')   # or a checkpoint path
"""
from gradnet_arch.pretrained.checkpoint_io import read_checkpoint, save_checkpoint, select_state_dict
from gradnet_arch.pretrained.loader import build_from_options, load_pretrained, resolve_device
from gradnet_arch.pretrained.safetensors_io import read_safetensors, write_safetensors
from gradnet_arch.pretrained.zoo import list_pretrained, model_info

__all__ = [
    'load_pretrained', 'list_pretrained', 'model_info', 'save_checkpoint', 'read_checkpoint', 'select_state_dict',
    'build_from_options', 'resolve_device', 'read_safetensors', 'write_safetensors'
]
