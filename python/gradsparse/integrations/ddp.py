"""A DistributedDataParallel communication hook: exact top-k sparse all-reduce with error
feedback.

Usage::

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from gradsparse.integrations.ddp import TopKState, topk_hook

    model = DDP(net)                         # gloo, CPU tensors
    state = TopKState(ratio=0.01)            # 1% of each bucket per rank
    model.register_comm_hook(state, topk_hook)

For every gradient bucket (DDP's flat buffer of several parameters' gradients) each rank
adds its residual, keeps the exact top-k by magnitude (ties by the lower index), and keeps
what it did not send as its new residual: error feedback is gradsparse's one
implementation, :class:`gradsparse.compress.ErrorFeedback` (``compress_many`` over the
bucket's parameters). The
ranks all-gather their (index, value) pairs — ``world * k`` of each instead of the bucket's
``n`` values — and every rank sums them into a dense buffer and divides by the world size,
so all ranks apply the same averaged sparse update.

* ``start_iter`` iterations (default 1) run DDP's plain all-reduce first.
* The residuals live on each rank in ``state.feedback``, one per parameter, so they follow
  each parameter when DDP rebuilds its buckets (after the first iteration);
  ``state.residuals`` shows them per bucket layout (the bucket's parameters, in order).
  Parameters in no bucket of an iteration lose their residual at its end. Residuals are
  float32 for float32, float16 and bfloat16 buckets (float64 for float64): what a 16-bit
  bucket cannot carry -- the rounding of what is sent included -- is kept, not lost.
* gradsparse selects on the CPU: the hook takes CPU buckets (the gloo backend). A bucket on
  another device raises a ValueError naming it (the CUDA backend is not built).
* Communication per bucket and rank: k values of the bucket's dtype and k int32 indices
  (8 bytes per float32 element sent, against 4 per element of the dense bucket), or with
  ``wire=True`` a gradsparse payload (indices delta-coded: about 5.2 bytes per float32
  element at 1%); ``state.sent_bytes`` / ``state.dense_bytes`` count them.
* Ranks may send different numbers of elements (another ``ratio`` or ``k`` per rank): each
  bucket starts with a blocking all-gather of every rank's count (one int64 a rank; about
  0.2-0.3 ms on a loopback gloo pair), and the selections are zero-padded to the largest.
  The result is still the sum of every rank's own top-k, averaged.
"""
# (no `from __future__ import annotations`: DDP checks the hook's annotations as objects)
from collections import OrderedDict
from typing import Any, Dict, Optional, Tuple

import torch
import torch.distributed as dist

from ..compress import ErrorFeedback
from ..selection import k_from_ratio, sparsify
from ..sparse import Sparse
from ..wire import decode, encode
from ..errors import ArgumentError, ArgumentTypeError

__all__ = ["TopKState", "topk_hook"]


class TopKState:
    """Settings and per-bucket residuals of :func:`topk_hook`.

    Exactly one of ``ratio`` (the fraction of each bucket a rank sends, in (0, 1]) and ``k``
    (elements per bucket and rank, capped at the bucket size) is given.
    ``error_feedback=False`` drops what is not sent. ``wire=True`` sends each rank's
    selection as a ``gradsparse.encode`` payload (delta-coded indices, lossless values: the
    same result in fewer bytes, for one more small all-gather of the payload sizes).
    ``process_group`` defaults to the world group.
    """

    def __init__(self, ratio: Optional[float] = None, *, k: Optional[int] = None, error_feedback: bool = True,
                 start_iter: int = 1, wire: bool = False, process_group: Any = None) -> None:
        if (ratio is None) == (k is None):
            raise ArgumentError("ratio, k: give exactly one of them")
        if ratio is not None:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < float(ratio) <= 1.0:
                raise ArgumentError(f"ratio: must be in (0, 1], got {ratio!r}")
            ratio = float(ratio)
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ArgumentError(f"k: must be an integer >= 1, got {k!r}")
        if isinstance(start_iter, bool) or not isinstance(start_iter, int) or start_iter < 0:
            raise ArgumentError(f"start_iter: must be an integer >= 0, got {start_iter!r}")
        if not isinstance(error_feedback, bool):
            raise ArgumentTypeError("error_feedback: must be a bool")
        if not isinstance(wire, bool):
            raise ArgumentTypeError("wire: must be a bool")
        self.ratio, self.k = ratio, k
        self.error_feedback = error_feedback
        self.wire = wire
        self.start_iter = start_iter
        self.process_group = process_group
        self.iteration = 0
        #: the residuals (one per parameter: see bucket_update)
        self.feedback = ErrorFeedback()
        self._layouts: Dict[Tuple[int, ...], Tuple[str, ...]] = {}  # layouts used this iteration -> names
        self._last: Dict[Tuple[int, ...], Tuple[str, ...]] = {}  # ... and in the last finished one
        self._dtypes: Dict[str, torch.dtype] = {}
        #: bytes this rank contributed to the all-gathers so far, and the bytes of the dense
        #: buckets they replaced (plain iterations not counted)
        self.sent_bytes = 0
        self.dense_bytes = 0

    def k_for(self, n: int) -> int:
        """Elements a rank sends from a bucket of n elements."""
        return k_from_ratio(self.ratio, n) if self.ratio is not None else min(self.k, n)

    def bucket_update(self, bucket: Any, buf: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The bucket as named views, one per parameter (named by the parameter's id; a tail
        DDP did not assign to a parameter gets a name of its own): the names under which
        ``feedback`` keeps the residuals. A residual whose dtype no longer matches is reset."""
        params = bucket.parameters()
        key = tuple(id(p) for p in params)
        views: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        off = 0
        for p in params:
            views[f"param:{id(p)}"] = buf[off:off + p.numel()]
            off += p.numel()
        if off != buf.numel():
            views[f"tail:{key}"] = buf[off:]
        for name in views:
            if self._dtypes.get(name, buf.dtype) != buf.dtype:
                self.feedback.reset(name)
            self._dtypes[name] = buf.dtype
        self._layouts[key] = tuple(views)
        return views

    @property
    def residuals(self) -> Dict[Tuple[int, ...], torch.Tensor]:
        """Bucket layout (parameter ids, in order) -> a copy of its residual (flat), for the
        layouts of the current iteration (or of the last one, between iterations)."""
        out = {}
        for key, names in (self._layouts or self._last).items():
            parts = [self.feedback.residual(n) for n in names]
            if all(r is not None for r in parts):
                out[key] = torch.cat([r.reshape(-1) for r in parts])
        return out

    def end_iteration(self) -> None:
        """Drops the residuals of parameters this iteration did not use."""
        used = {n for names in self._layouts.values() for n in names}
        for name in self.feedback.names():
            if name not in used:
                self.feedback.reset(name)
                self._dtypes.pop(name, None)
        self._last, self._layouts = self._layouts, {}


def _allreduce_mean(group, world: int, buf: torch.Tensor) -> torch.futures.Future:
    buf.div_(world)
    return dist.all_reduce(buf, group=group, async_op=True).get_future().then(lambda f: f.value()[0])


_VALUE_CODEC = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
                torch.bfloat16: "bfloat16"}


def _gather_sizes(group, world: int, size: int) -> list:
    """Every rank's `size` (a blocking all-gather of one int64 a rank), in rank order; each
    is checked to lie in [1, 2**31) (a rank that sent another count could not be decoded)."""
    mine = torch.tensor([size], dtype=torch.int64)
    got = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(got, mine, group=group)
    sizes = [int(t) for t in got]
    for r, s_ in enumerate(sizes):
        if not 0 < s_ < 2 ** 31:
            raise ArgumentError(f"bucket: rank {r} announced {s_} elements or bytes for this bucket")
    return sizes


def _gather_encoded(state: TopKState, group, world: int, buf: torch.Tensor, sel) -> torch.futures.Future:
    """All-gathers each rank's selection as a gradsparse payload (lossless value codec of
    the bucket's dtype): the sizes first (blocking, 8 bytes a rank), then the payloads,
    padded to the largest; each is decoded (and checked) and summed in rank order."""
    if buf.dtype not in _VALUE_CODEC:
        raise ArgumentTypeError(f"bucket: wire=True does not support dtype {buf.dtype}")
    payload = encode(sel, value_codec=_VALUE_CODEC[buf.dtype])
    sizes = _gather_sizes(group, world, len(payload))
    longest = max(sizes)
    mine = torch.zeros(longest, dtype=torch.uint8)
    mine[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    state.sent_bytes += len(payload)
    state.dense_bytes += buf.numel() * buf.element_size()
    parts = [torch.empty_like(mine) for _ in range(world)]
    fut = dist.all_gather(parts, mine, group=group, async_op=True).get_future()

    def combine(_f) -> torch.Tensor:
        out = torch.zeros_like(buf)
        for p, s_ in zip(parts, sizes):  # rank order: the same sum on every rank
            got = decode(p[:s_].numpy().tobytes(), to="torch")
            if tuple(got.shape) != (buf.numel(),):
                raise ArgumentError(f"payload: a rank sent shape {tuple(got.shape)} for a bucket of {buf.numel()}")
            out.index_add_(0, got.indices, got.values.to(buf.dtype))
        return out.div_(world)

    return fut.then(combine)


def topk_hook(state: TopKState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: exact top-k of each bucket with error feedback, all-gathered
    and averaged (see the module docstring)."""
    buf = bucket.buffer()
    if buf.device.type != "cpu":
        raise ArgumentError(f"bucket: gradients on {buf.device}; gradsparse selects on the CPU (use the gloo backend)")
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    plain = state.iteration < state.start_iter
    last = bucket.is_last()
    if last:
        state.iteration += 1
    if plain:
        return _allreduce_mean(group, world, buf)
    n = buf.numel()
    k = state.k_for(n)
    if state.error_feedback:
        # x + e, its top-k over the whole bucket, e <- x + e - sent: the layer's error feedback
        views = state.bucket_update(bucket, buf)
        parts = state.feedback.compress_many(views, k)
        if last:
            state.end_iteration()
        offsets, off = [], 0
        for v in views.values():
            offsets.append(off)
            off += v.numel()
        idx = torch.cat([p.indices + o for p, o in zip(parts.values(), offsets)])
        vals = torch.cat([p.values.reshape(-1) for p in parts.values()])
        sel = Sparse(idx, vals, (n,))
    else:
        sel = sparsify(buf, k)
        idx, vals = sel.indices, sel.values
    if state.wire:
        return _gather_encoded(state, group, world, buf, sel)
    # ranks may send different k (another ratio or k per rank): the counts are all-gathered
    # first (blocking, 8 bytes a rank), then one all-gather per bucket of
    # [value bytes (k * itemsize), int32 index bytes (4k)], zero-padded to the largest k
    width = buf.element_size()
    ks = _gather_sizes(group, world, k)
    longest = max(ks)
    packed = torch.zeros(longest * (width + 4), dtype=torch.uint8)
    packed[: k * width] = vals.contiguous().view(torch.uint8)
    packed[k * width: k * (width + 4)] = idx.to(torch.int32).view(torch.uint8)
    state.sent_bytes += k * (width + 4)
    state.dense_bytes += n * width
    parts = [torch.empty_like(packed) for _ in range(world)]
    fut = dist.all_gather(parts, packed, group=group, async_op=True).get_future()

    def combine(_f) -> torch.Tensor:
        out = torch.zeros_like(buf)
        for p, kr in zip(parts, ks):  # rank order: the same sum on every rank
            v = p[: kr * width].clone().view(buf.dtype)
            i = p[kr * width: kr * (width + 4)].clone().view(torch.int32).to(torch.int64)
            out.index_add_(0, i, v)
        return out.div_(world)

    return fut.then(combine)
