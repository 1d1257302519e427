"""Data-parallel training over MPI: 2 ranks with batch B == 1 process with batch 2B (issue 7)."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'nnkern[mpi]')")

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "mpi"))
import scenarios  # noqa: E402


def mpiexec():
    exe = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        pytest.skip("mpiexec not found")
    return exe


def launch(scenario, out, n=2, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [mpiexec(), "-n", str(n), sys.executable, os.path.join(HERE, "mpi", "worker.py"), scenario, str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm"])
def test_two_ranks_match_one_process_with_double_batch(tmp_path, name):
    out = tmp_path / f"{name}.npz"
    proc = launch(name, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = dict(np.load(out))
    ref = scenarios.reference_params(name, world=2)
    assert set(got) == set(ref)
    for k in ref:
        # float32: the per-rank sums and the all-reduce add in another order than one big batch
        np.testing.assert_allclose(got[k], ref[k], rtol=2e-4, atol=2e-5, err_msg=k)
    stats = json.load(open(str(out) + ".json"))
    nparams = sum(v.size for v in ref.values())
    assert stats["bytes_per_step"] == 4 * nparams  # one flat float32 buffer per step
    assert stats["calls_per_step"] == 1 and stats["steps"] == scenarios.STEPS


def test_mismatched_models_raise_on_every_rank(tmp_path):
    out = tmp_path / "mm"
    proc = launch("mismatch", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in (0, 1):
        msg = open(f"{out}.{r}").read()
        assert "rank 1 has a different model than rank 0" in msg and "(3, 4)" in msg and "(5, 4)" in msg


def test_failing_rank_ends_the_job_instead_of_hanging(tmp_path):
    proc = launch("crash", tmp_path / "c", timeout=120)
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr + proc.stdout


def test_shard_layout():
    from nnkern.distributed import shard

    x = np.arange(20)
    a = shard(x, 0, 2, batch_size=3)
    b = shard(x, 1, 2, batch_size=3)
    np.testing.assert_array_equal(a, [0, 1, 2, 6, 7, 8, 12, 13, 14])
    np.testing.assert_array_equal(b, [3, 4, 5, 9, 10, 11, 15, 16, 17])
    np.testing.assert_array_equal(shard(x, 1, 4), [1, 5, 9, 13, 17])
    with pytest.raises(ValueError, match="rank 2 is not in"):
        shard(x, 2, 2)


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_distributed_example_runs_on_two_ranks(model):
    import nnkern

    pkg_parent = os.path.dirname(os.path.dirname(nnkern.__file__))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=pkg_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [mpiexec(), "-n", "2", sys.executable, "-m", "nnkern.examples.distributed_train", "--model", model,
           "--steps", "3", "--batch", "8"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{model}: 2 rank(s) x 1 thread(s), batch 8/rank" in proc.stdout
    assert "bytes reduced per rank per step in 1 MPI call(s)" in proc.stdout
    assert proc.stdout.count("rank(s) x") == 1  # only rank 0 prints
