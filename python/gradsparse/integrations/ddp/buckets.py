"""One DDP bucket's persistent plan and buffers, and its three traffic schemes.

A plan is made once per bucket layout (the bucket's parameters, in order) and kept: the
send and receive buffers, the output the hook returns, and the positions the last combine
wrote (re-zeroed next time instead of zeroing the whole output). Every size is fixed by the
bucket size n, the world size W and the per-rank budget k, which every rank derives from
the same settings: no size is exchanged, one collective per bucket (two for ``split``).

Every sparse payload starts with a header of two int32, (n, count): count is the number
of real pairs (the rest is padding, index -1), or minus the number a threshold selection
wanted when it exceeded the bound -- every rank then raises the same error.

A plan of a CUDA bucket keeps every buffer on the bucket's device, its residual too (the
GPU path, `gpu.py`); a count budget's header is written once, and its received headers
are not read back (n and k are the same on every rank, checked at the first step: reading
them would synchronise every step), a threshold's are.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from ...compress import scatter_mean
from ...errors import ArgumentError
from ...compress.traffic import HEADER
from . import gpu

_HDR_INTS = HEADER // 4


def _gather_into(out: torch.Tensor, mine: torch.Tensor, group: Any) -> Any:
    """Async all-gather of equal-sized byte rows into `out` (W rows)."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    return gather(out.view(-1), mine.view(-1), group=group, async_op=True)


class Payloads:
    """`slots` rows of [header | cap int32 indices | cap values] in one byte tensor, with
    typed views of each part."""

    def __init__(self, slots: int, cap: int, value_dtype: torch.dtype, device: Any = None) -> None:
        vb = torch.empty((), dtype=value_dtype).element_size()
        self.cap, self.value_dtype = cap, value_dtype
        self.row = -(-(HEADER + cap * (vb + 4)) // 4) * 4  # rows stay 4-byte aligned
        self.bytes = torch.zeros((slots, self.row), dtype=torch.uint8, device=device)
        self.header = [self.bytes[s, :HEADER].view(torch.int32) for s in range(slots)]
        # indices before values: every part stays aligned to its element size
        self.indices2d = self.bytes[:, HEADER:HEADER + cap * 4].view(torch.int32)  # (slots, cap)
        self.values2d = self.bytes[:, HEADER + cap * 4:HEADER + cap * (4 + vb)].view(value_dtype)
        self.indices = list(self.indices2d.unbind(0))
        self.values = list(self.values2d.unbind(0))

    def parts(self, world: int, n: int, what: str) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """The (values, indices) of every received row, after checking each header: the
        same bucket size, a count within the bound. Raises the same error on every rank."""
        out = []
        headers = self.bytes[:world, :HEADER].view(torch.int32).cpu()  # one copy from a device
        for r in range(world):
            got_n, count = (int(v) for v in headers[r])
            if got_n != n:
                raise ArgumentError(f"payload: rank {r} sent a {what} for a bucket of {got_n} elements, this one has {n}"
                                    " (do the ranks train the same model with the same bucket sizes?)")
            if count < 0:
                raise ArgumentError(f"payload: rank {r} selected {-count} elements of a bucket of {n}, over the bound of"
                                    f" {self.cap} a payload carries (raise ratio/k, or the threshold)")
            if count > self.cap:
                raise ArgumentError(f"payload: rank {r} announced {count} pairs, over the bound of {self.cap}")
            out.append((self.values[r], self.indices[r]))
        return out

    def rows(self, world: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """The (values, indices) of every received row, headers unread (their n and count
        are fixed by the settings: a CUDA count budget)."""
        return list(zip(self.values[:world], self.indices[:world]))


def fill_header(header: torch.Tensor, n: int, count: int, cap: int) -> None:
    header[0] = n
    header[1] = count if count <= cap else -count


class BucketPlan:
    """The persistent state of one bucket layout: see the module docstring."""

    def __init__(self, key: Any, name: str, n: int, dtype: torch.dtype, world: int, rank: int, k: int,
                 scheme: str, value_dtype: torch.dtype, layout: Any, threshold: bool = False,
                 device: Any = None) -> None:
        self.key, self.rank, self.layout = key, rank, layout
        self.costs: Any = None  # cwmp: the bucket's float32 costs
        self.name, self.n, self.dtype, self.world, self.k, self.scheme = name, n, dtype, world, k, scheme
        self.threshold = threshold
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.on_gpu = gpu.handles(self.device)  # the GPU path (gpu.py), float32 only
        self.fast = dtype == torch.float32  # the fused C++ pass (other dtypes: the generic one)
        self.value_dtype = value_dtype if self.fast else dtype
        self.out = torch.zeros(n, dtype=dtype, device=self.device)
        self.dirty_all = False  # the whole output must be zeroed (after a dense step)
        self.written: Optional[torch.Tensor] = None  # int32 positions the last combine wrote
        self.group: Any = None  # split: the group of its second collective (set by the state)
        if scheme == "split":
            if self.on_gpu:
                raise ArgumentError("scheme: 'split' runs on CPU buckets only")
            self.regions = world
            self.cap = -(-k // world)
            self.m = -(-n // world)  # region length
            self.send = Payloads(world, self.cap, self.value_dtype)
            self.recv = Payloads(world, self.cap, self.value_dtype)
            self.stage_values = torch.zeros(world * self.cap, dtype=self.value_dtype)
            self.stage_indices = torch.zeros(world * self.cap, dtype=torch.int32)
            # the re-selection's persistent buffers (sums of the region: float32)
            self.send2 = Payloads(1, self.cap, torch.float32)
            self.recv2 = Payloads(world, self.cap, torch.float32)
        else:
            self.regions = 1
            self.cap = n if threshold and scheme == "dense" else k  # a dense step takes any count
            self.send = Payloads(1, self.cap, self.value_dtype, self.device)
            self.recv = Payloads(world, self.cap, self.value_dtype, self.device) if scheme == "allgather" else None
        if self.on_gpu:
            # the GPU path's persistent buffers: the residual, the positions the last
            # combine wrote, the costs (set by the state), and a count budget's fixed header
            self.residual = torch.zeros(n, dtype=torch.float32, device=self.device)
            self.written_device = torch.full((world * self.cap,), -1, dtype=torch.int32, device=self.device)
            self.has_written = False
            self.device_costs: Any = None
            if not threshold:
                fill_header(self.send.header[0], n, k, self.cap)

    @property
    def checks_headers(self) -> bool:
        """Whether the received headers are read (a CUDA count budget's are fixed)."""
        return not self.on_gpu or self.threshold

    # --------------------------------------------------------------------- helpers

    def clear_output(self) -> None:
        """Zeroes what the last combine wrote (all of it after a dense step)."""
        if self.dirty_all:
            self.out.zero_()
            self.dirty_all = False
        elif self.written is not None:
            self.out.index_fill_(0, self.written.to(torch.int64), 0)
        self.written = None

    def combine(self, parts: Sequence[Tuple[torch.Tensor, torch.Tensor]], rows: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        """out = sum over parts, in order, of value / W at each index (after clearing what
        the last combine wrote); remembers the positions written (on a GPU: `rows`, the
        parts' index rows as one 2-D tensor, copied into a persistent buffer)."""
        if self.on_gpu:
            gpu.combine(self, [v for v, _ in parts], [i for _, i in parts], rows)
            return self.out
        if self.fast:
            clear = None
            if self.dirty_all:
                self.out.zero_()
                self.dirty_all = False
            elif self.written is not None:
                clear = self.written
            scatter_mean(self.out, list(parts), self.world, clear=clear)
        else:
            self.clear_output()
            w = float(self.world)
            for vals, idx in parts:
                keep = idx >= 0
                if not bool(torch.all((idx < self.n) & (keep | (idx == -1)))):
                    raise ArgumentError(f"payload: an index outside [0, {self.n}) in a bucket of {self.n}")
                self.out.index_add_(0, idx[keep].to(torch.int64), vals[keep].to(self.dtype) / w)
        self.written = torch.cat([idx for _, idx in parts])
        return self.out
