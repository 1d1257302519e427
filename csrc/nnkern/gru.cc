// GRU: fused cell forward/backward and whole-sequence drivers, in torch's form (reset applied to
// W_hn h + b_hn, after the recurrent matmul) and in the Cho 2014 form (reset applied to h before
// the matmul). See rnn.h for the maths and layouts.
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

// ---------------------------------------------------------------------------------------------
// torch form. Gate blocks r, z, n of a row sit `gs` apart (w in the slice-permuted sequence
// layout, H in a cell); gh (h W_hh^T, no bias) and the biases use the same block stride.

template <class T>
struct GruFwdArgs {
  index_t rows, w, gs;
  T* g;  // x W_ih^T pre-activations in; r, z, n out
  index_t ldg;
  const T* gh;  // h_{t-1} W_hh^T
  index_t ldgh;
  const T* bi;  // b_ih (or zeros)
  const T* bh;  // b_hh (or zeros)
  T* ghn;       // out: W_hn h_{t-1} + b_hn (backward needs it)
  index_t ldghn;
  const T* hp;
  index_t ldhp;
  T* hn;
  index_t ldhn;
  T* y;
  index_t ldy;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void gru_fwd_body(GruFwdArgs<T> a) {
  const index_t w = a.w, gs = a.gs;
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
    const T* gh = a.gh + r * a.ldgh;
    T* ghn = a.ghn + r * a.ldghn;
    const T* bi = a.bi;
    const T* bh = a.bh;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      T nr, dr, nz, dz, ir, iz;
      sigmoid_parts((g[j] + bi[j]) + (gh[j] + bh[j]), &nr, &dr);
      sigmoid_parts((g[gs + j] + bi[gs + j]) + (gh[gs + j] + bh[gs + j]), &nz, &dz);
      inverse2(dr, dz, &ir, &iz);  // r and z with one division
      const T rr = nr * ir, z = nz * iz;
      const T hn_lin = gh[2 * gs + j] + bh[2 * gs + j];
      const T n = vtanh(g[2 * gs + j] + bi[2 * gs + j] + rr * hn_lin);
      g[j] = rr;
      g[gs + j] = z;
      g[2 * gs + j] = n;
      ghn[j] = hn_lin;
      hn[j] = n + z * (hp[j] - n);
    }
    if (y != nullptr) std::memcpy(y, hn, static_cast<std::size_t>(w) * sizeof(T));
  }
}
NNK_MULTIVERSION(gru_fwd_pass, gru_fwd_body)

template <class T>
struct GruBwdArgs {
  index_t rows, w, gs;
  const T* g;  // r, z, n
  index_t ldg;
  const T* ghn;  // W_hn h + b_hn
  index_t ldghn;
  const T* hp;
  index_t ldhp;
  const T* dy;
  index_t lddy;
  const T* dhin;
  index_t lddhin;
  T* d;  // out: d(pre r), d(pre z) and d(W_hn h + b_hn) = dan * r, at the offsets below
  index_t ldd;
  index_t off_r, off_z, off_nh;
  T* dni;  // out: d(pre n) = dan (the input-side n gradient)
  index_t lddni;
  T* dhout;  // out: dh * z (the recurrent GEMM adds the rest); rows past their length: dhin
  index_t lddhout;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void gru_bwd_body(GruBwdArgs<T> a) {
  const index_t w = a.w, gs = a.gs;
  for (index_t r = 0; r < a.rows; ++r) {
    T* d = a.d + r * a.ldd;
    T* dni = a.dni + r * a.lddni;
    const T* dhin = a.dhin + r * a.lddhin;
    T* dhout = a.dhout + r * a.lddhout;
    if (!row_active(a.len, r, a.t)) {
      std::fill(d + a.off_r, d + a.off_r + w, T(0));
      std::fill(d + a.off_z, d + a.off_z + w, T(0));
      std::fill(d + a.off_nh, d + a.off_nh + w, T(0));
      std::fill(dni, dni + w, T(0));
      for (index_t j = 0; j < w; ++j) dhout[j] = dhin[j];
      continue;
    }
    const T* g = a.g + r * a.ldg;
    const T* ghn = a.ghn + r * a.ldghn;
    const T* hp = a.hp + r * a.ldhp;
    const T* dy = a.dy + r * a.lddy;
    const index_t orr = a.off_r, oz = a.off_z, onh = a.off_nh;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      const T rr = g[j], z = g[gs + j], n = g[2 * gs + j];
      const T dh = dhin[j] + dy[j];
      const T dan = dh * (T(1) - z) * (T(1) - n * n);
      const T dz = dh * (hp[j] - n);
      const T hl = ghn[j];
      d[orr + j] = dan * hl * rr * (T(1) - rr);
      d[oz + j] = dz * z * (T(1) - z);
      d[onh + j] = dan * rr;
      dni[j] = dan;
      dhout[j] = dh * z;
    }
  }
}
NNK_MULTIVERSION(gru_bwd_pass, gru_bwd_body)

// ---------------------------------------------------------------------------------------------
// Cho 2014 form: two passes per step, around the matmul of r*h.

template <class T>
struct ChoFwd1Args {  // r, z and r*h
  index_t rows, w, gs;
  T* g;  // pre-activations of r, z in; r, z out
  index_t ldg;
  const T* bias;  // b_ih + b_hh
  const T* hp;
  index_t ldhp;
  T* rh;  // out: r * h_{t-1} (zero for rows past their length: keeps later GEMMs finite)
  index_t ldrh;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void cho_fwd1_body(ChoFwd1Args<T> a) {
  const index_t w = a.w, gs = a.gs;
  for (index_t r = 0; r < a.rows; ++r) {
    T* rh = a.rh + r * a.ldrh;
    if (!row_active(a.len, r, a.t)) {
      std::fill(rh, rh + w, T(0));
      continue;
    }
    T* g = a.g + r * a.ldg;
    const T* hp = a.hp + r * a.ldhp;
    const T* b = a.bias;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      T nr, dr, nz, dz, ir, iz;
      sigmoid_parts(g[j] + b[j], &nr, &dr);
      sigmoid_parts(g[gs + j] + b[gs + j], &nz, &dz);
      inverse2(dr, dz, &ir, &iz);
      const T rr = nr * ir, z = nz * iz;
      g[j] = rr;
      g[gs + j] = z;
      rh[j] = rr * hp[j];
    }
  }
}
NNK_MULTIVERSION(cho_fwd1_pass, cho_fwd1_body)

template <class T>
struct ChoFwd2Args {  // n and h'
  index_t rows, w, gs;
  T* g;  // z at gs (read); n pre-activation at 2gs in, n out
  index_t ldg;
  const T* bias;
  const T* hp;
  index_t ldhp;
  T* hn;
  index_t ldhn;
  T* y;
  index_t ldy;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void cho_fwd2_body(ChoFwd2Args<T> a) {
  const index_t w = a.w, gs = a.gs;
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
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      const T z = g[gs + j];
      const T n = vtanh(g[2 * gs + j] + b[2 * gs + j]);
      g[2 * gs + j] = n;
      hn[j] = n + z * (hp[j] - n);
    }
    if (y != nullptr) std::memcpy(y, hn, static_cast<std::size_t>(w) * sizeof(T));
  }
}
NNK_MULTIVERSION(cho_fwd2_pass, cho_fwd2_body)

template <class T>
struct ChoBwd1Args {  // dz, dn and the direct dh term
  index_t rows, w, gs;
  const T* g;  // r, z, n
  index_t ldg;
  const T* hp;
  index_t ldhp;
  const T* dy;
  index_t lddy;
  const T* dhin;
  index_t lddhin;
  T* d;  // out: d(pre z) at off_z, d(pre n) at off_n (and zeros at off_r for rows past length)
  index_t ldd;
  index_t off_r, off_z, off_n;
  T* dhout;  // out: dh * z; rows past their length: dhin
  index_t lddhout;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void cho_bwd1_body(ChoBwd1Args<T> a) {
  const index_t w = a.w, gs = a.gs;
  for (index_t r = 0; r < a.rows; ++r) {
    T* d = a.d + r * a.ldd;
    const T* dhin = a.dhin + r * a.lddhin;
    T* dhout = a.dhout + r * a.lddhout;
    if (!row_active(a.len, r, a.t)) {
      std::fill(d + a.off_r, d + a.off_r + w, T(0));
      std::fill(d + a.off_z, d + a.off_z + w, T(0));
      std::fill(d + a.off_n, d + a.off_n + w, T(0));
      for (index_t j = 0; j < w; ++j) dhout[j] = dhin[j];
      continue;
    }
    const T* g = a.g + r * a.ldg;
    const T* hp = a.hp + r * a.ldhp;
    const T* dy = a.dy + r * a.lddy;
    const index_t oz = a.off_z, on = a.off_n;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      const T z = g[gs + j], n = g[2 * gs + j];
      const T dh = dhin[j] + dy[j];
      const T dz = dh * (hp[j] - n);
      d[oz + j] = dz * z * (T(1) - z);
      d[on + j] = dh * (T(1) - z) * (T(1) - n * n);
      dhout[j] = dh * z;
    }
  }
}
NNK_MULTIVERSION(cho_bwd1_pass, cho_bwd1_body)

template <class T>
struct ChoBwd2Args {  // dr from d(r*h)
  index_t rows, w;
  const T* g;  // r (read before d overwrites it when they alias)
  index_t ldg;
  const T* drh;  // d(r*h) = dn_pre W_hn
  index_t lddrh;
  const T* hp;
  index_t ldhp;
  T* d;  // out: d(pre r)
  index_t ldd;
  T* dhout;  // += d(r*h) * r
  index_t lddhout;
  const std::int64_t* len;
  index_t t;
};

template <class T>
NNK_INLINE void cho_bwd2_body(ChoBwd2Args<T> a) {
  const index_t w = a.w;
  for (index_t r = 0; r < a.rows; ++r) {
    if (!row_active(a.len, r, a.t)) continue;
    const T* g = a.g + r * a.ldg;
    const T* drh = a.drh + r * a.lddrh;
    const T* hp = a.hp + r * a.ldhp;
    T* d = a.d + r * a.ldd;
    T* dhout = a.dhout + r * a.lddhout;
#pragma omp simd
    for (index_t j = 0; j < w; ++j) {
      const T rr = g[j];
      d[j] = drh[j] * hp[j] * rr * (T(1) - rr);
      dhout[j] += drh[j] * rr;
    }
  }
}
NNK_MULTIVERSION(cho_bwd2_pass, cho_bwd2_body)

inline index_t cell_min_rows(index_t H) { return std::max<index_t>(1, 8192 / std::max<index_t>(H, 1)); }

// ---------------------------------------------------------------------------------------------
// Sequence workspace (both forms).

template <class T>
struct GruWs {
  WsHeader* hdr;
  std::int64_t* lengths;
  T* wih;    // [3H, F] (torch form: slice-permuted; cho2014: as given), B of dX
  T* wihp;   // W_ih^T packed [F rows, 3H columns], B of the input projection
  T* whhp;   // W_hh^T packed for step_gemm (torch form: one [H, 3H] with slice-permuted columns;
             // cho2014: three [H, H], one per gate)
  T* bi;     // [3H] b_ih (cho2014: b_ih + b_hh)
  T* bh;     // [3H] b_hh (torch form only)
  T* gates;  // [TN, 3H] r, z, n (forward); gate gradients (after backward)
  T* aux;    // [TN, H] torch: W_hn h + b_hn, then dn_pre; cho2014: r*h
  T* hprev;  // [TN, H]
};

template <class T>
GruWs<T> gru_ws(T* ws, const SeqDims& d, index_t* total = nullptr) {
  WsLayoutBuilder b(sizeof(T));
  const index_t H = d.H, TN = d.T * d.N;
  const index_t o_hdr = b.add(64 / sizeof(T));
  const index_t o_len = b.add((d.N * 8 + sizeof(T) - 1) / sizeof(T));
  const index_t o_wih = b.add(3 * H * d.F);
  const index_t o_wihp = b.add(packed_size(d.F, 3 * H));
  const index_t o_whhp = b.add(std::max(packed_size(H, 3 * H), 3 * packed_size(H, H)));
  const index_t o_bi = b.add(3 * H);
  const index_t o_bh = b.add(3 * H);
  const index_t o_g = b.add(TN * 3 * H);
  const index_t o_aux = b.add(TN * H);
  const index_t o_hp = b.add(TN * H);
  if (total != nullptr) *total = b.total;
  GruWs<T> w{};
  if (ws == nullptr) return w;
  w.hdr = reinterpret_cast<WsHeader*>(ws + o_hdr);
  w.lengths = reinterpret_cast<std::int64_t*>(ws + o_len);
  w.wih = ws + o_wih;
  w.wihp = ws + o_wihp;
  w.whhp = ws + o_whhp;
  w.bi = ws + o_bi;
  w.bh = ws + o_bh;
  w.gates = ws + o_g;
  w.aux = ws + o_aux;
  w.hprev = ws + o_hp;
  return w;
}

}  // namespace
}  // namespace rnn

using namespace rnn;

// ---------------------------------------------------------------------------------------------
// Cells

template <class T>
void gru_cell_forward(T* h1, T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                      const T* b_hh, index_t N, index_t F, index_t H, bool cho2014) {
  const index_t G3 = 3 * H, ldws = 4 * H, ldf = std::max<index_t>(F, 1);
  if (N <= 0 || H <= 0) return;
  T* zeros = zeros_scratch<T>(G3);
  const T* hp = h0 != nullptr ? h0 : zeros;
  const index_t ldhp = h0 != nullptr ? H : 0;
  gemm<T>(false, true, N, G3, F, T(1), x, ldf, w_ih, ldf, T(0), ws, ldws);
  if (!cho2014) {
    // gh = h0 W_hh^T kept apart from x W_ih^T: n needs r * (W_hn h + b_hn).
    T* gh = zeros;
    index_t ldgh = 0;
    if (h0 != nullptr) {
      gh = scratch<T>(kSlotState, N * G3);
      ldgh = G3;
      gemm<T>(false, true, N, G3, H, T(1), h0, H, w_hh, H, T(0), gh, G3);
    }
    const T* bi = b_ih != nullptr ? b_ih : zeros;
    const T* bh = b_hh != nullptr ? b_hh : zeros;
    parallel_for(
        N, cell_min_rows(H),
        [&](index_t r0, index_t r1) {
          GruFwdArgs<T> a{};
          a.rows = r1 - r0;
          a.w = H;
          a.gs = H;
          a.g = ws + r0 * ldws;
          a.ldg = ldws;
          a.gh = gh + r0 * ldgh;
          a.ldgh = ldgh;
          a.bi = bi;
          a.bh = bh;
          a.ghn = ws + r0 * ldws + G3;
          a.ldghn = ldws;
          a.hp = hp + r0 * ldhp;
          a.ldhp = ldhp;
          a.hn = h1 + r0 * H;
          a.ldhn = H;
          gru_fwd_pass(a);
        },
        1);
    return;
  }
  // Cho 2014: r, z from x and h; then n from x and r*h.
  T* bias = zeros;
  if (b_ih != nullptr || b_hh != nullptr) {
    bias = scratch<T>(kSlotBias, G3);
    for (index_t j = 0; j < G3; ++j) bias[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
  }
  if (h0 != nullptr) gemm<T>(false, true, N, 2 * H, H, T(1), h0, H, w_hh, H, T(1), ws, ldws);
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        ChoFwd1Args<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.gs = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.bias = bias;
        a.hp = hp + r0 * ldhp;
        a.ldhp = ldhp;
        a.rh = ws + r0 * ldws + G3;
        a.ldrh = ldws;
        cho_fwd1_pass(a);
      },
      1);
  if (h0 != nullptr) {
    gemm<T>(false, true, N, H, H, T(1), ws + G3, ldws, w_hh + 2 * H * H, H, T(1), ws + 2 * H, ldws);
  }
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        ChoFwd2Args<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.gs = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.bias = bias;
        a.hp = hp + r0 * ldhp;
        a.ldhp = ldhp;
        a.hn = h1 + r0 * H;
        a.ldhn = H;
        cho_fwd2_pass(a);
      },
      1);
}

template <class T>
void gru_cell_backward(T* dx, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih, GradOut<T> db_hh,
                       const T* dh1, const T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                       index_t N, index_t F, index_t H, bool cho2014) {
  const index_t G3 = 3 * H, ldws = 4 * H, ldf = std::max<index_t>(F, 1);
  T* zeros = zeros_scratch<T>(H);
  const T* hp = h0 != nullptr ? h0 : zeros;
  const index_t ldhp = h0 != nullptr ? H : 0;
  const T* dhin = dh1 != nullptr ? dh1 : zeros;
  const index_t lddhin = dh1 != nullptr ? H : 0;
  if (!cho2014) {
    // D = [dr_pre, dz_pre, dn_pre, dn_pre * r]: columns 0..3H are the input-side gate gradients,
    // columns 0..2H plus 3H..4H the recurrent-side ones.
    const index_t ldd = 4 * H;
    T* D = scratch<T>(kSlotGrad, std::max<index_t>(N * ldd, 1));
    parallel_for(
        N, cell_min_rows(H),
        [&](index_t r0, index_t r1) {
          GruBwdArgs<T> a{};
          a.rows = r1 - r0;
          a.w = H;
          a.gs = H;
          a.g = ws + r0 * ldws;
          a.ldg = ldws;
          a.ghn = ws + r0 * ldws + G3;
          a.ldghn = ldws;
          a.hp = hp + r0 * ldhp;
          a.ldhp = ldhp;
          a.dy = zeros;
          a.lddy = 0;
          a.dhin = dhin + r0 * lddhin;
          a.lddhin = lddhin;
          a.d = D + r0 * ldd;
          a.ldd = ldd;
          a.off_r = 0;
          a.off_z = H;
          a.off_nh = 3 * H;
          a.dni = D + r0 * ldd + 2 * H;
          a.lddni = ldd;
          a.dhout = dh0 + r0 * H;
          a.lddhout = H;
          gru_bwd_pass(a);
        },
        1);
    if (dx != nullptr) gemm<T>(false, false, N, F, G3, T(1), D, ldd, w_ih, ldf, T(0), dx, ldf);
    gemm<T>(false, false, N, H, 2 * H, T(1), D, ldd, w_hh, H, T(1), dh0, H);
    gemm<T>(false, false, N, H, H, T(1), D + 3 * H, ldd, w_hh + 2 * H * H, H, T(1), dh0, H);
    if (dw_ih.p != nullptr) {
      gemm<T>(true, false, G3, F, N, T(1), D, ldd, x, ldf, dw_ih.accumulate ? T(1) : T(0), dw_ih.p, ldf);
    }
    if (dw_hh.p != nullptr) {
      if (h0 != nullptr) {
        const T beta = dw_hh.accumulate ? T(1) : T(0);
        gemm<T>(true, false, 2 * H, H, N, T(1), D, ldd, h0, H, beta, dw_hh.p, H);
        gemm<T>(true, false, H, H, N, T(1), D + 3 * H, ldd, h0, H, beta, dw_hh.p + 2 * H * H, H);
      } else if (!dw_hh.accumulate) {
        std::fill(dw_hh.p, dw_hh.p + G3 * H, T(0));
      }
    }
    if (db_ih.p != nullptr) column_sum(db_ih.p, db_ih.accumulate, D, N, G3, ldd);
    if (db_hh.p != nullptr) {
      column_sum(db_hh.p, db_hh.accumulate, D, N, 2 * H, ldd);
      column_sum(db_hh.p + 2 * H, db_hh.accumulate, D + 3 * H, N, H, ldd);
    }
    return;
  }
  // Cho 2014.  D = [dr_pre, dz_pre, dn_pre]; both biases get colsum(D).
  const index_t ldd = G3;
  T* D = scratch<T>(kSlotGrad, std::max<index_t>(N * ldd, 1));
  T* drh = scratch<T>(kSlotState, std::max<index_t>(N * H, 1));
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        ChoBwd1Args<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.gs = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.hp = hp + r0 * ldhp;
        a.ldhp = ldhp;
        a.dy = zeros;
        a.lddy = 0;
        a.dhin = dhin + r0 * lddhin;
        a.lddhin = lddhin;
        a.d = D + r0 * ldd;
        a.ldd = ldd;
        a.off_r = 0;
        a.off_z = H;
        a.off_n = 2 * H;
        a.dhout = dh0 + r0 * H;
        a.lddhout = H;
        cho_bwd1_pass(a);
      },
      1);
  gemm<T>(false, false, N, H, H, T(1), D + 2 * H, ldd, w_hh + 2 * H * H, H, T(0), drh, H);
  parallel_for(
      N, cell_min_rows(H),
      [&](index_t r0, index_t r1) {
        ChoBwd2Args<T> a{};
        a.rows = r1 - r0;
        a.w = H;
        a.g = ws + r0 * ldws;
        a.ldg = ldws;
        a.drh = drh + r0 * H;
        a.lddrh = H;
        a.hp = hp + r0 * ldhp;
        a.ldhp = ldhp;
        a.d = D + r0 * ldd;
        a.ldd = ldd;
        a.dhout = dh0 + r0 * H;
        a.lddhout = H;
        cho_bwd2_pass(a);
      },
      1);
  gemm<T>(false, false, N, H, 2 * H, T(1), D, ldd, w_hh, H, T(1), dh0, H);
  if (dx != nullptr) gemm<T>(false, false, N, F, G3, T(1), D, ldd, w_ih, ldf, T(0), dx, ldf);
  if (dw_ih.p != nullptr) {
    gemm<T>(true, false, G3, F, N, T(1), D, ldd, x, ldf, dw_ih.accumulate ? T(1) : T(0), dw_ih.p, ldf);
  }
  if (dw_hh.p != nullptr) {
    const T beta = dw_hh.accumulate ? T(1) : T(0);
    if (h0 != nullptr) {
      gemm<T>(true, false, 2 * H, H, N, T(1), D, ldd, h0, H, beta, dw_hh.p, H);
    } else if (!dw_hh.accumulate) {
      std::fill(dw_hh.p, dw_hh.p + 2 * H * H, T(0));
    }
    gemm<T>(true, false, H, H, N, T(1), D + 2 * H, ldd, ws + G3, ldws, beta, dw_hh.p + 2 * H * H, H);
  }
  if (db_ih.p != nullptr) column_sum(db_ih.p, db_ih.accumulate, D, N, G3, ldd);
  if (db_hh.p != nullptr) column_sum(db_hh.p, db_hh.accumulate, D, N, G3, ldd);
}

// ---------------------------------------------------------------------------------------------
// Sequences

template <class T>
index_t gru_seq_ws_size(const SeqDims& d) {
  index_t total = 0;
  gru_ws<T>(nullptr, d, &total);
  return total;
}

template <class T>
void gru_seq_forward(T* y, index_t ldy, T* h_n, T* ws, const T* x, const T* h0, const T* w_ih,
                     const T* w_hh, const T* b_ih, const T* b_hh, const std::int64_t* lengths,
                     const SeqDims& d) {
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, G3 = 3 * H, TN = Tn * N;
  const bool cho = d.variant == 1;
  GruWs<T> w = gru_ws(ws, d);
  *w.hdr = WsHeader{kWsMagicGru, Tn, N, F, H, header_flags(d, lengths != nullptr),
                    static_cast<std::int64_t>(sizeof(T)), 0};
  if (lengths != nullptr && N > 0) std::memcpy(w.lengths, lengths, static_cast<std::size_t>(N) * 8);
  const std::int64_t* len = lengths != nullptr ? w.lengths : nullptr;

  const SlicePlan p = make_plan(N, H, 3, 2.0 * N * G3 * H);
  if (!cho) {
    permute_gate_rows(w.wih, w_ih, p, F);
    pack_step_weights(w.wihp, w_ih, p, F);
    pack_step_weights(w.whhp, w_hh, p, H);
    T* zeros = zeros_scratch<T>(G3);
    permute_gate_rows(w.bi, b_ih != nullptr ? b_ih : zeros, p, 1);
    permute_gate_rows(w.bh, b_hh != nullptr ? b_hh : zeros, p, 1);
  } else {
    if (G3 * F > 0) std::memcpy(w.wih, w_ih, static_cast<std::size_t>(G3 * F) * sizeof(T));
    packed_zero_tail(w.wihp, F, G3);
    pack_transposed(w.wihp, F, 0, w_ih, F, G3, F);
    for (index_t g = 0; g < 3; ++g) {
      T* bp = w.whhp + g * packed_size(H, H);
      packed_zero_tail(bp, H, H);
      pack_transposed(bp, H, 0, w_hh + g * H * H, H, H, H);
    }
    for (index_t j = 0; j < G3; ++j) w.bi[j] = (b_ih ? b_ih[j] : T(0)) + (b_hh ? b_hh[j] : T(0));
  }
  rnn_gemm<T>(TN, G3, F, MatA<T>{x, F, 1}, packed_b(w.wihp, F), w.gates, G3, false);

  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldg = rn * G3, ldh = rn * H, ldyy = rn * ldy;
  if (Tn == 0) {
    copy_rows(h_n, H, h0, H, N, H);
    w.hdr->complete = 1;
    return;
  }
  const index_t first = d.reverse ? Tn - 1 : 0;
  copy_rows(w.hprev + si.step_row(first) * H, ldh, h0, H, N, H);

  auto target = [&](index_t k, index_t t, index_t r0, index_t u0, T** hn, index_t* ldhn) {
    if (k == Tn - 1) {
      *hn = h_n + r0 * H + u0;
      *ldhn = H;
    } else {
      const index_t next = d.reverse ? t - 1 : t + 1;
      *hn = w.hprev + (si.step_row(next) + r0 * rn) * H + u0;
      *ldhn = ldh;
    }
  };

  if (!cho) {
    const std::size_t gh_bytes = static_cast<std::size_t>(p.rb * 3 * p.sw) * sizeof(T);
    auto step = [&](index_t k, int, index_t item) {
      const index_t t = d.reverse ? Tn - 1 - k : k;
      const index_t rb = item / p.S, s = item % p.S;
      const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
      const index_t row_t = si.step_row(t) + r0 * rn;
      const T* hpt = w.hprev + row_t * H;
      T* gh = static_cast<T*>(scratch_bytes(kSlotStep0, gh_bytes));
      step_gemm<T>(rows, 3 * wd, H, MatA<T>{hpt, ldh, 1}, packed_b(w.whhp, H), 3 * u0, gh, 3 * wd, false);
      GruFwdArgs<T> a{};
      a.rows = rows;
      a.w = wd;
      a.gs = wd;
      a.g = w.gates + row_t * G3 + 3 * u0;
      a.ldg = ldg;
      a.gh = gh;
      a.ldgh = 3 * wd;
      a.bi = w.bi + 3 * u0;
      a.bh = w.bh + 3 * u0;
      a.ghn = w.aux + row_t * H + u0;
      a.ldghn = ldh;
      a.hp = hpt + u0;
      a.ldhp = ldh;
      target(k, t, r0, u0, &a.hn, &a.ldhn);
      a.y = y + row_t * ldy + u0;
      a.ldy = ldyy;
      a.len = len != nullptr ? len + r0 : nullptr;
      a.t = t;
      gru_fwd_pass(a);
    };
    run_steps(Tn, 1, p, step, 0x1, gh_bytes);
  } else {
    auto step = [&](index_t k, int phase, index_t item) {
      const index_t t = d.reverse ? Tn - 1 - k : k;
      const index_t rb = item / p.S, s = item % p.S;
      const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
      const index_t row_t = si.step_row(t) + r0 * rn;
      const T* hpt = w.hprev + row_t * H;
      T* gt = w.gates + row_t * G3;
      if (phase == 0) {
        // r and z blocks of this slice: gate-major layout, one GEMM per block.
        step_gemm<T>(rows, wd, H, MatA<T>{hpt, ldh, 1}, packed_b(w.whhp, H), u0, gt + u0, ldg, true);
        step_gemm<T>(rows, wd, H, MatA<T>{hpt, ldh, 1}, packed_b(w.whhp + packed_size(H, H), H), u0, gt + H + u0,
                     ldg, true);
        ChoFwd1Args<T> a{};
        a.rows = rows;
        a.w = wd;
        a.gs = H;
        a.g = gt + u0;
        a.ldg = ldg;
        a.bias = w.bi + u0;
        a.hp = hpt + u0;
        a.ldhp = ldh;
        a.rh = w.aux + row_t * H + u0;
        a.ldrh = ldh;
        a.len = len != nullptr ? len + r0 : nullptr;
        a.t = t;
        cho_fwd1_pass(a);
      } else {
        // n block: (r*h) W_hn^T needs every slice's r*h (barrier before this phase).
        step_gemm<T>(rows, wd, H, MatA<T>{w.aux + row_t * H, ldh, 1}, packed_b(w.whhp + 2 * packed_size(H, H), H),
                     u0, gt + 2 * H + u0, ldg, true);
        ChoFwd2Args<T> a{};
        a.rows = rows;
        a.w = wd;
        a.gs = H;
        a.g = gt + u0;
        a.ldg = ldg;
        a.bias = w.bi + u0;
        a.hp = hpt + u0;
        a.ldhp = ldh;
        target(k, t, r0, u0, &a.hn, &a.ldhn);
        a.y = y + row_t * ldy + u0;
        a.ldy = ldyy;
        a.len = len != nullptr ? len + r0 : nullptr;
        a.t = t;
        cho_fwd2_pass(a);
      }
    };
    run_steps(Tn, 2, p, step, 0x3);
  }
  w.hdr->complete = 1;
}

template <class T>
void gru_seq_backward(T* dx, bool dx_accumulate, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                      GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n, T* ws,
                      const T* x) {
  const WsHeader hdr = *reinterpret_cast<const WsHeader*>(ws);
  const SeqDims d = dims_from_header(hdr);
  const index_t Tn = d.T, N = d.N, F = d.F, H = d.H, G3 = 3 * H, TN = Tn * N;
  const bool cho = d.variant == 1;
  GruWs<T> w = gru_ws(ws, d);
  const std::int64_t* len = (hdr.flags & kFlagLengths) ? w.lengths : nullptr;
  const SlicePlan p = make_plan(N, H, 3, 2.0 * N * G3 * H);
  const SeqIndex si{Tn, N, d.batch_first};
  const index_t rn = si.rn(), ldg = rn * G3, ldh = rn * H, ldyy = rn * ldy;
  T* zeros = zeros_scratch<T>(H);
  copy_rows(dh0, H, dh_n, H, N, H);
  // W_hh [3H, H] (torch form: slice-permuted) back from the transposed copy.
  // Backward B operands packed from W_hh: torch form [3H (permuted), H]; cho2014 W_hn [H, H]
  // followed by W_h(r,z) [2H, H].
  const index_t nb = packed_size(H, H);
  T* whhb = scratch<T>(kSlotWeights, std::max<index_t>(packed_size(G3, H) + nb, 1));
  if (!cho) {
    pack_backward_from_forward(whhb, w.whhp, H, G3);
  } else {
    // From the per-gate forward packs W_hg^T [H, H]: W_hn [H, H] and W_h(r,z) [2H, H].
    const T* fr = w.whhp;
    const T* fz = w.whhp + nb;
    const T* fn = w.whhp + 2 * nb;
    packed_zero_tail(whhb, H, H);
    transpose_packed(whhb, H, 0, fn, H, H, H);
    packed_zero_tail(whhb + nb, 2 * H, H);
    transpose_packed(whhb + nb, 2 * H, 0, fr, H, H, H);
    transpose_packed(whhb + nb, 2 * H, H, fz, H, H, H);
  }

  if (!cho) {
    auto step = [&](index_t kk, int phase, index_t item) {
      const index_t k = Tn - 1 - kk;
      const index_t t = d.reverse ? Tn - 1 - k : k;
      const index_t rb = item / p.S, s = item % p.S;
      const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
      const index_t row_t = si.step_row(t) + r0 * rn;
      if (phase == 0) {
        GruBwdArgs<T> a{};
        a.rows = rows;
        a.w = wd;
        a.gs = wd;
        a.g = w.gates + row_t * G3 + 3 * u0;
        a.ldg = ldg;
        a.ghn = w.aux + row_t * H + u0;
        a.ldghn = ldh;
        a.hp = w.hprev + row_t * H + u0;
        a.ldhp = ldh;
        a.dy = dy != nullptr ? dy + row_t * ldy + u0 : zeros;
        a.lddy = dy != nullptr ? ldyy : 0;
        a.dhin = a.dhout = dh0 + r0 * H + u0;
        a.lddhin = a.lddhout = H;
        a.d = w.gates + row_t * G3 + 3 * u0;
        a.ldd = ldg;
        a.off_r = 0;
        a.off_z = wd;
        a.off_nh = 2 * wd;
        a.dni = w.aux + row_t * H + u0;
        a.lddni = ldh;
        a.len = len != nullptr ? len + r0 : nullptr;
        a.t = t;
        gru_bwd_pass(a);
      } else {
        step_gemm<T>(rows, wd, G3, MatA<T>{w.gates + row_t * G3, ldg, 1}, packed_b(whhb, G3), u0,
                     dh0 + r0 * H + u0, H, true);
      }
    };
    run_steps(Tn, 2, p, step, 0x1);

    // gates now hold the recurrent-side gradients [dr, dz, dn*r] (permuted), aux holds dn.
    T* gw = scratch<T>(kSlotGrad, std::max<index_t>(G3 * (F + H + 2), 1));
    T* gwih = gw;
    T* gwhh = gw + G3 * F;
    T* gbi = gw + G3 * (F + H);
    T* gbh = gbi + G3;
    if (dw_hh.p != nullptr) {
      seq_weight_grads(GradOut<T>{}, dw_hh, w.gates, TN, x, w.hprev, F, p, gwhh);
    }
    if (db_hh.p != nullptr) {
      column_sum(gbh, false, w.gates, TN, G3, G3);
      unpermute_gate_rows(db_hh.p, db_hh.accumulate, gbh, p, 1);
    }
    // Input side: replace the n columns by dn (in place; the recurrent side is done).
    parallel_for(
        TN, std::max<index_t>(1, 16384 / std::max<index_t>(H, 1)),
        [&](index_t r0, index_t r1) {
          for (index_t r = r0; r < r1; ++r) {
            for (index_t s = 0; s < p.S; ++s) {
              const index_t u0 = p.u0(s), wd = p.width(s);
              std::memcpy(w.gates + r * G3 + 3 * u0 + 2 * wd, w.aux + r * H + u0,
                          static_cast<std::size_t>(wd) * sizeof(T));
            }
          }
        },
        1);
    if (dw_ih.p != nullptr) {
      seq_weight_grads(dw_ih, GradOut<T>{}, w.gates, TN, x, w.hprev, F, p, gwih);
    }
    if (db_ih.p != nullptr) {
      column_sum(gbi, false, w.gates, TN, G3, G3);
      unpermute_gate_rows(db_ih.p, db_ih.accumulate, gbi, p, 1);
    }
    if (dx != nullptr) {
      gemm<T>(false, false, TN, F, G3, T(1), w.gates, G3, w.wih, std::max<index_t>(F, 1),
              dx_accumulate ? T(1) : T(0), dx, std::max<index_t>(F, 1));
    }
    w.hdr->complete = 2;
    return;
  }

  // Cho 2014: three phases per step (dz, dn | d(r*h) and dr | recurrent dh).
  const std::size_t drh_bytes = static_cast<std::size_t>(p.rb * p.sw) * sizeof(T);
  auto step = [&](index_t kk, int phase, index_t item) {
    const index_t k = Tn - 1 - kk;
    const index_t t = d.reverse ? Tn - 1 - k : k;
    const index_t rb = item / p.S, s = item % p.S;
    const index_t r0 = p.r0(rb), rows = p.rows(rb), u0 = p.u0(s), wd = p.width(s);
    const index_t row_t = si.step_row(t) + r0 * rn;
    T* gt = w.gates + row_t * G3;
    const T* hpt = w.hprev + row_t * H;
    const std::int64_t* lr = len != nullptr ? len + r0 : nullptr;
    if (phase == 0) {
      ChoBwd1Args<T> a{};
      a.rows = rows;
      a.w = wd;
      a.gs = H;
      a.g = gt + u0;
      a.ldg = ldg;
      a.hp = hpt + u0;
      a.ldhp = ldh;
      a.dy = dy != nullptr ? dy + row_t * ldy + u0 : zeros;
      a.lddy = dy != nullptr ? ldyy : 0;
      a.dhin = a.dhout = dh0 + r0 * H + u0;
      a.lddhin = a.lddhout = H;
      a.d = gt + u0;
      a.ldd = ldg;
      a.off_r = 0;
      a.off_z = H;
      a.off_n = 2 * H;
      a.len = lr;
      a.t = t;
      cho_bwd1_pass(a);
    } else if (phase == 1) {
      T* drh = static_cast<T*>(scratch_bytes(kSlotStep0, drh_bytes));
      step_gemm<T>(rows, wd, H, MatA<T>{gt + 2 * H, ldg, 1}, packed_b(whhb, H), u0, drh, wd, false);
      ChoBwd2Args<T> a{};
      a.rows = rows;
      a.w = wd;
      a.g = gt + u0;
      a.ldg = ldg;
      a.drh = drh;
      a.lddrh = wd;
      a.hp = hpt + u0;
      a.ldhp = ldh;
      a.d = gt + u0;
      a.ldd = ldg;
      a.dhout = dh0 + r0 * H + u0;
      a.lddhout = H;
      a.len = lr;
      a.t = t;
      cho_bwd2_pass(a);
    } else {
      step_gemm<T>(rows, wd, 2 * H, MatA<T>{gt, ldg, 1}, packed_b(whhb + nb, 2 * H), u0, dh0 + r0 * H + u0, H,
                   true);
    }
  };
  run_steps(Tn, 3, p, step, 0x3, drh_bytes);

  if (dw_hh.p != nullptr) {
    rnn_gemm_pa<T>(2 * H, TN, MatA<T>{w.gates, 1, G3}, w.hprev, H, H, nullptr, 0, 0, dw_hh.p, H, dw_hh.accumulate);
    rnn_gemm_pa<T>(H, TN, MatA<T>{w.gates + 2 * H, 1, G3}, w.aux, H, H, nullptr, 0, 0, dw_hh.p + 2 * H * H, H,
                   dw_hh.accumulate);
  }
  if (dw_ih.p != nullptr && F > 0) {
    rnn_gemm_pa<T>(G3, TN, MatA<T>{w.gates, 1, G3}, x, F, F, nullptr, 0, 0, dw_ih.p, F, dw_ih.accumulate);
  }
  weight_grads_direct<T>(GradOut<T>{}, GradOut<T>{}, db_ih, db_hh, w.gates, G3, TN, G3, x, F, nullptr, H);
  if (dx != nullptr) {
    gemm<T>(false, false, TN, F, G3, T(1), w.gates, G3, w.wih, std::max<index_t>(F, 1),
            dx_accumulate ? T(1) : T(0), dx, std::max<index_t>(F, 1));
  }
  w.hdr->complete = 2;
}

#define NNK_INSTANTIATE_GRU(T)                                                                          \
  template void gru_cell_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*, const T*,  \
                                    index_t, index_t, index_t, bool);                                    \
  template void gru_cell_backward<T>(T*, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>, const T*,   \
                                     const T*, const T*, const T*, const T*, const T*, index_t, index_t, \
                                     index_t, bool);                                                     \
  template index_t gru_seq_ws_size<T>(const SeqDims&);                                                   \
  template void gru_seq_forward<T>(T*, index_t, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                   const T*, const std::int64_t*, const SeqDims&);                       \
  template void gru_seq_backward<T>(T*, bool, T*, GradOut<T>, GradOut<T>, GradOut<T>, GradOut<T>,        \
                                    const T*, index_t, const T*, T*, const T*);

NNK_INSTANTIATE_GRU(float)
NNK_INSTANTIATE_GRU(double)

}  // namespace nnkern
