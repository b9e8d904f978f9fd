"""Train with BasicSR's own training pipeline: `python -m gradnet_arch.train -opt X.yml` (or `gradnet-train`).

Takes all of BasicSR's flags (--launcher, --auto_resume, --debug, --force_yml) and writes `experiments/` and
`tb_logger/` under the current directory. Distributed: `torchrun --nproc_per_node=N -m gradnet_arch.train -opt
X.yml --launcher pytorch` (NCCL on CUDA, gloo on CPU).
"""
import gradnet_arch  # noqa: F401  (registers the plugin)
from gradnet_arch.cli import run_pipeline


def main(argv=None):
    """Entry point. `argv` defaults to sys.argv[1:]."""
    from basicsr.train import train_pipeline

    run_pipeline(train_pipeline, argv, is_train=True)


if __name__ == '__main__':
    main()
