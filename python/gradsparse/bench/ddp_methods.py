"""Models and methods of the DDP step-time benchmark (``python -m gradsparse.bench ddp``).

Models, written in plain ``torch.nn`` (torchvision is not needed):

* ``resnet18``: the harness's CIFAR ResNet-18 (gradsparse.fl.models; 3x3 stem, no max-pool, 11,173,962
  parameters), batch 32 of 3x32x32, DDP's default buckets (``bucket_cap_mb`` not given:
  25 MiB, the first bucket 1 MiB; 3 buckets after DDP's rebuild -- given explicitly, 25
  would apply to the first bucket too and make 2);
* ``mlp``: 3072 -> 3400 -> 64 -> 10 (10.67M parameters), batch 32, ``bucket_cap_mb=64``
  (explicit, so for the first bucket too): one 42.7 MB bucket.

``--quick`` shrinks both (ResNet-18 of width 8 with 0.25 MB buckets, an MLP of width 256,
batch 8) so that CI runs every method in seconds.

Methods: ``plain`` (DDP without a hook), ``noop`` (a hook that returns the bucket as it is,
no communication: the floor every paired difference is taken against), ``bf16`` (torch's
``bf16_compress_hook``, called from a function of another name: DDP refuses the hook by
its name on CPU), ``powersgd`` (torch's ``powerSGD_hook``, rank 1, with one gloo process
group per bucket index: with several buckets on one gloo group its chained all-reduces of
different buckets interleave differently on the ranks and it aborts or hangs), and
gradsparse's ``topk_hook`` at 1% and 0.1% with each traffic scheme of the contract, plus
one with bfloat16 values.

torch is imported by the functions that need it (the bench package loads without torch).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

SCHEMES = ("allgather", "dense", "split", "auto")
RATIOS = (0.01, 0.001)
POWERSGD_START = 2  # the smallest start PowerSGD allows with error feedback / warm start
TOPK_START = 1  # gradsparse's default: one plain iteration while DDP rebuilds its buckets


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A benchmark model: how to build it, its batch and DDP's bucket cap."""
    name: str
    build: Callable[[], Any]
    batch: int
    bucket_cap_mb: Optional[float]  # None: DDP's default (25 MiB, the first bucket 1 MiB)


@dataclasses.dataclass(frozen=True)
class Method:
    """One way of running DDP: ``kind`` is plain, noop, bf16, powersgd or gradsparse."""
    name: str
    kind: str
    ratio: Optional[float] = None
    scheme: Optional[str] = None
    value_dtype: str = "float32"

    @property
    def label(self) -> str:
        """The name shown in the tables."""
        return {"plain": "plain DDP", "noop": "no-op hook (floor)", "bf16": "bf16 (torch)",
                "powersgd": "PowerSGD r1 (torch)"}.get(self.kind, self.name)


def pct(r: float) -> str:
    """0.01 -> '1%', 0.001 -> '0.1%'."""
    return f"{r * 100:g}%"


def all_methods() -> List[Method]:
    """Every method, the floor first."""
    out = [Method("noop", "noop"), Method("plain", "plain"), Method("bf16", "bf16"), Method("powersgd", "powersgd")]
    for r in RATIOS:
        for s in SCHEMES:
            out.append(Method(f"gs-{pct(r)}-{s}", "gradsparse", r, s))
    out.append(Method(f"gs-{pct(RATIOS[1])}-auto-bf16", "gradsparse", RATIOS[1], "auto", "bfloat16"))
    return out


def select_methods(names: Optional[Sequence[str]]) -> List[Method]:
    """The methods named (a comma list of names or prefixes such as ``gs-1%``); the floor is
    always included."""
    every = all_methods()
    if not names:
        return every
    chosen = [m for m in every if m.kind == "noop" or any(m.name == n or m.name.startswith(n + "-") for n in names)]
    unknown = [n for n in names if not any(m.name == n or m.name.startswith(n + "-") for m in every)]
    if unknown:
        raise SystemExit(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(m.name for m in every)})")
    return chosen


# ----------------------------------------------------------------------------- models

def resnet18(width: int = 64, num_classes: int = 10):
    """The harness's CIFAR ResNet-18 (`gradsparse.fl.models.ResNet18`; width 64: 11,173,962
    parameters)."""
    from ..fl.models import ResNet18

    return ResNet18(num_classes, width=width)


def mlp(hidden: int = 3400, narrow: int = 64, num_classes: int = 10):
    """3x32x32 -> hidden -> narrow -> classes, ReLU between."""
    import torch.nn as nn

    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU(), nn.Linear(hidden, narrow), nn.ReLU(),
                         nn.Linear(narrow, num_classes))


def model_specs(quick: bool) -> Dict[str, ModelSpec]:
    """The benchmark's models (CI-sized with `quick`)."""
    if quick:
        return {"resnet18": ModelSpec("resnet18", lambda: resnet18(width=8), 8, 0.25),
                "mlp": ModelSpec("mlp", lambda: mlp(hidden=256, narrow=16), 8, 64.0)}
    return {"resnet18": ModelSpec("resnet18", resnet18, 32, None),
            "mlp": ModelSpec("mlp", mlp, 32, 64.0)}


# ----------------------------------------------------------------------------- hooks

def topk_state(method: Method, link: Optional[Tuple[float, float]] = None):
    """A TopKState for `method` (the link model's figures given, so every rank chooses alike)."""
    from ..integrations.ddp import TopKState

    return TopKState(ratio=method.ratio, start_iter=TOPK_START, scheme=method.scheme, value_dtype=method.value_dtype,
                     link=link)


class Floor:
    """State of :func:`noop_hook`: while ``capture`` is a list, the hook appends a
    :class:`CapturedBucket` copy of every bucket it sees."""

    def __init__(self) -> None:
        self.capture: Optional[List["CapturedBucket"]] = None


def noop_hook(floor: Floor, bucket):  # no annotations: DDP checks them as objects
    """The floor: the bucket comes back as it went in (no communication, no averaging)."""
    import torch

    if floor.capture is not None:
        floor.capture.append(CapturedBucket(bucket.index(), bucket.buffer().detach().clone(),
                                            [tuple(g.shape) for g in bucket.gradients()], bucket.is_last()))
    fut: "torch.futures.Future" = torch.futures.Future()
    fut.set_result(bucket.buffer())
    return fut


def bf16_hook(process_group, bucket):
    """torch's bf16_compress_hook under another name (DDP refuses that name on CPU)."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook

    return bf16_compress_hook(process_group, bucket)


class PowerSGDPerBucket:
    """torch's PowerSGD state with one gloo process group per bucket index: each bucket's
    chain of all-reduces (uncompressed tensors, P, Q) runs on its own group, so chains of
    different buckets cannot interleave differently on the ranks."""

    def __init__(self, groups: Sequence[Any], rank: int = 1, start: int = POWERSGD_START) -> None:
        from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState

        self.groups = list(groups)
        self.state = PowerSGDState(process_group=self.groups[0], matrix_approximation_rank=rank,
                                   start_powerSGD_iter=start)

    def elements_sent(self) -> int:
        """Elements this rank has all-reduced in compressed iterations so far (P, Q and the
        tensors PowerSGD leaves uncompressed)."""
        return int(self.state.total_numel_after_compression)


def powersgd_hook(ctx: PowerSGDPerBucket, bucket):
    """torch's powerSGD_hook on the process group of this bucket's index."""
    from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import powerSGD_hook

    i = bucket.index()
    if i >= len(ctx.groups):
        raise RuntimeError(f"powersgd: bucket {i} but only {len(ctx.groups)} process groups were made")
    ctx.state.process_group = ctx.groups[i]
    return powerSGD_hook(ctx.state, bucket)


class CapturedBucket:
    """A copy of one real gradient bucket, with the GradBucket methods the hooks call, for
    timing a hook's CPU work outside DDP: ``buffer()`` is a working copy restored from the
    capture by ``restore()``."""

    def __init__(self, index: int, data: Any, shapes: List[Tuple[int, ...]], last: bool) -> None:
        self.data, self.shapes, self._index, self._last = data, shapes, index, last
        self.work = data.clone()

    def restore(self) -> None:
        """Puts the captured gradients back into the working copy."""
        self.work.copy_(self.data)

    def buffer(self):
        return self.work

    def index(self) -> int:
        return self._index

    def is_last(self) -> bool:
        return self._last

    def gradients(self) -> list:
        out, off = [], 0
        for s in self.shapes:
            n = 1
            for d in s:
                n *= d
            out.append(self.work[off:off + n].view(s))
            off += n
        return out
