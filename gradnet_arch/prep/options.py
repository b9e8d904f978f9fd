"""Checks of the preparation commands' numeric options."""
import numpy as np

from gradnet_arch.errors import OptionError


def check_positive(name, value, minimum=1):
    """OptionError unless `value` is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise OptionError(f'{name} must be an integer >= {minimum}, got {value!r}.')
    return int(value)


def check_compress_level(level):
    """OptionError unless `level` is a PNG compression level 0-9."""
    check_positive('compress_level', level, 0)
    if level > 9:
        raise OptionError(f'compress_level must be 0-9, got {level}.')
    return int(level)
