"""Shared runner of the command-line entry points: BasicSR's pipeline, CPU-friendly, with readable errors."""
import os
import sys

from gradnet_arch.compat import pipeline_fixes
from gradnet_arch.errors import user_errors
from gradnet_arch.option_check import check_option_file, safe_option_loading


def run_pipeline(pipeline, argv=None, is_train=None):
    """Run `pipeline(root_path)` (BasicSR's train_pipeline or test_pipeline) with `argv` as its command line.

    `root_path` is the current directory, so experiments/, tb_logger/ and results/ land where the user is. The option
    file is read once, with the safe YAML loader, and checked before BasicSR does anything; BasicSR then gets exactly
    those options (its own loader, which runs `!!python/...` tags, is never used). Mistakes in options, data or
    checkpoints end the process with exit status 2 and the message alone (no traceback).

    Args:
        pipeline (callable): BasicSR's train_pipeline or test_pipeline.
        argv (list[str] | None): The command line; None: sys.argv[1:].
        is_train (bool | None): Whether `pipeline` trains, for the option check; None: a file with `train:` trains.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + argv  # BasicSR's parse_options reads sys.argv
    try:
        with user_errors():
            checked = check_option_file(argv, is_train)
            with safe_option_loading(dict([checked]) if checked else None), pipeline_fixes():
                pipeline(os.getcwd())
    finally:
        sys.argv = saved_argv
