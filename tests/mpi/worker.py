"""Run under mpiexec by tests/test_distributed.py: python worker.py SCENARIO OUT.npz

Scenarios:
  mlp | cnn | lstm   train 20 steps data-parallel (per-rank batch B) and save rank 0's parameters
  mismatch           ranks build different models: broadcast_parameters must raise on every rank
  crash              rank 1 raises mid-training: the job must end (MPI_Abort), not hang
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import scenarios  # noqa: E402

import nnkern as nk  # noqa: E402
from nnkern import distributed as dist  # noqa: E402


def main():
    scenario, out = sys.argv[1], sys.argv[2]
    rank, world = dist.init()
    nk.set_num_threads(1)
    if scenario == "mismatch":
        model = nk.nn.Linear(4, 3 if rank == 0 else 5)
        try:
            dist.broadcast_parameters(model)
        except dist.DistributedError as exc:
            with open(f"{out}.{rank}", "w") as f:
                f.write(str(exc))
            return
        raise SystemExit("mismatch not detected")
    if scenario == "crash":
        model = nk.nn.Linear(4, 3)
        dist.broadcast_parameters(model)
        if rank == 1:
            raise RuntimeError("rank 1 fails on purpose")
        dist.barrier(timeout=60)  # rank 0 would wait here forever without the abort
        return
    spec = scenarios.SCENARIOS[scenario]
    model = spec.build(seed=rank + 1)  # different inits: broadcast must make them equal
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(spec.optimizer(model), model)
    shards = spec.rank_batches(rank, world)
    for xb, yb in shards:
        spec.step(model, opt, xb, yb)
    if rank == 0:
        np.savez(out, **{k: np.asarray(v) for k, v in model.state_dict().items()})
        with open(out + ".json", "w") as f:
            json.dump({"bytes_per_step": opt.bucket.bytes_per_step, "calls_per_step": opt.bucket.calls_per_step,
                       "allreduce_s": opt.allreduce_seconds, "steps": opt.steps}, f)


if __name__ == "__main__":
    main()
