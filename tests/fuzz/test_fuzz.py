"""Fuzz suite (issue 6): every public kernel called with random valid and invalid arguments in a
crash-isolated child process. Asserts zero crashes, zero hangs and zero silently-wrong results
(an invalid call must raise TypeError/ValueError; a valid one must match the NumPy twin), apart
from the open findings listed in fuzz_specs.KNOWN_FINDINGS (each with a repro in FUZZ.md).

Budget: NNKERN_FUZZ_CALLS (default 1500, a couple of minutes on 2 busy cores); the long mode is
``NNKERN_FUZZ_CALLS=20000`` or ``python tests/fuzz/fuzz_runner.py --calls 20000``.
NNKERN_FUZZ_SEED changes the master seed (default 0: deterministic).
"""

import importlib
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fuzz_engine  # noqa: E402
import fuzz_runner  # noqa: E402
from fuzz_specs import EXCLUDED, KNOWN_FINDINGS, SPECS  # noqa: E402

OPS_MODULES = ["act", "augment", "conv", "embedding", "gemm", "loss", "norm", "optim", "pool", "rnn"]
CALLS = int(os.environ.get("NNKERN_FUZZ_CALLS", "1500"))
SEED = int(os.environ.get("NNKERN_FUZZ_SEED", "0"))


def _format(rs):
    return "\n".join(f"  {r['status']}: {r['name']} seed {r['seed']}: {r.get('desc')} {r.get('error', '')} "
                     f"{r.get('detail', '')}\n    repro: python tests/fuzz/fuzz_runner.py --repro {r['name']} {r['seed']}"
                     for r in rs[:30])


def _unexpected(results):
    return [r for r in results if r["status"] in fuzz_engine.FAILURES + ("harness_error", "twin_error")
            and (r["name"], r["status"]) not in KNOWN_FINDINGS]


def test_every_public_kernel_has_a_spec():
    public = set()
    for m in OPS_MODULES:
        public |= set(importlib.import_module(f"nnkern.ops.{m}").__all__)
    missing = sorted(public - set(SPECS) - set(EXCLUDED))
    assert not missing, f"public kernels without a fuzz spec (add one to fuzz_specs.py or justify in EXCLUDED): {missing}"
    stale = sorted(set(SPECS) - public)
    assert not stale, f"fuzz specs for names that are not public kernels: {stale}"


def test_every_spec_draws_valid_calls_that_match_the_twin():
    """Each kernel's unmutated calls succeed and match the twin (the registry itself is right)."""
    old = fuzz_engine.MUTATIONS
    fuzz_engine.MUTATIONS = ("valid",)
    try:
        bad = []
        for name in sorted(SPECS):
            for seed in range(3):
                r = fuzz_engine.run_one(name, seed)
                if r["status"] != "valid_ok":
                    bad.append(r)
    finally:
        fuzz_engine.MUTATIONS = old
    assert not bad, _format(bad)


@pytest.mark.parametrize("kind,status", [("__selftest_abort__", "crash"), ("__selftest_segv__", "crash"),
                                         ("__selftest_hang__", "hang")])
def test_runner_detects_crashes_and_hangs(kind, status):
    """The harness can fail: a child that aborts, segfaults or sleeps is reported, and the runner
    goes on with a fresh child for the next case."""
    res = fuzz_runner.run_cases([(kind, 7), ("relu", 1)], timeout=5.0)
    assert res[0]["status"] == status and res[0]["name"] == kind and res[0]["seed"] == 7, res[0]
    assert res[1]["status"] in ("valid_ok", "raised_ok", "either_ok"), res[1]


def test_mismatch_is_detected():
    """A silently-wrong kernel is caught: compare a deliberately perturbed result with the twin."""
    import numpy as np
    x = np.linspace(-1, 1, 7)
    assert fuzz_engine.close(np.tanh(x), np.tanh(x), np.float64, 1.0) is None
    assert fuzz_engine.close(np.tanh(x) + 1e-6, np.tanh(x), np.float64, 1.0) is not None
    assert fuzz_engine.close(np.where(x > 0, np.nan, x), x, np.float64, 1.0) is not None


def test_fuzz_budget():
    """The fuzz run proper: CALLS cases round-robin over all kernels, each in a child process."""
    cases = fuzz_runner.plan(sorted(SPECS), CALLS, SEED)
    results = fuzz_runner.run_cases(cases, timeout=float(os.environ.get("NNKERN_FUZZ_TIMEOUT", "30")))
    total, per = fuzz_runner.summarize(results)
    print(f"\nfuzz: {len(results)} calls: {dict(total)}")
    known = [r for r in results if (r["name"], r["status"]) in KNOWN_FINDINGS]
    if known:
        print(f"fuzz: {len(known)} results match open findings (FUZZ.md): "
              f"{sorted(set((r['name'], r['status']) for r in known))}")
    assert len(results) == CALLS
    # both valid and invalid calls were exercised for every kernel
    if CALLS >= 20 * len(SPECS):
        thin = [k for k, c in per.items() if c["valid"] == 0 or c["invalid"] == 0]
        assert not thin, f"kernels never fuzzed with valid or with invalid calls: {thin}"
    bad = _unexpected(results)
    assert not bad, f"{len(bad)} fuzz failures:\n" + _format(bad)


def test_fuzz_layers():
    """Layers: forward/backward with random shapes, layouts, NaN/Inf and bad inputs, in a child."""
    import fuzz_layers
    names = ["nn." + n for n in fuzz_layers.LAYERS]
    n = int(os.environ.get("NNKERN_FUZZ_LAYER_CALLS", str(len(names) * 12)))
    results = fuzz_runner.run_cases(fuzz_runner.plan(names, n, SEED), timeout=30.0)
    total, _ = fuzz_runner.summarize(results)
    print(f"\nfuzz layers: {len(results)} calls: {dict(total)}")
    bad = _unexpected(results)
    assert not bad, f"{len(bad)} layer fuzz failures:\n" + _format(bad)


@settings(max_examples=int(os.environ.get("NNKERN_FUZZ_HYPOTHESIS", "60")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(SPECS)), seed=st.integers(0, 2**40))
def test_fuzz_hypothesis(name, seed):
    """hypothesis picks (kernel, seed); the case runs in a child as above."""
    res = fuzz_runner.run_cases([(name, seed)], timeout=30.0)
    bad = _unexpected(res)
    assert not bad, _format(bad)
