"""Benchmark harness shared by ``nnkern bench`` and the pytest-benchmark files in benchmarks/.

Each kernel family has a module here (``nnkern.bench.<family>``) with a function
``cases(quick: bool) -> list[Case]``. A Case describes one workload; its ``setup()`` builds warm
buffers and returns the implementations to time side by side (nnkern, the NumPy twin from
``nnkern.reference``, torch when installed). Every implementation runs on preallocated buffers
(out= where the API has it), so what is timed is the kernel, not page faults of fresh outputs.

Timing: a warm-up, then rounds in which every implementation of the case is timed in turn
(interleaved, so a noisy neighbour hits all of them alike); the median over rounds is reported,
with the minimum kept in the JSON output.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np

FAMILIES = ["gemm", "optim", "act", "loss", "conv", "pool", "rnn", "norm", "train"]


@dataclasses.dataclass
class Impl:
    """One implementation of a workload: `fn()` runs one call on warm buffers."""

    name: str
    fn: Callable[[], object]
    note: str = ""


@dataclasses.dataclass
class Case:
    """A workload: `setup()` returns the implementations to compare (built lazily)."""

    family: str
    name: str
    shape: str
    setup: Callable[[], List[Impl]]
    work: float  # bytes moved (unit GB/s) or flops (unit GFLOP/s) per call
    unit: str = "GB/s"
    mode: str = ""  # e.g. "fwd", "fwd+bwd", "step"
    # Names of the Impls setup() will return (lets pytest-benchmark parametrize without a setup).
    impl_names: List[str] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}" + (f"/{self.mode}" if self.mode else "")


def torch_or_none():
    """torch if importable (it is an optional peer), else None."""
    try:
        import torch  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return None
    return torch


def family_cases(family: str, quick: bool) -> List[Case]:
    try:
        mod = importlib.import_module(f"nnkern.bench.{family}")
    except ModuleNotFoundError as exc:
        if exc.name == f"nnkern.bench.{family}":
            return []
        raise
    return list(mod.cases(quick))


def all_cases(quick: bool, families: Optional[List[str]] = None) -> List[Case]:
    out: List[Case] = []
    for fam in families or FAMILIES:
        out.extend(family_cases(fam, quick))
    return out


# ---------------------------------------------------------------------------------------------
# Threads: nnkern, torch and NumPy's own BLAS, set together.


def _numpy_blas_controllers():
    """threadpoolctl controllers for every BLAS/OpenMP pool except nnkern's OpenBLAS copy."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    ctl = ThreadpoolController()
    ours = os.path.realpath(os.path.join(os.path.dirname(importlib.import_module("scipy_openblas32").__file__), "lib"))
    keep = [lib for lib in ctl.lib_controllers if not os.path.realpath(lib.filepath).startswith(ours)]
    return keep


def set_threads(n: int) -> None:
    """Use n threads in nnkern, torch (if loaded) and NumPy's BLAS (via threadpoolctl)."""
    import nnkern as nk

    nk.set_num_threads(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    ctls = _numpy_blas_controllers()
    for lib in ctls or []:
        if lib.internal_api in ("openblas", "mkl", "blis", "flexiblas"):
            lib.set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# Timing


@dataclasses.dataclass
class Result:
    case: str
    shape: str
    mode: str
    impl: str
    threads: int
    median_ms: float
    min_ms: float
    rate: float
    unit: str
    note: str = ""


def _calls_for(fn: Callable[[], object], target_s: float) -> int:
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return max(1, min(1000, int(target_s / max(dt, 1e-7))))


def time_case(case: Case, threads: int, seconds: float = 0.6, rounds: int = 7) -> List[Result]:
    impls = case.setup()
    # Warm-up: first calls fault in buffers, build caches, JIT torch paths.
    for impl in impls:
        for _ in range(2):
            impl.fn()
    per_round = seconds / max(1, rounds) / max(1, len(impls))
    calls = {impl.name: _calls_for(impl.fn, per_round) for impl in impls}
    samples: Dict[str, List[float]] = {impl.name: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            n = calls[impl.name]
            fn = impl.fn
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[impl.name].append((time.perf_counter() - t0) / n)
    results = []
    for impl in impls:
        med = statistics.median(samples[impl.name])
        results.append(
            Result(case.key, case.shape, case.mode, impl.name, threads, med * 1e3, min(samples[impl.name]) * 1e3,
                   case.work / med / 1e9, case.unit, impl.note)
        )
    del impls
    return results


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> Dict[str, str]:
    import nnkern as nk

    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nnkern": nk.__version__,
        "nnkern_simd": nk.simd_level(),
        "nnkern_blas": f"{nk.blas_corename()} ({nk.blas_config().split()[1] if nk.blas_config() else '?'})",
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
    }
    torch = torch_or_none()
    info["torch"] = torch.__version__ if torch is not None else "(not installed)"
    return info


TABLE_HEADER = (
    "| kernel | shape | threads | impl | ms | rate | vs numpy | vs torch | note |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def format_rows(results: List[Result]) -> str:
    """Markdown rows: one per (case, threads, impl), with speedups vs NumPy and torch."""
    rows = []
    by_group: Dict[tuple, Dict[str, Result]] = {}
    for r in results:
        by_group.setdefault((r.case, r.threads), {})[r.impl] = r
    for (case, threads), impls in by_group.items():
        numpy_ms = min((r.median_ms for n, r in impls.items() if n.startswith("numpy")), default=None)
        torch_ms = min((r.median_ms for n, r in impls.items() if n.startswith("torch")), default=None)
        for name, r in impls.items():
            vs_np = f"{numpy_ms / r.median_ms:.2f}x" if numpy_ms and not name.startswith("numpy") else "-"
            vs_t = f"{torch_ms / r.median_ms:.2f}x" if torch_ms and not name.startswith("torch") else "-"
            rate = f"{r.rate:.1f} {r.unit}" if r.rate > 0 else "-"
            ms = f"{r.median_ms:.3f}" if r.median_ms < 10 else f"{r.median_ms:.2f}"
            rows.append(f"| {case} | {r.shape} | {threads} | {name} | {ms} | {rate} | {vs_np} | {vs_t} | {r.note} |")
    return "\n".join(rows)


def format_table(results: List[Result]) -> str:
    return TABLE_HEADER + "\n" + format_rows(results)


def run(families=None, threads=(1, 2), quick=False, filter_=None, seconds=0.6, json_path=None, out=sys.stdout):
    info = machine_info()
    print("nnkern bench  " + "  ".join(f"{k}={v}" for k, v in info.items()), file=out)
    print("(speedups compare medians within this run: 'vs numpy' against the best NumPy twin, "
          "'vs torch' against the best torch variant; >1x means nnkern is faster)\n", file=out)
    cases = all_cases(quick, families)
    if filter_:
        cases = [c for c in cases if filter_ in c.key]
    if not cases:
        print("no benchmark matches", file=out)
        return []
    print(TABLE_HEADER, file=out, flush=True)
    results: List[Result] = []
    for t in threads:
        set_threads(t)
        for case in cases:
            res = time_case(case, t, seconds=seconds)
            results.extend(res)
            print(format_rows(res), file=out, flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"machine": info, "results": [dataclasses.asdict(r) for r in results]}, f, indent=1)
    return results
