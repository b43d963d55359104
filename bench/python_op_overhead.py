#!/usr/bin/env python3
"""Overhead of calling the sparse MLP operator from Python, against the same call from C.

Times, on one set of random weights at Llama-3.2-1B MLP shapes (H = 2048, I = 8192 by default),
batch 1, a fixed active fraction (default 10%), n distinct random masks cycled:
  c          bench/op_overhead (C loop calling sl_sparse_mlp_forward; run as a subprocess)
  ctypes     the raw ctypes call with prebuilt pointers (the floor of any ctypes binding)
  SparseMLP  skipllama.SparseMLP.forward(x, mask) on numpy arrays
  functional skipllama.sparse_mlp_forward(x, gate, up, down, mask) on numpy arrays
             (prepared-operator cache lookup included)
  torch      the same on torch tensors (when torch is installed)
The C program and the Python timings alternate for several rounds (the machine is shared and
noisy); each round reports the median per call, and the summary takes the median over rounds.
Not a test: timing never decides a test. Usage (from the repository root, after `make bench`):
  SKIPLLAMA_LIB=build/libskipllama.so /usr/bin/python3 bench/python_op_overhead.py \
      --c build/bench/op_overhead [-t f32] [-f 0.1] [-T 1] [-r 200] [--rounds 3] [--clock wall|cpu]
  -H 64 -I 64 shows the fixed per-call cost of each layer (the C work is then a few µs).
"""
import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

import numpy as np  # noqa: E402

import skipllama  # noqa: E402
from skipllama import _lib  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def median_us(fn, masks, reps, clock):
    for m in masks:  # warm-up: every mask once
        fn(m)
    t = []
    for r in range(reps):
        m = masks[r % len(masks)]
        t0 = clock()
        fn(m)
        t.append(clock() - t0)
    return 1e6 * statistics.median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c", help="path of bench/op_overhead (built by make bench)")
    ap.add_argument("-H", type=int, default=2048)
    ap.add_argument("-I", type=int, default=8192)
    ap.add_argument("-t", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("-f", type=float, default=0.1, help="active fraction")
    ap.add_argument("-T", type=int, default=1, help="threads")
    ap.add_argument("-r", type=int, default=200, help="timed calls per round and variant")
    ap.add_argument("-n", type=int, default=16, help="distinct masks cycled")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall time, or the calling thread's CPU time (steadier on a busy machine; -T 1 only)")
    a = ap.parse_args()

    rng = np.random.default_rng(1)
    H, I = a.H, a.I
    f32 = [(rng.random((r, c), dtype=np.float32) - 0.5) * 0.05 for r, c in ((I, H), (I, H), (H, I))]
    w = [skipllama.quantize_weight(m, a.t) for m in f32]
    del f32
    x = rng.random((1, H), dtype=np.float32) - 0.5
    k = int(a.f * I + 0.5)
    masks = []
    for _ in range(a.n):
        m = np.zeros((1, I), dtype=bool)
        m[0, rng.choice(I, k, replace=False)] = True
        masks.append(m)

    op = skipllama.SparseMLP(*w, "silu", dtype=a.t, n_threads=a.T, share_threads=False)
    out = np.empty((1, H), dtype=np.float32)
    fwd = _lib.lib.sl_sparse_mlp_forward
    handle, xp, op_ptr = op._op, x.ctypes.data, out.ctypes.data
    err = _lib.sl_error()
    err_ref = ctypes.byref(err)
    mask_ptrs = {id(m): m.ctypes.data for m in masks}

    def raw(m):
        fwd(handle, xp, 1, mask_ptrs[id(m)], None, None, 0, op_ptr, err_ref)

    variants = [("ctypes", raw), ("SparseMLP", lambda m: op.forward(x, m)),
                ("functional", lambda m: skipllama.sparse_mlp_forward(x, *w, m, "silu", dtype=a.t, n_threads=a.T))]
    if torch is not None and a.t != "bf16":
        tw = [torch.from_numpy(m) for m in w]
        tx = torch.from_numpy(x)
        tmasks = {id(m): torch.from_numpy(m) for m in masks}
        variants.append(("torch", lambda m: skipllama.sparse_mlp_forward(tx, *tw, tmasks[id(m)], "silu", n_threads=a.T)))

    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    results = {"c": []}
    for name, _ in variants:
        results[name] = []
    for rnd in range(a.rounds):
        if a.c:
            line = subprocess.run([a.c, "-H", str(H), "-I", str(I), "-t", a.t, "-f", str(a.f), "-r", str(a.r),
                                   "-n", str(a.n), "-T", str(a.T), "-c", a.clock], stdout=subprocess.PIPE, check=True).stdout.decode()
            fields = dict(kv.split("=") for kv in line.split()[1:])
            results["c"].append(float(fields["median_us"]))
        for name, fn in variants:
            results[name].append(median_us(fn, masks, a.r, clock))
        print("round %d: " % (rnd + 1) + ", ".join("%s %.1f us" % (n, v[-1]) for n, v in results.items() if v), flush=True)
    op.close()
    skipllama.clear_cache()
    c = statistics.median(results["c"]) if results["c"] else None
    print("\nH=%d I=%d %s, %.0f%% active (%d neurons), batch 1, %d thread(s), %s clock, %d calls x %d rounds; "
          "median of round medians:" % (H, I, a.t, 100 * a.f, k, a.T, a.clock, a.r, a.rounds))
    for name, v in results.items():
        if not v:
            continue
        med = statistics.median(v)
        ratio = " (%.3fx C)" % (med / c) if c else ""
        print("  %-10s %9.1f us%s" % (name, med, ratio))


if __name__ == "__main__":
    main()
