"""Crash-isolated fuzz runs: the parent hands (kernel, seed) cases to a worker child process and
watches it. A child that dies (segfault, abort, OOM kill) is a *crash* on the case it had started;
a child that stops answering for ``timeout`` seconds is a *hang*. Either way the parent records it
with the kernel and seed (the repro: ``python tests/fuzz/fuzz_runner.py --repro KERNEL SEED``),
starts a fresh child and continues with the next case.

The child limits its address space (RLIMIT_AS) so that an absurd allocation raises MemoryError
instead of taking the machine down.

Usage:
    python tests/fuzz/fuzz_runner.py --calls 20000 [--seed 0] [--json out.json]   # long mode
    python tests/fuzz/fuzz_runner.py --repro conv2d 12345                          # one case, in-process
"""

import argparse
import collections
import json
import os
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ADDRESS_SPACE_LIMIT = 6 << 30  # bytes, in the child


def plan(names, calls, seed):
    """Deterministic list of (kernel, case seed): kernels round-robin, seeds from the master seed."""
    return [(names[i % len(names)], seed * 1_000_003 + i) for i in range(calls)]


# ---------------------------------------------------------------------------------------------
# Child


def worker_main():
    """Reads "kernel seed" lines on stdin; for each writes "S <i>" before and "R <json>" after."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    except (ImportError, ValueError, OSError):  # pragma: no cover - non-Linux
        pass
    sys.path.insert(0, HERE)
    import fuzz_engine
    import warnings
    warnings.simplefilter("ignore")
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        idx, name, seed = line.split()
        out.write(f"S {idx}\n")
        out.flush()
        if name == "__selftest_abort__":
            os.abort()
        if name == "__selftest_segv__":
            import ctypes
            ctypes.string_at(0)
        if name == "__selftest_hang__":
            time.sleep(3600)
        try:
            res = fuzz_engine.run_one(name, int(seed))
        except Exception as e:  # noqa: BLE001 - a harness error is reported, not hidden
            res = dict(name=name, seed=int(seed), status="harness_error", error=f"{type(e).__name__}: {e}")
        out.write("R " + json.dumps(res, default=str) + "\n")
        out.flush()


# ---------------------------------------------------------------------------------------------
# Parent


class Worker:
    def __init__(self, env):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fuzz_runner.py"), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
        self.buf = b""

    def send(self, i, name, seed):
        self.proc.stdin.write(f"{i} {name} {seed}\n".encode())
        self.proc.stdin.flush()

    def readline(self, deadline):
        """A line, or None at EOF (child died), or "" when the deadline passes."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return ""
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                return ""
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        return self.proc.returncode, err[-2000:]


def _nnkern_parent_dir():
    """Where this process imports nnkern from (an installed package, or the source tree's python/
    after a dev build), so the children test the same build; the source tree as a fallback."""
    try:
        import nnkern
        return os.path.dirname(os.path.dirname(os.path.abspath(nnkern.__file__)))
    except ImportError:
        return os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p for p in (_nnkern_parent_dir(), env.get("PYTHONPATH")) if p])
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_cases(cases, timeout=60.0, env=None, progress=None):
    """Runs [(name, seed)] in worker children. Returns the list of result dicts (one per case)."""
    env = env or child_env()
    results = []
    worker = None
    i = 0
    while i < len(cases):
        if worker is None:
            worker = Worker(env)
        name, seed = cases[i]
        worker.send(i, name, seed)
        deadline = time.monotonic() + timeout
        started = False
        res = None
        while True:
            line = worker.readline(deadline)
            if line is None:  # the child died
                rc, err = worker.kill()
                res = dict(name=name, seed=seed, status="crash", error=f"child exit code {rc}; stderr tail: {err[-800:]}",
                           desc="(drawn in the child)")
                worker = None
                break
            if line == "":  # no answer in time
                rc, err = worker.kill()
                res = dict(name=name, seed=seed, status="hang", error=f"no result after {timeout:.0f} s (started={started})",
                           desc="(drawn in the child)")
                worker = None
                break
            if line.startswith("S "):
                started = True
                continue
            if line.startswith("R "):
                res = json.loads(line[2:])
                break
        results.append(res)
        if progress:
            progress(i, res)
        i += 1
    if worker is not None:
        worker.proc.stdin.close()
        worker.kill()
    return results


def summarize(results):
    """Totals and per-kernel counts of statuses."""
    total = collections.Counter(r["status"] for r in results)
    per = collections.defaultdict(collections.Counter)
    for r in results:
        per[r["name"]][r["status"]] += 1
        per[r["name"]]["valid" if r.get("expect") == "valid" else "invalid"] += 1
    return total, per


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--json")
    ap.add_argument("--kernels", help="comma-separated subset")
    ap.add_argument("--repro", nargs=2, metavar=("KERNEL", "SEED"))
    a = ap.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    sys.path.insert(0, HERE)
    sys.path.insert(1, _nnkern_parent_dir())
    if a.repro:
        import fuzz_engine
        case, ref, expect, desc, dtype = fuzz_engine.draw(a.repro[0], int(a.repro[1]))
        print(f"{a.repro[0]} seed {a.repro[1]}: {desc} (expect {expect}, {dtype})")
        print("args:", [getattr(v, "a", v) for v in case.args])
        print("kwargs:", {k: getattr(v, "a", v) for k, v in case.kwargs.items()})
        print(fuzz_engine.run_one(a.repro[0], int(a.repro[1])))
        return 0
    from fuzz_specs import SPECS
    names = sorted(SPECS) if not a.kernels else a.kernels.split(",")
    cases = plan(names, a.calls, a.seed)
    t0 = time.time()
    results = run_cases(cases, timeout=a.timeout)
    total, per = summarize(results)
    print(f"{len(results)} calls in {time.time() - t0:.0f} s: {dict(total)}")
    import fuzz_engine
    bad = [r for r in results if r["status"] in fuzz_engine.FAILURES + ("harness_error", "twin_error")]
    for r in bad[:50]:
        print(f"  {r['status']}: {r['name']} seed {r['seed']}: {r.get('desc')} {r.get('error', '')} {r.get('detail', '')}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(total=total, per={k: dict(v) for k, v in per.items()}, failures=bad,
                           seconds=time.time() - t0, calls=len(results)), f, indent=1, default=str)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
