"""Command line of `gradnet-export` (`python -m gradnet_arch.export`).

    gradnet-export gradnet_color_sigma25 -o gradnet_color_sigma25.safetensors   # spandrel, ComfyUI, chaiNNer
    gradnet-export gradnet_color_sigma25 -o gradnet_color_sigma25.onnx          # onnxruntime (opset 18)
    gradnet-export experiments/run/models/net_g_latest.pth -o run.pth           # BasicSR's params layout
    gradnet-export options/my_test.yml -o hf/my_model                           # Hugging Face-style folder

Mistakes end the command with exit status 2 and a one-line message.
"""
import argparse
import sys

from gradnet_arch.errors import user_errors
from gradnet_arch.export.writers import DEFAULT_OPSET, TOLERANCE

_EPILOG = (f'MODEL is a shipped model name, a checkpoint (.pth/.safetensors) with embedded network options (or give '
           f'them with --opt), or a BasicSR option YAML (its network_g and path.pretrain_network_g). OUT picks the '
           f'format: .safetensors, .pth, .onnx, or a folder (no extension, or a trailing /) for the Hugging Face '
           f'layout. Every export is loaded back by its consumer and compared with load_pretrained\'s network in '
           f'fp32 (max absolute difference <= {TOLERANCE:g}).')


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gradnet-export',
        description='Export a GradNet for spandrel, Hugging Face, torch.hub or ONNX.',
        epilog=_EPILOG)
    parser.add_argument('model', metavar='MODEL', help='shipped name, checkpoint or option YAML (see below)')
    parser.add_argument('-o', '--output', metavar='OUT', required=True, help='output file or folder')
    parser.add_argument('--opt', metavar='YAML', help='network options for a checkpoint that does not embed them')
    parser.add_argument(
        '--param-key', help='state dict of the checkpoint (default: params_ema if present, else params)')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help=f'ONNX opset, >= 18 (default {DEFAULT_OPSET})')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    with user_errors(leading_newline=False):
        from gradnet_arch.export.core import export

        result = export(
            args.model,
            args.output,
            network_opt=args.opt,
            param_key=args.param_key,
            opset=args.opset,
            overwrite=args.force)
        print(f'Wrote {result["path"]} ({result["format"]})')
        print(result['check'])


if __name__ == '__main__':
    main()
