"""Re-run safety of the preparation commands: fingerprints, stamps, and outputs staged and named all at once.

- Atomicity: every output of a command is written into a hidden temporary folder next to its target and renamed
  into place only after all outputs of the command are complete (atomic_io.StagedFolders). A failed or interrupted
  run removes its temporary folders; one killed outright leaves only a hidden `.partial-` folder, which the next run
  in that folder removes. A half-written LMDB never sits under the target name, and Ctrl-C is held back for the few
  milliseconds of the final renames, so an interrupt never leaves some outputs of a command in place and others
  not. A write that fails (read-only or full disk, a file in the way of a folder) raises OutputError.
- Re-running: each finished output holds a stamp (`.gradnet_prep.json`) with a fingerprint of the command, its
  settings and its input files (path, size, modification time). Re-running the same command on unchanged inputs
  finds every output up to date and does nothing. If any output exists but is not up to date (other inputs or
  settings, a different tool, or only some outputs present) the command stops without touching it, unless
  `overwrite` is set; the old output is then replaced only once the new one is complete.
"""
import datetime
import hashlib
import json
import lmdb
import os

from gradnet_arch.atomic_io import StagedFolders
from gradnet_arch.errors import OptionError, OutputError, UserError
from gradnet_arch.prep.lmdb_writer import FolderWriter, LmdbWriter
from gradnet_arch.prep.report import PrepReport

STAMP_NAME = '.gradnet_prep.json'
FORMAT_VERSION = 1  # bump when the meaning of an output changes, so that old outputs are no longer "up to date"


def fingerprint(command, settings, input_files):
    """A hex digest of the command, its settings and its inputs (absolute path, size, modification time).

    Contents are not hashed: SIDD alone is tens of GB, and size + mtime catch replaced or re-downloaded files.
    """
    files = []
    for path in input_files:
        stat = os.stat(path)
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    content = dict(format=FORMAT_VERSION, command=command, settings=settings, files=files)
    blob = json.dumps(content, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_stamp(target):
    """The stamp of a finished output as a dict, or None if it has none (or an unreadable one)."""
    try:
        with open(os.path.join(target, STAMP_NAME)) as fin:
            stamp = json.load(fin)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


class AtomicOutputs(StagedFolders):
    """All outputs of one command, staged in temporary folders and renamed into place together on success.

    Usage::

        outputs = AtomicOutputs([gt_path, lq_path], digest, overwrite=False)
        if not outputs.up_to_date:
            with outputs:
                gt, lq = outputs.lmdb(gt_path), outputs.lmdb(lq_path)
                ...  # put images; any exception discards everything

    Args:
        targets (list[str]): Output paths (LMDB folders or PNG folders).
        digest (str): `fingerprint(...)` of the command; stored in each output's stamp.
        overwrite (bool): Replace outputs that exist but are not up to date (and rebuild up-to-date ones).
        stamp (dict | None): Extra information for the stamp (command, settings). `info` can add more while writing.

    Raises:
        OptionError: An output exists and is not up to date, and `overwrite` is off.
    """

    def __init__(self, targets, digest, overwrite=False, stamp=None):
        super().__init__(targets, overwrite)
        self.digest = digest
        self.info = dict(stamp or {})
        self._writers = {}
        self.up_to_date = self._check()

    def _check(self):
        existing = [t for t in self.targets if os.path.lexists(t)]
        if not existing or self.overwrite:
            return False
        stamps = [read_stamp(t) for t in existing]
        if len(existing) == len(self.targets) and all(s and s.get('fingerprint') == self.digest for s in stamps):
            return True
        target, stamp = existing[0], stamps[0]
        if stamp is None:
            why = 'was not written by this tool (or is incomplete)'
        elif stamp.get('fingerprint') != self.digest:
            why = 'was built from other inputs or settings'
        else:
            missing = [t for t in self.targets if t not in existing]
            why = f'is up to date but {missing[0]} is missing'
        raise OptionError(f'{target} already exists and {why}; pass --overwrite to replace it (the old one stays '
                          f'until the new one is complete), or choose another output.')

    def __enter__(self):
        if self.up_to_date:
            raise RuntimeError('outputs are up to date; check `up_to_date` before writing')
        return super().__enter__()

    def _writer(self, kind, target, kwargs):
        temp, target = self.temp(target), os.path.abspath(target)
        if target in self._writers:
            raise ValueError(f'{target} has a writer already')
        self._writers[target] = kind(temp, name=target, **kwargs)
        return self._writers[target]

    def lmdb(self, target, **kwargs):
        """An LmdbWriter for `target` (kwargs: compress_level, map_size, batch_items, batch_bytes)."""
        return self._writer(LmdbWriter, target, kwargs)

    def folder(self, target, **kwargs):
        """A FolderWriter for `target` (kwargs: compress_level)."""
        return self._writer(FolderWriter, target, kwargs)

    def finish(self):
        """Close the writers and stamp every output (before they are named)."""
        for target in self.targets:
            if target not in self._writers:
                raise RuntimeError(f'no writer was opened for {target}')
        for writer in self._writers.values():
            writer.close()
        stamp = dict(self.info)
        stamp.update(
            tool='gradnet_arch.prep',
            format=FORMAT_VERSION,
            fingerprint=self.digest,
            written=datetime.datetime.now().isoformat(timespec='seconds'))
        for target in self.targets:
            with open(os.path.join(self.temp(target), STAMP_NAME), 'w') as fout:
                json.dump(stamp, fout, indent=1, sort_keys=True)

    def discard(self):
        for writer in self._writers.values():
            try:
                writer.abort()
            except Exception:  # the folder goes anyway; the original error matters
                pass
        super().discard()

    def _raise_write_error(self, error):
        """Raise OutputError for a failed write (OSError, LMDB error); other errors are left to propagate."""
        super()._raise_write_error(error)
        if isinstance(error, lmdb.Error) and not isinstance(error, UserError):
            target = self.targets[0] if len(self.targets) == 1 else os.path.commonpath(self.targets)
            raise OutputError(f'cannot write {target}: {error}; check that the disk has space and the folder is '
                              f'writable') from None


def begin_command(command, settings, input_files, targets, overwrite, **report_fields):
    """The report and staged outputs of a preparation command, with `report.up_to_date` set when there is nothing to do.

    Args:
        command (str): The command name (sidd-train, ...); recorded in the outputs' stamp.
        settings (dict): Every setting that changes the outputs.
        input_files (list[str]): The files read (fingerprinted by path, size and modification time).
        targets (list[str]): The output folders / LMDBs.
        overwrite (bool): Replace outputs made from other inputs or settings.
        **report_fields: More PrepReport fields (sources, skipped).

    Returns:
        tuple[PrepReport, AtomicOutputs]
    """
    digest = fingerprint(command, settings, input_files)
    report = PrepReport(command, outputs={target: 0 for target in targets}, **report_fields)
    outputs = AtomicOutputs(list(targets), digest, overwrite, stamp=dict(command=command, settings=settings))
    report.up_to_date = outputs.up_to_date
    return report, outputs
