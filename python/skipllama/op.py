"""The sparse MLP operator on numpy arrays and torch tensors.

What it is for: the prototype's entry point

    sparse_mlp_forward(x, gate_weight, up_weight, down_weight, mask, act_fn_name="silu")

    x [B, H], gate/up [I, H], down [H, I] (row-major, as nn.Linear / GGUF store them), mask [B, I] bool
    out[b] = down[:, m] @ (act(gate[m] @ x[b]) * (up[m] @ x[b])),  m = mask[b]

backed by libskipllama's sl_sparse_mlp_* (C, SIMD, threaded), plus the index-list form, the
union-mask mode, the dense comparison path and the library's plain reference. What it is not:
an autograd op (no backward), nor a GPU op (CPU tensors only).

Data handling
  - Weights are passed to C by pointer: no copy when they are C-contiguous (or, for down, when it
    is the transpose view of a contiguous [I, H] matrix: then it is used directly as the
    operator's down_t and nothing is transposed). Other layouts are copied once, with a
    SkipLlamaCopyWarning. Types: float32, float16, bfloat16 (torch.bfloat16; numpy has no
    bfloat16, so pass the raw bits as a uint16 array with dtype="bf16"), and the raw blocks of
    Q8_0 / Q4_0 as uint8 arrays [rows, row_bytes] with dtype="q8_0" / "q4_0". gate, up and down
    share one type.
  - x may be any float dtype; it is converted to float32 (a small copy) when it is not already.
  - The result is float32 (the prototype computed in float32 and the library accumulates in
    float32), of the kind x was: torch in -> torch out, numpy in -> numpy out, shape [B, H]
    (or [H] for a 1-D x). out_dtype="input" casts it back to x's dtype instead.

The prepared-operator cache
  The operator reads down one neuron at a time, so it needs down transposed (down_t, [I, H]).
  Building it costs one pass over down and memory equal to the size of down (same type): for
  Llama-3.2-1B, 64 MiB per layer in f32, 32 MiB in f16/bf16. sparse_mlp_forward therefore keeps
  the prepared operator (down_t, scratch buffers) in an LRU cache keyed by the weights' data
  pointers, shapes, type, activation and thread count, so repeated calls with the same weights
  pay for it once. The cache holds references to the weight arrays it was built from (so their
  memory cannot be freed and reused under a stale key). Consequences:
    - memory: each entry costs sl_sparse_mlp_memory bytes (about the size of down, unless down
      came pre-transposed) and keeps its weights alive; see cache_info(), clear_cache(),
      set_cache_limit() (default 64 entries, enough for the MLPs of a 64-layer model); dropped
      entries are freed as soon as no call is using them;
    - in-place changes to down: torch tensors are checked through their version counter and
      rebuilt; for numpy arrays changed in place call clear_cache() (gate and up are read live,
      so changing them needs nothing).
  SparseMLP holds one prepared operator explicitly, with no cache involved.

Threads: n_threads (per call or set_num_threads) defaults to the machine's CPU count, at most
16. Operators with the same thread count share one set of worker threads (as the model's layers
do), so those operators run one at a time; each operator is also locked against concurrent use.
ctypes releases the GIL during the C call.
"""

import collections
import ctypes
import os
import sys
import threading
import warnings

from . import _lib
from ._lib import SkipLlamaError, lib

try:
    import numpy as np
except ImportError:  # the model API works without numpy; the operator does not
    np = None

__all__ = [
    "sparse_mlp_forward",
    "sparse_mlp_forward_indices",
    "mlp_dense_forward",
    "sparse_mlp_reference",
    "quantize_weight",
    "dequantize_weight",
    "SparseMLP",
    "SkipLlamaCopyWarning",
    "clear_cache",
    "cache_info",
    "set_cache_limit",
    "set_num_threads",
    "get_num_threads",
]


class SkipLlamaCopyWarning(UserWarning):
    """A weight had a layout the library cannot read in place, so it was copied once."""


_TYPES = {
    "f32": _lib.SL_TYPE_F32, "float32": _lib.SL_TYPE_F32, "float": _lib.SL_TYPE_F32,
    "f16": _lib.SL_TYPE_F16, "float16": _lib.SL_TYPE_F16, "half": _lib.SL_TYPE_F16,
    "bf16": _lib.SL_TYPE_BF16, "bfloat16": _lib.SL_TYPE_BF16,
    "q8_0": _lib.SL_TYPE_Q8_0, "q4_0": _lib.SL_TYPE_Q4_0,
}
_TYPE_NAMES = {_lib.SL_TYPE_F32: "f32", _lib.SL_TYPE_F16: "f16", _lib.SL_TYPE_BF16: "bf16",
               _lib.SL_TYPE_Q8_0: "q8_0", _lib.SL_TYPE_Q4_0: "q4_0"}
_QUANT_BLOCK_BYTES = {_lib.SL_TYPE_Q8_0: 34, _lib.SL_TYPE_Q4_0: 18}  # per 32 weights

# the library's names, and the Hugging Face / PyTorch names that mean the same function
_ACTS = {
    "silu": _lib.SL_ACT_SILU, "swish": _lib.SL_ACT_SILU,
    "relu": _lib.SL_ACT_RELU,
    "gelu": _lib.SL_ACT_GELU, "gelu_tanh": _lib.SL_ACT_GELU, "gelu-tanh": _lib.SL_ACT_GELU,
    "gelu_new": _lib.SL_ACT_GELU, "gelu_pytorch_tanh": _lib.SL_ACT_GELU,
    "gelu_f16": _lib.SL_ACT_GELU_F16,  # as llama.cpp's CPU backend rounds it (Gemma files)
}
_MODES = {
    "per_row": _lib.SL_MLP_PER_ROW, "per-row": _lib.SL_MLP_PER_ROW,
    "union": _lib.SL_MLP_UNION,
    "per_row_shared": _lib.SL_MLP_PER_ROW_SHARED, "per-row-shared": _lib.SL_MLP_PER_ROW_SHARED,
}


_ndarray = np.ndarray if np is not None else None
_np_empty = np.empty if np is not None else None
_np_f32 = np.float32 if np is not None else None


def _need_numpy():
    if np is None:
        raise ImportError("skipllama's MLP operator needs numpy (Debian: apt-get install python3-numpy)")


_torch = None  # the torch module and its Tensor class, once the caller has imported torch
_Tensor = None


def _torch_of(a):
    """The torch module when `a` is a torch tensor (without importing torch ourselves)."""
    global _torch, _Tensor
    if _Tensor is None:
        t = sys.modules.get("torch")
        if t is None or not hasattr(t, "Tensor"):
            return None
        _torch, _Tensor = t, t.Tensor
    return _torch if isinstance(a, _Tensor) else None


def _act_code(name):
    if isinstance(name, int):
        return name
    try:
        return _ACTS[str(name).lower()]
    except KeyError:
        raise ValueError("unknown activation %r (expected one of: silu, relu, gelu = tanh approximation)" % (name,))


def _mode_code(mode):
    if isinstance(mode, int):
        return mode
    try:
        return _MODES[str(mode).lower()]
    except KeyError:
        raise ValueError("unknown mode %r (expected per_row, union or per_row_shared)" % (mode,))


def _type_code(dtype):
    if dtype is None:
        return None
    if isinstance(dtype, int):
        return dtype
    try:
        return _TYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError("unknown weight dtype %r (expected f32, f16, bf16, q8_0 or q4_0)" % (dtype,))


_threads_default = 1


def set_num_threads(n):
    """Default worker threads of operators created from now on (None = CPU count, at most 16)."""
    global _threads_default
    if n is not None and (int(n) < 1 or int(n) > 512):
        raise ValueError("n_threads must be within 1..512")
    _threads_default = max(1, min(os.cpu_count() or 1, 16)) if n is None else int(n)


def get_num_threads():
    return _threads_default


set_num_threads(None)


# ---- array views ------------------------------------------------------------------------------


class _Weight:
    """A weight matrix as the library will read it.

    obj:    the array/tensor whose memory is passed (kept alive by whoever holds this)
    ptr:    address of its first byte
    type:   sl_type code
    rows, cols: logical shape in elements (cols counts weights, not bytes, for Q8_0/Q4_0)
    transposed: memory holds the transpose, row-major [cols, rows] (obj is a .T view)
    version: torch's in-place version counter at the time of the view (None for numpy)
    copied: the caller's array had an unusable layout and obj is our contiguous copy
    """

    __slots__ = ("obj", "ptr", "type", "rows", "cols", "transposed", "version", "copied")


def _weight_view(a, type_hint, name, allow_transposed):
    w = _Weight()
    w.copied = False
    w.transposed = False
    w.version = None
    torch = _torch_of(a)
    if torch is not None:
        if a.device.type != "cpu":
            raise ValueError("%s is on %s; the library runs on the CPU (pass %s.cpu())" % (name, a.device, name))
        if a.dim() != 2:
            raise ValueError("%s must be 2-D, got shape %s" % (name, tuple(a.shape)))
        tmap = {torch.float32: _lib.SL_TYPE_F32, torch.float16: _lib.SL_TYPE_F16, torch.bfloat16: _lib.SL_TYPE_BF16}
        if a.dtype in tmap:
            t = tmap[a.dtype]
            if type_hint is not None and type_hint != t:
                raise TypeError("%s is %s but dtype=%r was given" % (name, a.dtype, _TYPE_NAMES.get(type_hint)))
        elif a.dtype in (torch.uint8, torch.int8) and type_hint in _QUANT_BLOCK_BYTES:
            t = type_hint
        elif a.dtype == torch.int16 and type_hint == _lib.SL_TYPE_BF16:
            t = type_hint
        else:
            raise TypeError("%s has dtype %s; expected float32, float16, bfloat16 (or uint8 blocks with "
                            "dtype='q8_0'/'q4_0')" % (name, a.dtype))
        a = a.detach()
        if a.is_contiguous():
            pass
        elif allow_transposed and t not in _QUANT_BLOCK_BYTES and a.t().is_contiguous():
            w.transposed = True
        else:
            warnings.warn("%s is not contiguous: copying it (%d bytes)" % (name, a.numel() * a.element_size()),
                          SkipLlamaCopyWarning, stacklevel=4)
            a = a.contiguous()
            w.copied = True
        w.obj = a
        w.ptr = a.data_ptr()
        shape = tuple(a.shape)
        w.version = a._version
    else:
        _need_numpy()
        if not isinstance(a, np.ndarray):
            raise TypeError("%s must be a numpy array or a torch tensor, not %s" % (name, type(a).__name__))
        if a.ndim != 2:
            raise ValueError("%s must be 2-D, got shape %s" % (name, a.shape))
        dt = a.dtype
        if dt == np.float32:
            t = _lib.SL_TYPE_F32
        elif dt == np.float16:
            t = _lib.SL_TYPE_F16
        elif dt in (np.uint16, np.int16) and type_hint == _lib.SL_TYPE_BF16:
            t = type_hint
        elif dt in (np.uint8, np.int8) and type_hint in _QUANT_BLOCK_BYTES:
            t = type_hint
        elif dt in (np.uint16, np.int16):
            raise TypeError("%s is a %s array: pass dtype='bf16' if it holds bfloat16 bits" % (name, dt))
        else:
            raise TypeError("%s has dtype %s; expected float32, float16, uint16 with dtype='bf16', or uint8 "
                            "blocks with dtype='q8_0'/'q4_0' (convert with .astype(np.float32))" % (name, dt))
        if type_hint is not None and type_hint != t:
            raise TypeError("%s is %s but dtype=%r was given" % (name, dt, _TYPE_NAMES.get(type_hint)))
        if a.flags.c_contiguous:
            pass
        elif allow_transposed and t not in _QUANT_BLOCK_BYTES and a.flags.f_contiguous:
            w.transposed = True
        else:
            warnings.warn("%s is not contiguous: copying it (%d bytes)" % (name, a.nbytes),
                          SkipLlamaCopyWarning, stacklevel=4)
            a = np.ascontiguousarray(a)
            w.copied = True
        w.obj = a
        w.ptr = a.__array_interface__["data"][0]
        shape = a.shape
    w.type = t
    w.rows, w.cols = int(shape[0]), int(shape[1])
    if t in _QUANT_BLOCK_BYTES:
        bb = _QUANT_BLOCK_BYTES[t]
        if w.cols % bb:
            raise ValueError("%s: %s rows of %d bytes are not whole blocks of %d bytes"
                             % (name, _TYPE_NAMES[t], w.cols, bb))
        w.cols = w.cols // bb * 32
    return w


class _Input:
    """x converted for the library: f32, C-contiguous, [B, H]."""

    __slots__ = ("obj", "ptr", "B", "H", "one_d", "torch", "orig_dtype", "bf16_bits")


def _input_view(x, bf16_bits):
    v = _Input()
    torch = _torch_of(x)
    v.torch = torch
    v.bf16_bits = False
    if torch is not None:
        if x.device.type != "cpu":
            raise ValueError("x is on %s; the library runs on the CPU" % (x.device,))
        v.orig_dtype = x.dtype
        xt = x.detach()
        if xt.dtype != torch.float32:
            if not xt.is_floating_point():
                raise TypeError("x has dtype %s; expected a float tensor" % (xt.dtype,))
            xt = xt.to(torch.float32)
        if not xt.is_contiguous():
            xt = xt.contiguous()
        shape = tuple(xt.shape)
        v.obj = xt
        v.ptr = xt.data_ptr()
    else:
        _need_numpy()
        xa = np.asarray(x)
        v.orig_dtype = xa.dtype
        if xa.dtype in (np.uint16, np.int16):
            if not bf16_bits:
                raise TypeError("x is a %s array: pass dtype='bf16' if it holds bfloat16 bits" % (xa.dtype,))
            xa = (np.ascontiguousarray(xa).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
            v.bf16_bits = True
        elif xa.dtype != np.float32:
            if xa.dtype.kind not in "fiu":
                raise TypeError("x has dtype %s; expected a float array" % (xa.dtype,))
            xa = xa.astype(np.float32)
        xa = np.ascontiguousarray(xa)
        shape = xa.shape
        v.obj = xa
        v.ptr = xa.__array_interface__["data"][0]
    if len(shape) == 1:
        v.one_d, v.B, v.H = True, 1, int(shape[0])
    elif len(shape) == 2:
        v.one_d, v.B, v.H = False, int(shape[0]), int(shape[1])
    else:
        raise ValueError("x must be [B, H] (or [H]), got shape %s" % (shape,))
    if v.B < 1:
        raise ValueError("x has no rows (B = 0)")
    return v


def _mask_view(mask, xv, I):
    """(keepalive, pointer) of a C bool [B, I] mask."""
    torch = _torch_of(mask)
    if torch is not None:
        m = mask.detach()
        if m.device.type != "cpu":
            raise ValueError("mask is on %s; the library runs on the CPU" % (m.device,))
        if m.dtype != torch.bool:
            m = m != 0
        if not m.is_contiguous():
            m = m.contiguous()
        shape = tuple(m.shape)
        ptr = m.data_ptr()
    else:
        _need_numpy()
        m = np.asarray(mask)
        if m.dtype != np.bool_:
            m = m != 0
        m = np.ascontiguousarray(m)
        shape = m.shape
        ptr = m.__array_interface__["data"][0]
    want = (I,) if xv.one_d else (xv.B, I)
    if tuple(shape) != want and not (xv.one_d and tuple(shape) == (1, I)):
        raise ValueError("mask has shape %s; expected %s ([B, I] bool, I = %d neurons)" % (tuple(shape), want, I))
    return m, ptr


def _index_view(indices, xv, I):
    """(keepalive, idx pointer array, n_idx array) for per-row index lists."""
    _need_numpy()
    torch = _torch_of(indices)
    if torch is not None:
        indices = indices.detach().cpu().numpy()
    if isinstance(indices, np.ndarray) and indices.ndim == 2:
        rows = list(indices)
    elif isinstance(indices, np.ndarray) and indices.ndim == 1 and xv.one_d:
        rows = [indices]
    elif isinstance(indices, np.ndarray):
        raise ValueError("indices must be [B, k], a list of B 1-D index arrays, or (for a 1-D x) one list")
    else:
        rows = list(indices)
        # a flat list of ints for a single row
        if xv.one_d and rows and not hasattr(rows[0], "__len__"):
            rows = [rows]
    if len(rows) != xv.B:
        raise ValueError("indices has %d rows but x has %d" % (len(rows), xv.B))
    keep = []
    ptrs = (ctypes.POINTER(ctypes.c_int32) * xv.B)()
    counts = (ctypes.c_int32 * xv.B)()
    for b, r in enumerate(rows):
        t = _torch_of(r)
        if t is not None:
            r = r.detach().cpu().numpy()
        a = np.ascontiguousarray(np.asarray(r).reshape(-1))
        if a.size and a.dtype.kind not in "iu":
            raise TypeError("indices must be integers, row %d has dtype %s" % (b, a.dtype))
        if a.dtype != np.int32:
            if a.size and (a.min() < -2 ** 31 or a.max() >= 2 ** 31):
                # the library checks ranges itself; this only keeps the int32 cast from wrapping
                raise SkipLlamaError(_lib.SL_ERR_RANGE, "sparse mlp: idx[%d] holds an index outside [0, %d)" % (b, I))
            a = a.astype(np.int32)
        keep.append(a)
        counts[b] = a.size
        ptrs[b] = a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)) if a.size else None
    return keep, ptrs, counts


def _new_output(xv, out):
    if out is not None:
        torch = _torch_of(out)
        if torch is not None:
            ok = out.dtype == torch.float32 and out.is_contiguous() and out.device.type == "cpu"
            ptr = out.data_ptr() if ok else 0
            shape = tuple(out.shape)
        else:
            ok = isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous and out.flags.writeable
            ptr = out.__array_interface__["data"][0] if ok else 0
            shape = out.shape if isinstance(out, np.ndarray) else None
        want = (xv.H,) if xv.one_d else (xv.B, xv.H)
        if not ok or tuple(shape) != want:
            raise ValueError("out must be a writable contiguous float32 array of shape %s" % (want,))
        if ptr == xv.ptr:
            raise ValueError("out may not alias x")
        return out, ptr
    shape = (xv.H,) if xv.one_d else (xv.B, xv.H)
    if xv.torch is not None:
        o = xv.torch.empty(shape, dtype=xv.torch.float32)
        return o, o.data_ptr()
    o = np.empty(shape, dtype=np.float32)
    return o, o.__array_interface__["data"][0]


def _cast_output(o, xv, out_dtype):
    if out_dtype is None or out_dtype == "float32":
        return o
    if out_dtype != "input":
        raise ValueError("out_dtype must be None (float32) or 'input'")
    if xv.torch is not None:
        return o if xv.orig_dtype == xv.torch.float32 else o.to(xv.orig_dtype)
    if xv.bf16_bits:  # round to nearest even, as the library converts
        bits = np.empty(o.shape, dtype=np.uint16)
        lib.sl_convert_from_f32(_lib.SL_TYPE_BF16, o.__array_interface__["data"][0],
                                bits.__array_interface__["data"][0], o.size)
        return bits.view(xv.orig_dtype)
    return o if xv.orig_dtype == np.float32 else o.astype(xv.orig_dtype)


# ---- weight conversion -------------------------------------------------------------------------


def quantize_weight(w, dtype):
    """Encode a float32 matrix [rows, cols] as the library's `dtype` ("f16", "bf16", "q8_0",
    "q4_0"; ggml's rounding): float16 / uint16 (bf16 bits) arrays [rows, cols], or uint8 blocks
    [rows, row_bytes] for Q8_0/Q4_0 (cols a multiple of 32). Takes and returns numpy arrays."""
    _need_numpy()
    t = _type_code(dtype)
    a = np.ascontiguousarray(np.asarray(w, dtype=np.float32))
    if a.ndim != 2:
        raise ValueError("expected a 2-D matrix, got shape %s" % (a.shape,))
    rows, cols = a.shape
    if t == _lib.SL_TYPE_F32:
        return a.copy()
    if t in _QUANT_BLOCK_BYTES:
        if cols % 32:
            raise ValueError("%s needs a multiple of 32 columns, got %d" % (_TYPE_NAMES[t], cols))
        out = np.empty((rows, cols // 32 * _QUANT_BLOCK_BYTES[t]), dtype=np.uint8)
    else:
        out = np.empty((rows, cols), dtype=np.float16 if t == _lib.SL_TYPE_F16 else np.uint16)
    if a.size and lib.sl_convert_from_f32(t, a.ctypes.data, out.ctypes.data, a.size) == 0:
        raise SkipLlamaError(_lib.SL_ERR_UNSUPPORTED, "cannot encode as %r" % (dtype,))
    return out


def dequantize_weight(w, dtype):
    """Decode what quantize_weight made (or any f16/bf16-bits/Q8_0/Q4_0 numpy matrix) to float32."""
    _need_numpy()
    t = _type_code(dtype)
    a = np.ascontiguousarray(w)
    rows = a.shape[0]
    cols = a.shape[1] // _QUANT_BLOCK_BYTES[t] * 32 if t in _QUANT_BLOCK_BYTES else a.shape[1]
    out = np.empty((rows, cols), dtype=np.float32)
    if out.size and not lib.sl_convert_to_f32(t, a.ctypes.data, out.ctypes.data, out.size):
        raise SkipLlamaError(_lib.SL_ERR_UNSUPPORTED, "cannot decode %r" % (dtype,))
    return out


# ---- shared worker threads --------------------------------------------------------------------


class _ThreadOwner:
    """An operator on tiny dummy weights whose only job is to own n worker threads that real
    operators borrow (sl_sparse_mlp_init_shared), with the lock that keeps them from running at
    the same time. Borrowers keep a reference to it, so it is freed after them."""

    def __init__(self, n_threads):
        _need_numpy()
        self.n_threads = n_threads
        self.lock = threading.RLock()
        self._dummy = np.zeros((32, 32), dtype=np.float32)
        p = self._dummy.__array_interface__["data"][0]
        w = _lib.sl_mlp_weights(_lib.SL_TYPE_F32, 32, 32, p, p, p, p)
        err = _lib.sl_error()
        self.op = lib.sl_sparse_mlp_init(ctypes.byref(w), _lib.SL_ACT_SILU, n_threads, ctypes.byref(err))
        if not self.op:
            _lib.raise_error(err)
        self._free = lib.sl_sparse_mlp_free

    def __del__(self):
        op, self.op = getattr(self, "op", None), None
        if op:
            self._free(op)


_owners = {}
_owners_lock = threading.Lock()


def _thread_owner(n):
    with _owners_lock:
        o = _owners.get(n)
        if o is None:
            o = _owners[n] = _ThreadOwner(n)
        return o


# ---- the prepared operator --------------------------------------------------------------------


class SparseMLP:
    """One MLP's weights prepared for the library (the transposed down built once).

        mlp = SparseMLP(gate_weight, up_weight, down_weight, "silu")
        y = mlp(x, mask)                      # or mlp(x, indices=[...]), mlp(x, mask, mode="union")
        y = mlp.dense(x)                      # the dense MLP (all neurons, dense kernels)

    gate_weight/up_weight: [I, H]; down_weight: [H, I] (or None with down_t=[I, H], e.g. a weight
    stored transposed already). The arrays are borrowed by pointer, not copied: they must stay
    unchanged while the object lives (it keeps references to them). dtype: needed for numpy
    bfloat16 bits ("bf16", uint16 arrays) and Q8_0/Q4_0 blocks ("q8_0"/"q4_0", uint8
    [rows, row_bytes]); otherwise inferred. n_threads: worker threads (default
    get_num_threads()); share_threads: borrow the per-thread-count shared workers instead of
    starting this operator's own. Memory the library owns beyond the weights: .memory_bytes.
    """

    def __init__(self, gate_weight, up_weight, down_weight=None, act_fn_name="silu", *, down_t=None, dtype=None,
                 n_threads=None, share_threads=True):
        self._op = None
        self._free = lib.sl_sparse_mlp_free
        hint = _type_code(dtype)
        g = _weight_view(gate_weight, hint, "gate_weight", False)
        u = _weight_view(up_weight, g.type, "up_weight", False)
        if down_weight is None and down_t is None:
            raise ValueError("give down_weight [H, I] or down_t [I, H]")
        d = _weight_view(down_weight, g.type, "down_weight", True) if down_weight is not None else None
        dt = _weight_view(down_t, g.type, "down_t", False) if down_t is not None else None
        I, H = g.rows, g.cols
        if (u.rows, u.cols) != (I, H):
            raise ValueError("up_weight has shape [%d, %d] but gate_weight is [%d, %d]" % (u.rows, u.cols, I, H))
        if d is not None:
            # (a transposed view has the logical shape [H, I] too; only its memory is [I, H])
            if (d.rows, d.cols) != (H, I):
                raise ValueError("down_weight has shape [%d, %d]; expected [H, I] = [%d, %d]" % (d.rows, d.cols, H, I))
        if dt is not None and (dt.rows, dt.cols) != (I, H):
            raise ValueError("down_t has shape [%d, %d]; expected [I, H] = [%d, %d]" % (dt.rows, dt.cols, I, H))
        if d is not None and d.transposed:
            if dt is not None:
                raise ValueError("down_weight is a transposed view and down_t was given too")
            dt, d = d, None  # its memory is exactly down_t: use it as such, nothing to transpose
        self.n_embd, self.n_ff, self.type = H, I, g.type
        self.act = _act_code(act_fn_name)
        self.n_threads = get_num_threads() if n_threads is None else int(n_threads)
        if self.n_threads < 1 or self.n_threads > 512:
            raise ValueError("n_threads must be within 1..512")
        self._weights = (g, u, d, dt)  # keeps the arrays alive while C borrows them
        self.copied = any(w is not None and w.copied for w in self._weights)
        self.builds_down_t = dt is None
        w = _lib.sl_mlp_weights(g.type, H, I, g.ptr, u.ptr, d.ptr if d else None, dt.ptr if dt else None)
        err = _lib.sl_error()
        if share_threads and self.n_threads > 1:
            self._owner = _thread_owner(self.n_threads)
            self._lock = self._owner.lock
            op = lib.sl_sparse_mlp_init_shared(ctypes.byref(w), self.act, self._owner.op, ctypes.byref(err))
        else:
            self._owner = None
            self._lock = threading.RLock()
            op = lib.sl_sparse_mlp_init(ctypes.byref(w), self.act, self.n_threads, ctypes.byref(err))
        if not op:
            _lib.raise_error(err)
        self._op = op
        self._stats = None
        # for the per-call fast path: the function object, one error struct reused under the lock,
        # and what tells a stale down_t (a torch down with its version at build time), or None
        self._fwd = lib.sl_sparse_mlp_forward
        self._err = _lib.sl_error()
        self._err_ref = ctypes.byref(self._err)
        self._stale_src = (d.obj, d.version) if (self.builds_down_t and d is not None and d.version is not None) else None

    # -- lifetime --

    def close(self):
        """Free the prepared operator now (down_t, scratch); the object is unusable afterwards."""
        op, self._op = self._op, None
        if op:
            with self._lock:
                self._free(op)

    def __del__(self):
        op, self._op = getattr(self, "_op", None), None
        if op:
            self._free(op)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._op:
            raise ValueError("this SparseMLP was closed")
        return self._op

    # -- information --

    @property
    def memory_bytes(self):
        """Bytes the library owns for this operator beyond the caller's weights (down_t when it
        built it, the active-row cache, scratch buffers)."""
        return int(lib.sl_sparse_mlp_memory(self._handle()))

    @property
    def weight_pointers(self):
        """Data addresses the library reads: (gate, up, down or None, down_t or None), where
        down_t is None when the library built its own. Equal to the caller's arrays' addresses
        unless a copy had to be made (see .copied)."""
        g, u, d, dt = self._weights
        return (g.ptr, u.ptr, d.ptr if d else None, dt.ptr if dt else None)

    def _stale(self):
        """True when down (from which down_t was built) was modified in place (torch only)."""
        src = self._stale_src
        return src is not None and src[0]._version != src[1]

    # -- options --

    def set_row_cache(self, capacity):
        """The library's active-row cache for decoding: keep the last call's active rows packed
        together (capacity neurons, 0 = all I, None or < 0 = off). Pays only when consecutive
        active sets overlap heavily. Memory: capacity x (2 gate/up rows + 1 down_t row)."""
        err = _lib.sl_error()
        with self._lock:
            _lib.check(lib.sl_sparse_mlp_set_cache(self._handle(), -1 if capacity is None else int(capacity),
                                                   ctypes.byref(err)), err)

    def set_bundled(self, on=True):
        """The library's neuron-bundled layout: a second copy of the MLP, gate | up | down_t row
        per neuron, through which calls with B = 1 or mode "per_row" run (one contiguous run per
        active neuron instead of three scattered rows). Memory: a full copy of the MLP."""
        err = _lib.sl_error()
        with self._lock:
            _lib.check(lib.sl_sparse_mlp_set_bundled(self._handle(), bool(on), ctypes.byref(err)), err)

    def set_stats(self, on=True):
        """Record the stage breakdown of every following call in .last_stats (a dict)."""
        with self._lock:
            if on:
                self._stats = _lib.sl_sparse_mlp_stats()
                lib.sl_sparse_mlp_set_stats(self._handle(), ctypes.byref(self._stats))
            else:
                lib.sl_sparse_mlp_set_stats(self._handle(), None)
                self._stats = None

    @property
    def last_stats(self):
        if self._stats is None:
            return None
        s = self._stats
        return {name: getattr(s, name) for name, _ in s._fields_}

    # -- calls --

    def forward(self, x, mask=None, *, indices=None, mode="per_row", out=None, out_dtype=None):
        """out[b] = sum over active i of act(gate_i . x[b]) * (up_i . x[b]) * down[:, i].

        mask: [B, I] bool (or [I] for a 1-D x); indices: per-row lists of active neuron ids
        (a list of B arrays/lists, or a [B, k] int array); neither = all neurons. mode:
        "per_row" (each row its own set), "union" (every row uses the union of the rows' sets:
        the prototype's union mask), "per_row_shared" (per-row results, union schedule).
        Returns float32 [B, H] of x's kind (see out_dtype / out in sparse_mlp_forward)."""
        if mask is not None and indices is None and out is None and out_dtype is None and mode == "per_row":
            r = self._forward_fast(x, mask)
            if r is not None:
                return r
        if mask is not None and indices is not None:
            raise ValueError("give a mask or indices, not both")
        xv = _input_view(x, self.type == _lib.SL_TYPE_BF16)
        if xv.H != self.n_embd:
            raise ValueError("x has %d features but the weights have H = %d" % (xv.H, self.n_embd))
        mode_c = _mode_code(mode)
        keep = None
        mask_ptr = idx_ptr = n_ptr = None
        if mask is not None:
            keep, mask_ptr = _mask_view(mask, xv, self.n_ff)
        elif indices is not None:
            keep, idx_ptr, n_ptr = _index_view(indices, xv, self.n_ff)
        o, optr = _new_output(xv, out)
        err = _lib.sl_error()
        with self._lock:
            st = lib.sl_sparse_mlp_forward(self._handle(), xv.ptr, xv.B, mask_ptr, idx_ptr, n_ptr, mode_c, optr,
                                           ctypes.byref(err))
        del keep
        _lib.check(st, err)
        return _cast_output(o, xv, out_dtype)

    __call__ = forward

    def _forward_fast(self, x, mask):
        """The common call, with as few Python operations as possible: after a call has streamed
        megabytes of weights through the caches, every Python-level operation runs cold (tens of
        µs each on a busy machine), so the per-call cost is set by how many there are. Handles
        float32 C-contiguous x [B, H] with a bool C-contiguous mask [B, I], both numpy or both
        torch (CPU); returns None for anything else, which the general path then handles."""
        tx = type(x)
        if tx is _ndarray:
            if type(mask) is not _ndarray:
                return None
            xa = x.__array_interface__
            ma = mask.__array_interface__
            # strides None = C-contiguous
            if xa["typestr"] != "<f4" or xa["strides"] is not None or ma["typestr"] != "|b1" or ma["strides"] is not None:
                return None
            shape = xa["shape"]
            if len(shape) != 2 or shape[1] != self.n_embd or ma["shape"] != (shape[0], self.n_ff) or shape[0] < 1:
                return None
            o = _np_empty(shape, _np_f32)
            optr = o.__array_interface__["data"][0]
            xptr = xa["data"][0]
            mptr = ma["data"][0]
        else:
            # torch: asking the tensors directly measured cheaper than going through .numpy() views
            torch = _torch_of(x)
            if torch is None or type(mask) is not tx:
                return None
            if not (x.dtype is torch.float32 and mask.dtype is torch.bool and x.is_cpu and mask.is_cpu
                    and x.is_contiguous() and mask.is_contiguous()):
                return None
            shape = tuple(x.shape)
            if len(shape) != 2 or shape[1] != self.n_embd or tuple(mask.shape) != (shape[0], self.n_ff) or shape[0] < 1:
                return None
            o = torch.empty(shape, dtype=torch.float32)
            optr = o.data_ptr()
            xptr = x.data_ptr()
            mptr = mask.data_ptr()
        with self._lock:
            h = self._op
            if not h:
                raise ValueError("this SparseMLP was closed")
            st = self._fwd(h, xptr, shape[0], mptr, None, None, 0, optr, self._err_ref)
            if st:
                _lib.check(st, self._err)
        return o

    def dense(self, x, *, out=None, out_dtype=None):
        """The dense MLP through the library's matrix kernels (needs down_weight, not only down_t
        - otherwise it reads down_t)."""
        xv = _input_view(x, self.type == _lib.SL_TYPE_BF16)
        if xv.H != self.n_embd:
            raise ValueError("x has %d features but the weights have H = %d" % (xv.H, self.n_embd))
        o, optr = _new_output(xv, out)
        err = _lib.sl_error()
        with self._lock:
            st = lib.sl_mlp_dense_forward(self._handle(), xv.ptr, xv.B, optr, ctypes.byref(err))
        _lib.check(st, err)
        return _cast_output(o, xv, out_dtype)

    def __repr__(self):
        return "SparseMLP(H=%d, I=%d, type=%s, act=%s, n_threads=%d%s)" % (
            self.n_embd, self.n_ff, _TYPE_NAMES.get(self.type, self.type),
            {0: "silu", 1: "relu", 2: "gelu"}.get(self.act, self.act), self.n_threads,
            ", closed" if not self._op else "")


# ---- the cache of prepared operators ----------------------------------------------------------

_cache = collections.OrderedDict()
_cache_lock = threading.Lock()
_cache_max = 64


def clear_cache():
    """Drop every cached prepared operator: each is freed (with its down_t copy and its
    references to the weights) as soon as no call is using it."""
    with _cache_lock:
        _cache.clear()
        _by_id.clear()


def set_cache_limit(max_entries):
    """Keep at most max_entries prepared operators (least recently used are dropped; 0 = no cache:
    every call prepares and frees its own)."""
    global _cache_max
    if int(max_entries) < 0:
        raise ValueError("max_entries must be >= 0")
    _cache_max = int(max_entries)
    _trim()


def cache_info():
    """{'entries', 'max_entries', 'bytes'}: bytes is the memory the cached operators own beyond
    the callers' weights (mostly the transposed down matrices)."""
    with _cache_lock:
        ops = list(_cache.values())
    return {"entries": len(ops), "max_entries": _cache_max, "bytes": sum(op.memory_bytes for op in ops)}


def _trim():
    # Entries are dropped, not closed: another thread may be in the middle of a call on one; the
    # operator is freed by its last reference going away.
    with _cache_lock:
        if len(_cache) > _cache_max:
            _by_id.clear()
        while len(_cache) > _cache_max:
            _cache.popitem(last=False)


# An accelerator in front of _cache: (id(gate), id(up), id(down), act, dtype, threads) -> (gate,
# up, down, op), the very objects the caller passed (held, so their ids cannot be reused while
# here). A hit skips computing the pointer/shape key, which costs more than the rest of a call's
# Python work. Emptied whenever _cache drops anything; refilled by the next calls.
_by_id = {}


def _addr_and_shape(a):
    torch = _torch_of(a)
    if torch is not None:
        return (a.data_ptr(), tuple(a.shape), tuple(a.stride()), str(a.dtype))
    if np is not None and isinstance(a, np.ndarray):
        return (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
    raise TypeError("weights must be numpy arrays or torch tensors, not %s" % type(a).__name__)


def _prepared(gate_weight, up_weight, down_weight, act, dtype, n_threads, use_cache):
    n = get_num_threads() if n_threads is None else int(n_threads)
    if not use_cache or _cache_max == 0:
        return SparseMLP(gate_weight, up_weight, down_weight, act, dtype=dtype, n_threads=n), False
    key = (_addr_and_shape(gate_weight), _addr_and_shape(up_weight), _addr_and_shape(down_weight),
           _act_code(act), _type_code(dtype), n)
    with _cache_lock:
        op = _cache.get(key)
        if op is not None:
            if op._stale():  # torch down changed in place: down_t must be rebuilt
                del _cache[key]
                _by_id.clear()
                op = None
            else:
                _cache.move_to_end(key)
    if op is None:
        fresh = SparseMLP(gate_weight, up_weight, down_weight, act, dtype=dtype, n_threads=n)
        with _cache_lock:
            op = _cache.get(key)
            if op is None or op._stale():  # (another thread may have prepared the same weights meanwhile)
                op = _cache[key] = fresh
            else:
                _cache.move_to_end(key)
        _trim()
    return op, True


def sparse_mlp_forward(x, gate_weight, up_weight, down_weight, mask=None, act_fn_name="silu", *, indices=None,
                       mode="per_row", dtype=None, n_threads=None, out=None, out_dtype=None, cache=True):
    """The prototype's sparse MLP: out[b] = down[:, m] @ (act(gate[m] @ x[b]) * (up[m] @ x[b])), m = mask[b].

    x [B, H] (or [H]); gate_weight, up_weight [I, H]; down_weight [H, I]; mask [B, I] bool, or
    indices= per-row active neuron ids (see SparseMLP.forward), or neither for all neurons.
    act_fn_name: "silu", "relu" or "gelu" (tanh approximation; "gelu_pytorch_tanh" too).
    mode: "per_row" | "union" | "per_row_shared". dtype: "bf16" for numpy uint16 bfloat16
    bits, "q8_0"/"q4_0" for uint8 blocks; inferred otherwise. Returns float32 of x's kind
    (torch in, torch out), shape [B, H]; out_dtype="input" casts it to x's dtype; out= writes
    into a given float32 array instead. cache=False prepares and frees the operator in this
    call instead of keeping it (see the module notes on the cache and its memory).
    """
    if cache and _cache_max:
        n = _threads_default if n_threads is None else n_threads
        fk = (id(gate_weight), id(up_weight), id(down_weight), act_fn_name, dtype, n)
        e = _by_id.get(fk)
        if e is not None and e[0] is gate_weight and e[1] is up_weight and e[2] is down_weight:
            op = e[3]
            src = op._stale_src
            if src is not None and src[0]._version != src[1]:
                op = None
        else:
            op = None
        if op is None:
            op, _ = _prepared(gate_weight, up_weight, down_weight, act_fn_name, dtype, n, True)
            with _cache_lock:
                if len(_by_id) >= 4 * _cache_max + 16:  # bounded even when callers pass new views each time
                    _by_id.clear()
                _by_id[fk] = (gate_weight, up_weight, down_weight, op)
        return op.forward(x, mask, indices=indices, mode=mode, out=out, out_dtype=out_dtype)
    op, cached = _prepared(gate_weight, up_weight, down_weight, act_fn_name, dtype, n_threads, False)
    try:
        return op.forward(x, mask, indices=indices, mode=mode, out=out, out_dtype=out_dtype)
    finally:
        op.close()


def sparse_mlp_forward_indices(x, gate_weight, up_weight, down_weight, indices, act_fn_name="silu", **kw):
    """sparse_mlp_forward with per-row index lists instead of a mask."""
    return sparse_mlp_forward(x, gate_weight, up_weight, down_weight, None, act_fn_name, indices=indices, **kw)


def mlp_dense_forward(x, gate_weight, up_weight, down_weight, act_fn_name="silu", *, dtype=None, n_threads=None,
                      out=None, out_dtype=None, cache=True):
    """The dense MLP through the library's matrix kernels (the baseline the sparse op is compared to)."""
    op, cached = _prepared(gate_weight, up_weight, down_weight, act_fn_name, dtype, n_threads, cache)
    try:
        return op.dense(x, out=out, out_dtype=out_dtype)
    finally:
        if not cached:
            op.close()


def sparse_mlp_reference(x, gate_weight, up_weight, down_weight, mask=None, act_fn_name="silu", *, dtype=None):
    """The library's plain reference (weights dequantized to f32, sums in double; slow): for
    checking. Returns float32 of x's kind."""
    hint = _type_code(dtype)
    g = _weight_view(gate_weight, hint, "gate_weight", False)
    u = _weight_view(up_weight, g.type, "up_weight", False)
    d = _weight_view(down_weight, g.type, "down_weight", True)
    I, H = g.rows, g.cols
    dptr, dtptr = (None, d.ptr) if d.transposed else (d.ptr, None)
    w = _lib.sl_mlp_weights(g.type, H, I, g.ptr, u.ptr, dptr, dtptr)
    xv = _input_view(x, g.type == _lib.SL_TYPE_BF16)
    if xv.H != H:
        raise ValueError("x has %d features but the weights have H = %d" % (xv.H, H))
    keep, mptr = _mask_view(mask, xv, I) if mask is not None else (None, None)
    o, optr = _new_output(xv, None)
    err = _lib.sl_error()
    st = lib.sl_sparse_mlp_reference(ctypes.byref(w), _act_code(act_fn_name), xv.ptr, xv.B, mptr, optr,
                                     ctypes.byref(err))
    del keep
    _lib.check(st, err)
    return o
