"""Exceptions for mistakes in options, data and checkpoints.

Each is a subclass of the built-in type a Python user would expect (ValueError, FileNotFoundError, ...) and of
`UserError`, which the command-line entry points print as a one-paragraph message instead of a traceback
(`user_errors`, the context every command line runs in).
"""
import contextlib
import sys


class UserError(Exception):
    """Marks an error that the user can fix from its message alone."""


class OptionError(UserError, ValueError):
    """An option has a wrong value or two options contradict each other."""


class UnknownOptionError(UserError, TypeError):
    """An option key the component does not take (usually a typo)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder named in the options does not exist."""


class BadFileError(UserError, RuntimeError):
    """A file exists but cannot be read (corrupt, truncated, wrong format)."""


class CheckpointKeyError(UserError, KeyError):
    """A checkpoint lacks the requested parameter key."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ''


class ImageReadError(UserError, OSError):
    """An image file cannot be decoded."""


class DataError(UserError, ValueError):
    """Data that does not fit the options (empty folder, image smaller than the crop, wrong channels)."""


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or Inf."""


class UnsafeFileError(BadFileError):
    """A file holds something that could run code when read (a pickle of arbitrary objects, a YAML python tag)."""


class OutputError(UserError, OSError):
    """An output cannot be written: a read-only or full destination, or a file or folder in the way of its path."""


class OutputExistsError(OutputError, FileExistsError):
    """An output already exists and may not be replaced (no --overwrite), even if it appeared after a check."""


@contextlib.contextmanager
def user_errors(leading_newline=True, interrupt_message=None):
    """End the process with exit status 2 and the message alone (no traceback) on a UserError.

    Args:
        leading_newline (bool): Start the message on a fresh line (after a progress bar or a log line).
        interrupt_message (str | None): Printed, with exit status 130, on Ctrl-C; None lets KeyboardInterrupt through.
    """
    try:
        yield
    except UserError as error:
        print(f'{chr(10) if leading_newline else ""}Error: {error}', file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if interrupt_message is None:
            raise
        print(interrupt_message, file=sys.stderr, flush=True)
        raise SystemExit(130) from None
