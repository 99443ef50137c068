"""The CUDA suite's checks (``python -m gradsparse.bench cuda``): every GPU result against
the CPU engine bit for bit, the torch baselines by the multiset of kept magnitudes, and the
two promises of a count-budget call -- no host synchronisation and no device allocation
beyond its outputs and one workspace tensor.

The reference for gradsparse is the CPU engine itself (``gradsparse.sparsify``,
``sparsify_many`` and ``ErrorFeedback.compress_into`` on host copies), which the CPU suite
checks against exact numpy references: indices equal, values and residuals equal as bits.
torch.topk breaks ties arbitrarily, so its result is checked by what does not depend on the
tie break: distinct indices, values equal to the input at them, and the sorted kept
magnitudes equal to the CPU engine's.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Sequence

import numpy as np

import gradsparse as gs

from .common import VerificationError

__all__ = ["bits", "check_same", "check_torch_topk", "cpu_select", "cpu_select_many", "cpu_feedback",
           "magnitudes", "sync_probe", "alloc_probe", "first_line", "SLACK_BYTES"]

#: free device memory may move by this much without the extension having allocated (the
#: driver's own bookkeeping); more than this, unexplained by torch's allocator, is reported
SLACK_BYTES = 2 << 20


def bits(t: Any) -> np.ndarray:
    """The raw bits of a tensor's elements as an unsigned numpy array (on the host)."""
    t = t.detach().contiguous().cpu()
    width = t.element_size()
    torch = _torch_of(t)
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width]
    return t.view(as_int).numpy().view(f"u{width}")


def _torch_of(t: Any):
    import torch  # noqa: PLC0415  (the suite runs only with torch)

    return torch


def check_same(label: str, what: str, got: Any, want: Any) -> None:
    """Raises VerificationError unless tensors `got` (GPU) and `want` (CPU engine) have one
    dtype, one length and the same bits."""
    if got.dtype != want.dtype:
        raise VerificationError(f"{label}: {what} dtype {got.dtype}, the CPU engine's {want.dtype}")
    if got.numel() != want.numel():
        raise VerificationError(f"{label}: {what} has {got.numel()} entries, the CPU engine's {want.numel()}")
    g, w = bits(got.reshape(-1)), bits(want.reshape(-1))
    if not np.array_equal(g, w):
        first = int(np.flatnonzero(g != w)[0])
        raise VerificationError(f"{label}: {what} differ from the CPU engine's ({int(np.sum(g != w))} of {g.size} "
                                f"entries, first at position {first})")


def cpu_select(x: Any, k: int):
    """The CPU engine's (indices int64, values) of one tensor: gradsparse.sparsify on a host copy."""
    s = gs.sparsify(x.detach().cpu(), k)
    return s.indices, s.values


def cpu_select_many(xs: Sequence[Any], k: int):
    """The CPU engine's global selection: (global indices int64, values, counts per tensor)."""
    torch = _torch_of(xs[0])
    res = gs.sparsify_many([x.detach().cpu() for x in xs], k)
    offsets = np.cumsum([0] + [x.numel() for x in xs[:-1]])
    idx = torch.cat([s.indices + int(o) for s, o in zip(res, offsets)])
    vals = torch.cat([s.values for s in res])
    return idx, vals, [s.nnz for s in res]


def cpu_feedback(g: Any, e: Any, k: int, value_dtype: str):
    """The CPU engine's error-feedback step on host copies: (indices int32, values, residual
    after the step). `e` is not changed."""
    torch = _torch_of(g)
    from ..compress.feedback import ErrorFeedback  # noqa: PLC0415

    ef = ErrorFeedback()
    ef.load_residual("x", e.detach().cpu().numpy())
    vals = torch.empty(k, dtype=torch.float32 if value_dtype == "float32" else torch.bfloat16)
    idx = np.empty(k, dtype=np.int32)
    counts = ef.compress_into("x", g.detach().cpu().numpy(), k=k, values=vals, indices=idx, value_dtype=value_dtype)
    if counts != [k]:
        raise VerificationError(f"CPU error feedback kept {counts}, expected [{k}]")
    return torch.from_numpy(idx), vals, torch.as_tensor(ef.residual("x")).reshape(-1)


def check_torch_topk(label: str, idx: Any, vals: Any, x: Any, kept_mag: np.ndarray) -> None:
    """torch.topk(|x|) + gather: distinct in-range indices, values == x[idx] bitwise, and the
    sorted kept magnitudes (float64) equal `kept_mag` (the CPU engine's, sorted)."""
    i = idx.detach().cpu().numpy().astype(np.int64)
    n = x.numel()
    if i.size != kept_mag.size or np.unique(i).size != i.size or (i.size and (i.min() < 0 or i.max() >= n)):
        raise VerificationError(f"{label}: torch.topk returned {i.size} indices ({np.unique(i).size} distinct), "
                                f"expected {kept_mag.size} distinct in [0, {n})")
    xc = x.detach().reshape(-1).cpu()
    if not np.array_equal(bits(vals), bits(xc[idx.cpu()])):
        raise VerificationError(f"{label}: torch's gathered values are not x[indices]")
    mag = np.sort(np.abs(vals.detach().cpu().double().numpy()))
    if not np.array_equal(mag, kept_mag):
        raise VerificationError(f"{label}: torch.topk's kept magnitudes differ from the CPU engine's top-k")


def magnitudes(vals: Any) -> np.ndarray:
    """Sorted |values| in float64 (exact for every float dtype of the suite)."""
    return np.sort(np.abs(vals.detach().cpu().double().numpy()))


# ----------------------------------------------------------------------------- the promises

def sync_probe(torch, call, sleep_ms: float = 100.0) -> Dict[str, Any]:
    """Whether `call()` returns without waiting for the GPU, two ways.

    1. torch's sync debug mode ("error"): raises on the synchronising operations torch itself
       performs (``.item()``, ``.tolist()``, ``nonzero``, blocking copies to the host) -- but it
       cannot see CUDA runtime calls the extension makes directly.
    2. A busy stream: ``torch.cuda._sleep`` keeps the current stream busy for about
       `sleep_ms`; then `call()` is timed on the host. A call that waits for the GPU anywhere
       (cudaStreamSynchronize, a blocking cudaMemcpy, cudaFree, torch's syncs) cannot return
       before the sleep ends; one that only enqueues returns at once and leaves the stream busy.
    Both run after warm-up (lazy kernel loading may synchronise once)."""
    res: Dict[str, Any] = {}
    prev = torch.cuda.get_sync_debug_mode()
    torch.cuda.synchronize()
    try:
        torch.cuda.set_sync_debug_mode("error")
        call()
        res["debug_mode"] = {"ok": True, "detail": "no synchronising torch operation (sync debug mode 'error')"}
    except RuntimeError as exc:
        res["debug_mode"] = {"ok": False, "detail": f"torch sync debug mode raised: {str(exc).splitlines()[0][:200]}"}
    finally:
        torch.cuda.set_sync_debug_mode(prev)
    torch.cuda.synchronize()
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        res["busy_stream"] = {"ok": None, "detail": "torch.cuda._sleep is missing in this torch: not checked"}
        return res
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    cycles = 1_000_000
    start.record()
    sleep(cycles)
    end.record()
    end.synchronize()
    ms_per_cycle = max(start.elapsed_time(end), 1e-3) / cycles
    cycles = min(int(sleep_ms / ms_per_cycle), 4_000_000_000)  # (about 2 s at 2 GHz: a bound, never reached)
    start.record()
    sleep(cycles)
    t0 = time.perf_counter()
    call()
    host_ms = (time.perf_counter() - t0) * 1e3
    busy = not torch.cuda.current_stream().query()
    end.record()
    end.synchronize()
    slept = start.elapsed_time(end)
    ok = busy and host_ms < 0.5 * slept
    res["busy_stream"] = {"ok": ok, "host_ms": host_ms, "stream_busy_after_call": busy, "sleep_ms": slept,
                          "detail": (f"call returned after {host_ms:.2f} ms while the stream was busy for "
                                     f"{slept:.0f} ms ({'still busy' if busy else 'idle'} on return)")}
    return res


def alloc_probe(torch, device, call, outputs: int, workspaces: int = 1) -> Dict[str, Any]:
    """Device allocations one `call()` makes: torch allocator requests (count and bytes, from
    ``torch.cuda.memory_stats``), and device memory taken outside torch's allocator (free
    memory from the driver, less what torch reserved meanwhile). The documented budget is
    `outputs` result tensors + `workspaces` workspace tensors; nothing outside torch."""
    torch.cuda.synchronize(device)
    st0 = torch.cuda.memory_stats(device)
    free0, _ = torch.cuda.mem_get_info(device)
    keep = call()  # the outputs stay alive until after the measurement
    torch.cuda.synchronize(device)
    st1 = torch.cuda.memory_stats(device)
    free1, _ = torch.cuda.mem_get_info(device)
    count = int(st1.get("allocation.all.allocated", 0) - st0.get("allocation.all.allocated", 0))
    nbytes = int(st1.get("allocated_bytes.all.allocated", 0) - st0.get("allocated_bytes.all.allocated", 0))
    reserved = int(st1.get("reserved_bytes.all.current", 0) - st0.get("reserved_bytes.all.current", 0))
    outside = int(free0 - free1) - reserved
    # outputs = 0: the call wrote into buffers it was given; what it returns is not new
    out_bytes = sum(t.numel() * t.element_size() for t in _tensors(keep)) if outputs else 0
    del keep
    allowed = outputs + workspaces
    ok = count <= allowed and outside <= SLACK_BYTES
    return {"ok": ok, "allocations": count, "allowed": allowed, "bytes": nbytes, "output_bytes": out_bytes,
            "workspace_bytes": max(0, nbytes - out_bytes), "outside_torch_bytes": outside,
            "detail": (f"{count} torch allocation(s) (allowed {outputs} output(s) + {workspaces} workspace), "
                       f"{nbytes} bytes of which outputs {out_bytes}; device memory taken outside torch's "
                       f"allocator: {outside} bytes (allowed {SLACK_BYTES})")}


def _tensors(obj: Any) -> List[Any]:
    """The tensors in a (nested) result tuple."""
    if isinstance(obj, (tuple, list)):
        found: List[Any] = []
        for o in obj:
            found += _tensors(o)
        return found
    return [obj] if hasattr(obj, "element_size") and hasattr(obj, "numel") else []


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

