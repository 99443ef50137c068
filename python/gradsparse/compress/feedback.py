"""Error feedback (residual memory): the one implementation in gradsparse.

For each named tensor the residual e is kept between calls, in place: e += x, something is
sent, and e keeps ``(x + e) - sent``. Residuals are float32 for float16/bfloat16/float32
updates and float64 for float64 ones, so the rounding of what is sent is fed back too.

Four ways in, one residual store:

* ``compress(name, x, ...)``: selection fused with error feedback, one tensor (like
  `sparsify`);
* ``compress_many(update, ...)``: the same with one global selection over several named
  tensors (like `sparsify_many`);
* ``compress_into(name, x, ..., values=, indices=)``: one float32 tensor (a DDP bucket),
  selection per region fused with the accumulate in C++, written into caller-owned
  (persistent) buffers with int32 indices and float32 or bfloat16 values;
* ``apply(update, send)``: error feedback around any compressor -- `send` gets the
  accumulated update and says what the receiver got (``Compressor.compress(...,
  feedback=ef)`` and the FL harness use it).

CUDA tensors: the residual of a name lives on the device of the first tensor fed to it and
every step runs there (`feedback_cuda`; results equal the CPU path's bit for bit, NaN
payloads aside); a later tensor of that name on another device (or on the CPU) raises
ArgumentError. ``state_dict()`` gives host copies (torch CPU tensors), and a loaded residual
moves to the device of the next tensor of its name.
"""
from __future__ import annotations

import contextlib
import math
import threading
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .. import _core, _cuda_select
from .._convert import (BF16, F16, F32, F64, Flat, as_count, as_flat, as_real, bf16_to_f32, f32_to_bf16, flat_buffer,
                        is_tensor, plain_tensor, tensor_to_numpy, torch_module)
from ..costs import as_cost
from ..selection import _COUNT, _THRESHOLD, _budget, _resolve_one, _score_params, _select, _select_one
from . import feedback_cuda
from ..sparse import Sparse
from ..errors import ArgumentError, ArgumentTypeError

__all__ = ["ErrorFeedback"]


_F16_MAX = np.float32(65504.0)
_BF16_MAX = np.float32(3.3895313892515355e38)  # largest finite bfloat16


class ErrorFeedback:
    """Per-name residual memory: ``compress`` selects from ``x + residual`` and keeps what
    was not sent. ``state_dict()``/``load_state_dict()`` save and restore the residuals.

    Thread safety: one instance may be shared between threads; calls for the same name run
    one at a time (no update is lost), calls for different names run in parallel.

    CUDA tensors are accepted everywhere (see the module docstring): the residual stays on
    the device of the first tensor of its name; the calls queue work on torch's current
    stream and synchronise only where noted."""

    def __init__(self) -> None:
        self._res: Dict[str, Any] = {}  # name -> flat numpy array, or flat tensor on a CUDA device
        self._meta: Dict[str, tuple] = {}  # name -> (shape, kind: "numpy", "torch" or "cuda")
        self._loaded: set = set()  # loaded names not yet used: they go to the next tensor's device
        self._init_locks()

    def _init_locks(self) -> None:
        self._lock = threading.Lock()  # guards the dicts
        self._name_locks: Dict[str, Any] = {}  # name -> lock held through compress(name)

    def __getstate__(self) -> Dict[str, Any]:
        # CUDA residuals pickle as host copies that go to the next tensor's device, like a
        # loaded state_dict (the pickle then opens without a GPU)
        with self._lock:
            res, meta, loaded = dict(self._res), dict(self._meta), set(self._loaded)
        for name, r in res.items():
            if is_tensor(r):
                res[name] = r.cpu().numpy()
                meta[name] = (meta[name][0], "torch")
                loaded.add(name)
        return {"_res": res, "_meta": meta, "_loaded": loaded}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._res, self._meta = state["_res"], state["_meta"]
        self._loaded = set(state.get("_loaded", ()))
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
        The returned values have x's dtype and array type (a CUDA x: tensors on its device;
        float32 with a count budget runs as one fused pass without host synchronisation)."""
        if not isinstance(name, str):
            raise ArgumentTypeError(f"name: expected a str, got {type(name).__name__}")
        flat = as_flat(x, cuda=True)
        if flat.size == 0:
            raise ArgumentError("x: input is empty")
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
        if flat.kind == "cuda":
            return feedback_cuda.compress(res, flat, args)
        _accumulate(res, flat)
        idx, vals = _select_one(res, _acc_code(flat), args)
        return Sparse(flat.wrap_index(idx), flat.wrap(_settle_selected(res, idx, vals, flat.code)), flat.shape)

    def compress_into(self, name: str, x: Any, *, k: Any = None, ratio: Any = None, cost: Any = None,
                      budget: Any = None, tau: Any = None, q: Any = 2.0, alpha: Any = 1.0, regions: Any = 1,
                      cap: Any = None, values: Any, indices: Any, value_dtype: str = "float32",
                      threads: Any = None) -> List[int]:
        """Error feedback fused with selection, written into caller-owned buffers (one C++ pass
        setup per call, no n-sized allocation): e += x for the residual of `name` (float32 x
        only), then x's flat range is cut into `regions` regions of m = ceil(n / regions)
        elements (the last ones may be short or empty) and each gets its own exact selection
        from e, like `sparsify` on that region: `k` (or ``ratio``: k from m) best by |e| or by
        the CWMP score with `cost` (q, alpha); an energy `budget`; or ``tau``: every |e| >= tau.
        Exactly one of k / ratio / budget / tau. A count keeps min(k, region length).

        Region r writes its (value, global index) pairs in ascending index order to
        ``values[r*cap : (r+1)*cap]`` and ``indices[...]`` and pads the rest with (0, -1).
        `values`: float32, or bfloat16 (torch.bfloat16, or its bits as int16/uint16) when
        ``value_dtype="bfloat16"``; `indices`: int32; both C-contiguous, writable, of exactly
        regions*cap elements. `cap` defaults to k for a count and to m otherwise. The residual
        keeps what was not sent: 0 where float32 values were sent, the rounding error of
        round-to-nearest-even where bfloat16 ones were (finite values saturate at bfloat16's
        largest). A region whose tau/budget selection exceeds cap sends nothing, changes
        nothing beyond e += x, and reports its true count (> cap): check ``counts[r] > cap``.
        `threads`: None for the engine's default, or a limit >= 1. Returns the count per region.
        `cap` must hold min(k, m) for a count (the default).

        A CUDA `x` takes `values`/`indices` tensors on its device and runs there (`threads`
        is ignored): a count per region as one fused pass (no host synchronisation), a tau
        that cannot exceed `cap` likewise (one synchronisation per region: the count), other
        budgets as e += x, a selection and the settle (one synchronisation per region).
        """
        if not isinstance(name, str):
            raise ArgumentTypeError(f"name: expected a str, got {type(name).__name__}")
        flat = as_flat(x, cuda=True)
        if flat.code != F32:
            raise ArgumentTypeError(f"x: compress_into takes float32, got {flat.out_dtype}")
        if flat.size == 0:
            raise ArgumentError("x: input is empty")
        n = flat.size
        if n >= 2 ** 31:
            raise ArgumentError(f"x: compress_into takes at most 2^31 - 1 elements (int32 indices), got {n}")
        regions = as_count(regions, "regions")
        if regions < 1:
            raise ArgumentError(f"regions: must be >= 1, got {regions}")
        m = -(-n // regions)
        given = [a for a, v in (("k", k), ("ratio", ratio), ("budget", budget), ("tau", tau)) if v is not None]
        if len(given) != 1:
            raise ArgumentError("k, ratio, budget, tau: give exactly one of them" +
                                (f" (got {', '.join(given)})" if given else ""))
        t = 0.0
        if tau is not None:
            t = as_real(tau, "tau")
            if math.isnan(t) or t < 0:
                raise ArgumentError(f"tau: must be >= 0, got {t}")
            if cost is not None:
                raise ArgumentError("cost: a tau threshold compares |x| alone; give no cost")
            kind, kk, energy = _THRESHOLD, 0, 0.0
        elif k is not None:  # per region: min(k, its length)
            kind, kk, energy = _COUNT, as_count(k, "k"), 0.0
            if kk < 1:
                raise ArgumentError(f"k: must be >= 1, got {kk}")
        else:
            kind, kk, energy = _budget(m, None, ratio, budget)
        qq, aa = _score_params(q, alpha)
        c = as_cost(cost, flat)
        least = min(kk, m) if kind == _COUNT else 0
        if cap is None:
            cap = least if kind == _COUNT else m
        cap = as_count(cap, "cap")
        if cap < least:
            raise ArgumentError(f"cap: must be >= {least}, got {cap}")
        if value_dtype not in ("float32", "bfloat16"):
            raise ArgumentError(f"value_dtype: must be 'float32' or 'bfloat16', got {value_dtype!r}")
        if flat.kind == "cuda":
            vals, idx = _device_buffers(values, indices, regions * cap, value_dtype, flat.device)
        else:
            vals = _out_buffer(values, "values", regions * cap, (np.float32,) if value_dtype == "float32"
                               else (np.uint16, np.int16), value_dtype)
            idx = _out_buffer(indices, "indices", regions * cap, (np.int32,), "int32")
        if threads is None:
            nt = 0
        else:
            nt = as_count(threads, "threads")
            if nt < 1:
                raise ArgumentError(f"threads: must be None or >= 1, got {nt}")
        with self._name_lock(name):
            res = self._residual_for(name, flat)
            if flat.kind == "cuda":
                return feedback_cuda.compress_into(res, flat, c, qq, aa, kind, kk, energy, t, regions, cap,
                                                   vals, idx, value_dtype)
            got = _core.feedback_select(flat.array, res, c, qq, aa, kind, kk, energy, t, regions, cap,
                                        vals, cap, idx, cap, nt)
        return [int(v) for v in got]

    def compress_many(self, update: Mapping[str, Any], k: Any = None, *, ratio: Any = None, costs: Any = None,
                      budget: Any = None, q: Any = 2.0, alpha: Any = 1.0) -> Dict[str, Sparse]:
        """One global selection (like `sparsify_many`: ties by position in the order of
        `update`) from x + residual over every named tensor of `update`; updates the
        residuals in place. `costs` is None or one cost per tensor, in order. Returns
        name -> Sparse, values in each x's dtype and array type. CUDA tensors: all on one
        device (ArgumentError naming the first that is not); synchronises once."""
        names, flats = _check_update(update)
        total = sum(f.size for f in flats)
        if costs is None:
            cs: List[Any] = [None] * len(flats)
        else:
            if is_tensor(costs) or isinstance(costs, (np.ndarray, str)) or not isinstance(costs, Sequence):
                raise ArgumentTypeError("costs: expected None or a list with one cost per tensor")
            if len(costs) != len(flats):
                raise ArgumentError(f"costs: expected {len(flats)} entries (one per tensor), got {len(costs)}")
            cs = [as_cost(c, f, f"costs[{i}]") for i, (c, f) in enumerate(zip(costs, flats))]
            for c in cs:
                if isinstance(c, np.ndarray):
                    _core.check_costs(c)
        kind, kk, energy = _budget(total, k, ratio, budget)
        qq, aa = _score_params(q, alpha)
        with self._holding(names):
            res = [self._residual_for(n, f) for n, f in zip(names, flats)]
            for r, f in zip(res, flats):
                _accumulate(r, f)
            got = _select(res, [_acc_code(f) for f in flats], cs, qq, aa, kind, kk, energy, 0.0)
            out = {}
            for n, r, f, (idx, vals) in zip(names, res, flats, got):
                out[n] = Sparse(f.wrap_index(idx), f.wrap(_settle_selected(r, idx, vals, f.code)), f.shape)
        return out

    def apply(self, update: Mapping[str, Any], send: Callable[[Dict[str, np.ndarray]], Tuple[Any, Mapping[str, Any]]]
              ) -> Any:
        """Error feedback around any compressor. Forms e += x in place for every tensor of
        `update`, calls ``send(acc)`` -- `acc` maps each name to x + e (a numpy view of the
        residual, float32 or float64, shaped like x; do not keep it) -- which returns
        ``(result, sent)``, `sent` mapping every name to what the receiver gets (a `Sparse`,
        or a dense array shaped like x); leaves e = acc - sent and returns `result`.
        Where a `Sparse` sends a value equal to the accumulated one, e is 0 there. Check
        everything `send` could refuse before calling: if it raises, e keeps x added.
        CUDA tensors (all on one device): `acc` holds views of the residuals on the device,
        and `sent` must be tensors (or Sparse of tensors) there."""
        if not callable(send):
            raise ArgumentTypeError(f"send: expected a callable, got {type(send).__name__}")
        names, flats = _check_update(update)
        with self._holding(names):
            res = [self._residual_for(n, f) for n, f in zip(names, flats)]
            for r, f in zip(res, flats):
                _accumulate(r, f)
            acc = {n: r.reshape(f.shape) for n, r, f in zip(names, res, flats)}
            result, sent = send(acc)
            if not isinstance(sent, Mapping) or set(sent) != set(names):
                raise ArgumentError("send: must return (result, sent) with sent holding every tensor of the update")
            for n, r, f in zip(names, res, flats):
                _subtract(r, sent[n], f.shape, f"sent[{n!r}]")
        return result

    @contextlib.contextmanager
    def _holding(self, names: Sequence[str]) -> Iterator[None]:
        """Holds the locks of `names` (in sorted order: two calls cannot deadlock)."""
        with contextlib.ExitStack() as stack:
            for n in sorted(set(names)):
                stack.enter_context(self._name_lock(n))
            yield

    def _residual_for(self, name: str, flat: Flat) -> Any:
        dtype = np.dtype(np.float64 if flat.code == F64 else np.float32)
        with self._lock:
            res = self._res.get(name)
            if res is None:
                res = feedback_cuda.new_residual(flat) if flat.kind == "cuda" else np.zeros(flat.size, dtype=dtype)
                self._res[name] = res
                self._meta[name] = (flat.shape, flat.kind)
            elif name in self._loaded:  # a loaded residual goes to this tensor's device
                self._loaded.discard(name)
                if flat.kind == "cuda":
                    res = self._res[name] = feedback_cuda.to_device(res, flat.device)
                    self._meta[name] = (self._meta[name][0], "cuda")
        on = res.device if is_tensor(res) else None
        if on != flat.device:
            raise ArgumentError(
                f"x: tensor '{name}' is on {_cuda_select.where(flat)}, but its residual lives on "
                f"{on if on is not None else 'the CPU'} (the device of its first tensor); move x there, "
                f"or use another name or reset('{name}')")
        size, have = (res.numel(), str(res.dtype).replace("torch.", "")) if on is not None else (res.size, res.dtype)
        if size != flat.size or str(have) != dtype.name:
            raise ArgumentError(
                f"x: tensor '{name}' has {flat.size} elements of {str(flat.out_dtype).replace('torch.', '')}, "
                f"but its residual holds {size} of {have}; use another name or reset('{name}')"
            )
        return res

    def residual(self, name: str) -> Optional[Any]:
        """The residual of `name` (a copy, shaped like x: on x's device for CUDA tensors), or
        None if there is none."""
        return self._copy(name, host=False)

    def _copy(self, name: str, host: bool) -> Optional[Any]:
        """A copy of the residual of `name` shaped like x; `host`: a CUDA one copied to the CPU."""
        with self._name_lock(name):
            with self._lock:
                res = self._res.get(name)
                if res is None:
                    return None
                shape, kind = self._meta[name]
            if is_tensor(res):  # on a CUDA device
                return res.reshape(shape).cpu() if host else res.reshape(shape).clone()
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
                self._loaded.clear()
        else:
            with self._name_lock(name), self._lock:
                self._res.pop(name, None)
                self._meta.pop(name, None)
                self._loaded.discard(name)

    def load_residual(self, name: str, value: Any) -> None:
        """Sets the residual of one name to a copy of `value` (float32 or float64, flat or
        shaped like the tensors it will meet); the others stay. Like `load_state_dict`, the
        copy goes to the device of the next tensor of that name."""
        if not isinstance(name, str):
            raise ArgumentTypeError(f"name: expected a str, got {type(name).__name__}")
        one = ErrorFeedback()
        one.load_state_dict({name: value})
        with self._name_lock(name), self._lock:
            self._res[name], self._meta[name] = one._res[name], one._meta[name]
            self._loaded.add(name)

    def add_at(self, name: str, indices: Any, values: Any) -> None:
        """Adds `values` at flat positions `indices` of the residual of `name` (in order,
        repeated positions summed): mass a later stage hands back, e.g. what the DDP hook's
        split re-selection did not keep. A residual on a CUDA device takes tensors there or
        host data (copied there); this synchronises (the bounds check)."""
        with self._name_lock(name):
            res = self._res.get(name)
            if is_tensor(res):
                feedback_cuda.add_at(res, indices, values)
                return
        idx = np.asarray(indices).reshape(-1)
        vals = np.asarray(values).reshape(-1)
        if idx.dtype.kind not in "iu":
            raise ArgumentTypeError(f"indices: expected integers, got {idx.dtype}")
        if vals.dtype not in (np.float32, np.float64) or vals.size != idx.size:
            raise ArgumentError(f"values: expected {idx.size} float32/float64 values, got {vals.size} of {vals.dtype}")
        with self._name_lock(name):
            res = self._res.get(name)
            if res is None:
                raise ArgumentError(f"name: no residual named {name!r}")
            if idx.size and (idx.min() < 0 or idx.max() >= res.size):
                raise ArgumentError(f"indices: positions must lie in [0, {res.size})")
            np.add.at(res, idx, vals.astype(res.dtype))

    def state_dict(self) -> Dict[str, Any]:
        """Copies of every residual (numpy, or torch for tensors fed as torch), on the host:
        a residual on a CUDA device is saved as a torch CPU tensor, as the CPU path saves
        one (this synchronises), so a state dict loads anywhere."""
        out = {name: self._copy(name, host=True) for name in self.names()}
        return {name: r for name, r in out.items() if r is not None}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Replaces every residual by a copy of `state` (as returned by `state_dict`; tensors
        may be on any device). The copies are kept on the host; each goes to the device of
        the next tensor of its name (CPU or CUDA), whose device it then keeps."""
        if not isinstance(state, dict):
            raise ArgumentTypeError("state: expected a dict name -> array")
        res, meta = {}, {}
        for name, value in state.items():
            if not isinstance(name, str):
                raise ArgumentTypeError("state: keys must be str")
            what = f"state[{name!r}]"
            kind = "torch" if is_tensor(value) else "numpy"
            if kind == "torch":
                torch = torch_module()
                value = plain_tensor(value, what)
                if value.dtype not in (torch.float32, torch.float64):
                    raise ArgumentTypeError(f"{what}: residuals are float32 or float64, got {value.dtype}")
                arr = tensor_to_numpy(value.cpu(), what)
            else:
                if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
                    raise ArgumentTypeError(f"{what}: expected a float32 or float64 array, got {type(value).__name__}")
                arr = np.asarray(value)
            if arr.dtype not in (np.float32, np.float64):
                raise ArgumentTypeError(f"{what}: residuals are float32 or float64, got {arr.dtype}")
            res[name] = np.array(arr, dtype=arr.dtype, copy=True).reshape(-1)
            meta[name] = (tuple(arr.shape), kind)
        with self._lock:
            self._res, self._meta, self._loaded = res, meta, set(res)


def _device_buffers(values: Any, indices: Any, size: int, value_dtype: str, device: Any) -> Tuple[Any, Any]:
    """compress_into's buffers for a CUDA x: tensors on its device (values float32, or
    bfloat16 / its int16 bits; indices int32), flat views."""
    torch = torch_module()
    vdt = (torch.float32,) if value_dtype == "float32" else tuple(
        d for d in (torch.bfloat16, torch.int16, getattr(torch, "uint16", None)) if d is not None)
    vals = feedback_cuda.out_buffer(values, "values", size, vdt, value_dtype, device)
    idx = feedback_cuda.out_buffer(indices, "indices", size, (torch.int32,), "int32", device)
    return vals, idx


def _out_buffer(a: Any, what: str, size: int, dtypes: Tuple[Any, ...], want: str) -> np.ndarray:
    """A flat writable numpy view of a caller-owned C-contiguous buffer of `size` items of
    one of `dtypes` (torch CPU tensors included; torch.bfloat16 as its bits)."""
    arr = flat_buffer(a, what, writable=True)
    if arr.dtype not in [np.dtype(d) for d in dtypes]:
        raise ArgumentTypeError(f"{what}: expected {want} items, got {a.dtype}")
    if arr.size != size:
        raise ArgumentError(f"{what}: must have regions * cap = {size} elements, got {arr.size}")
    return arr


def _check_update(update: Any) -> Tuple[List[str], List[Flat]]:
    """Names and flat views of a non-empty mapping of str -> non-empty float array/tensor
    (CUDA tensors: all on one device)."""
    if not isinstance(update, Mapping):
        raise ArgumentTypeError(f"update: expected a dict name -> array, got {type(update).__name__}")
    if not update:
        raise ArgumentError("update: no tensors")
    names, flats = [], []
    for name, x in update.items():
        if not isinstance(name, str):
            raise ArgumentTypeError(f"update: tensor names must be str, got {type(name).__name__}")
        flat = as_flat(x, f"update[{name!r}]", cuda=True)
        if flat.size == 0:
            raise ArgumentError(f"update[{name!r}]: tensor is empty")
        names.append(name)
        flats.append(flat)
    _cuda_select.one_device(flats, [f"update[{n!r}]" for n in names])
    return names, flats


def _acc_code(flat: Flat) -> int:
    """The core's dtype code of the residual of `flat` (float32 for 16-bit inputs)."""
    return F32 if flat.code in (F16, BF16) else flat.code


def _accumulate(res: Any, flat: Flat) -> None:
    """e += x, in the residual's precision."""
    if flat.kind == "cuda":
        feedback_cuda.accumulate(res, flat)
    elif flat.code == F32:
        _core.add_f32(res, flat.array)
    elif flat.code == BF16:
        np.add(res, bf16_to_f32(flat.array), out=res)
    else:
        np.add(res, flat.array, out=res, casting="unsafe")


def _settle_selected(res: np.ndarray, idx: np.ndarray, vals: np.ndarray, code: int) -> np.ndarray:
    """After selecting `vals` (the accumulated values at `idx`): the raw values sent, in the
    input's dtype, with the residual left at what was not sent. Values beyond a 16-bit
    dtype's finite range are sent saturated (not as inf) and the excess stays in the
    residual, so one large accumulation cannot turn the residual into inf/NaN."""
    if is_tensor(res):
        return feedback_cuda.settle(res, idx, vals, code)
    if code == BF16:
        sent_raw = f32_to_bf16(np.clip(vals, -_BF16_MAX, _BF16_MAX))
        res[idx] = vals - bf16_to_f32(sent_raw)
    elif code == F16:
        sent_raw = np.clip(vals, -_F16_MAX, _F16_MAX).astype(np.float16)
        res[idx] = vals - sent_raw.astype(np.float32)
    else:
        sent_raw = vals
        res[idx] = 0
    return sent_raw


def _values(v: Any, what: str) -> np.ndarray:
    """Values of a sent tensor as a flat float numpy array (bfloat16 widened exactly)."""
    flat = as_flat(v, what)
    return bf16_to_f32(flat.array) if flat.code == BF16 else flat.array


def _subtract(res: np.ndarray, sent: Any, shape: Tuple[int, ...], what: str) -> None:
    """e -= sent in place (a Sparse at its indices, or a dense array); 0 where the sent
    value equals the accumulated one."""
    if is_tensor(res):
        feedback_cuda.subtract(res, sent, shape, what)
        return
    if isinstance(sent, Sparse):
        if tuple(int(d) for d in sent.shape) != tuple(shape):
            raise ArgumentError(f"{what}: shape {tuple(sent.shape)} does not match the update's {tuple(shape)}")
        idx = sent.indices
        if is_tensor(idx):
            idx = tensor_to_numpy(idx, f"{what}.indices")
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        vals = _values(sent.values, f"{what}.values")
        if idx.size != vals.size:
            raise ArgumentError(f"{what}: has {idx.size} indices and {vals.size} values")
        if idx.size and (idx.min() < 0 or idx.max() >= res.size):
            raise ArgumentError(f"{what}: index out of range for {res.size} elements")
        cur = res[idx]
        exact = (cur == vals) | (np.isnan(cur) & np.isnan(vals))
        res[idx] = np.where(exact, 0, cur - vals)
        return
    vals = _values(sent, what)
    if vals.size != res.size:
        raise ArgumentError(f"{what}: has {vals.size} elements, the update {res.size}")
    np.subtract(res, vals, out=res, casting="unsafe")
