"""skipllama: Python binding of libskipllama (LLaMA-family GGUF models on the CPU, skipping the
MLP neurons predicted inactive).

Two entry points, both thin ctypes wrappers over the C library (no compiled extension):

  sparse_mlp_forward(x, gate_weight, up_weight, down_weight, mask, act_fn_name="silu")
      the prototype's sparse MLP operator on numpy arrays or torch tensors (see skipllama.op);
      also SparseMLP (a prepared operator), index lists, the union mode, the dense baseline.

  Model(path, profile=None, n_ctx=None, n_threads=None)
      a GGUF model: tokenize / detokenize, logits(ids), generate(prompt, ...) (streaming),
      perplexity(text), sparsity_stats() (see skipllama.model).

Errors reported by the library raise SkipLlamaError (message from C, .status = the sl_status
code). The library is found through $SKIPLLAMA_LIB, next to this package, the source tree's
build/ folder, or the system's library path (see skipllama._lib). Importing the package does not
load the library; the first call does.
"""

from ._lib import SkipLlamaError, STATUS_NAMES, lib_path, load_library
from .op import (
    SparseMLP,
    SkipLlamaCopyWarning,
    cache_info,
    clear_cache,
    dequantize_weight,
    get_num_threads,
    mlp_dense_forward,
    set_cache_limit,
    quantize_weight,
    set_num_threads,
    sparse_mlp_forward,
    sparse_mlp_forward_indices,
    sparse_mlp_reference,
)
from .model import Model, PerplexityResult

__version__ = "0.1.0"

__all__ = [
    "Model",
    "PerplexityResult",
    "SkipLlamaError",
    "STATUS_NAMES",
    "SparseMLP",
    "SkipLlamaCopyWarning",
    "cache_info",
    "clear_cache",
    "dequantize_weight",
    "get_num_threads",
    "lib_path",
    "load_library",
    "mlp_dense_forward",
    "quantize_weight",
    "set_cache_limit",
    "set_num_threads",
    "sparse_mlp_forward",
    "sparse_mlp_forward_indices",
    "sparse_mlp_reference",
    "__version__",
]
