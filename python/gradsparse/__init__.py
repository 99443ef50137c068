"""gradsparse: fast, exact gradient sparsification with a SIMD C++ core.

Importing gradsparse never imports torch; torch tensors are accepted when torch is loaded.
torch CUDA tensors are processed on their device when the optional CUDA backend is built
(``cuda_available()``, ``gradsparse.cuda``, docs/cuda.md).
"""
from ._core import __version__
from . import atomo, cuda, errors, evofed
from .config import (
    available_simd_levels,
    compiled_simd_levels,
    config,
    cuda_available,
    get_num_threads,
    get_pool_limit,
    get_simd_level,
    num_threads,
    pool_bytes,
    release_memory,
    set_num_threads,
    set_pool_limit,
    set_simd_level,
    show_config,
    simd_level,
)
from .costs import PreparedCost
from .feedback import ErrorFeedback
from .selection import (
    StreamingSelector,
    TopK,
    k_from_ratio,
    random_k,
    sparsify,
    sparsify_many,
    threshold,
    topk,
)
from .sparse import Sparse
from .wire import decode, encode, encoded_size

__all__ = [
    "__version__",
    "atomo",
    "ErrorFeedback",
    "errors",
    "evofed",
    "PreparedCost",
    "Sparse",
    "StreamingSelector",
    "TopK",
    "available_simd_levels",
    "compiled_simd_levels",
    "config",
    "cuda",
    "cuda_available",
    "decode",
    "encode",
    "encoded_size",
    "get_num_threads",
    "get_pool_limit",
    "get_simd_level",
    "k_from_ratio",
    "num_threads",
    "pool_bytes",
    "random_k",
    "release_memory",
    "set_num_threads",
    "set_pool_limit",
    "set_simd_level",
    "show_config",
    "simd_level",
    "sparsify",
    "sparsify_many",
    "threshold",
    "topk",
]
