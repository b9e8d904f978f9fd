"""gradnet-export: a GradNet (or any network `load_pretrained` reads) in the formats other tools load.

    from gradnet_arch.export import export
    export('gradnet_color_sigma25', 'gradnet_color_sigma25.onnx')      # or .safetensors, .pth, a folder

The format follows OUT: `.safetensors` (tensors only; key names and shapes identify the net, `network_g` and
`meta` are also in its metadata), `.pth` (BasicSR's `params` layout with `network_g` and `meta`), `.onnx` (dynamic
batch, height and width, checked with onnxruntime) or a folder (Hugging Face layout: `config.json`,
`model.safetensors`, a `README.md` model card; `load_pretrained(FOLDER)` reads it). State dicts are exported in the
training layout (BatchNorm kept), exactly as the checkpoint holds them.
"""
from gradnet_arch.export.core import FORMATS, export, format_of
from gradnet_arch.export.source import Source
from gradnet_arch.export.writers import DEFAULT_OPSET, TOLERANCE

__all__ = ['export', 'format_of', 'FORMATS', 'Source', 'DEFAULT_OPSET', 'TOLERANCE']
