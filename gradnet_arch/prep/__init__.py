"""Data preparation: SIDD, DND and image folders -> BasicSR's LMDBs and PNG folders.

Command line: `python -m gradnet_arch.prep <command> ...` (see `--help`), or the functions below from Python:

    prepare_sidd_train      SIDD-Medium sRGB -> gt_crops.lmdb / input_crops.lmdb (512x512 crops, step 384)
    prepare_sidd_val        SIDD validation blocks (.mat) -> gt_crops.lmdb / input_crops.lmdb (1280 pairs)
    prepare_sidd_benchmark  SIDD benchmark blocks (.mat) -> a folder of noisy PNGs
    prepare_dnd             DND images + info.mat -> a folder of 16-bit PNG crops
    prepare_crops           clean image folders -> one crops LMDB (for GaussianNoiseDataset)
    prepare_paired          paired noisy/clean folders -> train/{gt,lq}.lmdb and val/{gt,lq}.lmdb

Every command streams into temporary folders and renames them into place only on success, grows the LMDB map as
needed, and is safe to re-run (stamps explains the rules, lmdb_writer the LMDBs, pool the worker processes).
"""
from gradnet_arch.prep.dnd import prepare_dnd
from gradnet_arch.prep.folders import prepare_crops, prepare_paired
from gradnet_arch.prep.lmdb_writer import LmdbWriter
from gradnet_arch.prep.report import PrepReport
from gradnet_arch.prep.sidd import prepare_sidd_benchmark, prepare_sidd_train, prepare_sidd_val
from gradnet_arch.prep.stamps import AtomicOutputs

__all__ = [
    'prepare_sidd_train', 'prepare_sidd_val', 'prepare_sidd_benchmark', 'prepare_dnd', 'prepare_crops',
    'prepare_paired', 'AtomicOutputs', 'LmdbWriter', 'PrepReport'
]
