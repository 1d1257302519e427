"""Data-parallel training over MPI: the digits CNN or the char-LSTM on N ranks, with step timing.

    pip install "nnkern[mpi]"
    mpiexec -n 2 python -m nnkern.examples.distributed_train --model cnn --steps 200
    mpiexec -n 2 python -m nnkern.examples.distributed_train --model lstm --steps 50
    python -m nnkern.examples.distributed_train --model cnn      # 1 rank, for comparison

Every rank trains the same model on its own shard of each global batch (per-rank batch
``--batch``, so the global batch is N times larger) with ``DistributedOptimizer``, which averages
the gradients of all ranks in one flat buffer before each Adam step. Rank 0 prints the median step
time, the share of it spent in the gradient allreduce, the bytes each rank sends per step and the
loss, so the scaling of a run can be read off directly (see docs/DISTRIBUTED.md). Each rank uses
``--threads`` OpenMP threads (default 1: one rank per core).
"""

import argparse
import time

import numpy as np

import nnkern as nk
from nnkern import distributed as dist


def _cnn_setup(batch, seed):
    from .digits_cnn import build_model

    x, y = nk.datasets.load_digits()
    model = build_model(seed)
    x_rank, y_rank = dist.shard((x, y), batch_size=batch)
    crit = nk.nn.CrossEntropyLoss()

    def batches():
        n = len(x_rank) // batch
        while True:
            for i in range(n):
                yield x_rank[i * batch:(i + 1) * batch], y_rank[i * batch:(i + 1) * batch]

    def loss_and_backward(xb, yb):
        loss = crit(model(xb), yb)
        model.backward(crit.backward())
        return loss

    return model, batches(), loss_and_backward


def _lstm_setup(batch, seed, seq_len=64):
    from .char_lstm import CharLSTM, Vocab

    text = nk.datasets.load_text()
    vocab = Vocab(text)
    ids = vocab.encode(text)
    nk.manual_seed(seed)
    model = CharLSTM(len(vocab.chars))
    crit = nk.nn.CrossEntropyLoss()
    # Global batch = world * batch streams; this rank reads streams [rank*batch, (rank+1)*batch).
    world, r = dist.world_size(), dist.rank()
    streams = (len(ids) - 1) // (world * batch)
    starts = (np.arange(world * batch) * streams)[r * batch:(r + 1) * batch]

    def batches():
        while True:
            for t0 in range(0, streams - seq_len, seq_len):
                idx = starts[None, :] + t0 + np.arange(seq_len)[:, None]  # (T, B)
                yield ids[idx], ids[idx + 1]

    state = [None]

    def loss_and_backward(xb, yb):
        logits, st = model(xb, state[0])
        state[0] = tuple(s.copy() for s in st)  # truncated BPTT: carry the state, not the graph
        T, B, V = logits.shape
        loss = crit(logits.reshape(T * B, V), yb.reshape(-1))
        model.backward(crit.backward().reshape(T, B, V))
        return loss

    return model, batches(), loss_and_backward


def run(model_name="cnn", steps=200, batch=32, threads=1, warmup=10, seed=0, lr=1e-3):
    """Trains `steps` steps on every rank; returns rank 0's timing summary (dict) on every rank."""
    dist.init()
    nk.set_num_threads(threads)
    setup = {"cnn": _cnn_setup, "lstm": _lstm_setup}[model_name]
    model, batches, loss_and_backward = setup(batch, seed)
    dist.broadcast_parameters(model)
    opt = dist.DistributedOptimizer(nk.optim.Adam(model.parameters(), lr=lr), model)
    step_times, reduce_times, losses = [], [], []
    for s in range(warmup + steps):
        xb, yb = next(batches)
        dist.barrier()  # time every step from a common start, so rank skew is not hidden in the allreduce
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = loss_and_backward(xb, yb)
        r0 = opt.allreduce_seconds
        opt.step()
        t1 = time.perf_counter()
        if s >= warmup:
            step_times.append(t1 - t0)
            reduce_times.append(opt.allreduce_seconds - r0)
            losses.append(float(loss))
    # The allreduce inside a step also absorbs any imbalance between ranks; time it alone too
    # (after a barrier, same buffer): that is the pure communication cost that predicts scaling.
    alone = []
    for _ in range(50):
        dist.barrier()
        t0 = time.perf_counter()
        dist.allreduce_gradients(model, average=True, bucket=opt.bucket)
        alone.append(time.perf_counter() - t0)
    step_ms = 1e3 * float(np.median(step_times))
    reduce_ms = 1e3 * float(np.median(reduce_times))
    n_params = sum(p.data.size for p in model.parameters())
    summary = {
        "model": model_name, "ranks": dist.world_size(), "threads": threads, "batch_per_rank": batch,
        "steps": steps, "step_ms": step_ms, "allreduce_ms": reduce_ms,
        "allreduce_fraction": reduce_ms / step_ms, "allreduce_alone_ms": 1e3 * float(np.median(alone)), "bytes_per_step": opt.bucket.bytes_per_step,
        "mpi_calls_per_step": opt.bucket.calls_per_step, "parameters": n_params,
        "samples_per_s": dist.world_size() * batch / (step_ms / 1e3), "final_loss": float(np.mean(losses[-10:])),
    }
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("cnn", "lstm"), default="cnn")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=32, help="per-rank batch size")
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads per rank")
    a = p.parse_args(argv)
    res = run(a.model, a.steps, a.batch, a.threads)
    if dist.rank() == 0:
        print(f"{res['model']}: {res['ranks']} rank(s) x {res['threads']} thread(s), batch {res['batch_per_rank']}/rank, "
              f"{res['parameters']:,} parameters\n"
              f"  step {res['step_ms']:.2f} ms (median of {res['steps']}), allreduce {res['allreduce_ms']:.3f} ms "
              f"= {100 * res['allreduce_fraction']:.1f}% of the step "
              f"(alone, after a barrier: {res['allreduce_alone_ms']:.3f} ms)\n"
              f"  {res['bytes_per_step']:,} bytes reduced per rank per step in {res['mpi_calls_per_step']} MPI call(s); "
              f"{res['samples_per_s']:,.0f} samples/s overall; loss {res['final_loss']:.3f}")
    return res


if __name__ == "__main__":
    main()
