"""gradsparse.integrations.ddp when ranks disagree or a payload breaks its bound: every
rank raises the same clear error (no abort, no hang: the group's collectives time out after
60 s in tests/gloo.py, far above these runs)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from ddp_reference import FakeBucket as _Bucket  # noqa: E402
from gloo import spawn  # noqa: E402
from gradsparse.integrations.ddp import TopKState, topk_hook  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def _model() -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))


def _step(model, rank: int) -> None:
    g = torch.Generator().manual_seed(7 + rank)
    x, y = torch.randn(16, 20, generator=g), torch.randint(0, 10, (16,), generator=g)
    torch.nn.functional.cross_entropy(model(x), y).backward()


def _check_disagreement(rank: int, settings, words) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model(), bucket_cap_mb=0.002)
    model.register_comm_hook(TopKState(**settings[rank]), topk_hook)
    with pytest.raises(ValueError) as err:
        for _ in range(2):
            _step(model, rank)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("settings, words", [
    (({"ratio": 0.05}, {"ratio": 0.3}), ["disagree", "ratio", "rank 1: ratio=0.3"]),
    (({"k": 3}, {"k": 40}), ["disagree", "k", "rank 0: k=3"]),
    (({"k": 3, "scheme": "allgather"}, {"k": 3, "scheme": "split"}), ["disagree", "scheme"]),
    (({"k": 3, "start_iter": 0}, {"k": 3, "start_iter": 1}), ["disagree", "start_iter"]),
])
def test_ranks_that_disagree_all_raise(settings, words):
    spawn(_check_disagreement, settings, words)


def _check_over_bound(rank: int, scheme: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model(), bucket_cap_mb=0.002)
    # far more gradients pass the threshold than the k = 2 a payload carries
    state = TopKState(k=2, method="threshold", tau=1e-3, scheme=scheme, start_iter=0)
    model.register_comm_hook(state, topk_hook)
    # raised in the combine, after the collective: torch re-raises a callback's error as a
    # RuntimeError carrying its message (every rank sees every header, so every rank raises)
    with pytest.raises(RuntimeError, match="ArgumentError: payload: rank [01] selected .* over the bound of [12] "):
        _step(model, rank)


@pytest.mark.parametrize("scheme", ["allgather", "split"])
def test_a_payload_over_its_bound_raises_on_every_rank(scheme):
    spawn(_check_over_bound, scheme)


def _check_threshold(rank: int) -> None:
    """Within the bound, the threshold method sends exactly the |x + e| >= tau."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model(), bucket_cap_mb=0.002)
    state = TopKState(ratio=1.0, method="threshold", tau=0.01, scheme="allgather", start_iter=0)
    got = []

    def hook(st, bucket):
        buf = bucket.buffer().clone()
        fut = topk_hook(st, bucket)
        plan = next(p for p in st._plans.values() if p.key[:-1] == tuple(id(q) for q in bucket.parameters()))
        count = int(plan.send.header[0][1])
        got.append((set(torch.nonzero(buf.abs() >= 0.01).reshape(-1).tolist()),
                    set(plan.send.indices[0][:count].tolist())))
        return fut

    model.register_comm_hook(state, hook)
    _step(model, rank)
    for want, sent in got:
        assert want == sent and want


def test_threshold_sends_what_passes():
    spawn(_check_threshold)


def _check_one_region_over(rank: int) -> None:
    """Split: only rank 0's second region breaks the bound. That slot goes to rank 1 alone,
    yet rank 0 must raise too (not wait in the second collective)."""
    n = 1000
    buf = torch.full((n,), 1e-6)
    if rank == 0:
        buf[600:700] = 1.0  # region 1 = [500, 1000): 100 elements over tau, the bound is 5
    state = TopKState(k=10, method="threshold", tau=0.5, scheme="split", start_iter=0)
    fut = topk_hook(state, _Bucket(buf, [torch.nn.Parameter(torch.zeros(n))]))
    with pytest.raises(RuntimeError, match="over the bound of 5"):
        fut.wait()


def test_one_region_over_its_bound_raises_on_every_rank():
    spawn(_check_one_region_over)
