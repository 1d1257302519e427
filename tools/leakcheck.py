"""Repeated kernel calls for a leak checker: every family's representative kernels
(tests/test_thread_safety.py CASES), the out= forms and the raising calls of tests/test_leaks.py,
CALLS times each, then prints the RSS growth.

    tools/sanitize.sh --leaks --python tools/leakcheck.py [calls]     # LeakSanitizer (ASan build)
    valgrind --leak-check=full python tools/leakcheck.py 200           # memcheck (slow)
    PYTHONPATH=python python tools/leakcheck.py                         # plain RSS report

LeakSanitizer reports at exit whatever is unreachable, including CPython's and NumPy's until-exit
allocations; tools/sanitize.sh --leaks fails only on leak stacks with an nnkern frame.
"""

import gc
import os
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests"))

import numpy as np  # noqa: E402

import nnkern as nk  # noqa: E402
from test_leaks import error_calls, out_calls  # noqa: E402
from test_thread_safety import CASES  # noqa: E402


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def main():
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"nnkern from {os.path.dirname(nk.__file__)}, {calls} calls per workload, threads={nk.get_num_threads()}")
    work = {name: make(np.random.default_rng(0), np.float32, False) for name, make in CASES.items()}
    work["out="] = out_calls(np.random.default_rng(1), np.float64)[0]
    work["errors"] = error_calls(np.random.default_rng(2))[0]
    t0 = time.time()
    for name, run in work.items():
        for _ in range(min(100, calls)):
            run()
        gc.collect()
        before = rss_kib()
        for _ in range(calls):
            run()
        gc.collect()
        print(f"{name:18s} RSS {before} KiB -> {rss_kib()} KiB ({rss_kib() - before:+d} KiB)")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
