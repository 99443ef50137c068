"""gradsparse.integrations.ddp: the top-k communication hook in a real 2-process
DistributedDataParallel run (gloo, CPU). Every bucket's output is checked against a numpy
reference computed from all ranks' bucket inputs (exact top-k with error feedback, summed
in rank order and averaged), and ratio = 1 must train exactly like plain DDP."""
from __future__ import annotations


import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch (pip install torch==2.13.0)")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from gloo import WORLD, spawn, topk_sum_reference  # noqa: E402
from gradsparse.integrations.ddp import TopKState, topk_hook



def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10))


def _batches(rank: int, steps: int):
    g = torch.Generator().manual_seed(100 + rank)
    return [(torch.randn(16, 20, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(steps)]


def _train(model, batches, lr=0.1):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _check_reference(rank: int, ratio: float, start_iter: int, ef: bool, dtype, wire: bool, steps: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    net = _model().to(dtype)
    names = {id(p): name for name, p in net.named_parameters()}
    model = DDP(net, bucket_cap_mb=0.002)  # several buckets, rebuilt after iteration 0
    state = TopKState(ratio=ratio, start_iter=start_iter, error_feedback=ef, wire=wire)
    seen = []  # (iteration, bucket layout as parameter names, input, output)

    def hook(st, bucket):
        layout = tuple((names[id(p)], p.numel()) for p in bucket.parameters())
        entry = [st.iteration, layout, bucket.buffer().clone(), None]
        seen.append(entry)  # in call order, the same on every rank

        def keep(f):
            entry[3] = f.value().clone()
            return f.value()

        return topk_hook(st, bucket).then(keep)

    model.register_comm_hook(state, hook)
    _train(model, [(x.to(dtype), y) for x, y in _batches(rank, steps)])
    everyone = [None] * WORLD
    dist.all_gather_object(everyone, [(it, lay, i.numpy(), o.numpy()) for it, lay, i, o in seen])
    residual = [{} for _ in range(WORLD)]  # per rank: parameter name -> residual
    checked = 0
    for j, (it, layout, _, out) in enumerate(everyone[rank]):
        ins = [everyone[r][j][2] for r in range(WORLD)]
        assert all(everyone[r][j][:2] == (it, layout) for r in range(WORLD))
        if it < start_iter:  # DDP's plain average
            np.testing.assert_allclose(out, sum(x / WORLD for x in ins), rtol=1e-6, atol=1e-7)
            continue
        n = ins[0].size
        k = max(1, min(n, int(np.floor(ratio * n + 0.5))))
        expect = topk_sum_reference(ins, residual, layout, [k] * WORLD, out.dtype, ef)
        np.testing.assert_array_equal(out, expect / out.dtype.type(WORLD))
        assert np.count_nonzero(out) <= WORLD * k
        checked += 1
    assert checked >= steps - start_iter  # at least one bucket per sparse iteration
    raw = sum(max(1, int(np.floor(ratio * o.size + 0.5))) * (o.itemsize + 4) for it, _, _, o in everyone[rank] if it >= start_iter)
    assert (state.sent_bytes < raw) if wire else (state.sent_bytes == raw)
    # the hook's residuals (one per current layout) are the reference's, parameter by parameter
    assert len(state.residuals) >= 1 if ef else not state.residuals
    for key, e in state.residuals.items():
        off = 0
        for pid in key:
            name = names[pid]
            size = residual[rank][name].size
            np.testing.assert_array_equal(e.numpy()[off:off + size], residual[rank][name])
            off += size


def _check_dense_equivalence(rank: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    plain, sparse = DDP(_model()), DDP(_model())
    sparse.register_comm_hook(TopKState(ratio=1.0, start_iter=0), topk_hook)
    batches = _batches(rank, 4)
    _train(plain, batches)
    _train(sparse, batches)
    for p, q in zip(plain.parameters(), sparse.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


@pytest.mark.parametrize("ratio, start_iter, ef, dtype, wire", [
    (0.05, 1, True, torch.float32, False),
    (0.3, 0, True, torch.float32, False),  # across the bucket rebuild
    (0.05, 1, False, torch.float64, False),
    (0.05, 0, True, torch.float32, True),  # gradsparse payloads: the same sums, fewer bytes
])
def test_hook_matches_the_reference_on_every_bucket(ratio, start_iter, ef, dtype, wire):
    spawn(_check_reference, ratio, start_iter, ef, dtype, wire, 4)


def test_ratio_one_trains_like_plain_ddp():
    spawn(_check_dense_equivalence)


def test_state_arguments():
    for kw, err, msg in [({}, ValueError, "exactly one"), ({"ratio": 0.1, "k": 3}, ValueError, "exactly one"),
                         ({"ratio": 0.0}, ValueError, "ratio"), ({"ratio": 1.5}, ValueError, "ratio"),
                         ({"ratio": True}, ValueError, "ratio"), ({"k": 0}, ValueError, "k:"),
                         ({"k": 2.5}, ValueError, "k:"), ({"k": 5, "start_iter": -1}, ValueError, "start_iter"),
                         ({"k": 5, "error_feedback": 1}, TypeError, "error_feedback"),
                         ({"k": 5, "wire": "yes"}, TypeError, "wire")]:
        with pytest.raises(err, match=msg):
            TopKState(**kw)
    assert TopKState(k=50).k_for(20) == 20 and TopKState(ratio=0.01).k_for(1000) == 10


def test_bucket_off_the_cpu_is_refused():
    class Bucket:  # the part of dist.GradBucket the hook reads first
        def buffer(self):
            return torch.empty(8, device="meta")

        def is_last(self):
            return True

        def index(self):
            return 0

    with pytest.raises(ValueError, match="bucket: gradients on meta"):
        topk_hook(TopKState(k=2), Bucket())  # checked before any process group is needed
