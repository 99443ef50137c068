"""`topk_hook`: per bucket, the fused selection with error feedback into persistent
buffers, one of three traffic schemes, and the combine into a persistent output."""
# (no `from __future__ import annotations`: DDP checks the hook's annotations as objects)
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
import torch.distributed as dist

from ...errors import ArgumentError
from ...selection import sparsify
from . import gpu
from .buckets import BucketPlan, _gather_into, fill_header
from .state import TopKState

__all__ = ["topk_hook", "local_pass"]


def _allreduce_mean(group: Any, world: int, buf: torch.Tensor) -> torch.futures.Future:
    buf.div_(world)
    return dist.all_reduce(buf, group=group, async_op=True).get_future().then(lambda f: f.value()[0])


def _selection_args(state: TopKState, plan: BucketPlan) -> Dict[str, Any]:
    if state.method == "threshold":
        return {"tau": state.tau}
    args: Dict[str, Any] = {"k": plan.k if plan.scheme != "split" else plan.cap}
    if state.method == "cwmp":
        args.update(cost=plan.costs, q=state.q, alpha=state.alpha)
    return args


def _select(state: TopKState, plan: BucketPlan, buf: torch.Tensor, values: torch.Tensor,
            indices: torch.Tensor) -> List[int]:
    """Error feedback fused with the selection: e += buf, the selection of every region
    written to values/indices (padded with index -1), e keeps what was not sent. Returns the
    count per region."""
    if plan.on_gpu:
        return [gpu.select(state, plan, buf, values, indices)]
    if not state.error_feedback:
        state.feedback.reset(plan.name)
    if plan.fast:
        counts = state.feedback.compress_into(
            plan.name, buf, regions=plan.regions, cap=plan.cap, values=values, indices=indices,
            value_dtype=state.value_dtype, threads=state.threads_now(), **_selection_args(state, plan))
        return [int(c) for c in counts]
    # another dtype (float16, bfloat16, float64): the layer's generic error feedback
    sel = state.feedback.compress(plan.name, buf, plan.k)
    c = int(sel.indices.numel())
    values[:c] = sel.values
    values[c:] = 0
    indices[:c] = sel.indices.to(torch.int32)
    indices[c:] = -1
    return [c]


def _account(state: TopKState, plan: BucketPlan, world: int) -> None:
    steps = world - 1
    if plan.scheme == "allgather":
        state.sent_bytes += steps * plan.send.row
    elif plan.scheme == "split":
        state.sent_bytes += steps * (plan.send.row + plan.send2.row)
    else:
        state.sent_bytes += 2 * steps * plan.n * plan.out.element_size() // world
    state.dense_bytes += 2 * steps * plan.n * plan.out.element_size() // world
    state.schemes_used[plan.scheme] += 1


def _dense(state: TopKState, plan: BucketPlan, buf: torch.Tensor, group: Any) -> torch.futures.Future:
    """The densified update, all-reduced: every rank scatters its own pairs / W into the
    zeroed output, and the backend (gloo, NCCL) sums the outputs in its own order."""
    _select(state, plan, buf, plan.send.values[0], plan.send.indices[0])  # a threshold's bound is n here
    plan.combine([(plan.send.values[0], plan.send.indices[0])])
    plan.dirty_all = True
    return dist.all_reduce(plan.out, group=group, async_op=True).get_future().then(lambda f: plan.out)


def _allgather(state: TopKState, plan: BucketPlan, buf: torch.Tensor, group: Any) -> torch.futures.Future:
    count = _select(state, plan, buf, plan.send.values[0], plan.send.indices[0])[0]
    if plan.checks_headers:
        fill_header(plan.send.header[0], plan.n, count, plan.cap)
    work = _gather_into(plan.recv.bytes, plan.send.bytes, group)

    def combine(_f: Any) -> torch.Tensor:
        if plan.checks_headers:
            parts = plan.recv.parts(plan.world, plan.n, "selection")
        else:
            parts = plan.recv.rows(plan.world)
        return plan.combine(parts, plan.recv.indices2d)

    return work.get_future().then(combine)


def _reselect(state: TopKState, plan: BucketPlan, parts: List[Tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Split scheme, on the region's owner: the received pairs summed per position (in rank
    order), the best `cap` of the sums written to send2, and the sums it drops handed back
    to this rank's residual (they reach the update later through its own selection)."""
    lo = plan.rank * plan.m
    hi = min(lo + plan.m, plan.n)
    idx = torch.cat([i[i >= 0] for _, i in parts])
    if bool(torch.any((idx < lo) | (idx >= hi))):
        raise ArgumentError(f"payload: a pair outside region [{lo}, {hi}) of rank {plan.rank}")
    vals = torch.cat([v[i >= 0].to(torch.float32) for v, i in parts]).numpy()
    where, slot = np.unique(idx.numpy(), return_inverse=True)  # ascending positions
    sums = np.zeros(where.size, np.float32)
    np.add.at(sums, slot, vals)  # in rank order, one addition at a time
    count = min(plan.cap, where.size)
    keep = sparsify(sums, count).indices if count else np.zeros(0, np.int64)
    out_v, out_i = plan.send2.values[0], plan.send2.indices[0]
    out_v[:count] = torch.from_numpy(sums[keep])
    out_i[:count] = torch.from_numpy(where[keep].astype(np.int32))
    out_v[count:] = 0
    out_i[count:] = -1
    if where.size > count and state.error_feedback:
        dropped = np.ones(where.size, bool)
        dropped[keep] = False
        state.feedback.add_at(plan.name, where[dropped], sums[dropped])
    fill_header(plan.send2.header[0], plan.n, count, plan.cap)


def _split(state: TopKState, plan: BucketPlan, buf: torch.Tensor, group: Any) -> torch.futures.Future:
    """Split and reduce, then all-gather (bounded volume; see the package docstring)."""
    counts = _select(state, plan, buf, plan.stage_values, plan.stage_indices)
    plan.send.values2d.copy_(plan.stage_values.view(plan.world, plan.cap))
    plan.send.indices2d.copy_(plan.stage_indices.view(plan.world, plan.cap))
    # a region over the bound marks every slot, so that every rank sees it and raises
    over = max((c for c in counts if c > plan.cap), default=None)
    for r, c in enumerate(counts):
        fill_header(plan.send.header[r], plan.n, c if over is None else over, plan.cap)
    work = dist.all_to_all_single(plan.recv.bytes.view(-1), plan.send.bytes.view(-1), group=group, async_op=True)

    def second(_f: Any) -> torch.Tensor:
        _reselect(state, plan, plan.recv.parts(plan.world, plan.n, "region share"))
        _gather_into(plan.recv2.bytes, plan.send2.bytes, plan.group).wait()
        return plan.combine(plan.recv2.parts(plan.world, plan.n, "reduced region"))

    return work.get_future().then(second)


_SCHEMES = {"allgather": _allgather, "dense": _dense, "split": _split}


def topk_hook(state: TopKState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: the fused selection with error feedback of each bucket, sent
    by the bucket's traffic scheme and averaged (see the package docstring)."""
    buf = bucket.buffer()
    if buf.device.type not in gpu.SUPPORTED:
        raise ArgumentError(f"bucket: gradients on {buf.device}; the hook takes CPU buckets (over gloo) and CUDA "
                            "buckets (over NCCL or gloo)")
    group = state.process_group if state.process_group is not None else dist.group.WORLD
    world = dist.get_world_size(group)
    state.check_bucket(buf, group)
    if not state._checked:
        state.check_ranks(group, buf.device)
    plain = state.iteration < state.start_iter
    last = bucket.is_last()
    if plain:
        if last:
            state.iteration += 1
        return _allreduce_mean(group, world, buf)
    plan = state.plan(bucket, buf, group, world)
    state._used.add(plan.key)
    if last:
        state.iteration += 1
        state.end_iteration(state._used)
        state._used = set()
    _account(state, plan, world)
    return _SCHEMES[plan.scheme](state, plan, buf, group)


def local_pass(state: TopKState, buf: torch.Tensor, world: int, scheme: Any = None) -> torch.Tensor:
    """The hook's CPU work on one bucket without communication (for benchmarks): the fused
    selection into the persistent buffers, then the combine of `world` copies of this rank's
    payload as if every rank had sent it (split: this rank owns region 0). Keeps plans and
    residuals of its own (names "local:..."), apart from the hook's."""
    if not isinstance(buf, torch.Tensor) or buf.dim() != 1 or buf.device.type != "cpu":
        raise ArgumentError("buf: expected a flat CPU tensor (a bucket's buffer)")
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ArgumentError(f"world: must be an integer >= 1, got {world!r}")
    key = ("local", buf.numel(), buf.dtype, world, scheme or state.scheme)
    plan = state._local.get(key)
    if plan is None:
        plan = state.make_plan(key, ((-1, buf.numel()),), buf.numel(), buf.dtype, world, 0,
                               f"local:{len(state._local)}", scheme=scheme)
        if state.method == "cwmp" and plan.costs is None:
            plan.costs = state._costs([buf], buf.numel())
        state._local[key] = plan
    if plan.scheme == "split":
        _select(state, plan, buf, plan.stage_values, plan.stage_indices)
        _reselect(state, plan, [(plan.stage_values[:plan.cap], plan.stage_indices[:plan.cap])] * world)
        return plan.combine([(plan.send2.values[0], plan.send2.indices[0])] * world)
    count = _select(state, plan, buf, plan.send.values[0], plan.send.indices[0])[0]
    fill_header(plan.send.header[0], plan.n, count, plan.cap)
    out = plan.combine([(plan.send.values[0], plan.send.indices[0])] * (world if plan.scheme == "allgather" else 1))
    plan.dirty_all = plan.scheme == "dense"
    return out
