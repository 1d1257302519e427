"""Recurrent workloads (DESIGN.md section 6): LSTM, GRU and vanilla RNN over whole sequences,
forward and forward+backward, at T35 B64 I128 H256 ("large") and T35 B1 I32 H64 ("small"), plus
the LSTM cell called from a Python loop.

Implementations side by side:
  nnkern              nk.nn.LSTM/GRU/RNN (one C++ call per layer and direction)
  numpy-naive         reference twin, per-step x_t @ W_ih and per-step dW GEMMs
  numpy-hoisted       reference twin, input projection and dX/dW_ih/dW_hh as one GEMM each
  torch               nn.LSTM / nn.GRU / nn.RNN (fwd under no_grad; fwd+bwd: autograd on a random dy)
  torch-cell-loop     nn.LSTMCell / GRUCell / RNNCell in a Python loop over T
  nk.matmul           only the GEMMs of the computation (same shapes) through nk.matmul: the GEMM
                      rate the fused kernels are compared with
GFLOP/s counts the GEMM-equivalent work 2*T*B*G*H*(I+H) (G = 4 LSTM, 3 GRU, 1 RNN), x3 for fwd+bwd.
Every implementation runs on warm buffers (layer workspaces are reused; torch/NumPy allocate as
they normally do).
"""

import numpy as np

from . import Case, Impl, torch_or_none

SHAPES = {"large": (35, 64, 128, 256), "small": (35, 1, 32, 64)}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _flops(kind, T, B, I, H):
    return 2.0 * T * B * GATES[kind] * H * (I + H)


def _gemm_roof(kind, T, B, I, H, backward):
    """The GEMMs of one sequence pass, through nk.matmul on preallocated buffers."""
    import nnkern as nk

    G = GATES[kind]
    rng = np.random.default_rng(1)
    f32 = np.float32
    x = rng.standard_normal((T * B, I), dtype=f32)
    w_ih = rng.standard_normal((G * H, I), dtype=f32)
    w_hh = rng.standard_normal((G * H, H), dtype=f32)
    h = rng.standard_normal((T, B, H), dtype=f32)
    gx = np.empty((T * B, G * H), f32)
    gh = np.empty((B, G * H), f32)
    dg = rng.standard_normal((T * B, G * H), dtype=f32)
    dh = np.empty((B, H), f32)
    dwi = np.empty((G * H, I), f32)
    dwh = np.empty((G * H, H), f32)
    dx = np.empty((T * B, I), f32)
    hf = h.reshape(T * B, H)
    dg3 = dg.reshape(T, B, G * H)

    def fwd():
        nk.matmul(x, w_ih, out=gx, trans_b=True)
        for t in range(T):
            nk.matmul(h[t], w_hh, out=gh, trans_b=True)

    def fwdbwd():
        fwd()
        for t in range(T):
            nk.matmul(dg3[t], w_hh, out=dh)
        nk.matmul(dg, x, out=dwi, trans_a=True)
        nk.matmul(dg, hf, out=dwh, trans_a=True)
        nk.matmul(dg, w_ih, out=dx)

    return fwdbwd if backward else fwd


def _seq_setup(kind, T, B, I, H, backward):
    def setup():
        import nnkern as nk
        from nnkern import reference as ref

        rng = np.random.default_rng(0)
        f32 = np.float32
        cls = {"lstm": nk.nn.LSTM, "gru": nk.nn.GRU, "rnn": nk.nn.RNN}[kind]
        layer = cls(I, H, rng=np.random.default_rng(0))
        x = rng.standard_normal((T, B, I), dtype=f32)
        dy = rng.standard_normal((T, B, H), dtype=f32)
        p = [layer.weight_ih_l0.data, layer.weight_hh_l0.data, layer.bias_ih_l0.data, layer.bias_hh_l0.data]

        if backward:
            def nnk():
                layer(x)
                layer.backward(dy)
        else:
            def nnk():
                layer(x)
        impls = [Impl("nnkern", nnk, "nk.nn layer: one C++ call (GEMM + fused gates per step)")]

        def twin(hoisted):
            if kind == "lstm":
                def f():
                    y, hn, cn, ws = ref.lstm_sequence(x, None, None, *p, hoisted=hoisted)
                    if backward:
                        ref.lstm_sequence_backward(dy, None, None, ws, x)
            elif kind == "gru":
                def f():
                    y, hn, ws = ref.gru_sequence(x, None, *p, hoisted=hoisted)
                    if backward:
                        ref.gru_sequence_backward(dy, None, ws, x)
            else:
                def f():
                    y, hn, ws = ref.rnn_sequence(x, None, *p, hoisted=hoisted)
                    if backward:
                        ref.rnn_sequence_backward(dy, None, ws, x)
            return f

        impls.append(Impl("numpy-naive", twin(False), "per-step x_t@W_ih, h@W_hh and dW GEMMs"))
        impls.append(Impl("numpy-hoisted", twin(True), "input projection, dX, dW_ih, dW_hh as 1 GEMM each"))
        impls.append(Impl("nk.matmul", _gemm_roof(kind, T, B, I, H, backward),
                          "the same GEMMs alone through nk.matmul (rate reference)"))
        torch = torch_or_none()
        if torch is not None:
            tcls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
            ccls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[kind]
            tm = tcls(I, H)
            cell = ccls(I, H)
            tx = torch.from_numpy(x)
            tdy = torch.from_numpy(dy)
            if backward:
                txg = tx.clone().requires_grad_(True)

                def tfn():
                    out, _ = tm(txg)
                    out.backward(tdy)

                def cfn():
                    state = None
                    outs = []
                    for t in range(T):
                        state = cell(txg[t], state)
                        outs.append(state[0] if kind == "lstm" else state)
                    torch.stack(outs).backward(tdy)
            else:
                def tfn():
                    with torch.no_grad():
                        tm(tx)

                def cfn():
                    with torch.no_grad():
                        state = None
                        for t in range(T):
                            state = cell(tx[t], state)
            impls.append(Impl("torch", tfn, f"nn.{tcls.__name__}"))
            impls.append(Impl("torch-cell-loop", cfn, f"nn.{ccls.__name__} in a Python loop"))
        return impls

    return setup


def _cell_loop_setup(T, B, I, H, backward):
    """nk.lstm_cell from a Python loop (out= buffers, grads accumulated in place) vs torch's LSTMCell loop."""

    def setup():
        import nnkern as nk

        rng = np.random.default_rng(0)
        f32 = np.float32
        bound = 1.0 / np.sqrt(H)
        w_ih = rng.uniform(-bound, bound, (4 * H, I)).astype(f32)
        w_hh = rng.uniform(-bound, bound, (4 * H, H)).astype(f32)
        b_ih = rng.uniform(-bound, bound, 4 * H).astype(f32)
        b_hh = rng.uniform(-bound, bound, 4 * H).astype(f32)
        x = rng.standard_normal((T, B, I), dtype=f32)
        dy = rng.standard_normal((T, B, H), dtype=f32)
        hs = np.zeros((T + 1, B, H), f32)
        cs = np.zeros((T + 1, B, H), f32)
        wss = np.empty((T, B, 5 * H), f32)
        gwi, gwh = np.zeros_like(w_ih), np.zeros_like(w_hh)
        gbi, gbh = np.zeros_like(b_ih), np.zeros_like(b_hh)
        cell = nk.lstm_cell
        cell_bwd = nk.lstm_cell_backward

        def fwd():
            for t in range(T):
                cell(x[t], hs[t], cs[t], w_ih, w_hh, b_ih, b_hh, out=(hs[t + 1], cs[t + 1], wss[t]))

        def fwdbwd():
            fwd()
            dh = None
            dc = None
            for t in range(T - 1, -1, -1):
                dht = dy[t] if dh is None else dy[t] + dh
                _, dh, dc, *_ = cell_bwd(dht, dc, wss[t], x[t], hs[t], cs[t], w_ih, w_hh, dw_ih=gwi, dw_hh=gwh,
                                         db_ih=gbi, db_hh=gbh, accumulate=True)

        impls = [Impl("nnkern", fwdbwd if backward else fwd, "nk.lstm_cell(_backward) per step, out= buffers")]
        torch = torch_or_none()
        if torch is not None:
            tcell = torch.nn.LSTMCell(I, H)
            tx = torch.from_numpy(x)
            tdy = torch.from_numpy(dy)
            if backward:
                txg = tx.clone().requires_grad_(True)

                def tfn():
                    state = None
                    outs = []
                    for t in range(T):
                        state = tcell(txg[t], state)
                        outs.append(state[0])
                    torch.stack(outs).backward(tdy)
            else:
                def tfn():
                    with torch.no_grad():
                        state = None
                        for t in range(T):
                            state = tcell(tx[t], state)
            impls.append(Impl("torch-cell-loop", tfn, "nn.LSTMCell in a Python loop"))
        return impls

    return setup


def cases(quick):
    torch = torch_or_none() is not None
    out = []
    shapes = {"small": SHAPES["small"]} if quick else SHAPES
    kinds = ["lstm", "gru"] if quick else ["lstm", "gru", "rnn"]
    for kind in kinds:
        for sname, (T, B, I, H) in shapes.items():
            fl = _flops(kind, T, B, I, H)
            for backward in (False, True):
                names = ["nnkern", "numpy-naive", "numpy-hoisted", "nk.matmul"] + (
                    ["torch", "torch-cell-loop"] if torch else [])
                out.append(Case("rnn", f"{kind}/{sname}", f"T{T} B{B} I{I} H{H}",
                                _seq_setup(kind, T, B, I, H, backward), work=fl * (3 if backward else 1),
                                unit="GFLOP/s", mode="fwd+bwd" if backward else "fwd", impl_names=names))
    for sname, (T, B, I, H) in shapes.items():
        fl = _flops("lstm", T, B, I, H)
        for backward in (False, True):
            names = ["nnkern"] + (["torch-cell-loop"] if torch else [])
            out.append(Case("rnn", f"lstm-cell-loop/{sname}", f"T{T} B{B} I{I} H{H}",
                            _cell_loop_setup(T, B, I, H, backward), work=fl * (3 if backward else 1),
                            unit="GFLOP/s", mode="fwd+bwd" if backward else "fwd", impl_names=names))
    return out


def cell_call_overhead(N=1, F=32, H=64, calls=20000, rounds=15):
    """Per-call cost of nk.lstm_cell / nk.lstm_cell_backward from Python beyond the maths.

    Times a Python loop of calls and the same kernels looped in C++ (no argument handling), both
    single-threaded, interleaved over `rounds`; returns the minima in microseconds and their
    differences (the overhead). Usage:
        python -c "from nnkern.bench.rnn import cell_call_overhead as f; print(f())"
    """
    import time

    import nnkern as nk

    old = nk.get_num_threads()
    nk.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        f32 = np.float32
        x = rng.standard_normal((N, F)).astype(f32)
        h0 = rng.standard_normal((N, H)).astype(f32)
        c0 = h0.copy()
        w_ih = (0.1 * rng.standard_normal((4 * H, F))).astype(f32)
        w_hh = (0.1 * rng.standard_normal((4 * H, H))).astype(f32)
        b_ih = np.zeros(4 * H, f32)
        b_hh = np.zeros(4 * H, f32)
        out = (np.empty((N, H), f32), np.empty((N, H), f32), np.empty((N, 5 * H), f32))
        grads = dict(dw_ih=np.zeros_like(w_ih), dw_hh=np.zeros_like(w_hh), db_ih=np.zeros_like(b_ih),
                     db_hh=np.zeros_like(b_hh), accumulate=True)
        cell, cell_bwd = nk.lstm_cell, nk.lstm_cell_backward
        h1, c1, ws = out

        def loop(fn):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            return (time.perf_counter() - t0) / calls

        res = {k: [] for k in ("forward", "forward_alloc", "backward", "backward_alloc", "kernel_fwd", "kernel_bwd")}
        for _ in range(rounds):
            res["forward"].append(loop(lambda: cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out=out)))
            res["forward_alloc"].append(loop(lambda: cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh)))
            res["backward"].append(loop(lambda: cell_bwd(h1, c1, ws, x, h0, c0, w_ih, w_hh, **grads)))
            res["backward_alloc"].append(loop(lambda: cell_bwd(h1, c1, ws, x, h0, c0, w_ih, w_hh)))
            k = nk._core._lstm_cell_kernel_seconds
            res["kernel_fwd"].append(k(x, h0, c0, w_ih, w_hh, b_ih, b_hh, False, calls))
            res["kernel_bwd"].append(k(x, h0, c0, w_ih, w_hh, b_ih, b_hh, True, calls))
        us = {k: min(v) * 1e6 for k, v in res.items()}
        us["overhead_forward"] = us["forward"] - us["kernel_fwd"]
        us["overhead_forward_alloc"] = us["forward_alloc"] - us["kernel_fwd"]
        us["overhead_backward"] = us["backward"] - us["kernel_bwd"]
        us["overhead_backward_alloc"] = us["backward_alloc"] - us["kernel_bwd"]
        return {k: round(v, 3) for k, v in us.items()}
    finally:
        nk.set_num_threads(old)
