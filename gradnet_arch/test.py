"""Test with BasicSR's own test pipeline: `python -m gradnet_arch.test -opt X.yml` (or `gradnet-test`).

Writes `results/<name>/` under the current directory (metrics in the log, images when val.save_img is true).
"""
import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.cli import run_pipeline


def main(argv=None):
    """Entry point. `argv` defaults to sys.argv[1:]."""
    from basicsr.test import test_pipeline

    run_pipeline(test_pipeline, argv, is_train=False)


if __name__ == '__main__':
    main()
