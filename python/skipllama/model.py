"""A GGUF model with an optional sparsity profile: tokenize, logits, generation, perplexity.

What it is for: the model-level API of libskipllama from Python, doing exactly what the
`skipllama` CLI does, so results match it number for number:
  Model.logits(ids)       = `skipllama logits --ids ...`  (one sequence from position 0)
  Model.generate(prompt)  = `skipllama run -p ...`        (streamed text chunks)
  Model.perplexity(text)  = `skipllama ppl -f ...`        (llama.cpp's method, windows of ctx)
What it is not: a training or autograd interface, nor a batch server (one sequence at a time per
Model; make several Model objects, or share nothing, for concurrent sequences).

A Model owns one evaluation context (KV cache of n_ctx tokens). logits(), eval() and generate()
use it; perplexity() makes its own context with the window size asked for, as the CLI does.
Calls are serialised by a lock; a generator that finds its context used by another call since it
started raises RuntimeError rather than continuing from someone else's state.
"""

import ctypes
import os
import threading
import time

from . import _lib
from ._lib import SkipLlamaError, lib

try:
    import numpy as np
except ImportError:
    np = None

__all__ = ["Model", "PerplexityResult"]


def _bytes(text):
    if isinstance(text, bytes):
        return text
    if isinstance(text, str):
        return text.encode("utf-8")
    raise TypeError("text must be str or bytes, not %s" % type(text).__name__)


def _path(p):
    return os.fsencode(p)


def _ids_array(ids):
    ids = list(int(i) for i in ids)
    arr = (ctypes.c_int32 * max(1, len(ids)))(*ids)
    return arr, len(ids)


class PerplexityResult:
    """What Model.perplexity measured (the fields of `skipllama ppl --json`).

    ppl, nll_mean, nll_sd, n_scored (tokens scored), n_windows, n_tokens (tokens of the text
    used), ctx (window length); with a profile: layers (per-layer dicts: layer, rule, sparsity,
    recall, precision, true_density; None where unknown) and mlp_sparsity (all layers)."""

    def __init__(self, **kw):
        self.layers = None
        self.mlp_sparsity = None
        self.__dict__.update(kw)

    def as_dict(self):
        return dict(self.__dict__)

    def __repr__(self):
        extra = "" if self.mlp_sparsity is None else ", mlp_sparsity=%.4f" % self.mlp_sparsity
        return "PerplexityResult(ppl=%.6f, nll_mean=%.6f, n_scored=%d, n_windows=%d, ctx=%d%s)" % (
            self.ppl, self.nll_mean, self.n_scored, self.n_windows, self.ctx, extra)


def _layer_stats_dict(layer, st, rule=None):
    tp, fp, fn = st.true_pos, st.false_pos, st.false_neg
    return {
        "layer": layer,
        "rule": rule,
        "n_tokens": st.n_tokens,
        "n_sparse_tokens": st.n_sparse_tokens,
        "n_active": st.n_active,
        "n_neurons": st.n_neurons,
        "sparsity": 1.0 - st.n_active / st.n_neurons if st.n_neurons else 0.0,
        "true_pos": tp,
        "false_pos": fp,
        "false_neg": fn,
        "recall": tp / (tp + fn) if tp + fn > 0 else None,
        "precision": tp / (tp + fp) if tp + fp > 0 else None,
        "true_density": (tp + fn) / st.n_neurons if st.n_neurons and tp + fn > 0 else None,
        # wall seconds in this layer's MLP: dense path, and the sparse path's three stages
        "t_dense": st.t_dense,
        "t_scores": st.t_scores,
        "t_select": st.t_select,
        "t_operator": st.t_operator,
        # weight bytes read (model file's row sizes) against the dense MLP's, two-stage candidates
        "n_cand": st.n_cand,
        "bytes_fraction": st.mlp_bytes / st.mlp_bytes_dense if st.mlp_bytes_dense else None,
        # with track_recall: kept share of |act(g) u| ||down[:, i]||, relative squared MLP output error
        "contrib_recall": st.contrib_kept / st.contrib_total if st.contrib_total > 0 else None,
        "rel_error": st.out_err / st.out_norm if st.out_norm > 0 else None,
    }


class Model:
    """A loaded GGUF model (mmapped) with one evaluation context.

        m = Model("model.gguf", profile="model.skip.gguf", n_ctx=2048, n_threads=4)
        for chunk in m.generate("Once upon a time", max_tokens=64, temperature=0):
            print(chunk, end="", flush=True)

    path: GGUF file. profile: a sparsity profile file (or None = dense); sparsity overrides its
    target sparsity (0 <= s < 1); sparse_prefill also skips neurons when several tokens are
    evaluated at once (the library's default is dense batches, sparse single tokens).
    n_ctx: KV cache length (None = the model's training context, at most 4096, as `skipllama
    run`). n_threads: worker threads (None = CPU count, at most 16). n_batch: tokens per prefill
    step (0 = library default 64). kv_f16: store the KV cache as f16. vocab_only: load only the
    tokenizer (no context; tokenize/detokenize only). no_repack: compute Q4_0 weights from the
    file layout instead of the 4-row interleaved copy made at load.
    """

    def __init__(self, path, profile=None, n_ctx=None, n_threads=None, *, sparsity=None, sparse_prefill=False,
                 n_batch=0, kv_f16=False, vocab_only=False, no_repack=False):
        self._model = self._ctx = self._profile = None
        self.profile_path = self.sparsity = None
        self.last_generation = None
        self._lock = threading.RLock()
        self._epoch = 0
        self.path = str(path)
        err = _lib.sl_error()
        mp = lib.sl_model_default_params()
        mp.vocab_only = bool(vocab_only)
        mp.no_repack = bool(no_repack)
        model = lib.sl_model_load(_path(path), ctypes.byref(mp), ctypes.byref(err))
        if not model:
            _lib.raise_error(err, _lib.SL_ERR_IO)
        self._model = model
        self._vocab = lib.sl_model_get_vocab(model)
        c = lib.sl_model_get_config(model).contents
        self.config = {name: getattr(c, name) for name, _ in c._fields_}
        self.config["act"] = {0: "silu", 1: "relu", 2: "gelu"}.get(c.act, c.act)
        self.config["weight_type"] = (lib.sl_type_name(c.weight_type) or b"?").decode()
        self.n_vocab = c.n_vocab
        self.n_layer = c.n_layer
        self.n_threads = max(1, min(os.cpu_count() or 1, 16)) if n_threads is None else int(n_threads)
        self.n_batch = int(n_batch)
        self.kv_f16 = bool(kv_f16)
        self.vocab_only = bool(vocab_only)
        self.sparse_prefill = bool(sparse_prefill)
        if n_ctx is None:
            n_ctx = c.n_ctx_train if 0 < c.n_ctx_train < 4096 else 4096
        self.n_ctx = int(n_ctx)
        if not vocab_only:
            self._ctx = self._new_context(self.n_ctx, self.n_batch)
            if profile is not None:
                self.set_profile(profile, sparsity=sparsity, sparse_prefill=sparse_prefill)
        elif profile is not None:
            raise ValueError("a vocab_only model cannot use a profile")

    # ---- lifetime ----

    def close(self):
        """Free the context, profile and model now."""
        with self._lock:
            ctx, prof, model = self._ctx, self._profile, self._model
            self._ctx = self._profile = self._model = None
            self._vocab = None
            self._epoch += 1
            if ctx:
                lib.sl_context_free(ctx)
            if prof:
                lib.sl_profile_free(prof)
            if model:
                lib.sl_model_free(model)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _m(self):
        if not self._model:
            raise ValueError("this Model was closed")
        return self._model

    def _c(self):
        self._m()
        if not self._ctx:
            raise ValueError("this Model was loaded with vocab_only=True: it has no context")
        return self._ctx

    def _v(self):
        self._m()
        if not self._vocab:
            raise SkipLlamaError(_lib.SL_ERR_UNSUPPORTED, "'%s' has no tokenizer" % self.path)
        return self._vocab

    def _new_context(self, n_ctx, n_batch):
        cp = lib.sl_context_default_params()
        cp.n_ctx = int(n_ctx)
        cp.n_threads = self.n_threads
        cp.n_batch = int(n_batch)
        cp.kv_f16 = self.kv_f16
        err = _lib.sl_error()
        ctx = lib.sl_context_init(self._m(), ctypes.byref(cp), ctypes.byref(err))
        if not ctx:
            _lib.raise_error(err)
        return ctx

    # ---- information ----

    def describe(self):
        """The library's multi-line description (architecture, shapes, types, parameters)."""
        n = lib.sl_model_describe(self._m(), None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        lib.sl_model_describe(self._m(), buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    @property
    def n_params(self):
        return int(lib.sl_model_n_params(self._m()))

    @property
    def file_size(self):
        return int(lib.sl_model_file_size(self._m()))

    @property
    def n_past(self):
        """Tokens currently in the context's KV cache."""
        return int(lib.sl_context_n_past(self._c()))

    @property
    def bos(self):
        return int(lib.sl_vocab_bos(self._v()))

    @property
    def eos(self):
        return int(lib.sl_vocab_eos(self._v()))

    @property
    def eot(self):
        return int(lib.sl_vocab_eot(self._v()))

    def is_eog(self, token):
        """Does this token end generation (EOS, EOT, ...)?"""
        return bool(lib.sl_vocab_is_eog(self._v(), int(token)))

    # ---- tokenizer ----

    def tokenize(self, text, add_bos=True, parse_special=False):
        """Token ids of text (str or bytes), as llama.cpp tokenizes it. add_bos: add BOS (and EOS)
        when the vocabulary wants them; parse_special: text like "<|eot_id|>" becomes that token."""
        data = _bytes(text)
        ids = ctypes.POINTER(ctypes.c_int32)()
        n = ctypes.c_int32()
        err = _lib.sl_error()
        _lib.check(lib.sl_tokenize(self._v(), data, len(data), bool(add_bos), bool(parse_special), ctypes.byref(ids),
                                   ctypes.byref(n), ctypes.byref(err)), err)
        try:
            return ids[:n.value] if n.value else []
        finally:
            lib.sl_free_tokens(ids)

    def detokenize_bytes(self, ids, remove_special=False, unparse_special=False):
        """The text of ids as bytes (may hold partial UTF-8 when the ids end mid-character)."""
        arr, n = _ids_array(ids)
        out = ctypes.c_void_p()
        length = ctypes.c_size_t()
        err = _lib.sl_error()
        _lib.check(lib.sl_detokenize(self._v(), arr, n, bool(remove_special), bool(unparse_special), ctypes.byref(out),
                                     ctypes.byref(length), ctypes.byref(err)), err)
        try:
            return ctypes.string_at(out.value, length.value) if length.value else b""
        finally:
            lib.sl_free_text(out)

    def detokenize(self, ids, remove_special=False, unparse_special=False):
        """The text of ids (as llama.cpp's llama_detokenize); invalid UTF-8 becomes U+FFFD."""
        return self.detokenize_bytes(ids, remove_special, unparse_special).decode("utf-8", "replace")

    def token_to_piece(self, token, special=False):
        """The bytes of one token (may be part of a UTF-8 character)."""
        n = ctypes.c_size_t()
        p = lib.sl_token_to_piece(self._v(), int(token), bool(special), ctypes.byref(n))
        if not p:
            raise SkipLlamaError(_lib.SL_ERR_RANGE, "token id %d is outside the vocabulary" % token)
        return ctypes.string_at(p, n.value)

    def chat_format(self, user, system=None):
        """Wrap a user message (and a system message) in the model's Llama-2/3 chat template."""
        data = _bytes(user)
        out = ctypes.c_void_p()
        length = ctypes.c_size_t()
        err = _lib.sl_error()
        _lib.check(lib.sl_chat_format(self._v(), None if system is None else _bytes(system), data, len(data),
                                      ctypes.byref(out), ctypes.byref(length), ctypes.byref(err)), err)
        try:
            return ctypes.string_at(out.value, length.value).decode("utf-8", "replace")
        finally:
            lib.sl_free_text(out)

    # ---- evaluation ----

    def reset(self):
        """Empty the KV cache (the next eval starts at position 0)."""
        with self._lock:
            self._epoch += 1
            lib.sl_context_reset(self._c())

    def eval(self, ids, all_logits=False):
        """Append ids to the current sequence; return the logits after the last one (numpy
        [n_vocab]) or, with all_logits, after each ([len(ids), n_vocab])."""
        self._c()
        if np is None:
            raise ImportError("Model.eval needs numpy (Debian: python3-numpy)")
        arr, n = _ids_array(ids)
        if n == 0:
            raise ValueError("no ids to evaluate")
        out = np.empty((n if all_logits else 1, self.n_vocab), dtype=np.float32)
        err = _lib.sl_error()
        with self._lock:
            self._epoch += 1
            st = lib.sl_eval(self._c(), arr, n, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), bool(all_logits),
                             ctypes.byref(err))
        _lib.check(st, err)
        return out if all_logits else out[0]

    def logits(self, ids, incremental=False):
        """Logits of ids as one new sequence: numpy float32 [len(ids), n_vocab], row i = the
        distribution after ids[0..i] (as `skipllama logits`; no BOS is added). incremental:
        evaluate one token at a time (the decoding path, sparse with a profile)."""
        self._c()
        if np is None:
            raise ImportError("Model.logits needs numpy (Debian: python3-numpy)")
        arr, n = _ids_array(ids)
        if n == 0:
            raise ValueError("no ids to evaluate")
        out = np.empty((n, self.n_vocab), dtype=np.float32)
        base = out.ctypes.data
        row = self.n_vocab * 4
        err = _lib.sl_error()
        fp = ctypes.POINTER(ctypes.c_float)
        with self._lock:
            self._epoch += 1
            ctx = self._c()
            lib.sl_context_reset(ctx)
            if incremental:
                tok = ctypes.c_int32()
                for i in range(n):
                    tok.value = arr[i]
                    st = lib.sl_eval(ctx, ctypes.byref(tok), 1, ctypes.cast(base + i * row, fp), False,
                                     ctypes.byref(err))
                    if st:
                        break
            else:
                st = lib.sl_eval(ctx, arr, n, ctypes.cast(base, fp), True, ctypes.byref(err))
        _lib.check(st, err)
        return out

    # ---- generation ----

    def generate(self, prompt, max_tokens=128, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, seed=None,
                 repeat_penalty=1.0, repeat_last_n=64, add_bos=True, parse_special=True, special=False, chat=False,
                 system=None):
        """Generate text after prompt, streamed: an iterator of str chunks (each ends on a whole
        UTF-8 character), as `skipllama run -p PROMPT` prints them.

        The prompt is tokenized with BOS (add_bos) and special-token text parsed, optionally in
        the model's chat template (chat=True, system=...), evaluated from an empty cache, then
        tokens are sampled until an end-of-generation token, max_tokens (None = no limit) or a
        full context. Sampling: temperature (0 = greedy), top_k, top_p, min_p, repeat_penalty
        over the last repeat_last_n tokens, seed (None = from the clock); defaults are
        llama.cpp's. special: render control tokens as text. After the iterator ends,
        self.last_generation holds the token ids, the stop reason and timings."""
        sp = lib.sl_sampler_default_params()
        sp.temperature = float(temperature)
        sp.top_k = int(top_k)
        sp.top_p = float(top_p)
        sp.min_p = float(min_p)
        sp.repeat_penalty = float(repeat_penalty)
        sp.repeat_last_n = int(repeat_last_n)
        sp.seed = (int(time.time()) ^ (os.getpid() << 32)) & (2 ** 64 - 1) if seed is None else int(seed) & (2 ** 64 - 1)
        err = _lib.sl_error()
        if not lib.sl_sampler_params_check(ctypes.byref(sp), ctypes.byref(err)):
            _lib.raise_error(err)
        if max_tokens is not None and int(max_tokens) < 0:
            max_tokens = None
        text = self.chat_format(prompt, system) if chat else prompt
        if system is not None and not chat:
            raise ValueError("system= needs chat=True")
        ids = self.tokenize(text, add_bos=add_bos, parse_special=parse_special)
        if not ids:
            raise ValueError("the prompt is empty (no tokens, and no BOS was added)")
        if len(ids) > self.n_ctx:
            raise SkipLlamaError(_lib.SL_ERR_RANGE, "the prompt is %d tokens but the context holds %d" % (len(ids), self.n_ctx))
        self._c()
        return self._generate(ids, sp, None if max_tokens is None else int(max_tokens), bool(special))

    def _check_epoch(self, epoch):
        if self._epoch != epoch:
            raise RuntimeError("the Model's context was used by another call (or the Model was closed) while this "
                               "generator was running; start a new generate()")

    def _generate(self, ids, sp, max_tokens, special):
        if np is not None:
            logits = np.empty(self.n_vocab, dtype=np.float32)
            lp = logits.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        else:
            logits = (ctypes.c_float * self.n_vocab)()
            lp = ctypes.cast(logits, ctypes.POINTER(ctypes.c_float))
        err = _lib.sl_error()
        smpl = lib.sl_sampler_init(ctypes.byref(sp))
        if not smpl:
            raise SkipLlamaError(_lib.SL_ERR_NOMEM, "cannot create the sampler")
        detok = None
        info = {"prompt_ids": list(ids), "ids": [], "stop": None, "t_prompt": 0.0, "t_gen": 0.0, "seed": sp.seed}
        self.last_generation = info
        try:
            detok = lib.sl_detok_init(self._v(), special, ctypes.byref(err))
            if not detok:
                _lib.raise_error(err)
            piece = ctypes.c_void_p()
            plen = ctypes.c_size_t()
            arr, n = _ids_array(ids)
            for t in ids:
                lib.sl_sampler_accept(smpl, t)
            t0 = time.perf_counter()
            with self._lock:
                self._epoch += 1
                epoch = self._epoch
                ctx = self._c()
                lib.sl_context_reset(ctx)
                _lib.check(lib.sl_eval(ctx, arr, n, lp, False, ctypes.byref(err)), err)
            info["t_prompt"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            tok_c = ctypes.c_int32()
            while True:
                # sample and decode under the lock, with the context checked to be still ours
                if max_tokens is not None and len(info["ids"]) >= max_tokens:
                    info["stop"] = "max_tokens"
                    break
                with self._lock:
                    self._check_epoch(epoch)
                    tok = lib.sl_sampler_sample(smpl, lp, self.n_vocab)
                    if tok < 0:
                        raise SkipLlamaError(_lib.SL_ERR_RANGE, "the model produced no usable logits (all -inf or NaN)")
                    lib.sl_sampler_accept(smpl, tok)
                    if lib.sl_vocab_is_eog(self._v(), tok):
                        info["stop"] = "eog"
                        info["eog_token"] = tok
                        break
                    _lib.check(lib.sl_detok_push(detok, tok, ctypes.byref(piece), ctypes.byref(plen), ctypes.byref(err)),
                               err)
                    info["ids"].append(tok)
                    chunk = ctypes.string_at(piece.value, plen.value) if plen.value else b""
                    ctx = self._c()
                    full = lib.sl_context_n_past(ctx) >= lib.sl_context_n_ctx(ctx)
                if chunk:
                    info["t_gen"] = time.perf_counter() - t1
                    yield chunk.decode("utf-8", "replace")  # whole characters (the detokenizer holds back partial ones)
                if full:
                    info["stop"] = "context_full"
                    break
                if max_tokens is not None and len(info["ids"]) >= max_tokens:
                    continue  # no need to evaluate the last token
                with self._lock:
                    self._check_epoch(epoch)
                    tok_c.value = tok
                    _lib.check(lib.sl_eval(self._c(), ctypes.byref(tok_c), 1, lp, False, ctypes.byref(err)), err)
            info["t_gen"] = time.perf_counter() - t1
            lib.sl_detok_flush(detok, ctypes.byref(piece), ctypes.byref(plen))
            if plen.value:
                yield ctypes.string_at(piece.value, plen.value).decode("utf-8", "replace")
        finally:
            if detok:
                lib.sl_detok_free(detok)
            lib.sl_sampler_free(smpl)

    def generate_text(self, prompt, **kw):
        """generate() joined into one string."""
        return "".join(self.generate(prompt, **kw))

    # ---- sparsity ----

    def set_profile(self, profile, sparsity=None, sparse_prefill=None):
        """Use a sparsity profile file (None = dense again). sparsity overrides its target."""
        with self._lock:
            ctx = self._c()
            err = _lib.sl_error()
            new = None
            if profile is not None:
                new = lib.sl_profile_load(_path(profile), self._m(), ctypes.byref(err))
                if not new:
                    _lib.raise_error(err)
                if sparsity is not None:
                    st = lib.sl_profile_set_sparsity(new, float(sparsity), ctypes.byref(err))
                    if st:
                        lib.sl_profile_free(new)
                        _lib.check(st, err)
            if sparse_prefill is not None:
                self.sparse_prefill = bool(sparse_prefill)
            st = lib.sl_context_set_profile(ctx, new, self.sparse_prefill, ctypes.byref(err))
            if st:
                if new:
                    lib.sl_profile_free(new)
                _lib.check(st, err)
            old, self._profile = self._profile, new
            self.profile_path = None if profile is None else str(profile)
            self.sparsity = sparsity
            if old:
                lib.sl_profile_free(old)

    @property
    def profile_method(self):
        """The profile's method ("cats", "predictor", ...) or None without a profile."""
        return lib.sl_profile_method(self._profile).decode() if self._profile else None

    def profile_layers(self):
        """The profile's per-layer rule and parameters (list of dicts), or None without one."""
        if not self._profile:
            return None
        out = []
        err = _lib.sl_error()
        info = _lib.sl_profile_layer()
        for l in range(lib.sl_profile_n_layer(self._profile)):
            _lib.check(lib.sl_profile_get_layer(self._profile, l, ctypes.byref(info), ctypes.byref(err)), err)
            d = {name: getattr(info, name) for name, _ in info._fields_}
            d["rule"] = _lib.RULE_NAMES.get(info.rule, info.rule)
            d["layer"] = l
            out.append(d)
        return out

    def track_recall(self, on=True):
        """Also compute the full gate on sparse tokens so sparsity_stats() reports recall and
        precision of the skipping (slower)."""
        with self._lock:
            lib.sl_context_track_recall(self._c(), bool(on))

    def reset_stats(self):
        with self._lock:
            lib.sl_context_reset_stats(self._c())

    def _stats_of(self, ctx, profile):
        rules = None
        if profile:
            info = _lib.sl_profile_layer()
            rules = []
            e = _lib.sl_error()
            for l in range(self.n_layer):
                lib.sl_profile_get_layer(profile, l, ctypes.byref(info), ctypes.byref(e))
                rules.append(_lib.RULE_NAMES.get(info.rule, info.rule))
        out = []
        st = _lib.sl_layer_stats()
        err = _lib.sl_error()
        for l in range(self.n_layer):
            _lib.check(lib.sl_context_get_layer_stats(ctx, l, ctypes.byref(st), ctypes.byref(err)), err)
            out.append(_layer_stats_dict(l, st, rules[l] if rules else None))
        return out

    def sparsity_stats(self):
        """Per layer, what the MLPs of this Model's context skipped since the last reset_stats():
        dicts with layer, rule, n_tokens, n_sparse_tokens, n_active, n_neurons, sparsity
        (1 - active / neurons over sparse tokens), and with track_recall on: true_pos,
        false_pos, false_neg, recall, precision, true_density (None where unknown)."""
        with self._lock:
            return self._stats_of(self._c(), self._profile)

    # ---- perplexity ----

    def perplexity(self, text, ctx=None, max_tokens=None, n_threads=None, dense_prefill=False, progress=None):
        """Perplexity of text (str/bytes, or a list of token ids) the way `skipllama ppl` measures
        it: the text tokenized whole without BOS, the first max_tokens tokens kept, cut into
        windows of ctx tokens (default: the model's context, at most 512) each evaluated from an
        empty cache, every token but the first of a window scored. Runs in its own context
        (n_threads default: this Model's). With a profile: each token of a window uses its own
        mask unless dense_prefill, and the result adds per-layer sparsity, recall and precision.
        progress(done, total) is called after every window. Returns a PerplexityResult."""
        if isinstance(text, (str, bytes)):
            ids = self.tokenize(text, add_bos=False, parse_special=False)
        else:
            ids = [int(i) for i in text]
        if max_tokens is not None and 0 < int(max_tokens) < len(ids):
            ids = ids[:int(max_tokens)]
        if len(ids) < 2:
            raise ValueError("the text has %d tokens; at least 2 are needed" % len(ids))
        n_train = self.config["n_ctx_train"]
        window = int(ctx) if ctx else (n_train if n_train < 512 else 512)
        if window < 2:
            raise ValueError("ctx must be >= 2")
        cb = _lib.PROGRESS_FN(0)
        if progress is not None:
            def _cb(ud, done, total):
                try:
                    progress(int(done), int(total))
                except Exception:  # an exception cannot cross the C frames; report none
                    pass
            cb = _lib.PROGRESS_FN(_cb)
        arr = (ctypes.c_int32 * len(ids))(*ids)
        res = _lib.sl_ppl_result()
        err = _lib.sl_error()
        saved_threads = self.n_threads
        with self._lock:
            if n_threads is not None:
                self.n_threads = int(n_threads)
            try:
                pctx = self._new_context(window, window if window < 256 else 256)
            finally:
                self.n_threads = saved_threads
            try:
                if self._profile:
                    _lib.check(lib.sl_context_set_profile(pctx, self._profile, not dense_prefill, ctypes.byref(err)), err)
                    lib.sl_context_track_recall(pctx, True)
                _lib.check(lib.sl_perplexity(pctx, arr, len(ids), window, cb, None, ctypes.byref(res), ctypes.byref(err)),
                           err)
                layers = self._stats_of(pctx, self._profile) if self._profile else None
            finally:
                lib.sl_context_free(pctx)
        r = PerplexityResult(ppl=res.ppl, nll_mean=res.nll_mean, nll_sd=res.nll_sd, n_scored=res.n_scored,
                             n_windows=res.n_windows, n_tokens=len(ids), ctx=window)
        if layers is not None:
            act = sum(l["n_active"] for l in layers)
            neu = sum(l["n_neurons"] for l in layers)
            r.layers = [{k: l[k] for k in ("layer", "rule", "sparsity", "recall", "precision", "true_density")}
                        for l in layers]
            r.mlp_sparsity = 1.0 - act / neu if neu > 0 else 0.0
        return r

    def __repr__(self):
        return "Model(%r, n_layer=%d, n_vocab=%d, n_ctx=%d, n_threads=%d%s)" % (
            self.path, self.n_layer, self.n_vocab, self.n_ctx, self.n_threads,
            ", profile=%r" % self.profile_path if self._profile else "")
