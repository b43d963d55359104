"""Loading libskipllama and declaring its C API for ctypes.

This module is the only place that knows the C ABI: it finds the shared library, mirrors the
public structs of include/skipllama.h as ctypes.Structure classes (field for field, same order),
sets argtypes/restype on every function the package calls, and turns a failed call into a
SkipLlamaError carrying the C message. It is not a Pythonic API: op.py and model.py build that
on top. python/tests/test_lib.py compiles a small C program to check these layouts against the header.

Library discovery, first hit wins:
  1. $SKIPLLAMA_LIB: a path to the .so file (or to a folder holding libskipllama.so);
  2. libskipllama.so next to this file (what `make python` / `make install` put there);
  3. build/libskipllama.so of the source tree this package sits in (python/skipllama -> ../../build);
  4. the system's library path (ctypes.util.find_library, then a plain dlopen of the name).
"""

import ctypes
import ctypes.util
import os
import threading

__all__ = ["lib", "lib_path", "SkipLlamaError", "check", "new_error", "load_library"]

# ---- status codes (sl_status) ------------------------------------------------------------------

SL_OK = 0
SL_ERR_INVALID_ARG = 1
SL_ERR_IO = 2
SL_ERR_FORMAT = 3
SL_ERR_UNSUPPORTED = 4
SL_ERR_NOMEM = 5
SL_ERR_RANGE = 6

STATUS_NAMES = {
    SL_OK: "ok",
    SL_ERR_INVALID_ARG: "invalid argument",
    SL_ERR_IO: "i/o error",
    SL_ERR_FORMAT: "format error",
    SL_ERR_UNSUPPORTED: "unsupported",
    SL_ERR_NOMEM: "out of memory",
    SL_ERR_RANGE: "out of range",
}

# ---- tensor types, activations, modes, rules ---------------------------------------------------

SL_TYPE_F32 = 0
SL_TYPE_F16 = 1
SL_TYPE_Q4_0 = 2
SL_TYPE_Q8_0 = 8
SL_TYPE_BF16 = 30

SL_ACT_SILU = 0
SL_ACT_RELU = 1
SL_ACT_GELU = 2
SL_ACT_GELU_F16 = 3

SL_MLP_PER_ROW = 0
SL_MLP_UNION = 1
SL_MLP_PER_ROW_SHARED = 2

SL_VOCAB_SPM = 1
SL_VOCAB_BPE = 2

RULE_NAMES = {0: "dense", 1: "cats", 2: "threshold", 3: "topk", 4: "stat-topk", 5: "two-stage", 6: "two-stage-pred"}


class SkipLlamaError(RuntimeError):
    """An error reported by libskipllama.

    str(e) is the library's message; e.status is the sl_status code (an int, see STATUS_NAMES)
    and e.status_name its short name ("invalid argument", "out of range", ...).
    """

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "status %d" % self.status)
        self.message = message
        super().__init__(message if message else self.status_name)


# ---- structs (same fields, same order as include/skipllama.h) ----------------------------------

c_enum = ctypes.c_int  # C enums are int-sized on every ABI the library builds for


class sl_error(ctypes.Structure):
    _fields_ = [("code", c_enum), ("message", ctypes.c_char * 512)]


class sl_model_config(ctypes.Structure):
    _fields_ = [
        ("n_vocab", ctypes.c_int32),
        ("n_embd", ctypes.c_int32),
        ("n_ff", ctypes.c_int32),
        ("n_layer", ctypes.c_int32),
        ("n_head", ctypes.c_int32),
        ("n_head_kv", ctypes.c_int32),
        ("head_dim", ctypes.c_int32),
        ("n_rot", ctypes.c_int32),
        ("n_ctx_train", ctypes.c_int32),
        ("rms_eps", ctypes.c_float),
        ("rope_freq_base", ctypes.c_float),
        ("act", c_enum),
        ("tied_embeddings", ctypes.c_bool),
        ("has_rope_freqs", ctypes.c_bool),
        ("weight_type", c_enum),
        ("arch", ctypes.c_char_p),
        ("n_swa", ctypes.c_int32),
    ]


class sl_model_params(ctypes.Structure):
    _fields_ = [("vocab_only", ctypes.c_bool), ("no_repack", ctypes.c_bool), ("bundled", ctypes.c_bool), ("n_threads", ctypes.c_int32)]


class sl_context_params(ctypes.Structure):
    _fields_ = [
        ("n_ctx", ctypes.c_int32),
        ("n_threads", ctypes.c_int32),
        ("n_batch", ctypes.c_int32),
        ("kv_f16", ctypes.c_bool),
        ("n_seq", ctypes.c_int32),
    ]


class sl_sampler_params(ctypes.Structure):
    _fields_ = [
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_int32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repeat_penalty", ctypes.c_float),
        ("repeat_last_n", ctypes.c_int32),
        ("seed", ctypes.c_uint64),
    ]


class sl_mlp_weights(ctypes.Structure):
    _fields_ = [
        ("type", c_enum),
        ("n_embd", ctypes.c_int64),
        ("n_ff", ctypes.c_int64),
        ("gate", ctypes.c_void_p),
        ("up", ctypes.c_void_p),
        ("down", ctypes.c_void_p),
        ("down_t", ctypes.c_void_p),
    ]


class sl_sparse_mlp_stats(ctypes.Structure):
    _fields_ = [
        ("t_select", ctypes.c_double),
        ("t_prepare", ctypes.c_double),
        ("t_gate_up", ctypes.c_double),
        ("t_act", ctypes.c_double),
        ("t_down", ctypes.c_double),
        ("t_reduce", ctypes.c_double),
        ("t_total", ctypes.c_double),
        ("n_pairs", ctypes.c_int64),
        ("n_unique", ctypes.c_int64),
        ("weight_bytes", ctypes.c_int64),
        ("dense_gate_up", ctypes.c_bool),
        ("dense_down", ctypes.c_bool),
        ("cache_used", ctypes.c_bool),
        ("cache_kept", ctypes.c_int64),
        ("cache_added", ctypes.c_int64),
        ("cache_removed", ctypes.c_int64),
    ]


class sl_profile_layer(ctypes.Structure):
    _fields_ = [
        ("rule", c_enum),
        ("threshold", ctypes.c_float),
        ("topk", ctypes.c_int32),
        ("cand_k", ctypes.c_int32),
        ("target_sparsity", ctypes.c_float),
        ("rank", ctypes.c_int32),
        ("recall", ctypes.c_float),
        ("precision", ctypes.c_float),
        ("true_density", ctypes.c_float),
        ("pred_density", ctypes.c_float),
        ("contrib_recall", ctypes.c_float),
        ("gate_k", ctypes.c_int32),
    ]


class sl_layer_stats(ctypes.Structure):
    _fields_ = [
        ("n_tokens", ctypes.c_int64),
        ("n_sparse_tokens", ctypes.c_int64),
        ("n_active", ctypes.c_int64),
        ("n_neurons", ctypes.c_int64),
        ("true_pos", ctypes.c_int64),
        ("false_pos", ctypes.c_int64),
        ("false_neg", ctypes.c_int64),
        ("t_dense", ctypes.c_double),
        ("t_scores", ctypes.c_double),
        ("t_select", ctypes.c_double),
        ("t_operator", ctypes.c_double),
        ("n_cand", ctypes.c_int64),
        ("mlp_bytes", ctypes.c_int64),
        ("mlp_bytes_dense", ctypes.c_int64),
        ("contrib_kept", ctypes.c_double),
        ("contrib_total", ctypes.c_double),
        ("out_err", ctypes.c_double),
        ("out_norm", ctypes.c_double),
        ("n_batches", ctypes.c_int64),
        ("n_union", ctypes.c_int64),
        ("n_batch_dense", ctypes.c_int64),
        ("n_union_own", ctypes.c_int64),
        ("n_batch_shared", ctypes.c_int64),
        ("own_kept", ctypes.c_int64),
        ("own_total", ctypes.c_int64),
    ]


class sl_ppl_result(ctypes.Structure):
    _fields_ = [
        ("ppl", ctypes.c_double),
        ("nll_mean", ctypes.c_double),
        ("nll_sd", ctypes.c_double),
        ("n_scored", ctypes.c_int64),
        ("n_windows", ctypes.c_int32),
        ("ppl_err", ctypes.c_double),
    ]


# Layouts python/tests/test_lib.py compares with the C compiler's view of the header.
STRUCTS = {
    "sl_error": sl_error,
    "sl_model_config": sl_model_config,
    "sl_model_params": sl_model_params,
    "sl_context_params": sl_context_params,
    "sl_sampler_params": sl_sampler_params,
    "sl_mlp_weights": sl_mlp_weights,
    "sl_sparse_mlp_stats": sl_sparse_mlp_stats,
    "sl_profile_layer": sl_profile_layer,
    "sl_layer_stats": sl_layer_stats,
    "sl_ppl_result": sl_ppl_result,
}

PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)

# ---- function declarations ---------------------------------------------------------------------

P = ctypes.POINTER
vp = ctypes.c_void_p
i32, i64, u64 = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64
c_bool, c_size, c_char_p, c_float = ctypes.c_bool, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_float
ERR = P(sl_error)

# name: (restype, argtypes). Opaque handles are plain void pointers.
_DECLS = {
    "sl_status_str": (c_char_p, [c_enum]),
    "sl_type_name": (c_char_p, [ctypes.c_int]),
    "sl_type_row_size": (c_size, [c_enum, i64]),
    "sl_type_block_size": (i64, [c_enum]),
    "sl_convert_from_f32": (c_size, [c_enum, vp, vp, i64]),
    "sl_convert_to_f32": (c_bool, [c_enum, vp, vp, i64]),
    # models and contexts
    "sl_model_default_params": (sl_model_params, []),
    "sl_model_load": (vp, [c_char_p, P(sl_model_params), ERR]),
    "sl_model_free": (None, [vp]),
    "sl_model_get_config": (P(sl_model_config), [vp]),
    "sl_model_n_params": (i64, [vp]),
    "sl_model_file_size": (i64, [vp]),
    "sl_model_repacked_bytes": (i64, [vp]),
    "sl_model_describe": (c_size, [vp, ctypes.c_char_p, c_size]),
    "sl_context_default_params": (sl_context_params, []),
    "sl_context_init": (vp, [vp, P(sl_context_params), ERR]),
    "sl_context_free": (None, [vp]),
    "sl_context_n_past": (i32, [vp]),
    "sl_context_n_ctx": (i32, [vp]),
    "sl_context_reset": (None, [vp]),
    "sl_eval": (c_enum, [vp, P(i32), i32, P(c_float), c_bool, ERR]),
    # tokenizer
    "sl_model_get_vocab": (vp, [vp]),
    "sl_vocab_n_tokens": (i32, [vp]),
    "sl_vocab_bos": (i32, [vp]),
    "sl_vocab_eos": (i32, [vp]),
    "sl_vocab_eot": (i32, [vp]),
    "sl_vocab_add_bos": (c_bool, [vp]),
    "sl_vocab_is_eog": (c_bool, [vp, i32]),
    "sl_vocab_is_control": (c_bool, [vp, i32]),
    "sl_tokenize": (c_enum, [vp, vp, c_size, c_bool, c_bool, P(P(i32)), P(i32), ERR]),
    "sl_free_tokens": (None, [P(i32)]),
    "sl_token_to_piece": (vp, [vp, i32, c_bool, P(c_size)]),
    "sl_detokenize": (c_enum, [vp, P(i32), i32, c_bool, c_bool, P(vp), P(c_size), ERR]),
    "sl_free_text": (None, [vp]),
    "sl_detok_init": (vp, [vp, c_bool, ERR]),
    "sl_detok_push": (c_enum, [vp, i32, P(vp), P(c_size), ERR]),
    "sl_detok_flush": (None, [vp, P(vp), P(c_size)]),
    "sl_detok_free": (None, [vp]),
    "sl_chat_format": (c_enum, [vp, c_char_p, vp, c_size, P(vp), P(c_size), ERR]),
    # sampler
    "sl_sampler_default_params": (sl_sampler_params, []),
    "sl_sampler_params_check": (c_bool, [P(sl_sampler_params), ERR]),
    "sl_sampler_init": (vp, [P(sl_sampler_params)]),
    "sl_sampler_sample": (i32, [vp, P(c_float), i32]),
    "sl_sampler_accept": (None, [vp, i32]),
    "sl_sampler_reset": (None, [vp]),
    "sl_sampler_free": (None, [vp]),
    # sparse MLP operator
    "sl_sparse_mlp_init": (vp, [P(sl_mlp_weights), c_enum, ctypes.c_int, ERR]),
    "sl_sparse_mlp_init_shared": (vp, [P(sl_mlp_weights), c_enum, vp, ERR]),
    "sl_sparse_mlp_free": (None, [vp]),
    "sl_sparse_mlp_memory": (c_size, [vp]),
    "sl_sparse_mlp_forward": (c_enum, [vp, vp, i64, vp, vp, vp, c_enum, vp, ERR]),
    "sl_mlp_dense_forward": (c_enum, [vp, vp, i64, vp, ERR]),
    "sl_sparse_mlp_set_cache": (c_enum, [vp, i64, ERR]),
    "sl_sparse_mlp_set_bundled": (c_enum, [vp, ctypes.c_bool, ERR]),
    "sl_sparse_mlp_set_stats": (None, [vp, P(sl_sparse_mlp_stats)]),
    "sl_sparse_mlp_reference": (c_enum, [P(sl_mlp_weights), c_enum, vp, i64, vp, vp, ERR]),
    # profiles, skip model, perplexity
    "sl_profile_load": (vp, [c_char_p, vp, ERR]),
    "sl_profile_free": (None, [vp]),
    "sl_profile_n_layer": (i32, [vp]),
    "sl_profile_method": (c_char_p, [vp]),
    "sl_profile_get_layer": (c_enum, [vp, i32, P(sl_profile_layer), ERR]),
    "sl_profile_set_sparsity": (c_enum, [vp, c_float, ERR]),
    "sl_context_set_profile": (c_enum, [vp, vp, c_bool, ERR]),
    "sl_context_get_layer_stats": (c_enum, [vp, i32, P(sl_layer_stats), ERR]),
    "sl_context_reset_stats": (None, [vp]),
    "sl_context_track_recall": (None, [vp, c_bool]),
    "sl_perplexity": (c_enum, [vp, P(i32), i64, i32, PROGRESS_FN, vp, P(sl_ppl_result), ERR]),
}


def _candidates():
    """(path, explicit) pairs to try, in order (see the module docstring). An explicit choice
    ($SKIPLLAMA_LIB) that fails is an error, not a reason to pick another copy."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    env = os.environ.get("SKIPLLAMA_LIB")
    if env:
        env = os.path.abspath(env)  # so lib_path() stays true after a chdir
        out.append((os.path.join(env, "libskipllama.so") if os.path.isdir(env) else env, True))
    out.append((os.path.join(here, "libskipllama.so"), False))
    out.append((os.path.join(os.path.dirname(os.path.dirname(here)), "build", "libskipllama.so"), False))
    return out


def open_library(path=None):
    """Open libskipllama (at `path`, else by the discovery order) and declare its functions."""
    tried = []
    handle = None
    for cand, explicit in [(os.path.abspath(path), True)] if path else _candidates():
        if os.path.exists(cand):
            try:
                handle = ctypes.CDLL(cand)
                break
            except OSError as e:
                tried.append("%s (%s)" % (cand, e))
        else:
            tried.append("%s (not found)" % cand)
        if explicit:
            raise OSError("skipllama: cannot load the library: " + "; ".join(tried))
    if handle is None:
        for name in [ctypes.util.find_library("skipllama"), "libskipllama.so"]:
            if not name:
                continue
            try:
                handle = ctypes.CDLL(name)
                break
            except OSError as e:
                tried.append("%s (%s)" % (name, e))
    if handle is None:
        raise OSError(
            "skipllama: libskipllama.so not found; build it with `make` and set SKIPLLAMA_LIB=/path/to/"
            "libskipllama.so, or install it with `make python`. Tried: " + "; ".join(tried)
        )
    missing = []
    for name, (restype, argtypes) in _DECLS.items():
        try:
            fn = getattr(handle, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise OSError("skipllama: %s lacks %s (an older build?)" % (handle._name, ", ".join(missing)))
    return handle


class _LazyLib:
    """The library handle, opened on first use so that `import skipllama` never fails."""

    def __init__(self):
        self._handle = None
        self._lock = threading.Lock()

    def handle(self):
        if self._handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = open_library()
        return self._handle

    def use(self, path):
        with self._lock:
            if self._handle is not None:
                if os.path.realpath(self._handle._name) == os.path.realpath(path):
                    return self._handle
                raise RuntimeError("skipllama: %s is already in use; load_library() must come before any other call"
                                   % self._handle._name)
            self._handle = open_library(path)
            return self._handle

    def __getattr__(self, name):
        return getattr(self.handle(), name)


lib = _LazyLib()


def load_library(path):
    """Use the library at `path` (instead of the discovery order). Call it before anything else
    that uses the library; returns the ctypes handle."""
    return lib.use(path)


def lib_path():
    """File name of the loaded library (opening it if needed)."""
    return lib.handle()._name


def new_error():
    return sl_error()


def raise_error(err, fallback_status=SL_ERR_INVALID_ARG, fallback_message=""):
    code = err.code if err.code != SL_OK else fallback_status
    msg = err.message.decode("utf-8", "replace") or fallback_message
    raise SkipLlamaError(code, msg)


def check(status, err):
    """Raise SkipLlamaError for a non-OK status, with the message the library wrote into err."""
    if status != SL_OK:
        code = status if err.code == SL_OK else err.code
        raise SkipLlamaError(code, err.message.decode("utf-8", "replace"))
