"""The ``nnkern`` command (also ``python -m nnkern``).

  nnkern demo [--quick] [--text FILE] [--plot FILE]
  nnkern bench [--quick] [--threads 1,2] [--family optim,act] [--filter adam] [--json FILE]
  nnkern info
"""

import argparse
import sys


def _bench(args):
    from . import bench

    families = args.family.split(",") if args.family else None
    if families:
        unknown = [f for f in families if f not in bench.FAMILIES]
        if unknown:
            raise SystemExit(f"nnkern bench: unknown family {unknown}; choose from {bench.FAMILIES}")
    threads = [int(t) for t in args.threads.split(",")]
    if any(t < 1 for t in threads):
        raise SystemExit("nnkern bench: --threads must be positive integers, e.g. 1,2")
    bench.run(families=families, threads=threads, quick=args.quick, filter_=args.filter,
              seconds=args.seconds, json_path=args.json)
    return 0


def _demo(args):
    import nnkern as nk
    from .examples import char_lstm, digits_cnn

    print(f"nnkern {nk.__version__} demo: {nk.get_num_threads()} threads, SIMD {nk.simd_level()}\n")
    print("== 1/2  CNN on the 1,797 UCI handwritten digits (8x8), Adam + cosine LR")
    res = digits_cnn.run(epochs=4 if args.quick else 20, progress=not args.no_progress,
                         plot_path=args.plot)
    print(f"digits CNN: test accuracy {res['test_accuracy']:.4f} on {res['n_test']} held-out images "
          f"after {res['history'].epochs} epochs ({res['seconds']:.1f} s)")
    if res["plot"]:
        print(f"training curves saved to {res['plot']}")
    print("\n== 2/2  character-level LSTM language model, truncated BPTT + gradient clipping + Adam")
    lm = char_lstm.run(text=args.text, epochs=1, max_steps=40 if args.quick else None,
                       sample_length=200 if args.quick else 400, progress=not args.no_progress)
    print(f"char LSTM: validation loss {lm['val_loss']:.3f} nats/char, vocabulary {lm['vocab_size']} "
          f"({lm['seconds']:.1f} s). Sample at temperature 0.8:\n")
    print(lm["sample"])
    return 0


def _info(args):
    from . import bench

    for k, v in bench.machine_info().items():
        print(f"{k}: {v}")
    import nnkern as nk

    print(f"threads: {nk.get_num_threads()}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="nnkern", description="nnkern: fast CPU neural-network kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("bench", help="time nnkern against NumPy (and torch when installed)")
    p.add_argument("--quick", action="store_true", help="small shapes and short timings (smoke run)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--family", default=None, help="comma-separated kernel families (default: all)")
    p.add_argument("--filter", default=None, help="only workloads whose name contains this text")
    p.add_argument("--seconds", type=float, default=0.6, help="timing budget per workload and thread count")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.set_defaults(func=_bench)
    p = sub.add_parser("demo", help="train a digits CNN and a character LSTM on bundled data")
    p.add_argument("--quick", action="store_true", help="a reduced budget (CI smoke run)")
    p.add_argument("--text", default=None, help="text file for the character LSTM (default: bundled excerpt)")
    p.add_argument("--plot", default="nnkern-demo-curves.png",
                   help="where to save the digits training curves (needs matplotlib; '' to skip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
    p = sub.add_parser("info", help="print version, SIMD level, BLAS and thread settings")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
