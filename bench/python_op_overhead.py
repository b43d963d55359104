#!/usr/bin/env python3
"""Overhead of calling the sparse MLP operator from Python, against the same call from C.

One set of random weights at Llama-3.2-1B MLP shapes (H = 2048, I = 8192 by default; 2 MiB
aligned, on huge pages like the C program's), batch 1, a fixed active fraction (default 10%),
n distinct random masks. The variants, all on the same operator, weights and masks:
  c          the C loop of bench/op_overhead.c (op_overhead_time), compiled here with $CC into a
             small shared object and called inside this process: the same call from C, timed in C
  ctypes     the raw ctypes call with prebuilt pointers (the floor of any ctypes binding)
  SparseMLP  skipllama.SparseMLP.forward(x, mask) on numpy arrays
  functional skipllama.sparse_mlp_forward(x, gate, up, down, mask) on numpy arrays
             (prepared-operator cache lookup included)
  torch      the same on torch tensors (when torch is installed)
The variants are interleaved call by call (in rotating order, each call on the next mask of one
sequence, so no call finds the previous call's rows in cache) so that the load of a shared
machine falls on all of them alike; the report is the median time per call. For reference,
--c PATH also runs the bench/op_overhead program as its own process (its own weights and page
placement, so it differs by +-15% here for reasons that have nothing to do with Python).
Not a test: timing never decides a test. Usage (from the repository root, after `make bench`):
  SKIPLLAMA_LIB=build/libskipllama.so /usr/bin/python3 bench/python_op_overhead.py \\
      [-t f32|f16|bf16] [-f 0.1] [-T 1] [-r 400] [--clock wall|cpu] [--c build/bench/op_overhead]
  -H 64 -I 64 shows the fixed per-call cost of each layer (the C work is then about a microsecond).
"""
import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

import numpy as np  # noqa: E402

import skipllama  # noqa: E402
from skipllama import _lib  # noqa: E402

try:
    import torch
except ImportError:
    torch = None


def aligned_like(a, align=2 << 20):
    """A copy of `a` whose data starts on a 2 MiB boundary, as the C program places its weights
    (numpy advises huge pages for large arrays but aligns them only to 64 bytes)."""
    buf = np.empty(a.nbytes + align, dtype=np.uint8)
    off = (-buf.ctypes.data) % align
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def build_c_loop(tmp):
    """op_overhead_time() of bench/op_overhead.c as a shared object, or None without a compiler."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        return None
    so = os.path.join(tmp, "op_overhead_loop.so")
    subprocess.run([cc, "-std=c11", "-O2", "-D_GNU_SOURCE", "-DOP_OVERHEAD_NO_MAIN", "-shared", "-fPIC",
                    "-I", os.path.join(ROOT, "include"), os.path.join(ROOT, "bench", "op_overhead.c"), "-o", so],
                   check=True)
    f = ctypes.CDLL(so).op_overhead_time
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                          ctypes.c_int, ctypes.c_void_p]
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--c", help="path of the bench/op_overhead program (make bench), run as its own process too")
    ap.add_argument("-H", type=int, default=2048)
    ap.add_argument("-I", type=int, default=8192)
    ap.add_argument("-t", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("-f", type=float, default=0.1, help="active fraction")
    ap.add_argument("-T", type=int, default=1, help="threads")
    ap.add_argument("-r", type=int, default=400, help="timed calls per variant")
    ap.add_argument("-n", type=int, default=64, help="distinct masks")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="wall time, or the calling thread's CPU time (steadier on a busy machine; -T 1 only)")
    a = ap.parse_args()

    rng = np.random.default_rng(1)
    H, I = a.H, a.I
    w = []
    for r, c in ((I, H), (I, H), (H, I)):
        w.append(aligned_like(skipllama.quantize_weight((rng.random((r, c), dtype=np.float32) - 0.5) * 0.05, a.t)))
    x = rng.random((1, H), dtype=np.float32) - 0.5
    k = int(a.f * I + 0.5)
    all_masks = np.zeros((a.n, I), dtype=bool)
    for i in range(a.n):
        all_masks[i, rng.choice(I, k, replace=False)] = True
    masks = [all_masks[i:i + 1] for i in range(a.n)]  # [1, I] views

    op = skipllama.SparseMLP(*w, "silu", dtype=a.t, n_threads=a.T, share_threads=False)
    out = np.empty((1, H), dtype=np.float32)
    fwd = _lib.lib.sl_sparse_mlp_forward
    fwd_addr = ctypes.cast(fwd, ctypes.c_void_p).value
    handle, xp, op_ptr = op._op, x.ctypes.data, out.ctypes.data
    err_ref = ctypes.byref(_lib.sl_error())
    clock = time.thread_time if a.clock == "cpu" else time.perf_counter
    tmp = tempfile.mkdtemp(prefix="skipllama-overhead-")
    c_loop = build_c_loop(tmp)
    t_c = np.empty(1, dtype=np.float64)

    def timed(fn):
        def run(i):
            t0 = clock()
            fn(i)
            return clock() - t0
        return run

    def c_call(i):  # timed inside C, around the forward call only
        c_loop(fwd_addr, handle, xp, all_masks.ctypes.data + i * I, 1, I, op_ptr, 1, a.clock == "cpu", 0, t_c.ctypes.data)
        return float(t_c[0])

    mptr = [m.ctypes.data for m in masks]
    variants = []
    if c_loop is not None:
        variants.append(("c", c_call))
    variants += [
        ("ctypes", timed(lambda i: fwd(handle, xp, 1, mptr[i], None, None, 0, op_ptr, err_ref))),
        ("SparseMLP", timed(lambda i: op.forward(x, masks[i]))),
        ("functional", timed(lambda i: skipllama.sparse_mlp_forward(x, *w, masks[i], "silu", dtype=a.t, n_threads=a.T))),
    ]
    if torch is not None and a.t != "bf16":
        tw = [torch.from_numpy(m) for m in w]
        tx = torch.from_numpy(x)
        tmasks = [torch.from_numpy(m) for m in masks]
        variants.append(("torch", timed(lambda i: skipllama.sparse_mlp_forward(tx, *tw, tmasks[i], "silu", n_threads=a.T))))

    V = len(variants)
    for i in range(a.n):  # warm-up: every variant, every mask once (and the prepared-op cache filled)
        for _, fn in variants:
            fn(i)
    times = {name: [] for name, _ in variants}
    seq = 0
    for r in range(a.r):
        for j in range(V):
            name, fn = variants[(r + j) % V]  # rotating order
            times[name].append(fn(seq % a.n))
            seq += 1
    op.close()
    skipllama.clear_cache()
    shutil.rmtree(tmp, ignore_errors=True)

    print("H=%d I=%d %s, %.0f%% active (%d neurons), batch 1, %d thread(s), %s clock, %d calls per variant, "
          "interleaved; median per call:" % (H, I, a.t, 100 * a.f, k, a.T, a.clock, a.r))
    base = statistics.median(times["c"]) if "c" in times else None
    for name, v in times.items():
        med = statistics.median(v)
        extra = ""
        if base:
            extra = "  %.3fx C  (+%.1f us)" % (med / base, 1e6 * (med - base))
        print("  %-10s %9.1f us%s" % (name, 1e6 * med, extra))
    if a.c:
        line = subprocess.run([a.c, "-H", str(H), "-I", str(I), "-t", a.t, "-f", str(a.f), "-r", str(a.r),
                               "-n", str(a.n), "-T", str(a.T), "-c", a.clock], stdout=subprocess.PIPE,
                              check=True).stdout.decode()
        fields = dict(kv.split("=") for kv in line.split()[1:])
        print("  %-10s %9.1f us  (bench/op_overhead as its own process, own weights; reference only)"
              % ("c-process", float(fields["median_us"])))


if __name__ == "__main__":
    main()
