// Vanilla (Elman) RNN with tanh or relu: fused cell forward/backward and whole-sequence drivers.
// One gate (G = 1), so the slice permutation of lstm.cc/gru.cc is the identity here.
#include <algorithm>
#include <cstring>

#include "nnkern/gemm.h"
#include "nnkern/parallel.h"
#include "nnkern/rnn.h"
#include "nnkern/rnn_common.h"
#include "nnkern/rnn_gemm.h"
#include "nnkern/workspace.h"

namespace nnkern {
namespace rnn {
namespace {

template <class T>
struct RnnFwdArgs {
  index_t rows, w;
  T* g;  // pre-activation in, activation out
  index_t ldg;
  const T* bias;  // b_ih + b_hh (or zeros)
  const T* hp;
  index_t ldhp;
  T* hn;
  index_t ldhn;
  T* y;
  index_t ldy;
  const std::int64_t* len;
  index_t t;
  bool relu;
};

template <class T>
NNK_INLINE void rnn_fwd_body(RnnFwdArgs<T> a) {
  const index_t w = a.w;
  for (index_t r = 0; r < a.rows; ++r) {
    const T* hp = a.hp + r * a.ldhp;
    T* hn = a.hn + r * a.ldhn;
    T* y = a.y != nullptr ? a.y + r * a.ldy : nullptr;
    if (!row_active(a.len, r, a.t)) {
      for (index_t j = 0; j < w; ++j) hn[j] = hp[j];
      if (y != nullptr) std::fill(y, y + w, T(0));
      continue;
    }
    T* g = a.g + r * a.ldg;
    const T* b = a.bias;
    if (a.relu) {
#pragma omp simd
      for (index_t j = 0; j < w; ++j) {
        const T v = g[j] + b[j];
        // torch's relu: NaN stays NaN (a plain max(v, 0) would turn it into 0)
        const T h = v > T(0) ? v : (v != v ? v : T(0));
        g[j] = h;
        hn[j] = h;
      }
    } else {
#pragma omp simd
      for (index_t j = 0; j < w; ++j) {
        const T h = vtanh(g[j] + b[j]);
        g[j] = h;
        hn[j] = h;
      }
    }
    if (y != nullptr) std::memcpy(y, hn, static_cast<std::size_t>(w) * sizeof(T));
  }
}
NNK_MULTIVERSION(rnn_fwd_pass, rnn_fwd_body)

template <class T>
struct RnnBwdArgs {
  index_t rows, w;
  const T* a;  // activation (saved)
  index_t lda;
  T* dg;  // out: d(pre-activation) (may alias a)
  index_t lddg;
  const T* dy;
  index_t lddy;
  const T* dhin;
  index_t lddhin;
  T* dhout;  // null, or 0 for active rows (GEMM adds), dhin for rows past their length
  index_t lddhout;
  const std::int64_t* len;
  index_t t;
  bool relu;
};

template <class T>
NNK_INLINE void rnn_bwd_body(RnnBwdArgs<T> p) {
  const index_t w = p.w;
  for (index_t r = 0; r < p.rows; ++r) {
    T* dg = p.dg + r * p.lddg;
    const T* dhin = p.dhin + r * p.lddhin;
    T* dhout = p.dhout != nullptr ? p.dhout + r * p.lddhout : nullptr;
    if (!row_active(p.len, r, p.t)) {
      std::fill(dg, dg + w, T(0));
      if (dhout != nullptr) {
        for (index_t j = 0; j < w; ++j) dhout[j] = dhin[j];
      }
      continue;
    }
    const T* act = p.a + r * p.lda;
    const T* dy = p.dy + r * p.lddy;
    if (p.relu) {
#pragma omp simd
      for (index_t j = 0; j < w; ++j) dg[j] = act[j] > T(0) ? dhin[j] + dy[j] : T(0);
    } else {
#pragma omp simd
      for (index_t j = 0; j < w; ++j) dg[j] = (dhin[j] + dy[j]) * (T(1) - act[j] * act[j]);
    }
    if (dhout != nullptr) std::fill(dhout, dhout + w, T(0));
  }
}
NNK_MULTIVERSION(rnn_bwd_pass, rnn_bwd_body)

template <class T>
NNK_INLINE void activation_body(T* y, const T* x, index_t n, int kind) {
  if (kind == 0) {
#pragma omp simd
    for (index_t i = 0; i < n; ++i) y[i] = vsigmoid(x[i]);
  } else {
#pragma omp simd
    for (index_t i = 0; i < n; ++i) y[i] = vtanh(x[i]);
  }
}
NNK_MULTIVERSION(activation_pass, activation_body)

inline index_t cell_min_rows(index_t H) { return std::max<index_t>(1, 8192 / std::max<index_t>(H, 1)); }

template <class T>
struct RnnWs {
  WsHeader* hdr;
  std::int64_t* lengths;
  T* wih;    // [H, F] (B of dX)
  T* wihp;   // W_ih^T packed [F, H] (B of the input projection)
  T* whhp;   // W_hh^T packed for step_gemm [H, H]
  T* bias;   // [H] b_ih + b_hh
  T* gates;  // [TN, H] activations (forward), pre-activation gradients (after backward)
  T* hprev;  // [TN, H]
};

template <class T>
RnnWs<T> rnn_ws(T* ws, const SeqDims& d, index_t* total = nullptr) {
  WsLayoutBuilder b(sizeof(T));
  const index_t H = d.H, TN = d.T * d.N;
  const index_t o_hdr = b.add(64 / sizeof(T));
  const index_t o_len = b.add((d.N * 8 + sizeof(T) - 1) / sizeof(T));
  const index_t o_wih = b.add(H * d.F);
  const index_t o_wihp = b.add(packed_size(d.F, H));
  const index_t o_whhp = b.add(packed_size(H, H));
  const index_t o_b = b.add(H);
  const index_t o_g = b.add(TN * H);
  const index_t o_hp = b.add(TN * H);
  if (total != nullptr) *total = b.total;
  RnnWs<T> w{};
  if (ws == nullptr) return w;
  w.hdr = reinterpret_cast<WsHeader*>(ws + o_hdr);
  w.lengths = reinterpret_cast<std::int64_t*>(ws + o_len);
  w.wih = ws + o_wih;
  w.wihp = ws + o_wihp;
  w.whhp = ws + o_whhp;
  w.bias = ws + o_b;
  w.gates = ws + o_g;
  w.hprev = ws + o_hp;
  return w;
}

}  // namespace
}  // namespace rnn

using namespace rnn;

template <class T>
void rnn_activation(T* y, const T* x, index_t n, int kind) {
  parallel_for(n, 16384, [&](index_t b, index_t e) { activation_pass(y + b, x + b, e - b, kind); });
}

template <class T>
void rnn_cell_forward(T* h1, T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                      const T* b_hh, index_t N, index_t F, index_t H, bool relu) {
  const index_t ldf = std::max<index_t>(F, 1);
  if (N <= 0 || H <= 0) return;
  gemm<T>(false, true, N, H, F, T(1), x, ldf, w_ih, ldf, T(0), ws, H);
  if (h0 != nullptr) gemm<T>(false, true, N, H, H, T(1), h0, H, w_hh, H, T(1), ws, H);
  T* zeros = zeros_scratch<T>(H);
  T* bias = zeros;
  if (b_ih != nullptr || b_hh != nullptr) {
    bias = scratch<T>(kSlotBias, H);
    for (index_t j = 0; j < H; ++j) bias[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
  }
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        RnnFwdArgs<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.g = ws + r0 * H;
        a.ldg = H;
        a.bias = bias;
        a.hp = zeros;  // only read for rows past their length (none in a cell)
        a.ldhp = 0;
        a.hn = h1 + r0 * H;
        a.ldhn = H;
        a.relu = relu;
        rnn_fwd_pass(a);
      },
      1);
}

template <class T>
void rnn_cell_backward(T* dx, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih, GradOut<T> db_hh,
                       const T* dh1, const T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                       index_t N, index_t F, index_t H, bool relu) {
  const index_t ldf = std::max<index_t>(F, 1);
  T* dG = scratch<T>(kSlotGrad, std::max<index_t>(N * H, 1));
  T* zeros = zeros_scratch<T>(H);
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        RnnBwdArgs<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.a = ws + r0 * H;
        a.lda = H;
        a.dg = dG + r0 * H;
        a.lddg = H;
        a.dy = zeros;
        a.lddy = 0;
        a.dhin = dh1 != nullptr ? dh1 + r0 * H : zeros;
        a.lddhin = dh1 != nullptr ? H : 0;
        a.relu = relu;
        rnn_bwd_pass(a);
      },
      1);
  if (dx != nullptr) gemm<T>(false, false, N, F, H, T(1), dG, H, w_ih, ldf, T(0), dx, ldf);
  if (dh0 != nullptr) gemm<T>(false, false, N, H, H, T(1), dG, H, w_hh, H, T(0), dh0, H);
  weight_grads_direct(dw_ih, dw_hh, db_ih, db_hh, dG, H, N, H, x, F, h0, H);
}

template <class T>
index_t rnn_seq_ws_size(const SeqDims& d) {
  index_t total = 0;
  rnn_ws<T>(nullptr, d, &total);
  return total;
}

template <class T>
void rnn_seq_forward(T* y, index_t ldy, T* h_n, T* ws, const T* x, const T* h0, const T* w_ih,
                     const T* w_hh, const T* b_ih, const T* b_hh, const std::int64_t* lengths,
                     const SeqDims& d) {
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, TN = Tn * N;
  const bool relu = d.variant == 1;
  RnnWs<T> w = rnn_ws(ws, d);
  *w.hdr = WsHeader{kWsMagicRnn, Tn, N, F, H, header_flags(d, lengths != nullptr),
                    static_cast<std::int64_t>(sizeof(T)), 0};
  if (lengths != nullptr && N > 0) std::memcpy(w.lengths, lengths, static_cast<std::size_t>(N) * 8);
  const std::int64_t* len = lengths != nullptr ? w.lengths : nullptr;
  if (H * F > 0) std::memcpy(w.wih, w_ih, static_cast<std::size_t>(H * F) * sizeof(T));
  packed_zero_tail(w.whhp, H, H);
  pack_transposed(w.whhp, H, 0, w_hh, H, H, H);
  packed_zero_tail(w.wihp, F, H);
  pack_transposed(w.wihp, F, 0, w_ih, F, H, F);
  for (index_t j = 0; j < H; ++j) w.bias[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
  rnn_gemm<T>(TN, H, F, MatA<T>{x, F, 1}, packed_b(w.wihp, F), w.gates, H, false);

  const SlicePlan p = make_plan(N, H, 1, 2.0 * N * H * H);
  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldh = rn * H, ldyy = rn * ldy;
  if (Tn == 0) {
    copy_rows(h_n, H, h0, H, N, H);
    w.hdr->complete = 1;
    return;
  }
  const index_t first = d.reverse ? Tn - 1 : 0;
  copy_rows(w.hprev + si.step_row(first) * H, ldh, h0, H, N, H);
  auto step = [&](index_t k, int, index_t item) {
    const index_t t = d.reverse ? Tn - 1 - k : k;
    const index_t rb = item / p.S, s = item % p.S;
    const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
    const index_t row_t = si.step_row(t) + r0 * rn;
    const T* hpt = w.hprev + row_t * H;
    T* gt = w.gates + row_t * H + u0;
    step_gemm<T>(rows, wd, H, MatA<T>{hpt, ldh, 1}, packed_b(w.whhp, H), u0, gt, ldh, true);
    RnnFwdArgs<T> a{};
    a.rows = rows;
    a.w = wd;
    a.g = gt;
    a.ldg = ldh;
    a.bias = w.bias + u0;
    a.hp = hpt + u0;
    a.ldhp = ldh;
    if (k == Tn - 1) {
      a.hn = h_n + r0 * H + u0;
      a.ldhn = H;
    } else {
      const index_t next = d.reverse ? t - 1 : t + 1;
      a.hn = w.hprev + (si.step_row(next) + r0 * rn) * H + u0;
      a.ldhn = ldh;
    }
    a.y = y + row_t * ldy + u0;
    a.ldy = ldyy;
    a.len = len != nullptr ? len + r0 : nullptr;
    a.t = t;
    a.relu = relu;
    rnn_fwd_pass(a);
  };
  run_steps(Tn, 1, p, step, 0x1);
  w.hdr->complete = 1;
}

template <class T>
void rnn_seq_backward(T* dx, bool dx_accumulate, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                      GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n, T* ws,
                      const T* x) {
  const WsHeader hdr = *reinterpret_cast<const WsHeader*>(ws);
  const SeqDims d = dims_from_header(hdr);
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, TN = Tn * N;
  const bool relu = d.variant == 1;
  RnnWs<T> w = rnn_ws(ws, d);
  const std::int64_t* len = (hdr.flags & kFlagLengths) ? w.lengths : nullptr;
  const SlicePlan p = make_plan(N, H, 1, 2.0 * N * H * H);
  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldh = rn * H, ldyy = rn * ldy;
  T* zeros = zeros_scratch<T>(H);
  copy_rows(dh0, H, dh_n, H, N, H);
  T* whhb = scratch<T>(kSlotWeights, std::max<index_t>(packed_size(H, H), 1));
  pack_backward_from_forward(whhb, w.whhp, H, H);
  auto step = [&](index_t kk, int phase, index_t item) {
    const index_t k = Tn - 1 - kk;
    const index_t t = d.reverse ? Tn - 1 - k : k;
    const index_t rb = item / p.S, s = item % p.S;
    const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
    const index_t row_t = si.step_row(t) + r0 * rn;
    if (phase == 0) {
      RnnBwdArgs<T> a{};
      a.rows = rows;
      a.w = wd;
      a.a = w.gates + row_t * H + u0;
      a.lda = ldh;
      a.dg = w.gates + row_t * H + u0;
      a.lddg = ldh;
      a.dy = dy != nullptr ? dy + row_t * ldy + u0 : zeros;
      a.lddy = dy != nullptr ? ldyy : 0;
      a.dhin = a.dhout = dh0 + r0 * H + u0;
      a.lddhin = a.lddhout = H;
      a.len = len != nullptr ? len + r0 : nullptr;
      a.t = t;
      a.relu = relu;
      rnn_bwd_pass(a);
    } else {
      step_gemm<T>(rows, wd, H, MatA<T>{w.gates + row_t * H, ldh, 1}, packed_b(whhb, H), u0, dh0 + r0 * H + u0, H,
                   true);
    }
  };
  run_steps(Tn, 2, p, step, 0x1);
  T* gw = scratch<T>(kSlotGrad, std::max<index_t>(H * (F + H), 1));
  seq_weight_grads(dw_ih, dw_hh, w.gates, TN, x, w.hprev, F, p, gw);  // G = 1: no permutation
  weight_grads_direct(GradOut<T>{}, GradOut<T>{}, db_ih, db_hh, w.gates, H, TN, H, x, F, w.hprev, H);
  if (dx != nullptr) {
    gemm<T>(false, false, TN, F, H, T(1), w.gates, H, w.wih, std::max<index_t>(F, 1), dx_accumulate ? T(1) : T(0),
            dx, std::max<index_t>(F, 1));
  }
  w.hdr->complete = 2;
}

#define NNK_INSTANTIATE_RNN(T)                                                                          \
  template void rnn_activation<T>(T*, const T*, index_t, int);                                           \
  template void rnn_cell_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,  \
                                    index_t, index_t, index_t, bool);                                    \
  template void rnn_cell_backward<T>(T*, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>, const T*,   \
                                     const T*, const T*, const T*, const T*, const T*, index_t, index_t, \
                                     index_t, bool);                                                     \
  template index_t rnn_seq_ws_size<T>(const SeqDims&);                                                   \
  template void rnn_seq_forward<T>(T*, index_t, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                   const T*, const std::int64_t*, const SeqDims&);                       \
  template void rnn_seq_backward<T>(T*, bool, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>,        \
                                    const T*, index_t, const T*, T*, const T*);

NNK_INSTANTIATE_RNN(float)
NNK_INSTANTIATE_RNN(double)

}  // namespace nnkern
