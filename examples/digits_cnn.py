"""Digits CNN example: the code lives in nnkern/examples/digits_cnn.py (python/nnkern/examples in
this repository) so that `nnkern demo` can run it from an installed package."""

from nnkern.examples.digits_cnn import main

if __name__ == "__main__":
    main()
