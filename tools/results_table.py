#!/usr/bin/env python3
"""Markdown tables for benchmarks/RESULTS.md from `nnkern bench --json FILE` output.

    python tools/results_table.py run.json [--threads 1] [--family conv,pool]

One table per family and thread count: nnkern's median, its rate, the best NumPy and the best
torch variant of the same run (by median), and the ratios against them (>1x: nnkern is faster).
"""

import argparse
import json
from collections import OrderedDict


def best(rows, prefix):
    cands = [r for r in rows if r["impl"].startswith(prefix)]
    return min(cands, key=lambda r: r["median_ms"]) if cands else None


def fmt_ms(v):
    return f"{v:.3g}" if v < 10 else f"{v:.1f}"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--threads", help="comma-separated thread counts (default: all in the file)")
    ap.add_argument("--family", help="comma-separated families (default: all)")
    a = ap.parse_args(argv)
    data = json.load(open(a.json))
    res = data["results"]
    threads = sorted({r["threads"] for r in res}) if not a.threads else [int(t) for t in a.threads.split(",")]
    fams = OrderedDict((r["case"].split("/")[0], None) for r in res)
    if a.family:
        fams = OrderedDict((f, None) for f in a.family.split(","))
    for t in threads:
        for fam in fams:
            groups = OrderedDict()
            for r in res:
                if r["threads"] == t and r["case"].split("/")[0] == fam:
                    groups.setdefault((r["case"], r["shape"]), []).append(r)
            if not groups:
                continue
            print(f"### {fam}, {t} thread{'s' if t > 1 else ''}\n")
            print("| case | shape | nnkern ms | rate | best NumPy ms | best torch ms (variant) | vs NumPy | vs torch |")
            print("|---|---|---|---|---|---|---|---|")
            for (case, shape), rows in groups.items():
                nk = next((r for r in rows if r["impl"] == "nnkern"), None)
                if nk is None:
                    continue
                npb, tb = best(rows, "numpy"), best(rows, "torch")
                vs_np = f"{npb['median_ms'] / nk['median_ms']:.2f}x" if npb else "-"
                vs_t = f"{tb['median_ms'] / nk['median_ms']:.2f}x" if tb else "-"
                print(f"| {case.split('/', 1)[1]} | {shape} | {fmt_ms(nk['median_ms'])} | {nk['rate']:.1f} {nk['unit']} | "
                      f"{fmt_ms(npb['median_ms']) if npb else '-'} | "
                      f"{fmt_ms(tb['median_ms']) + ' (' + tb['impl'] + ')' if tb else '-'} | {vs_np} | {vs_t} |")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
