"""Train with BasicSR's own training pipeline: `python -m gradnet_arch.train -opt X.yml` (or `gradnet-train`).

Takes all of BasicSR's flags (--launcher, --auto_resume, --debug, --force_yml) and writes `experiments/` and
`tb_logger/` under the current directory. Distributed: `torchrun --nproc_per_node=N -m gradnet_arch.train -opt
X.yml --launcher pytorch` (NCCL on CUDA, gloo on CPU).
"""
import os
import sys

import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.compat import cpu_friendly_pipelines
from gradnet_arch.option_check import check_option_file


def main(argv=None):
    """Entry point. `argv` defaults to sys.argv[1:]."""
    from basicsr.train import train_pipeline

    argv = sys.argv[1:] if argv is None else list(argv)
    check_option_file(argv)
    saved_argv = sys.argv
    sys.argv = [saved_argv[0]] + argv  # BasicSR's parse_options reads sys.argv
    try:
        with cpu_friendly_pipelines():
            train_pipeline(os.getcwd())
    finally:
        sys.argv = saved_argv


if __name__ == '__main__':
    main()
