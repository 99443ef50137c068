"""gradsparse.integrations.ddp with ranks that send different numbers of elements per
bucket (another ratio or k on each rank): both wire formats exchange the counts, so no
rank aborts in gloo or reads a receive buffer nobody wrote, and every bucket's output is
the reference sum of each rank's own top-k (with error feedback), averaged."""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from gloo import WORLD, spawn, topk_sum_reference  # noqa: E402
from gradsparse.integrations.ddp import TopKState, topk_hook  # noqa: E402


pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def _model() -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))


def _batches(rank: int, steps: int):
    g = torch.Generator().manual_seed(200 + rank)
    return [(torch.randn(16, 20, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(steps)]


def _k(setting, n: int) -> int:
    kind, v = setting
    return max(1, min(n, int(np.floor(v * n + 0.5)))) if kind == "ratio" else min(v, n)


def _check(rank: int, settings, wire: bool, start_iter: int, steps: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    net = _model()
    names = {id(p): name for name, p in net.named_parameters()}
    model = DDP(net, bucket_cap_mb=0.002)  # several buckets, rebuilt after iteration 0
    kind, v = settings[rank]
    state = TopKState(**{kind: v}, start_iter=start_iter, wire=wire)
    seen = []  # (iteration, layout, input, output)

    def hook(st, bucket):
        layout = tuple((names[id(p)], p.numel()) for p in bucket.parameters())
        entry = [st.iteration, layout, bucket.buffer().clone(), None]
        seen.append(entry)

        def keep(f):
            entry[3] = f.value().clone()
            return f.value()

        return topk_hook(st, bucket).then(keep)

    model.register_comm_hook(state, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in _batches(rank, steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    everyone = [None] * WORLD
    dist.all_gather_object(everyone, [(it, lay, i.numpy(), o.numpy()) for it, lay, i, o in seen])
    residual = [{} for _ in range(WORLD)]
    checked = 0
    for j, (it, layout, _, out) in enumerate(everyone[rank]):
        ins = [everyone[r][j][2] for r in range(WORLD)]
        assert all(everyone[r][j][:2] == (it, layout) for r in range(WORLD))
        if it < start_iter:
            continue
        n = ins[0].size
        ks = [_k(settings[r], n) for r in range(WORLD)]
        expect = topk_sum_reference(ins, residual, layout, ks, np.float32)
        np.testing.assert_array_equal(out, expect / np.float32(WORLD))
        # both ranks got the same output
        np.testing.assert_array_equal(everyone[1 - rank][j][3], out)
        checked += 1
    assert checked >= steps - start_iter
    # what this rank sent: its own k per bucket (padding to the other rank's k not counted)
    if not wire:
        mine = sum(_k(settings[rank], o.size) * (o.itemsize + 4) for it, _, _, o in everyone[rank] if it >= start_iter)
        assert state.sent_bytes == mine


@pytest.mark.parametrize("settings, wire, start_iter", [
    ((("ratio", 0.05), ("ratio", 0.3)), False, 1),
    ((("ratio", 0.3), ("ratio", 0.05)), False, 0),  # across the bucket rebuild, larger k on rank 0
    ((("k", 3), ("k", 40)), False, 1),
    ((("ratio", 0.05), ("ratio", 0.3)), True, 0),  # gradsparse payloads: sizes were always exchanged
])
def test_ranks_with_different_k_give_the_reference_sums(settings, wire, start_iter):
    spawn(_check, settings, wire, start_iter, 3)
