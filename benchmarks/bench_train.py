"""Full training step (forward + loss + backward + Adam) of the digits CNN and the char-LSTM: nnkern vs torch vs NumPy."""

from _harness import family_tests

test_bench = family_tests("train")
