"""The process pool of the preparation commands: jobs in worker processes, results in order, prompt on Ctrl-C.

Worker processes ignore Ctrl-C (SIGINT reaches the whole process group); the main process stops them itself, so an
interrupted run ends promptly instead of hanging on a worker killed in mid-hand-over.
"""
import collections
import contextlib
import multiprocessing
import signal
import sys
import threading
from tqdm import tqdm

from gradnet_arch.errors import DataError, ImageReadError, UserError
from gradnet_arch.prep.options import check_positive


def _call(func, job):
    """Run func(job) in a worker; hand user errors back as values (they are per-job and may be skipped)."""
    try:
        return True, func(job)
    except UserError as error:
        return False, error


@contextlib.contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread (processes forked meanwhile start with it blocked), where the platform can."""
    if not hasattr(signal, 'pthread_sigmask'):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_ignores_sigint():
    """Pool initializer: Ctrl-C is for the main process, which stops the workers itself.

    A worker that Ctrl-C killed while handing back a result would leave the pool's result queue locked, and the
    pool's shutdown would then wait forever.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, 'pthread_sigmask'):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def stop_pool(pool, timeout=10.):
    """Terminate the workers of `pool`, within about `timeout` seconds whatever state its queues are in."""
    stopper = threading.Thread(target=pool.terminate, name='stop-pool', daemon=True)
    stopper.start()
    try:
        stopper.join(timeout)
    finally:
        if stopper.is_alive():  # the pool's own shutdown is stuck, or a second Ctrl-C came: end the workers here
            for child in multiprocessing.active_children():
                child.kill()


@contextlib.contextmanager
def start_pool(workers, jobs):
    """A process pool for `run_jobs` (a context manager), or None when one process will do.

    Start it before anything starts threads (a progress bar's monitor thread), as it forks where it can: fork starts
    workers instantly, while spawn re-imports the package (torch, BasicSR) in every worker. The workers ignore
    Ctrl-C; leaving the context (normally, on an error or on Ctrl-C) terminates them.
    """
    if workers <= 1 or jobs <= 1:
        yield None
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context('fork' if 'fork' in methods else None)
    pool = None
    try:
        with _sigint_blocked():  # no worker can be hit by Ctrl-C before its initializer ignores it
            pool = context.Pool(min(workers, jobs), initializer=_worker_ignores_sigint)
        yield pool
    finally:
        if pool is not None:
            stop_pool(pool)


def run_jobs(func, jobs, pool=None, workers=1):
    """Yield (job, result, error) for each job, in job order; `error` is the UserError func raised, else None.

    With a pool (`start_pool`) at most 2 jobs per worker are in flight, so results (encoded images) never pile up
    in memory. Errors that are not UserErrors propagate.

    Args:
        func (callable): A picklable function of one job (a top-level function or a functools.partial of one).
        jobs (list): The jobs (picklable).
        pool (multiprocessing.pool.Pool | None): Worker processes; None runs everything in this process.
        workers (int): The pool's number of processes.
    """
    if pool is None:
        for job in jobs:
            ok, value = _call(func, job)
            yield (job, value, None) if ok else (job, None, value)
        return
    pending = collections.deque()
    todo = iter(jobs)
    for job in todo:
        pending.append((job, pool.apply_async(_call, (func, job))))
        if len(pending) >= 2 * workers:
            break
    while pending:
        job, result = pending.popleft()
        for following in todo:  # keep the pool busy: one new job for each finished one
            pending.append((following, pool.apply_async(_call, (func, following))))
            break
        ok, value = result.get()
        yield (job, value, None) if ok else (job, None, value)


def process_jobs(func, jobs, on_result, workers=1, skip_bad=False, desc=None, unit='image'):
    """Run `func` over `jobs` with a progress bar and hand each result to `on_result(job, result)`.

    A job that fails with DataError or ImageReadError (unreadable, corrupt, mismatched or too small images) stops
    everything, or with `skip_bad` is reported on stderr and counted; other errors always stop.

    Returns:
        list[str]: One message per skipped job.
    """
    workers = check_positive('workers', workers)
    skipped = []
    with start_pool(workers, len(jobs)) as pool, tqdm(
            total=len(jobs), desc=desc, unit=unit, disable=None, dynamic_ncols=True) as bar:
        for job, result, error in run_jobs(func, jobs, pool, workers):
            if error is not None:
                if not (skip_bad and isinstance(error, (DataError, ImageReadError))):
                    raise error
                skipped.append(str(error))
                tqdm.write(f'skipped: {error}', file=sys.stderr)
            else:
                on_result(job, result)
            bar.update()
    return skipped
