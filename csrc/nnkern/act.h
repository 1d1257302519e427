// Activations forward and backward: sigmoid, tanh, relu, leaky_relu, prelu, softplus, silu,
// softmax and log_softmax, with torch's formulas and backward conventions:
//   from the output y: sigmoid, tanh, relu, softmax, log_softmax
//   from the input x:  leaky_relu, prelu, softplus, silu
//
// Elementwise kernels allow any output to be the exact same buffer as an input (in-place
// activation, dx written over dy); the bindings refuse partial overlap. softmax/log_softmax and
// their backward passes read a whole row before writing it, so exact aliasing is fine there too.
// Every kernel gives bitwise identical results for any thread count (prelu's weight gradient is
// reduced over fixed chunks combined in order).
#pragma once

#include "nnkern/common.h"

namespace nnkern {

// --- elementwise: x, y, dy, dx [n] ------------------------------------------------------------

// y = 1 / (1 + e^-x)                      dx = dy * y * (1 - y)
template <class T> void sigmoid_forward(T* y, const T* x, index_t n);
template <class T> void sigmoid_backward(T* dx, const T* dy, const T* y, index_t n);

// y = tanh(x)                             dx = dy * (1 - y^2)
template <class T> void tanh_forward(T* y, const T* x, index_t n);
template <class T> void tanh_backward(T* dx, const T* dy, const T* y, index_t n);

// y = max(x, 0) (NaN propagates)          dx = y <= 0 ? 0 : dy
template <class T> void relu_forward(T* y, const T* x, index_t n);
template <class T> void relu_backward(T* dx, const T* dy, const T* y, index_t n);

// y = x > 0 ? x : slope * x               dx = x > 0 ? dy : slope * dy
template <class T> void leaky_relu_forward(T* y, const T* x, index_t n, T slope);
template <class T> void leaky_relu_backward(T* dx, const T* dy, const T* x, index_t n, T slope);

// y = beta * x > threshold ? x : log(1 + e^(beta x)) / beta
// dx = beta * x > threshold ? dy : dy * sigmoid(beta x)
template <class T> void softplus_forward(T* y, const T* x, index_t n, T beta, T threshold);
template <class T> void softplus_backward(T* dx, const T* dy, const T* x, index_t n, T beta, T threshold);

// y = x * sigmoid(x)                      dx = dy * s * (1 + x * (1 - s)), s = sigmoid(x)
template <class T> void silu_forward(T* y, const T* x, index_t n);
template <class T> void silu_backward(T* dx, const T* dy, const T* x, index_t n);

// --- prelu: x, y, dy, dx [N, C, S] (S = product of the dims after the channel dim), w [C] -------
// C == 1 means one weight shared by every element (N, S then arbitrary).
// y = x > 0 ? x : w[c] * x
template <class T> void prelu_forward(T* y, const T* x, const T* w, index_t N, index_t C, index_t S);
// dx = x > 0 ? dy : w[c] * dy;  dw[c] = sum over n, s of (x > 0 ? 0 : x * dy)  (overwritten)
template <class T>
void prelu_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, index_t N, index_t C, index_t S);

// --- softmax over the middle dim of x [outer, D, inner] ----------------------------------------
// y = exp(x - max) / sum exp(x - max)     dx = y * (dy - sum(dy * y))
template <class T> void softmax_forward(T* y, const T* x, index_t outer, index_t D, index_t inner);
template <class T>
void softmax_backward(T* dx, const T* dy, const T* y, index_t outer, index_t D, index_t inner);
// y = x - max - log(sum exp(x - max))     dx = dy - exp(y) * sum(dy)
template <class T> void log_softmax_forward(T* y, const T* x, index_t outer, index_t D, index_t inner);
template <class T>
void log_softmax_backward(T* dx, const T* dy, const T* y, index_t outer, index_t D, index_t inner);

// --- vmath.h exposed for accuracy tests: y[i] = f(x[i]) for f in {exp, exp_nonpositive, expm1,
// log, log1p, tanh, sigmoid, softplus}, through the same dispatched loops as the kernels. Returns false for an
// unknown name.
template <class T> bool vmath_apply(const char* name, T* y, const T* x, index_t n);

}  // namespace nnkern
