"""The hook's GPU path: a CUDA bucket's local pass and combine through the CUDA backend
(`gradsparse.cuda._ops`, imported on first use), and which process groups carry which
buckets.

On a CUDA bucket the residual, the payloads and the output live on the bucket's device
(persistent per bucket layout, see `buckets.BucketPlan`); each step runs

* ``_ops.feedback_select`` on the bucket (e += g, the exact selection, e keeps what was not
  sent), writing straight into the send payload for a count budget (no host
  synchronisation); a threshold's count is read back (one synchronisation) and copied in;
* the collective on the bucket's group (NCCL, or gloo, which stages CUDA tensors through
  the host), on fixed-size payloads as on the CPU;
* ``_ops.scatter_mean``: the received pairs / W added in rank order into the persistent
  output after clearing the positions the last combine wrote -- the same bits as the CPU
  combine.

Transports: a CPU bucket needs a group with a CPU backend (gloo); a CUDA bucket a group
whose CUDA backend is NCCL or gloo (``init_process_group("nccl")``, ``"gloo"`` or
``"cpu:gloo,cuda:nccl"``). Anything else is refused with an error naming the bucket.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from ...errors import ArgumentError

__all__ = ["handles", "load_ops", "transports", "check_transport", "select", "combine"]

#: the backends each bucket device may use
SUPPORTED = {"cpu": ("gloo",), "cuda": ("nccl", "gloo")}


def handles(device: Any) -> bool:
    """Whether a bucket on `device` takes the GPU path."""
    return device.type == "cuda"


_OPS: List[Any] = []  # the tensor layer, once loaded


def load_ops() -> Any:
    """The CUDA backend's tensor layer; a clear error where it is not built or no device is usable."""
    if not _OPS:
        from ... import cuda

        cuda.require("bucket")
        from ...cuda import _ops

        _OPS.append(_ops)
    return _OPS[0]


def transports(config: str) -> Dict[str, str]:
    """Device type -> backend of a process group, from its backend configuration
    (``dist.get_backend_config``: "cpu:gloo,cuda:nccl", or a single backend name)."""
    c = str(config).lower().strip()
    if ":" in c:
        out = {}
        for pair in c.split(","):
            dev, _, backend = pair.partition(":")
            out[dev.strip()] = backend.strip()
        return out
    return {dev: c for dev in dist.Backend.backend_capability.get(c, ["cpu", "cuda"])}


def group_config(group: Any) -> str:
    """The backend configuration of `group` (its backend name where torch keeps none)."""
    try:
        return dist.get_backend_config(group)
    except (AttributeError, KeyError, ValueError, RuntimeError):
        return str(dist.get_backend(group))


def check_transport(device_type: str, config: str) -> None:
    """Raises ArgumentError unless a process group of backend configuration `config` carries
    buckets on `device_type` (see the module docstring)."""
    backend = transports(config).get(device_type)
    if device_type == "cpu" and backend not in SUPPORTED["cpu"]:
        raise ArgumentError(f"bucket: CPU gradients on a process group whose backend ({config}) has no gloo for "
                            "CPU tensors (NCCL carries only CUDA tensors): use init_process_group('gloo') for a "
                            "model on the CPU, or 'cpu:gloo,cuda:nccl'")
    if device_type == "cuda" and backend not in SUPPORTED["cuda"]:
        raise ArgumentError(f"bucket: CUDA gradients on a process group whose backend ({config}) has "
                            f"{backend or 'nothing'} for CUDA tensors; the hook sends CUDA buckets over NCCL "
                            "(or gloo): use init_process_group('nccl') or 'cpu:gloo,cuda:nccl'")


def select(state: Any, plan: Any, buf: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> int:
    """The bucket's fused selection with error feedback on its device, written into
    values/indices (cap elements: padded with (0, -1)); returns the count. A threshold over
    the bound leaves the residual at e + g, as the CPU pass does, and returns the count."""
    ops = load_ops()
    e = plan.residual
    if not state.error_feedback:
        e.zero_()
    args: Dict[str, Any] = {"mode": "magnitude", "value_dtype": state.value_dtype}
    if state.method == "cwmp":
        args.update(cost=plan.device_costs, q=state.q, alpha=state.alpha)
    if state.method != "threshold":
        ops.feedback_select(buf, e, k=plan.k, out_values=values, out_indices=indices, **args)
        return plan.k
    idx, vals, count = ops.feedback_select(buf, e, tau=state.tau, **args)
    count = int(count)
    if count > plan.cap:  # nothing is sent: give the residual back what the selection took out
        e.index_add_(0, idx[:count].to(torch.int64), vals[:count].to(torch.float32))
        return count
    values[:count].copy_(vals[:count])
    values[count:].zero_()
    indices[:count].copy_(idx[:count])
    indices[count:].fill_(-1)
    return count


def combine(plan: Any, vals: List[torch.Tensor], idx: List[torch.Tensor], rows: Optional[torch.Tensor]) -> None:
    """out = the pairs / W in order (after clearing what the last combine wrote), on the
    bucket's device; `rows` (the payloads' index rows, 2-D) is kept as what was written."""
    ops = load_ops()
    clear = None
    if plan.dirty_all:
        plan.out.zero_()
        plan.dirty_all = plan.has_written = False
    elif plan.has_written:
        clear = plan.written_device
    ops.scatter_mean(plan.out, clear, vals, idx, float(plan.world))
    if rows is not None:
        plan.written_device.view(rows.shape).copy_(rows)
        plan.has_written = True
