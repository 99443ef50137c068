"""gradsparse.integrations.ddp with bfloat16 and float16 buckets: the residuals stay in
float32 (gradsparse's error feedback), so what a 16-bit bucket cannot carry -- small
accumulations and the rounding of what is sent -- is kept instead of lost. A real
2-process gloo run, every bucket checked against a numpy reference with float32
residuals."""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch (pip install torch==2.13.0)")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from gloo import WORLD, spawn  # noqa: E402
from gradsparse.integrations.ddp import TopKState, topk_hook  # noqa: E402


pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def _model(dtype) -> "torch.nn.Module":
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10)).to(dtype)


def _check(rank: int, dtype_name: str, ratio: float, steps: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    dtype = getattr(torch, dtype_name)
    net = _model(dtype)
    names = {id(p): name for name, p in net.named_parameters()}
    model = DDP(net, bucket_cap_mb=0.002)  # several buckets, rebuilt after iteration 0
    state = TopKState(ratio=ratio, start_iter=0)
    seen = []  # (bucket layout as parameter names, input, output)

    def hook(st, bucket):
        layout = tuple((names[id(p)], p.numel()) for p in bucket.parameters())
        entry = [layout, bucket.buffer().clone(), None]
        seen.append(entry)

        def keep(f):
            entry[2] = f.value().clone()
            return f.value()

        return topk_hook(st, bucket).then(keep)

    model.register_comm_hook(state, hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(300 + rank)
    for _ in range(steps):
        x, y = torch.randn(16, 20, generator=g).to(dtype), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).float(), y).backward()
        opt.step()
    everyone = [None] * WORLD
    dist.all_gather_object(everyone, [(lay, i.float().numpy(), o) for lay, i, o in seen])
    residual = [{} for _ in range(WORLD)]  # per rank: parameter name -> float32 residual
    for j, (layout, _, out) in enumerate(everyone[rank]):
        n = sum(size for _, size in layout)
        k = max(1, min(n, int(np.floor(ratio * n + 0.5))))
        expect = torch.zeros(n, dtype=dtype)
        for r in range(WORLD):
            ins = everyone[r][j][1]  # the bucket's values, exactly, as float32
            e = np.concatenate([residual[r].get(name, np.zeros(size, np.float32)) for name, size in layout])
            acc = ins + e  # in float32, not in the bucket's precision
            sel = np.sort(np.argsort(-np.abs(acc.astype(np.float64)), kind="stable")[:k])
            sent = torch.from_numpy(acc[sel]).to(dtype)  # round to nearest even
            expect.index_add_(0, torch.from_numpy(sel), sent)  # in rank order, as the hook sums
            acc[sel] -= sent.float().numpy()  # the rounding stays in the residual
            off = 0
            for name, size in layout:
                residual[r][name] = acc[off:off + size]
                off += size
        torch.testing.assert_close(out, expect.div_(WORLD), rtol=0, atol=0)
    # the hook's residuals are float32 and equal the reference's, parameter by parameter
    assert state.residuals
    kept_rounding = False
    for key, e in state.residuals.items():
        assert e.dtype == torch.float32
        off = 0
        for pid in key:
            ref = residual[rank][names[pid]]
            got = e.numpy()[off:off + ref.size]
            np.testing.assert_array_equal(got, ref)
            # some residual is finer than the bucket's precision could hold
            kept_rounding |= bool(np.any(torch.from_numpy(got).to(dtype).float().numpy() != got))
            off += ref.size
    assert kept_rounding


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_low_precision_buckets_keep_float32_residuals(dtype_name):
    spawn(_check, dtype_name, 0.05, 3)
