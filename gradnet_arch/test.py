"""Test with BasicSR's own test pipeline: `python -m gradnet_arch.test -opt X.yml` (or `gradnet-test`).

Writes `results/<name>/` under the current directory (metrics in the log, images when val.save_img is true).
"""
import os
import sys

import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.compat import cpu_friendly_pipelines
from gradnet_arch.option_check import check_option_file


def main(argv=None):
    """Entry point. `argv` defaults to sys.argv[1:]."""
    from basicsr.test import test_pipeline

    argv = sys.argv[1:] if argv is None else list(argv)
    check_option_file(argv)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + argv
    try:
        with cpu_friendly_pipelines():
            test_pipeline(os.getcwd())
    finally:
        sys.argv = saved_argv


if __name__ == '__main__':
    main()
