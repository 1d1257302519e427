"""Character-level LSTM example: the code lives in nnkern/examples/char_lstm.py
(python/nnkern/examples in this repository) so that `nnkern demo` can run it from an installed
package. Try it on the full corpus: python examples/char_lstm.py --text ../shared/data/tinyshakespeare.txt"""

from nnkern.examples.char_lstm import main

if __name__ == "__main__":
    main()
