"""Error feedback (residual memory) fused with selection.

For each named tensor the residual e is kept between calls: ``compress(name, x, ...)``
forms ``e += x`` in place, selects from it, sends the selected values and leaves
``e = (x + e) - sent``. float16/bfloat16 updates keep a float32 residual, so the rounding
of what is sent is fed back too.
"""
from __future__ import annotations

import threading
from typing import Any, Dict, Optional

import numpy as np

from . import _core
from ._convert import BF16, F16, F32, Flat, as_flat, bf16_to_f32, f32_to_bf16, is_tensor, plain_tensor, torch_module
from .selection import _resolve_one, _select_one
from .sparse import Sparse


_F16_MAX = np.float32(65504.0)
_BF16_MAX = np.float32(3.3895313892515355e38)  # largest finite bfloat16


class ErrorFeedback:
    """Per-name residual memory: ``compress`` selects from ``x + residual`` and keeps what
    was not sent. ``state_dict()``/``load_state_dict()`` save and restore the residuals.

    Thread safety: one instance may be shared between threads; calls for the same name run
    one at a time (no update is lost), calls for different names run in parallel."""

    def __init__(self) -> None:
        self._res: Dict[str, np.ndarray] = {}
        self._meta: Dict[str, tuple] = {}  # name -> (shape, kind)
        self._init_locks()

    def _init_locks(self) -> None:
        self._lock = threading.Lock()  # guards the dicts
        self._name_locks: Dict[str, Any] = {}  # name -> lock held through compress(name)

    def __getstate__(self) -> Dict[str, Any]:
        with self._lock:
            return {"_res": dict(self._res), "_meta": dict(self._meta)}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._res, self._meta = state["_res"], state["_meta"]
        self._init_locks()

    def _name_lock(self, name: str) -> Any:
        with self._lock:
            lock = self._name_locks.get(name)
            if lock is None:
                lock = self._name_locks[name] = threading.Lock()
            return lock

    def compress(self, name: str, x: Any, k: Any = None, *, ratio: Any = None, cost: Any = None,
                 budget: Any = None, q: Any = 2.0, alpha: Any = 1.0) -> Sparse:
        """Selects (like `sparsify`) from x + residual[name]; updates the residual in place.
        The returned values have x's dtype and array type."""
        if not isinstance(name, str):
            raise TypeError(f"name: expected a str, got {type(name).__name__}")
        flat = as_flat(x)
        if flat.size == 0:
            raise ValueError("x: input is empty")
        # Every argument is checked before the residual changes, so a rejected call leaves
        # it untouched (cost values too: the engine would only see them after e += x).
        args = _resolve_one(flat, k, ratio, cost, budget, q, alpha)
        c = args[0]
        if isinstance(c, np.ndarray):  # (a PreparedCost was checked when it was made)
            _core.check_costs(c)
        with self._name_lock(name):
            return self._compress(name, flat, args)

    def _compress(self, name: str, flat: Flat, args: Any) -> Sparse:
        res = self._residual_for(name, flat)
        # e += x, in the residual's precision
        if flat.code == F32:
            _core.add_f32(res, flat.array)
        elif flat.code == BF16:
            np.add(res, bf16_to_f32(flat.array), out=res)
        else:
            np.add(res, flat.array, out=res, casting="unsafe")
        acc_code = F32 if flat.code in (F16, BF16) else flat.code
        idx, vals = _select_one(res, acc_code, args)
        # What is sent, in x's dtype; the residual keeps the difference. Values beyond the
        # dtype's finite range are sent saturated (not as inf) and the excess stays in the
        # residual, so one large accumulation cannot turn the residual into inf/NaN.
        if flat.code == BF16:
            sent32 = np.clip(vals, -_BF16_MAX, _BF16_MAX)
            sent_raw = f32_to_bf16(sent32)
            res[idx] = vals - bf16_to_f32(sent_raw)
        elif flat.code == F16:
            sent_raw = np.clip(vals, -_F16_MAX, _F16_MAX).astype(np.float16)
            res[idx] = vals - sent_raw.astype(np.float32)
        else:
            sent_raw = vals
            res[idx] = 0
        return Sparse(flat.wrap_index(idx), flat.wrap(sent_raw), flat.shape)

    def _residual_for(self, name: str, flat: Flat) -> np.ndarray:
        dtype = np.float32 if flat.code in (F16, BF16) else flat.array.dtype
        with self._lock:
            res = self._res.get(name)
            if res is None:
                res = np.zeros(flat.size, dtype=dtype)
                self._res[name] = res
                self._meta[name] = (flat.shape, flat.kind)
        if res.size != flat.size or res.dtype != dtype:
            raise ValueError(
                f"x: tensor '{name}' has {flat.size} elements of {flat.array.dtype}, but its residual "
                f"holds {res.size} of {res.dtype}; use another name or reset('{name}')"
            )
        return res

    def residual(self, name: str) -> Optional[Any]:
        """The residual of `name` (a copy, shaped like x), or None if there is none."""
        with self._name_lock(name):
            with self._lock:
                res = self._res.get(name)
                if res is None:
                    return None
                shape, kind = self._meta[name]
            out = res.reshape(shape).copy()
        return torch_module().from_numpy(out) if kind == "torch" else out

    def names(self):
        with self._lock:
            return list(self._res)

    def __contains__(self, name: str) -> bool:
        return name in self._res

    def reset(self, name: Optional[str] = None) -> None:
        """Forgets one residual, or all of them."""
        if name is None:
            with self._lock:
                self._res.clear()
                self._meta.clear()
        else:
            with self._name_lock(name), self._lock:
                self._res.pop(name, None)
                self._meta.pop(name, None)

    def state_dict(self) -> Dict[str, Any]:
        """Copies of every residual (numpy, or torch for tensors fed as torch)."""
        out = {name: self.residual(name) for name in self.names()}
        return {name: r for name, r in out.items() if r is not None}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Replaces every residual by a copy of `state` (as returned by `state_dict`)."""
        if not isinstance(state, dict):
            raise TypeError("state: expected a dict name -> array")
        res, meta = {}, {}
        for name, value in state.items():
            if not isinstance(name, str):
                raise TypeError("state: keys must be str")
            what = f"state[{name!r}]"
            kind = "torch" if is_tensor(value) else "numpy"
            if kind == "torch":
                torch = torch_module()
                value = plain_tensor(value, what)
                if value.dtype not in (torch.float32, torch.float64):
                    raise TypeError(f"{what}: residuals are float32 or float64, got {value.dtype}")
                arr = value.cpu().numpy()
            else:
                if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
                    raise TypeError(f"{what}: expected a float32 or float64 array, got {type(value).__name__}")
                arr = np.asarray(value)
            if arr.dtype not in (np.float32, np.float64):
                raise TypeError(f"{what}: residuals are float32 or float64, got {arr.dtype}")
            res[name] = np.array(arr, dtype=arr.dtype, copy=True).reshape(-1)
            meta[name] = (tuple(arr.shape), kind)
        with self._lock:
            self._res, self._meta = res, meta
