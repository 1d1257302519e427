// LSTM: fused cell forward/backward and whole-sequence drivers (see rnn.h for the maths and
// layouts, rnn_common.h for the slice plan and workspace helpers).
#include <algorithm>
#include <atomic>
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

// ---------------------------------------------------------------------------------------------
// Fused gate passes. One call covers `rows` rows and `w` hidden units; gate blocks i, f, g, o of
// a row sit `gs` elements apart (gs = w in the slice-permuted sequence layout, H in a cell).

template <class T>
struct LstmFwdArgs {
  index_t rows, w, gs;
  T* g;  // [rows, ldg] pre-activations in, activated gates out
  index_t ldg;
  const T* bias;  // 4 blocks, gs apart (b_ih + b_hh, or zeros)
  const T* hp;    // h_{t-1} (carried by rows past their length)
  index_t ldhp;
  const T* cp;  // c_{t-1}
  index_t ldcp;
  T* tc;  // tanh(c_t)
  index_t ldtc;
  T* hn;  // h_t
  index_t ldhn;
  T* cn;  // c_t
  index_t ldcn;
  T* y;  // output h_t (null: none)
  index_t ldy;
  const std::int64_t* len;  // row r is active iff len == null || t < len[r]
  index_t t;
};

// The cell half of the forward pass for one row: c = f c_prev + i g, tanh(c), h = o tanh(c),
// from the activated gates (4 blocks gs apart); h also into y when kY.
template <bool kY, class T>
NNK_INLINE void lstm_cell_row(T* NNK_RESTRICT y, T* NNK_RESTRICT hn, T* NNK_RESTRICT cn, T* NNK_RESTRICT tc,
                              const T* NNK_RESTRICT g, const T* NNK_RESTRICT cp, index_t w, index_t gs) {
#pragma omp simd
  for (index_t j = 0; j < w; ++j) {
    const T c = g[gs + j] * cp[j] + g[j] * g[2 * gs + j];
    const T th = vtanh(c);
    const T h = g[3 * gs + j] * th;
    tc[j] = th;
    cn[j] = c;
    hn[j] = h;
    if constexpr (kY) y[j] = h;
  }
}

template <class T>
NNK_INLINE void lstm_fwd_body(LstmFwdArgs<T> a) {
  const index_t w = a.w, gs = a.gs;
  for (index_t r = 0; r < a.rows; ++r) {
    T* g = a.g + r * a.ldg;
    const T* hp = a.hp + r * a.ldhp;
    const T* cp = a.cp + r * a.ldcp;
    T* hn = a.hn + r * a.ldhn;
    T* cn = a.cn + r * a.ldcn;
    T* y = a.y != nullptr ? a.y + r * a.ldy : nullptr;
    if (!row_active(a.len, r, a.t)) {
      // Past this row's length: the state is carried unchanged and the output is zero.
      for (index_t j = 0; j < w; ++j) {
        hn[j] = hp[j];
        cn[j] = cp[j];
      }
      if (y != nullptr) std::fill(y, y + w, T(0));
      continue;
    }
    T* NNK_RESTRICT tc = a.tc + r * a.ldtc;
    const T* NNK_RESTRICT b = a.bias;
    // Two loops: the four gates (one division for all of them, inverse4), then c, tanh(c) (a
    // second division) and h. One loop with both chains measured ~20% slower (AVX2): its long
    // dependent tail kept the out-of-order window from overlapping the next gate exps.
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      T ni, di, nf, df, ng, dg, no, dn;
      sigmoid_parts(g[j] + b[j], &ni, &di);
      sigmoid_parts(g[gs + j] + b[gs + j], &nf, &df);
      tanh_parts(g[2 * gs + j] + b[2 * gs + j], &ng, &dg);
      sigmoid_parts(g[3 * gs + j] + b[3 * gs + j], &no, &dn);
      T ri, rf, rg, ro;
      inverse4(di, df, dg, dn, &ri, &rf, &rg, &ro);
      g[j] = ni * ri;
      g[gs + j] = nf * rf;
      g[2 * gs + j] = ng * rg;
      g[3 * gs + j] = no * ro;
    }
    if (y != nullptr) lstm_cell_row<true>(y, hn, cn, tc, g, cp, w, gs);
    else lstm_cell_row<false>(y, hn, cn, tc, g, cp, w, gs);
  }
}
NNK_MULTIVERSION(lstm_fwd_pass, lstm_fwd_body)

template <class T>
struct LstmBwdArgs {
  index_t rows, w, gs;
  const T* g;  // activated gates (4 blocks gs apart)
  index_t ldg;
  T* dg;  // gate pre-activation gradients out (may be g itself)
  index_t lddg;
  const T* tc;  // tanh(c_t)
  index_t ldtc;
  const T* cp;  // c_{t-1}
  index_t ldcp;
  const T* dy;  // gradient of the output h_t (ld 0 zero row when absent)
  index_t lddy;
  const T* dhin;  // gradient of h_t from later steps
  index_t lddhin;
  const T* dcin;  // gradient of c_t from later steps
  index_t lddcin;
  T* dhout;  // null, or: 0 for active rows (the recurrent GEMM adds dG W_hh), dhin for others
  index_t lddhout;
  T* dcout;  // gradient of c_{t-1}
  index_t lddcout;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void lstm_bwd_body(LstmBwdArgs<T> a) {
  const index_t w = a.w, gs = a.gs;
  for (index_t r = 0; r < a.rows; ++r) {
    const T* g = a.g + r * a.ldg;
    T* dg = a.dg + r * a.lddg;
    const T* dhin = a.dhin + r * a.lddhin;
    const T* dcin = a.dcin + r * a.lddcin;
    T* dcout = a.dcout + r * a.lddcout;
    T* dhout = a.dhout != nullptr ? a.dhout + r * a.lddhout : nullptr;
    if (!row_active(a.len, r, a.t)) {
      // The state was carried through this step: so is its gradient; no gate gradient.
      for (index_t k = 0; k < 4; ++k) std::fill(dg + k * gs, dg + k * gs + w, T(0));
      for (index_t j = 0; j < w; ++j) dcout[j] = dcin[j];
      if (dhout != nullptr) {
        for (index_t j = 0; j < w; ++j) dhout[j] = dhin[j];
      }
      continue;
    }
    const T* tc = a.tc + r * a.ldtc;
    const T* cp = a.cp + r * a.ldcp;
    const T* dy = a.dy + r * a.lddy;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      const T i = g[j], f = g[gs + j], gg = g[2 * gs + j], o = g[3 * gs + j];
      const T th = tc[j];
      const T dh = dhin[j] + dy[j];
      const T dc = dcin[j] + dh * o * (T(1) - th * th);
      dg[j] = dc * gg * i * (T(1) - i);
      dg[gs + j] = dc * cp[j] * f * (T(1) - f);
      dg[2 * gs + j] = dc * i * (T(1) - gg * gg);
      dg[3 * gs + j] = dh * th * o * (T(1) - o);
      dcout[j] = dc * f;
    }
    if (dhout != nullptr) std::fill(dhout, dhout + w, T(0));
  }
}
NNK_MULTIVERSION(lstm_bwd_pass, lstm_bwd_body)

// Rows per thread for a cell's gate pass (~8K units of work per thread before splitting).
inline index_t cell_min_rows(index_t H) { return std::max<index_t>(1, 8192 / std::max<index_t>(H, 1)); }

// ---------------------------------------------------------------------------------------------
// Sequence workspace.

template <class T>
struct LstmWs {
  WsHeader* hdr;
  std::int64_t* lengths;
  T* wih;    // [4H, F] slice-permuted (B of dX = dG W_ih')
  T* wihp;   // W_ih'^T packed: [F rows, 4H columns] (B of the input projection)
  T* whhp;   // W_hh'^T packed for step_gemm: [H rows, 4H columns] (slice-permuted columns)
  T* bias;   // [4H] b_ih + b_hh, slice-permuted
  T* gates;  // [TN, 4H] activated gates (forward), gate gradients (after backward)
  T* hprev;  // [TN, H] h_{t-1} of each step
  T* cprev;  // [TN, H] c_{t-1}
  T* tanhc;  // [TN, H] tanh(c_t)
};

template <class T>
LstmWs<T> lstm_ws(T* ws, const SeqDims& d, index_t* total = nullptr) {
  WsLayoutBuilder b(sizeof(T));
  const index_t H = d.H, TN = d.T * d.N;
  const index_t o_hdr = b.add(64 / sizeof(T));
  const index_t o_len = b.add((d.N * 8 + sizeof(T) - 1) / sizeof(T));
  const index_t o_wih = b.add(4 * H * d.F);
  const index_t o_wihp = b.add(packed_size(d.F, 4 * H));
  const index_t o_whhp = b.add(packed_size(H, 4 * H));
  const index_t o_b = b.add(4 * H);
  const index_t o_g = b.add(TN * 4 * H);
  const index_t o_hp = b.add(TN * H);
  const index_t o_cp = b.add(TN * H);
  const index_t o_tc = b.add(TN * H);
  if (total != nullptr) *total = b.total;
  LstmWs<T> w{};
  if (ws == nullptr) return w;
  w.hdr = reinterpret_cast<WsHeader*>(ws + o_hdr);
  w.lengths = reinterpret_cast<std::int64_t*>(ws + o_len);
  w.wih = ws + o_wih;
  w.wihp = ws + o_wihp;
  w.whhp = ws + o_whhp;
  w.bias = ws + o_b;
  w.gates = ws + o_g;
  w.hprev = ws + o_hp;
  w.cprev = ws + o_cp;
  w.tanhc = ws + o_tc;
  return w;
}

}  // namespace
}  // namespace rnn

using namespace rnn;

// ---------------------------------------------------------------------------------------------
// Cell

template <class T>
void lstm_cell_forward(T* h1, T* c1, T* ws, const T* x, const T* h0, const T* c0, const T* w_ih,
                       const T* w_hh, const T* b_ih, const T* b_hh, index_t N, index_t F, index_t H) {
  const index_t G4 = 4 * H, ldws = 5 * H;
  if (N <= 0 || H <= 0) return;
  // Gate pre-activations straight into ws[:, :4H]: x W_ih^T + h0 W_hh^T.
  gemm<T>(false, true, N, G4, F, T(1), x, std::max<index_t>(F, 1), w_ih, std::max<index_t>(F, 1), T(0), ws,
          ldws);
  if (h0 != nullptr) gemm<T>(false, true, N, G4, H, T(1), h0, H, w_hh, H, T(1), ws, ldws);
  T* zeros = zeros_scratch<T>(G4);
  T* bias = zeros;
  if (b_ih != nullptr || b_hh != nullptr) {
    bias = scratch<T>(kSlotBias, G4);
    for (index_t j = 0; j < G4; ++j) bias[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
  }
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        LstmFwdArgs<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.gs = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.bias = bias;
        a.hp = h0 != nullptr ? h0 + r0 * H : zeros;
        a.ldhp = h0 != nullptr ? H : 0;
        a.cp = c0 != nullptr ? c0 + r0 * H : zeros;
        a.ldcp = c0 != nullptr ? H : 0;
        a.tc = ws + r0 * ldws + G4;
        a.ldtc = ldws;
        a.hn = h1 + r0 * H;
        a.ldhn = H;
        a.cn = c1 + r0 * H;
        a.ldcn = H;
        a.y = nullptr;
        a.len = nullptr;
        lstm_fwd_pass(a);
      },
      1);
}

template <class T>
void lstm_cell_backward(T* dx, T* dh0, T* dc0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih,
                        GradOut<T> db_hh, const T* dh1, const T* dc1, const T* ws, const T* x, const T* h0,
                        const T* c0, const T* w_ih, const T* w_hh, index_t N, index_t F, index_t H) {
  const index_t G4 = 4 * H, ldws = 5 * H;
  T* dG = scratch<T>(kSlotGrad, std::max<index_t>(N * G4, 1));
  T* zeros = zeros_scratch<T>(H);
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        LstmBwdArgs<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.gs = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.dg = dG + r0 * G4;
        a.lddg = G4;
        a.tc = ws + r0 * ldws + G4;
        a.ldtc = ldws;
        a.cp = c0 != nullptr ? c0 + r0 * H : zeros;
        a.ldcp = c0 != nullptr ? H : 0;
        a.dy = zeros;
        a.lddy = 0;
        a.dhin = dh1 != nullptr ? dh1 + r0 * H : zeros;
        a.lddhin = dh1 != nullptr ? H : 0;
        a.dcin = dc1 != nullptr ? dc1 + r0 * H : zeros;
        a.lddcin = dc1 != nullptr ? H : 0;
        a.dhout = nullptr;
        a.dcout = dc0 + r0 * H;
        a.lddcout = H;
        a.len = nullptr;
        lstm_bwd_pass(a);
      },
      1);
  if (dx != nullptr) {
    gemm<T>(false, false, N, F, G4, T(1), dG, G4, w_ih, std::max<index_t>(F, 1), T(0), dx,
            std::max<index_t>(F, 1));
  }
  if (dh0 != nullptr) gemm<T>(false, false, N, H, G4, T(1), dG, G4, w_hh, H, T(0), dh0, H);
  weight_grads_direct(dw_ih, dw_hh, db_ih, db_hh, dG, G4, N, G4, x, F, h0, H);
}

// ---------------------------------------------------------------------------------------------
// Sequence

template <class T>
index_t lstm_seq_ws_size(const SeqDims& d) {
  index_t total = 0;
  lstm_ws<T>(nullptr, d, &total);
  return total;
}

template <class T>
void lstm_seq_forward(T* y, index_t ldy, T* h_n, T* c_n, T* ws, const T* x, const T* h0, const T* c0,
                      const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                      const std::int64_t* lengths, const SeqDims& d) {
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, GH = 4 * H, TN = Tn * N;
  LstmWs<T> w = lstm_ws(ws, d);
  *w.hdr = WsHeader{kWsMagicLstm, Tn, N, F, H, header_flags(d, lengths != nullptr),
                    static_cast<std::int64_t>(sizeof(T)), 0};
  if (lengths != nullptr && N > 0) std::memcpy(w.lengths, lengths, static_cast<std::size_t>(N) * 8);
  const std::int64_t* len = lengths != nullptr ? w.lengths : nullptr;

  const SlicePlan p = make_plan(N, H, 4, 2.0 * N * GH * H);
  permute_gate_rows(w.wih, w_ih, p, F);
  pack_step_weights(w.wihp, w_ih, p, F);
  pack_step_weights(w.whhp, w_hh, p, H);
  {
    T* b = scratch<T>(kSlotBias, std::max<index_t>(GH, 1));
    for (index_t j = 0; j < GH; ++j) b[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
    permute_gate_rows(w.bias, b, p, 1);
  }
  // Input projection of every step at once.
  rnn_gemm<T>(TN, GH, F, MatA<T>{x, F, 1}, packed_b(w.wihp, F), w.gates, GH, false);

  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldg = rn * GH, ldh = rn * H, ldyy = rn * ldy;
  if (Tn == 0) {
    copy_rows(h_n, H, h0, H, N, H);
    copy_rows(c_n, H, c0, H, N, H);
    w.hdr->complete = 1;
    return;
  }
  const index_t first = d.reverse ? Tn - 1 : 0;
  copy_rows(w.hprev + si.step_row(first) * H, ldh, h0, H, N, H);
  copy_rows(w.cprev + si.step_row(first) * H, ldh, c0, H, N, H);

  auto step = [&](index_t k, int /*phase*/, index_t item) {
    const index_t t = d.reverse ? Tn - 1 - k : k;
    const index_t next = d.reverse ? t - 1 : t + 1;
    const bool last = k == Tn - 1;
    const index_t rb = item / p.S, s = item % p.S;
    const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
    const index_t row_t = si.step_row(t) + r0 * rn;
    T* gt = w.gates + row_t * GH + 4 * u0;
    const T* hpt = w.hprev + row_t * H;
    // This item's gates += h_{t-1} W_hh'^T (its slice's 4 gate blocks are contiguous columns).
    step_gemm<T>(rows, 4 * wd, H, MatA<T>{hpt, ldh, 1}, packed_b(w.whhp, H), 4 * u0, gt, ldg, true);
    LstmFwdArgs<T> a{};
    a.rows = rows;
    a.w = wd;
    a.gs = wd;
    a.g = gt;
    a.ldg = ldg;
    a.bias = w.bias + 4 * u0;
    a.hp = hpt + u0;
    a.ldhp = ldh;
    a.cp = w.cprev + row_t * H + u0;
    a.ldcp = ldh;
    a.tc = w.tanhc + row_t * H + u0;
    a.ldtc = ldh;
    if (!last) {
      const index_t row_n = si.step_row(next) + r0 * rn;
      a.hn = w.hprev + row_n * H + u0;
      a.cn = w.cprev + row_n * H + u0;
      a.ldhn = a.ldcn = ldh;
    } else {
      a.hn = h_n + r0 * H + u0;
      a.cn = c_n + r0 * H + u0;
      a.ldhn = a.ldcn = H;
    }
    a.y = y + row_t * ldy + u0;
    a.ldy = ldyy;
    a.len = len != nullptr ? len + r0 : nullptr;
    a.t = t;
    lstm_fwd_pass(a);
  };
  run_steps(Tn, 1, p, step, 0x1);
  w.hdr->complete = 1;
}

template <class T>
void lstm_seq_backward(T* dx, bool dx_accumulate, T* dh0, T* dc0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                       GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n,
                       const T* dc_n, T* ws, const T* x) {
  const WsHeader hdr = *reinterpret_cast<const WsHeader*>(ws);
  const SeqDims d = dims_from_header(hdr);
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, GH = 4 * H, TN = Tn * N;
  LstmWs<T> w = lstm_ws(ws, d);
  const std::int64_t* len = (hdr.flags & kFlagLengths) ? w.lengths : nullptr;
  const SlicePlan p = make_plan(N, H, 4, 2.0 * N * GH * H);
  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldg = rn * GH, ldh = rn * H, ldyy = rn * ldy;
  T* zeros = zeros_scratch<T>(H);

  // dh0/dc0 carry the state gradients through the loop (they end as the initial-state grads).
  copy_rows(dh0, H, dh_n, H, N, H);
  copy_rows(dc0, H, dc_n, H, N, H);
  // W_hh' [4H, H] (slice-permuted) back from the transposed copy: dh = dG W_hh' per slice.
  T* whhb = scratch<T>(kSlotWeights, std::max<index_t>(packed_size(GH, H), 1));
  pack_backward_from_forward(whhb, w.whhp, H, GH);

  auto step = [&](index_t kk, int phase, index_t item) {
    const index_t k = Tn - 1 - kk;  // forward processing index, run backwards
    const index_t t = d.reverse ? Tn - 1 - k : k;
    const index_t rb = item / p.S, s = item % p.S;
    const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
    const index_t row_t = si.step_row(t) + r0 * rn;
    if (phase == 0) {
      LstmBwdArgs<T> a{};
      a.rows = rows;
      a.w = wd;
      a.gs = wd;
      a.g = w.gates + row_t * GH + 4 * u0;
      a.ldg = ldg;
      a.dg = w.gates + row_t * GH + 4 * u0;
      a.lddg = ldg;
      a.tc = w.tanhc + row_t * H + u0;
      a.ldtc = ldh;
      a.cp = w.cprev + row_t * H + u0;
      a.ldcp = ldh;
      a.dy = dy != nullptr ? dy + row_t * ldy + u0 : zeros;
      a.lddy = dy != nullptr ? ldyy : 0;
      a.dhin = a.dhout = dh0 + r0 * H + u0;
      a.lddhin = a.lddhout = H;
      a.dcin = a.dcout = dc0 + r0 * H + u0;
      a.lddcin = a.lddcout = H;
      a.len = len != nullptr ? len + r0 : nullptr;
      a.t = t;
      lstm_bwd_pass(a);
    } else {
      // dh_{t-1}[rows, slice] += dG_t[rows, :] W_hh'[:, slice]  (needs every slice's dG: barrier)
      step_gemm<T>(rows, wd, GH, MatA<T>{w.gates + row_t * GH, ldg, 1}, packed_b(whhb, GH), u0, dh0 + r0 * H + u0,
                   H, true);
    }
  };
  run_steps(Tn, 2, p, step, 0x1);

  // Weight gradients over all steps at once, in the permuted layout, then un-permuted.
  T* gw = scratch<T>(kSlotGrad, std::max<index_t>(GH * (F + H + 1), 1));
  T* gb = gw + GH * (F + H);
  seq_weight_grads(dw_ih, dw_hh, w.gates, TN, x, w.hprev, F, p, gw);
  if (db_ih.p != nullptr || db_hh.p != nullptr) {
    column_sum(gb, false, w.gates, TN, GH, GH);
    if (db_ih.p != nullptr) unpermute_gate_rows(db_ih.p, db_ih.accumulate, gb, p, 1);
    if (db_hh.p != nullptr) unpermute_gate_rows(db_hh.p, db_hh.accumulate, gb, p, 1);
  }
  if (dx != nullptr) {
    gemm<T>(false, false, TN, F, GH, T(1), w.gates, GH, w.wih, std::max<index_t>(F, 1),
            dx_accumulate ? T(1) : T(0), dx, std::max<index_t>(F, 1));
  }
  w.hdr->complete = 2;  // the saved gates now hold gradients: a second backward must be refused
}

#define NNK_INSTANTIATE_LSTM(T)                                                                        \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,       \
                                     const T*, const T*, index_t, index_t, index_t);                     \
  template void lstm_cell_backward<T>(T*, T*, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>,        \
                                      const T*, const T*, const T*, const T*, const T*, const T*,        \
                                      const T*, const T*, index_t, index_t, index_t);                    \
  template index_t lstm_seq_ws_size<T>(const SeqDims&);                                                  \
  template void lstm_seq_forward<T>(T*, index_t, T*, T*, T*, const T*, const T*, const T*, const T*,     \
                                    const T*, const T*, const T*, const std::int64_t*, const SeqDims&);  \
  template void lstm_seq_backward<T>(T*, bool, T*, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>,   \
                                     const T*, index_t, const T*, const T*, T*, const T*);

NNK_INSTANTIATE_LSTM(float)
NNK_INSTANTIATE_LSTM(double)

}  // namespace nnkern
