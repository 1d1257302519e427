"""The ``nnkern`` command (also ``python -m nnkern``).

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
    p = sub.add_parser("info", help="print version, SIMD level, BLAS and thread settings")
    p.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
