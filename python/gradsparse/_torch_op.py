"""The torch.library custom op behind gradsparse.topk for inputs that need torch's
machinery (autograd, forward AD, vmap, meta/fake tensors, torch.compile).

Stub until the op lands (issue 14, part C): no input is routed to it yet."""
from __future__ import annotations

from typing import Any


def wants_op(input: Any) -> bool:
    """Whether topk(input, ...) must go through the torch op (never, in this stub)."""
    return False


def topk(input: Any, k: Any, dim: Any, largest: Any, sorted: Any, key: Any, out: Any):
    raise NotImplementedError("gradsparse.topk through torch.library is not available in this build")
