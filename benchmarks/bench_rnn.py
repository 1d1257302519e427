"""Recurrent kernels: LSTM/GRU/RNN sequences fwd and fwd+bwd, and the LSTM cell in a Python loop,
vs the NumPy twins, torch and nk.matmul on the same GEMMs."""

from _harness import family_tests

test_bench = family_tests("rnn")
