"""What the autoload hook costs: interpreter start-up and `import basicsr`, with and without the hook.

    python speed/bench_autoload.py [--repeats 15]

Each row runs a fresh interpreter `repeats` times (alternating with/without so both see the same machine load) and
prints the median wall time. `GRADNET_BASICSR_AUTOLOAD=0` is the baseline: the .pth still runs but returns at once.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

CASES = [
    ('start-up (`python -c pass`)', 'pass'),
    ('`import numpy` (no BasicSR)', 'import numpy'),
    ('`import basicsr` (+ plugin registration when on)', 'import basicsr'),
]


def run(code, hook_on):
    env = dict(os.environ, GRADNET_BASICSR_AUTOLOAD='1' if hook_on else '0')
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=15)
    args = parser.parse_args()
    print('| case | hook off (median s) | hook on (median s) | difference |\n|---|---|---|---|')
    for label, code in CASES:
        run(code, True)  # warm the file cache and .pyc files
        off, on = [], []
        for _ in range(args.repeats):
            off.append(run(code, False))
            on.append(run(code, True))
        m_off, m_on = statistics.median(off), statistics.median(on)
        print(f'| {label} | {m_off:.3f} | {m_on:.3f} | {m_on - m_off:+.3f} |', flush=True)


if __name__ == '__main__':
    main()
