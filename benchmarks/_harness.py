"""Turns the workloads of nnkern.bench.<family> into pytest-benchmark tests.

Each benchmark file is two lines:  ``from _harness import family_tests; test_bench = family_tests("optim")``.
Parametrized by (workload, implementation, threads); set NNKERN_BENCH_QUICK=1 for the small shapes.
"""

import os

import pytest

from nnkern import bench

_cache = {}


def _impls(case):
    # One workload's buffers alive at a time: benchmarks are ordered workload by workload.
    if case.key + case.shape not in _cache:
        _cache.clear()
        _cache[case.key + case.shape] = {impl.name: impl for impl in case.setup()}
    return _cache[case.key + case.shape]


def family_tests(family):
    quick = os.environ.get("NNKERN_BENCH_QUICK", "0") == "1"
    cases = bench.family_cases(family, quick)
    params = [
        pytest.param(case, name, threads, id=f"{case.name}-{case.mode}-{case.shape.replace(' ', '')}-{name}-{threads}t")
        for case in cases
        for threads in (1, 2)
        for name in case.impl_names
    ]

    @pytest.mark.parametrize("case,impl,threads", params)
    def test_bench(benchmark, case, impl, threads):
        bench.set_threads(threads)
        fn = _impls(case)[impl].fn
        benchmark.group = f"{case.key} {case.shape} {threads}t"
        benchmark.extra_info.update(shape=case.shape, threads=threads, unit=case.unit, work=case.work)
        benchmark.pedantic(fn, warmup_rounds=2, rounds=15, iterations=max(1, _iterations(fn)))

    return test_bench


def _iterations(fn, target_s=0.02):
    import time

    t0 = time.perf_counter()
    fn()
    return int(min(200, target_s / max(time.perf_counter() - t0, 1e-7)))
