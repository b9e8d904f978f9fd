"""Registration into BasicSR's registries that tolerates the plugin being imported twice."""
import difflib
import inspect

from gradnet_arch.errors import UnknownOptionError

_MARK = '_gradnet_basicsr_registered'


def register(registry):
    """Class decorator: register into a BasicSR registry exactly once.

    BasicSR's registries assert on a second registration of a name. The plugin can legitimately be executed twice
    (the autoload hook plus an explicit import under another module path, or `importlib.reload`), so a second
    registration of *our own* class of that name is skipped. A *foreign* class of that name is a real conflict
    and gets a clear error.

    Args:
        registry (basicsr.utils.registry.Registry): ARCH_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, ...
    """

    def deco(cls):
        name = cls.__name__
        # Identity = defining module's last component + qualname: equal for the same source imported twice, and read
        # from the class's own __dict__ so that a marked base class cannot vouch for a foreign subclass.
        identity = f'{cls.__module__.rsplit(".", 1)[-1]}.{cls.__qualname__}'
        setattr(cls, _MARK, identity)
        if name in registry:
            existing = registry.get(name)
            if vars(existing).get(_MARK) == identity:
                return cls
            raise RuntimeError(f'gradnet-basicsr cannot register {name!r} in BasicSR\'s {registry._name} registry: '
                               f'{existing.__module__}.{existing.__qualname__} already uses that name. '
                               f'Remove or rename the other registration.')
        registry.register(cls)
        return cls

    return deco


def reject_unknown_options(owner, unknown, signature_of):
    """Raise a clear error for option keys a constructor does not take, with close matches.

    Args:
        owner (str): What the options are for, e.g. "network_g (type: GradNet)".
        unknown (dict): The unexpected keyword arguments.
        signature_of (callable): The callable whose named parameters are the valid keys.
    """
    if not unknown:
        return
    valid = [p for p in inspect.signature(signature_of).parameters if p not in ('self', 'kwargs', 'unknown')]
    lines = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1)
        lines.append(f'  {key!r}' + (f' (did you mean {close[0]!r}?)' if close else ''))
    raise UnknownOptionError(f'Unknown option(s) for {owner}:\n' + '\n'.join(lines) +
                             f'\nValid options: {", ".join(valid)}.')


# The weights layer (gradnet_arch.pretrained) installs the function that loads a checkpoint file into a network when
# `gradnet_arch` is imported. Archs open no files and do not import that layer: a GradNet's builder asks this hook for
# its pre-denoiser's stage-1 weights (dependency inversion, so BasicSR's build_network still returns a loaded net).
_weights_loader = None


def install_weights_loader(loader):
    """Set the function `load_weights` calls: `loader(net, path, param_key=None, strict=True, what=..., hint=...)`."""
    global _weights_loader
    _weights_loader = loader


def load_weights(net, path, **kwargs):
    """Load the checkpoint `path` into `net` with the installed weights loader (gradnet_arch.pretrained.load_weights).

    Args:
        net (nn.Module): The network.
        path (str): The checkpoint file.
        **kwargs: `param_key`, `strict`, `what` and `hint`, as gradnet_arch.pretrained.load_weights takes them.

    Returns:
        str: The state-dict key that was loaded.
    """
    if _weights_loader is None:  # only when gradnet_arch.pretrained failed to import
        raise RuntimeError('No weights loader is installed; import gradnet_arch (it installs gradnet_arch.pretrained'
                           '.load_weights) before building a network that loads a checkpoint.')
    return _weights_loader(net, path, **kwargs)
