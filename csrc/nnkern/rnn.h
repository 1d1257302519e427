// Recurrent kernels: fused LSTM, GRU and vanilla RNN cells, and whole-sequence drivers.
//
// Maths and layouts follow torch (DESIGN.md section 2):
//   LSTM  gates i, f, g, o in row blocks of W_ih [4H, F], W_hh [4H, H]; biases b_ih + b_hh [4H]
//         i,f,o = sigmoid, g = tanh;  c' = f*c + i*g;  h' = o*tanh(c')
//   GRU   gates r, z, n in row blocks of W_ih [3H, F], W_hh [3H, H]
//         torch/cuDNN form (default): n = tanh(W_in x + b_in + r*(W_hn h + b_hn))
//         Cho 2014 form (variant cho2014): n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)
//         h' = (1 - z)*n + z*h   (computed as n + z*(h - n))
//   RNN   h' = tanh or relu(W_ih x + b_ih + W_hh h + b_hh)
//
// Cells: the gate GEMMs (through gemm.h) land in the caller's workspace `ws`, one fused pass
// computes every gate, the new state and the saved activations; backward fuses every gate
// derivative into one pass and then runs the GEMMs for dx, dh0, dW and the bias column sums.
//
// Sequences: one call runs one layer in one direction over all T steps. The input projection of
// all steps is one GEMM; each step is one recurrent GEMM plus the fused gate pass per work item
// (see SlicePlan in rnn_common.h); backward runs the steps in reverse and computes the weight
// gradients with one large GEMM per weight after the loop. The workspace (ws_size elements)
// holds everything backward needs: a header, the lengths, slice-permuted weight copies, the
// activated gates and the per-step states.
//
// Variable lengths: lengths[n] in [0, T] (any order). Steps t >= lengths[n] leave row n's state
// unchanged and write zeros to its output (forward), and pass its state gradient through
// unchanged with no parameter/input gradient (backward). A reverse direction starts every row at
// its own last valid step.
//
// All pointers are dense row-major unless an ld is given; sizes are validated by the bindings.
#pragma once

#include <cstdint>

#include "nnkern/common.h"

namespace nnkern {

// A gradient output: written (accumulate=false) or added into (accumulate=true); null = skip.
template <class T>
struct GradOut {
  T* p = nullptr;
  bool accumulate = false;
};

// Shape of one sequence call.
struct SeqDims {
  index_t T = 0, N = 0, F = 0, H = 0;
  bool batch_first = false;  // x/y/dx rows ordered (n, t) instead of (t, n)
  bool reverse = false;      // process t = T-1 .. 0 (the backward direction of a bidirectional layer)
  int variant = 0;           // GRU: 1 = cho2014; RNN: 1 = relu
};

// The first 64 bytes of every sequence workspace.
struct WsHeader {
  std::int64_t magic;
  std::int64_t T, N, F, H;
  std::int64_t flags;  // bit 0 batch_first, bit 1 reverse, bit 2 lengths given, bit 3 variant
  std::int64_t itemsize;
  std::int64_t complete;  // 1 once a forward has filled the workspace
};

constexpr std::int64_t kWsMagicLstm = 0x6e6b4c53544d3031;  // "nkLSTM01"
constexpr std::int64_t kWsMagicGru = 0x6e6b475255303031;   // "nkGRU001"
constexpr std::int64_t kWsMagicRnn = 0x6e6b524e4e303031;   // "nkRNN001"
constexpr std::int64_t kFlagBatchFirst = 1;
constexpr std::int64_t kFlagReverse = 2;
constexpr std::int64_t kFlagLengths = 4;
constexpr std::int64_t kFlagVariant = 8;

// ---------------------------------------------------------------------------------------------
// LSTM

// x [N,F]  h0,c0 [N,H] (null = zeros)  w_ih [4H,F]  w_hh [4H,H]  b_ih,b_hh [4H] (null = none)
// h1,c1 [N,H]  ws [N,5H] = activated i,f,g,o and tanh(c1)
template <class T>
void lstm_cell_forward(T* h1, T* c1, T* ws, const T* x, const T* h0, const T* c0, const T* w_ih,
                       const T* w_hh, const T* b_ih, const T* b_hh, index_t N, index_t F, index_t H);

// dh1,dc1 [N,H] (null = zeros)  ws [N,5H] from forward  x [N,F]  h0,c0 [N,H] (null = zeros)
// dx [N,F]  dh0,dc0 [N,H]  dw_ih [4H,F]  dw_hh [4H,H]  db_ih,db_hh [4H]
template <class T>
void lstm_cell_backward(T* dx, T* dh0, T* dc0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih,
                        GradOut<T> db_hh, const T* dh1, const T* dc1, const T* ws, const T* x, const T* h0,
                        const T* c0, const T* w_ih, const T* w_hh, index_t N, index_t F, index_t H);

// Elements of T in a sequence workspace for these dims.
template <class T>
index_t lstm_seq_ws_size(const SeqDims& d);

// x [T,N,F] (batch_first: [N,T,F])  h0,c0 [N,H] (null = zeros)  lengths [N] (null = all T)
// y: rows like x with row stride ldy (>= H; the caller offsets y to its direction's columns)
// h_n,c_n [N,H]  ws [lstm_seq_ws_size]
template <class T>
void lstm_seq_forward(T* y, index_t ldy, T* h_n, T* c_n, T* ws, const T* x, const T* h0, const T* c0,
                      const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                      const std::int64_t* lengths, const SeqDims& d);

// dy rows like y (null = zeros)  dh_n,dc_n [N,H] (null = zeros)  ws from forward (its saved
// gates are overwritten: one backward per forward)  x as in forward
// dx like x (null = skip; dx_accumulate adds into it)  dh0,dc0 [N,H]  grads as in the cell
template <class T>
void lstm_seq_backward(T* dx, bool dx_accumulate, T* dh0, T* dc0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                       GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n,
                       const T* dc_n, T* ws, const T* x);

// ---------------------------------------------------------------------------------------------
// GRU (cho2014 = false: torch form)

// x [N,F]  h0 [N,H] (null = zeros)  w_ih [3H,F]  w_hh [3H,H]  b_ih,b_hh [3H] (null = none)
// h1 [N,H]  ws [N,4H] = r, z, n and (torch) W_hn h + b_hn or (cho2014) r*h
template <class T>
void gru_cell_forward(T* h1, T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                      const T* b_hh, index_t N, index_t F, index_t H, bool cho2014);

// dh1 [N,H]  ws [N,4H]  x [N,F]  h0 [N,H] (null = zeros)
// dx [N,F]  dh0 [N,H]  dw_ih [3H,F]  dw_hh [3H,H]  db_ih,db_hh [3H]
template <class T>
void gru_cell_backward(T* dx, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih, GradOut<T> db_hh,
                       const T* dh1, const T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                       index_t N, index_t F, index_t H, bool cho2014);

template <class T>
index_t gru_seq_ws_size(const SeqDims& d);

template <class T>
void gru_seq_forward(T* y, index_t ldy, T* h_n, T* ws, const T* x, const T* h0, const T* w_ih,
                     const T* w_hh, const T* b_ih, const T* b_hh, const std::int64_t* lengths,
                     const SeqDims& d);

template <class T>
void gru_seq_backward(T* dx, bool dx_accumulate, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                      GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n, T* ws,
                      const T* x);

// ---------------------------------------------------------------------------------------------
// Vanilla RNN (relu = false: tanh)

// x [N,F]  h0 [N,H] (null = zeros)  w_ih [H,F]  w_hh [H,H]  b_ih,b_hh [H] (null = none)
// h1 [N,H]  ws [N,H] = the activated output (what backward differentiates)
template <class T>
void rnn_cell_forward(T* h1, T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* b_ih,
                      const T* b_hh, index_t N, index_t F, index_t H, bool relu);

template <class T>
void rnn_cell_backward(T* dx, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh, GradOut<T> db_ih, GradOut<T> db_hh,
                       const T* dh1, const T* ws, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                       index_t N, index_t F, index_t H, bool relu);

template <class T>
index_t rnn_seq_ws_size(const SeqDims& d);

template <class T>
void rnn_seq_forward(T* y, index_t ldy, T* h_n, T* ws, const T* x, const T* h0, const T* w_ih,
                     const T* w_hh, const T* b_ih, const T* b_hh, const std::int64_t* lengths,
                     const SeqDims& d);

template <class T>
void rnn_seq_backward(T* dx, bool dx_accumulate, T* dh0, GradOut<T> dw_ih, GradOut<T> dw_hh,
                      GradOut<T> db_ih, GradOut<T> db_hh, const T* dy, index_t ldy, const T* dh_n, T* ws,
                      const T* x);

// ---------------------------------------------------------------------------------------------
// The vectorised sigmoid/tanh the kernels use, over an array (tests check their accuracy).
// kind: 0 sigmoid, 1 tanh.
template <class T>
void rnn_activation(T* y, const T* x, index_t n, int kind);

}  // namespace nnkern
