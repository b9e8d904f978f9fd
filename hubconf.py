"""torch.hub entry points: one per shipped model, each returning `load_pretrained(NAME)`'s ready network.

    import torch
    net = torch.hub.load('/path/to/gradnet-basicsr', 'gradnet_color_sigma25', source='local')  # or 'OWNER/REPO'
    net = torch.hub.load(REPO, 'gradnet_gray_sigma25', source='local', device='cuda')

Keyword arguments go to `gradnet_arch.load_pretrained` (device, fold_batchnorm, channels_last, ...).
"""
dependencies = ['torch', 'torchvision', 'basicsr', 'yaml', 'numpy', 'cv2', 'scipy', 'safetensors']


def _entry(name, description):

    def entry(**kwargs):
        from gradnet_arch.pretrained import load_pretrained

        return load_pretrained(name, **kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f'{description}\n\nReturns load_pretrained({name!r}, **kwargs): the network in eval mode, '
                     f'pre-denoiser inside; images are float NCHW in [0, 1].')
    return entry


def _install_entries():
    from gradnet_arch.pretrained import list_pretrained

    for name, description in list_pretrained().items():
        globals()[name] = _entry(name, description)


_install_entries()
