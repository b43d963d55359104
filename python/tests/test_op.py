"""sparse_mlp_forward and SparseMLP against a PyTorch implementation of the prototype's semantics.

What it checks
  - for every activation (silu, relu, gelu = tanh approximation) x weight dtype (f32, f16, bf16)
    x batch (1, 3), on random masks (10% and 50% active), all-false, all-true and single-neuron
    masks, and two shapes (awkward 72 x 200; 256 x 1024 for the SIMD paths): the op equals
        out[b] = down[:, m] @ (act(gate[m] @ x[b]) * (up[m] @ x[b])),  m = mask[b]
    computed by torch in float64 from the same (exactly widened) weights;
  - the index-list form equals the mask form; the union mode equals the reference on the union
    mask; per_row_shared equals per_row; the dense path equals the all-true mask;
  - numpy and torch inputs give bit-identical results (separate copies of the same values);
  - Q8_0 / Q4_0 blocks against the reference on their dequantized weights;
  - out_dtype / out=, errors (C messages in SkipLlamaError with .status), the prepared-operator
    cache (hits, LRU, clear, torch in-place change of down).
Tolerances (relative to max(1, max |reference|), as tests/test_sparse_mlp.c):
  float types 1e-4 — the library computes in float32 on the same weights, only rounding and
  summation order differ from the float64 reference; 1e-5 between two library paths that
  differ in summation order only (mask vs indices, threads); Q8_0 6e-2 and Q4_0 2.5e-1 — the
  library also rounds x to Q8_0 and re-quantizes down when transposing (skipllama.h).
"""
import unittest
import warnings

from _support import need_numpy, need_torch, np, skipllama, torch

from skipllama import SkipLlamaError

TOL = 1e-4
TOL_ORDER = 1e-5
TOL_QUANT = {"q8_0": 6e-2, "q4_0": 2.5e-1}
ACTS = ("silu", "relu", "gelu")
DTYPES = ("f32", "f16", "bf16")


def rel_diff(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - ref)) / max(1.0, float(np.max(np.abs(ref))))) if ref.size else 0.0


def torch_reference(x, gate, up, down, mask, act):
    """The prototype's semantics, row by row, in float64 (x [B, H], mask [B, I] bool)."""
    F = torch.nn.functional
    fn = {"silu": F.silu, "relu": F.relu, "gelu": lambda v: F.gelu(v, approximate="tanh")}[act]
    x, gate, up, down = (torch.as_tensor(np.asarray(a)).double() for a in (x, gate, up, down))
    mask = torch.as_tensor(np.asarray(mask))
    rows = []
    for b in range(x.shape[0]):
        m = mask[b]
        rows.append(down[:, m] @ (fn(gate[m] @ x[b]) * (up[m] @ x[b])))
    return torch.stack(rows).numpy()


def make_weights(rng, H, I, dtype):
    """Random weights as float32 numpy matrices rounded to dtype, and the same values in dtype
    (numpy for f32/f16, uint16 bits for bf16) and as torch tensors."""
    g = (rng.standard_normal((I, H)) * 1.5 / np.sqrt(H)).astype(np.float32)
    u = (rng.standard_normal((I, H)) * 1.5 / np.sqrt(H)).astype(np.float32)
    d = (rng.standard_normal((H, I)) / np.sqrt(I)).astype(np.float32)
    enc = [skipllama.quantize_weight(a, dtype) for a in (g, u, d)]
    exact = [skipllama.dequantize_weight(e, dtype) for e in enc]  # the values the library sees
    return exact, enc


def as_torch(a, dtype):
    if dtype == "bf16":
        return torch.from_numpy(a.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(a.copy())


def masks_for(rng, B, I):
    single = np.zeros((B, I), dtype=bool)
    single[np.arange(B), rng.integers(0, I, B)] = True
    return {
        "p0.1": rng.random((B, I)) < 0.1,
        "p0.5": rng.random((B, I)) < 0.5,
        "none": np.zeros((B, I), dtype=bool),
        "all": np.ones((B, I), dtype=bool),
        "single": single,
    }


@need_numpy
@need_torch
class TestAgainstTorch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        skipllama.clear_cache()

    @classmethod
    def tearDownClass(cls):
        skipllama.clear_cache()

    def check_shape(self, H, I, seed):
        rng = np.random.default_rng(seed)
        worst = {}
        for dtype in DTYPES:
            exact, enc = make_weights(rng, H, I, dtype)
            tw = [as_torch(e, dtype) for e in enc]
            for act in ACTS:
                for B in (1, 3):
                    x = rng.standard_normal((B, H)).astype(np.float32)
                    for mname, mask in masks_for(rng, B, I).items():
                        what = "H=%d I=%d %s %s B=%d mask=%s" % (H, I, dtype, act, B, mname)
                        ref = torch_reference(x, *exact, mask, act)
                        # numpy in, numpy out
                        out = skipllama.sparse_mlp_forward(x, *enc, mask, act, dtype=dtype, n_threads=2)
                        self.assertIsInstance(out, np.ndarray)
                        self.assertEqual(out.dtype, np.float32)
                        self.assertEqual(out.shape, (B, H))
                        e = rel_diff(out, ref)
                        worst[dtype] = max(worst.get(dtype, 0.0), e)
                        self.assertLessEqual(e, TOL, what)
                        if mname == "none":
                            self.assertTrue(np.all(out == 0), what)
                        # torch in, torch out: bit-identical to numpy in
                        tout = skipllama.sparse_mlp_forward(torch.from_numpy(x), *tw, torch.from_numpy(mask), act,
                                                            n_threads=2)
                        self.assertIsInstance(tout, torch.Tensor)
                        self.assertEqual(tout.dtype, torch.float32)
                        self.assertTrue(np.array_equal(tout.numpy(), out), what + ": torch != numpy")
                        # index lists = mask
                        idx = [np.nonzero(mask[b])[0] for b in range(B)]
                        oi = skipllama.sparse_mlp_forward_indices(x, *enc, idx, act, dtype=dtype, n_threads=2)
                        self.assertLessEqual(rel_diff(oi, out), TOL_ORDER, what + ": indices")
                        if B > 1 and mname in ("p0.1", "p0.5"):
                            union = np.repeat(mask.any(0, keepdims=True), B, 0)
                            ou = skipllama.sparse_mlp_forward(x, *enc, mask, act, dtype=dtype, mode="union", n_threads=2)
                            self.assertLessEqual(rel_diff(ou, torch_reference(x, *exact, union, act)), TOL, what + ": union")
                            os_ = skipllama.sparse_mlp_forward(x, *enc, mask, act, dtype=dtype, mode="per_row_shared")
                            self.assertLessEqual(rel_diff(os_, out), TOL_ORDER, what + ": per_row_shared")
                        if mname == "all":
                            od = skipllama.mlp_dense_forward(x, *enc, act, dtype=dtype, n_threads=2)
                            self.assertLessEqual(rel_diff(od, ref), TOL, what + ": dense")
        print("\n# H=%d I=%d worst rel diff vs torch float64: %s (tolerance %g)"
              % (H, I, ", ".join("%s %.2g" % kv for kv in worst.items()), TOL), end="\n")

    def test_awkward_shape(self):
        self.check_shape(72, 200, 1)

    def test_simd_shape(self):
        self.check_shape(256, 1024, 2)

    def test_one_dimensional_x(self):
        rng = np.random.default_rng(3)
        (g, u, d), _ = make_weights(rng, 64, 96, "f32")
        x = rng.standard_normal(64).astype(np.float32)
        m = rng.random(96) < 0.3
        out = skipllama.sparse_mlp_forward(x, g, u, d, m)
        self.assertEqual(out.shape, (64,))
        self.assertLessEqual(rel_diff(out, torch_reference(x[None], g, u, d, m[None], "silu")[0]), TOL)
        oi = skipllama.sparse_mlp_forward_indices(x, g, u, d, list(np.nonzero(m)[0]))
        self.assertLessEqual(rel_diff(oi, out), TOL_ORDER)
        full = skipllama.sparse_mlp_forward(x, g, u, d)  # no mask: every neuron
        self.assertLessEqual(rel_diff(full, torch_reference(x[None], g, u, d, np.ones((1, 96), bool), "silu")[0]), TOL)

    def test_x_dtypes_and_out_dtype(self):
        """x in f16/bf16/f64 is converted to f32; out_dtype='input' casts back; out= is filled."""
        rng = np.random.default_rng(4)
        (g, u, d), enc = make_weights(rng, 64, 128, "bf16")
        tw = [as_torch(e, "bf16") for e in enc]
        x = rng.standard_normal((2, 64)).astype(np.float32)
        m = rng.random((2, 128)) < 0.4
        xb = torch.from_numpy(x).bfloat16()
        ref = torch_reference(xb.float().numpy(), g, u, d, m, "relu")
        o = skipllama.sparse_mlp_forward(xb, *tw, torch.from_numpy(m), "relu")
        self.assertEqual(o.dtype, torch.float32)
        self.assertLessEqual(rel_diff(o.numpy(), ref), TOL)
        ob = skipllama.sparse_mlp_forward(xb, *tw, torch.from_numpy(m), "relu", out_dtype="input")
        self.assertEqual(ob.dtype, torch.bfloat16)
        self.assertTrue(torch.equal(ob, o.bfloat16()))
        # numpy bf16 bits for x too: same values, same result
        xbits = xb.view(torch.int16).numpy().view(np.uint16)
        on = skipllama.sparse_mlp_forward(xbits, *enc, m, "relu", dtype="bf16")
        self.assertTrue(np.array_equal(on, o.numpy()))
        onb = skipllama.sparse_mlp_forward(xbits, *enc, m, "relu", dtype="bf16", out_dtype="input")
        self.assertEqual(onb.dtype, np.uint16)
        self.assertTrue(np.array_equal(onb, ob.view(torch.int16).numpy().view(np.uint16)))
        # f16 / f64 numpy x
        (g, u, d), enc = make_weights(rng, 64, 128, "f16")
        xh = x.astype(np.float16)
        oh = skipllama.sparse_mlp_forward(xh, *enc, m, out_dtype="input")
        self.assertEqual(oh.dtype, np.float16)
        o64 = skipllama.sparse_mlp_forward(x.astype(np.float64), *enc, m)
        self.assertEqual(o64.dtype, np.float32)
        self.assertLessEqual(rel_diff(o64, torch_reference(x, g, u, d, m, "silu")), TOL)
        buf = np.full((2, 64), np.nan, dtype=np.float32)
        r = skipllama.sparse_mlp_forward(x, *enc, m, out=buf)
        self.assertIs(r, buf)
        self.assertTrue(np.array_equal(buf, o64))

    def test_quantized_blocks(self):
        rng = np.random.default_rng(6)
        H, I = 96, 160
        g = (rng.standard_normal((I, H)) * 1.5 / np.sqrt(H)).astype(np.float32)
        u = (rng.standard_normal((I, H)) * 1.5 / np.sqrt(H)).astype(np.float32)
        d = (rng.standard_normal((H, I)) / np.sqrt(I)).astype(np.float32)
        x = rng.standard_normal((2, H)).astype(np.float32)
        m = rng.random((2, I)) < 0.3
        for q, tol in TOL_QUANT.items():
            enc = [skipllama.quantize_weight(a, q) for a in (g, u, d)]
            self.assertEqual(enc[0].dtype, np.uint8)
            exact = [skipllama.dequantize_weight(e, q) for e in enc]
            for act in ACTS:
                ref = torch_reference(x, *exact, m, act)
                out = skipllama.sparse_mlp_forward(x, *enc, m, act, dtype=q)
                self.assertLessEqual(rel_diff(out, ref), tol, "%s %s" % (q, act))
                tout = skipllama.sparse_mlp_forward(torch.from_numpy(x), *(torch.from_numpy(e) for e in enc),
                                                    torch.from_numpy(m), act, dtype=q)
                self.assertTrue(np.array_equal(tout.numpy(), out))
                # the library's own reference (double sums on the dequantized weights)
                cref = skipllama.sparse_mlp_reference(x, *enc, m, act, dtype=q)
                self.assertLessEqual(rel_diff(cref, ref), 1e-5)


@need_numpy
class TestNumpyOnly(unittest.TestCase):
    """What works without torch: the numpy path against a numpy float64 reference."""

    def test_numpy_reference(self):
        rng = np.random.default_rng(7)
        H, I, B = 80, 240, 2
        g = (rng.standard_normal((I, H)) / np.sqrt(H)).astype(np.float32)
        u = (rng.standard_normal((I, H)) / np.sqrt(H)).astype(np.float32)
        d = (rng.standard_normal((H, I)) / np.sqrt(I)).astype(np.float32)
        x = rng.standard_normal((B, H)).astype(np.float32)
        m = rng.random((B, I)) < 0.25
        acts = {
            "silu": lambda v: v / (1 + np.exp(-v)),
            "relu": lambda v: np.maximum(v, 0),
            "gelu": lambda v: 0.5 * v * (1 + np.tanh(0.7978845608028654 * (v + 0.044715 * v ** 3))),
        }
        G, U, D, X = (a.astype(np.float64) for a in (g, u, d, x))
        for act, fn in acts.items():
            ref = np.stack([D[:, m[b]] @ (fn(G[m[b]] @ X[b]) * (U[m[b]] @ X[b])) for b in range(B)])
            out = skipllama.sparse_mlp_forward(x, g, u, d, m, act)
            self.assertLessEqual(rel_diff(out, ref), TOL, act)

    def test_threads_agree(self):
        rng = np.random.default_rng(5)
        _, enc = make_weights(rng, 128, 512, "f16")
        x = rng.standard_normal((4, 128)).astype(np.float32)
        m = rng.random((4, 512)) < 0.2
        o1 = skipllama.sparse_mlp_forward(x, *enc, m, n_threads=1)
        o2 = skipllama.sparse_mlp_forward(x, *enc, m, n_threads=2)
        o3 = skipllama.sparse_mlp_forward(x, *enc, m, n_threads=3)
        self.assertLessEqual(rel_diff(o2, o1), TOL_ORDER)
        self.assertLessEqual(rel_diff(o3, o1), TOL_ORDER)

    def test_bundled_layout(self):
        """set_bundled: per-row calls through the neuron-bundled copy give the matrices' result
        (up to summation order); turned off, the matrices' result exactly again."""
        rng = np.random.default_rng(13)
        g = rng.standard_normal((160, 64)).astype(np.float32) / 8
        u = rng.standard_normal((160, 64)).astype(np.float32) / 8
        d = rng.standard_normal((64, 160)).astype(np.float32) / 8
        x = rng.standard_normal((3, 64)).astype(np.float32)
        m = rng.random((3, 160)) < 0.3
        op = skipllama.SparseMLP(g, u, d, "silu", n_threads=1)
        plain = op(x, m)
        op.set_bundled(True)
        bundled = op(x, m)
        self.assertLessEqual(float(np.abs(bundled - plain).max()), 1e-5 * float(np.abs(plain).max()))
        op.set_bundled(False)
        self.assertTrue(np.array_equal(op(x, m), plain))
        op.close()

    def test_fast_and_general_paths_agree(self):
        """The per-call fast path (f32 x, bool mask, no options) against the general one (forced
        by out=), on numpy and torch, and after close()."""
        rng = np.random.default_rng(12)
        g = rng.standard_normal((160, 64)).astype(np.float32) / 8
        d = rng.standard_normal((64, 160)).astype(np.float32) / 8
        x = rng.standard_normal((3, 64)).astype(np.float32)
        m = rng.random((3, 160)) < 0.3
        op = skipllama.SparseMLP(g, g, d, "relu", n_threads=1)
        fast = op(x, m)
        general = op(x, m, out=np.empty((3, 64), np.float32))
        self.assertTrue(np.array_equal(fast, general))
        self.assertTrue(np.array_equal(op(x, m.astype(np.uint8)), fast))  # not bool: general path
        self.assertTrue(np.array_equal(op(np.asfortranarray(x), m), fast))  # not C-contiguous: general path
        if torch is not None:
            t = op(torch.from_numpy(x), torch.from_numpy(m))
            self.assertIsInstance(t, torch.Tensor)
            self.assertTrue(np.array_equal(t.numpy(), fast))
            tg = torch.from_numpy(x).requires_grad_(True)
            self.assertTrue(np.array_equal(op(tg, torch.from_numpy(m)).numpy(), fast))
        with self.assertRaises(ValueError):
            op(x, m[:, :100])
        op.close()
        with self.assertRaises(ValueError):
            op(x, m)

    def test_down_pretransposed_is_used_in_place(self):
        """A down given as the .T view of a contiguous [I, H] matrix is the operator's down_t:
        same results, nothing transposed or copied."""
        rng = np.random.default_rng(8)
        H, I = 64, 192
        g = rng.standard_normal((I, H)).astype(np.float32) / 8
        u = rng.standard_normal((I, H)).astype(np.float32) / 8
        down_t = rng.standard_normal((I, H)).astype(np.float32) / 8
        down = np.ascontiguousarray(down_t.T)
        x = rng.standard_normal((2, H)).astype(np.float32)
        m = rng.random((2, I)) < 0.3
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a copy would warn
            a = skipllama.SparseMLP(g, u, down_t.T, "silu", n_threads=1)
        self.assertFalse(a.builds_down_t)
        self.assertEqual(a.weight_pointers[3], down_t.ctypes.data)
        b = skipllama.SparseMLP(g, u, down, "silu", n_threads=1)
        self.assertTrue(b.builds_down_t)
        self.assertTrue(np.array_equal(a(x, m), b(x, m)))
        self.assertGreaterEqual(b.memory_bytes - a.memory_bytes, down.nbytes)
        c = skipllama.SparseMLP(g, u, None, "silu", down_t=down_t, n_threads=1)
        self.assertTrue(np.array_equal(c(x, m), b(x, m)))
        for op in (a, b, c):
            op.close()

    def test_non_contiguous_weight_is_copied_with_warning(self):
        rng = np.random.default_rng(9)
        big = rng.standard_normal((96, 128)).astype(np.float32)
        g = big[:, ::2]  # [96, 64], strided
        u = np.ascontiguousarray(g)
        d = rng.standard_normal((64, 96)).astype(np.float32)
        x = rng.standard_normal((1, 64)).astype(np.float32)
        with self.assertWarns(skipllama.SkipLlamaCopyWarning):
            op = skipllama.SparseMLP(g, u, d, n_threads=1)
        self.assertTrue(op.copied)
        ref = skipllama.SparseMLP(u, u, d, n_threads=1)
        self.assertTrue(np.array_equal(op(x), ref(x)))

    def test_errors_carry_the_c_message(self):
        rng = np.random.default_rng(10)
        g = rng.standard_normal((96, 64)).astype(np.float32)
        d = rng.standard_normal((64, 96)).astype(np.float32)
        x = rng.standard_normal((2, 64)).astype(np.float32)
        with self.assertRaises(SkipLlamaError) as cm:
            skipllama.sparse_mlp_forward_indices(x, g, g, d, [[1, 1], [2]])
        self.assertEqual(cm.exception.status, 1)
        self.assertEqual(cm.exception.status_name, "invalid argument")
        self.assertIn("appears twice", str(cm.exception))
        with self.assertRaises(SkipLlamaError) as cm:
            skipllama.sparse_mlp_forward_indices(x, g, g, d, [[1, 96], [2]])
        self.assertEqual(cm.exception.status, 6)  # SL_ERR_RANGE
        self.assertIn("96", str(cm.exception))
        with self.assertRaises(SkipLlamaError) as cm:  # an activation code the library does not know
            skipllama.SparseMLP(g, g, d, 7)
        self.assertEqual(cm.exception.status, 4)  # SL_ERR_UNSUPPORTED
        self.assertIn("activation", str(cm.exception))
        # shape and type problems found before C is called
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x, g, g, d, np.ones((2, 95), bool))
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x[:, :63], g, g, d)
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x, g, g, d.T.copy())
        with self.assertRaises(TypeError):
            skipllama.sparse_mlp_forward(x, g.astype(np.float64), g, d)
        with self.assertRaises(TypeError):
            skipllama.sparse_mlp_forward(x, g.view(np.uint16)[:, :64], g, d)  # bits without dtype="bf16"
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x, g, g, d, act_fn_name="tanh")
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x, g, g, d, mode="sum")
        with self.assertRaises(ValueError):
            skipllama.sparse_mlp_forward(x, g, g, d, np.ones((2, 96), bool), indices=[[1], [2]])

    def test_cache(self):
        rng = np.random.default_rng(11)
        skipllama.clear_cache()
        g = rng.standard_normal((96, 64)).astype(np.float32)
        d = rng.standard_normal((64, 96)).astype(np.float32)
        x = rng.standard_normal((1, 64)).astype(np.float32)
        o1 = skipllama.sparse_mlp_forward(x, g, g, d, n_threads=1)
        info = skipllama.cache_info()
        self.assertEqual(info["entries"], 1)
        self.assertGreaterEqual(info["bytes"], d.nbytes)  # the transposed down
        op = next(iter(skipllama.op._cache.values()))
        o2 = skipllama.sparse_mlp_forward(x, g, g, d, n_threads=1)
        self.assertIs(next(iter(skipllama.op._cache.values())), op)  # not rebuilt
        self.assertTrue(np.array_equal(o1, o2))
        self.assertEqual(op.weight_pointers[:3], (g.ctypes.data, g.ctypes.data, d.ctypes.data))
        skipllama.sparse_mlp_forward(x, g, g, d, n_threads=2)  # another thread count: another entry
        self.assertEqual(skipllama.cache_info()["entries"], 2)
        skipllama.set_cache_limit(1)
        try:
            self.assertEqual(skipllama.cache_info()["entries"], 1)
        finally:
            skipllama.set_cache_limit(64)
        skipllama.clear_cache()
        self.assertEqual(skipllama.cache_info(), {"entries": 0, "max_entries": 64, "bytes": 0})
        skipllama.sparse_mlp_forward(x, g, g, d, cache=False)
        self.assertEqual(skipllama.cache_info()["entries"], 0)
        # new view objects of the same memory each call: the pointer-keyed cache still hits
        for _ in range(3):
            o4 = skipllama.sparse_mlp_forward(x, g[:], g[:], d[:], n_threads=1)
        self.assertEqual(skipllama.cache_info()["entries"], 1)
        self.assertTrue(np.array_equal(o4, o1))
        # the default thread count is part of the key
        skipllama.set_num_threads(2)
        try:
            skipllama.sparse_mlp_forward(x, g, g, d)
            self.assertEqual(next(reversed(skipllama.op._cache.values())).n_threads, 2)
        finally:
            skipllama.set_num_threads(None)
        skipllama.clear_cache()
        # a numpy down changed in place needs clear_cache() (documented): afterwards, new results
        d *= 2
        o3 = skipllama.sparse_mlp_forward(x, g, g, d, n_threads=1)
        self.assertLessEqual(rel_diff(o3, 2 * o1), 1e-6)
        skipllama.clear_cache()


@need_numpy
@need_torch
class TestTorchSpecifics(unittest.TestCase):
    def test_inplace_change_of_down_rebuilds(self):
        skipllama.clear_cache()
        torch.manual_seed(0)
        g = torch.randn(96, 64)
        d = torch.randn(64, 96)
        x = torch.randn(1, 64)
        o1 = skipllama.sparse_mlp_forward(x, g, g, d)
        with torch.no_grad():
            d.mul_(2)  # bumps the version counter: the cached down_t is stale
        o2 = skipllama.sparse_mlp_forward(x, g, g, d)
        self.assertLessEqual(rel_diff(o2.numpy(), 2 * o1.numpy()), 1e-6)
        skipllama.clear_cache()

    def test_linear_layers_and_grad_tensors(self):
        """nn.Linear weights (parameters with requires_grad) are read in place; the result is
        a plain tensor (no autograd)."""
        torch.manual_seed(1)
        gate = torch.nn.Linear(64, 96, bias=False)
        up = torch.nn.Linear(64, 96, bias=False)
        down = torch.nn.Linear(96, 64, bias=False)
        x = torch.randn(2, 64, requires_grad=True)
        m = torch.rand(2, 96) < 0.5
        op = skipllama.SparseMLP(gate.weight, up.weight, down.weight, "silu", n_threads=1)
        self.assertEqual(op.weight_pointers[:3], (gate.weight.data_ptr(), up.weight.data_ptr(), down.weight.data_ptr()))
        out = op(x, m)
        self.assertFalse(out.requires_grad)
        with torch.no_grad():
            ref = torch.stack([down.weight[:, m[b]] @ (torch.nn.functional.silu(gate.weight[m[b]] @ x[b]) *
                                                       (up.weight[m[b]] @ x[b])) for b in range(2)])
        self.assertLessEqual(rel_diff(out.numpy(), ref.numpy()), TOL)
        # HF keeps down_proj as [H, I]; its .t() is [I, H] contiguous = down_t layout
        dt = down.weight.detach().t().contiguous()
        op2 = skipllama.SparseMLP(gate.weight, up.weight, dt.t(), "silu", n_threads=1)
        self.assertFalse(op2.builds_down_t)
        self.assertTrue(torch.equal(op2(x, m), out))

    def test_indices_as_tensors_and_union(self):
        torch.manual_seed(2)
        g, u, d = torch.randn(128, 64) / 8, torch.randn(128, 64) / 8, torch.randn(64, 128) / 8
        x = torch.randn(3, 64)
        m = torch.rand(3, 128) < 0.2
        idx2d = torch.stack([torch.randperm(128)[:10] for _ in range(3)])  # [B, k] int64
        mk = torch.zeros(3, 128, dtype=torch.bool)
        mk[torch.arange(3)[:, None], idx2d] = True
        a = skipllama.sparse_mlp_forward_indices(x, g, u, d, idx2d)
        b = skipllama.sparse_mlp_forward(x, g, u, d, mk)
        self.assertLessEqual(rel_diff(a.numpy(), b.numpy()), TOL_ORDER)
        union = m.any(0, keepdim=True).expand(3, -1).contiguous()
        c = skipllama.sparse_mlp_forward(x, g, u, d, m, mode="union")
        e = skipllama.sparse_mlp_forward(x, g, u, d, union)
        self.assertLessEqual(rel_diff(c.numpy(), e.numpy()), TOL_ORDER)
        skipllama.clear_cache()

    def test_float64_weights_refused(self):
        g = torch.randn(32, 32)
        with self.assertRaises(TypeError):
            skipllama.sparse_mlp_forward(torch.randn(1, 32), g.double(), g, g)


if __name__ == "__main__":
    unittest.main(verbosity=2)
