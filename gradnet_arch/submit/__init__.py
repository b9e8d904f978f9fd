"""Benchmark submissions: SIDD's SubmitSrgb.mat and DND's per-image bundles, from a model or from saved PNGs.

Command line: `python -m gradnet_arch.submit sidd|dnd ...` (or `gradnet-submit`, see `--help`); from Python:

    submit_sidd         denoise BenchmarkNoisyBlocksSrgb.mat with a model -> SubmitSrgb.mat
    bundle_sidd_folder  PNGs named {ii:02d}_{bb:02d}[_suffix].png -> SubmitSrgb.mat
    submit_dnd          denoise DND's 20 crops per image with a model -> OUTDIR/0001.mat ...
    bundle_dnd_folder   PNGs named {image:04d}_{box:02d}[_suffix].png -> OUTDIR/0001.mat ...

Outputs appear only once complete and are never replaced without `overwrite`.
"""
from gradnet_arch.submit.dnd import bundle_dnd_folder, submit_dnd
from gradnet_arch.submit.files import SubmitReport
from gradnet_arch.submit.sidd import bundle_sidd_folder, submit_sidd

__all__ = ['submit_sidd', 'bundle_sidd_folder', 'submit_dnd', 'bundle_dnd_folder', 'SubmitReport']
