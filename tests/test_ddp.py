"""gradsparse.integrations.ddp in real DistributedDataParallel runs (gloo, CPU), W = 2 and
W = 3: every bucket's output of every traffic scheme against the numpy references of
tests/ddp_reference.py, bit for bit; parameters identical on every rank; ratio 1 against
plain DDP; error feedback's mass conservation; the checkpoint through a fresh DDP model."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch (pip install torch==2.13.0)")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from ddp_reference import Ranks  # noqa: E402
from gloo import spawn  # noqa: E402
from gradsparse.integrations.ddp import TopKState, local_pass, topk_hook  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")


def _model() -> "torch.nn.Module":
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
    return opt


def _recording(seen):
    """A hook around topk_hook that records (iteration, bucket index, input, output)."""
    def hook(st, bucket):
        entry = [st.iteration, bucket.index(), bucket.buffer().clone(), None]
        seen.append(entry)

        def keep(f):
            entry[3] = f.value().clone()
            return f.value()

        return topk_hook(st, bucket).then(keep)
    return hook


def _same_parameters(model) -> None:
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    everyone = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, flat)
    for r, other in enumerate(everyone):
        assert torch.equal(other, flat), f"rank {r}'s parameters differ from rank {dist.get_rank()}'s"


def _check_scheme(rank: int, world: int, scheme: str, ratio: float, value_dtype: str, steps: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model(), bucket_cap_mb=0.002)  # several buckets, rebuilt after iteration 0
    state = TopKState(ratio=ratio, scheme=scheme, value_dtype=value_dtype, start_iter=1, module=model)
    seen = []
    model.register_comm_hook(state, _recording(seen))
    _train(model, _batches(rank, steps))
    everyone = [None] * world
    dist.all_gather_object(everyone, [(it, b, i.numpy(), o.numpy()) for it, b, i, o in seen])
    ref = Ranks(world)
    checked = 0
    for j, (it, b, _, out) in enumerate(everyone[rank]):
        if it < 1:
            continue
        ins = [everyone[r][j][2] for r in range(world)]
        assert all(everyone[r][j][1] == b for r in range(world))
        k = max(1, min(ins[0].size, int(np.floor(ratio * ins[0].size + 0.5))))
        if scheme == "split":
            expect = ref.split(f"b{b}", ins, k)
        else:
            expect = ref.allgather(f"b{b}", ins, k, value_dtype)
        if scheme == "dense" and world > 2:  # gloo's all-reduce adds in its own order
            np.testing.assert_allclose(out, expect, rtol=2e-7 * world, atol=1e-30)
        else:
            np.testing.assert_array_equal(out, expect)
        checked += 1
    assert checked >= steps - 1
    assert set(state.schemes_used) == {scheme}
    _same_parameters(model)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("scheme, ratio, value_dtype", [
    ("allgather", 0.05, "float32"),
    ("dense", 0.05, "float32"),
    ("split", 0.1, "float32"),
    ("allgather", 0.2, "bfloat16"),
])
def test_every_scheme_matches_its_reference(world, scheme, ratio, value_dtype):
    spawn(_check_scheme, world, scheme, ratio, value_dtype, 4, world=world)


def _check_auto(rank: int) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    # a link where bytes are free and messages dear: one collective wins (allgather);
    # bytes dear, messages free, 50% kept: the dense all-reduce carries fewer bytes
    for link, ratio, want in (((1.0, 0.0), 0.05, "allgather"), ((0.0, 1.0), 0.5, "dense")):
        model = DDP(_model(), bucket_cap_mb=0.002)
        state = TopKState(ratio=ratio, link=link, start_iter=0)
        model.register_comm_hook(state, topk_hook)
        _train(model, _batches(rank, 2))
        assert set(state.schemes_used) == {want}, (link, state.schemes_used)
        _same_parameters(model)


def test_auto_follows_the_link_model():
    spawn(_check_auto)


def _check_dense_equivalence(rank: int, world: int, scheme: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    plain, sparse = DDP(_model()), DDP(_model())
    sparse.register_comm_hook(TopKState(ratio=1.0, start_iter=0, scheme=scheme), topk_hook)
    batches = _batches(rank, 4)
    _train(plain, batches)
    _train(sparse, batches)
    for p, q in zip(plain.parameters(), sparse.parameters()):
        if world == 2:  # a / 2 + b / 2 in either order: the same bits as DDP's div_ + all-reduce
            assert torch.equal(q, p)
        else:  # three terms: gloo's order of additions and the hook's rank order may differ
            torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    _same_parameters(sparse)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("scheme", ["allgather", "dense"])
def test_ratio_one_trains_like_plain_ddp(world, scheme):
    spawn(_check_dense_equivalence, world, scheme, world=world)


def _check_conservation(rank: int, value_dtype: str) -> None:
    """sent + residual == accumulated, exactly, per rank and bucket (allgather)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    model = DDP(_model(), bucket_cap_mb=0.002)
    state = TopKState(ratio=0.05, scheme="allgather", value_dtype=value_dtype, start_iter=1)
    before = {}

    def hook(st, bucket):
        if st.iteration < st.start_iter:  # DDP's averaging (and its bucket rebuild) first
            return topk_hook(st, bucket)
        plan_e = {p.name: st.feedback.residual(p.name) for p in st._plans.values()}
        before[bucket.index()] = (bucket.buffer().clone(), plan_e)
        fut = topk_hook(st, bucket)
        plan = next(p for p in st._plans.values() if p.key[:-1] == tuple(id(q) for q in bucket.parameters()))
        e_old = plan_e.get(plan.name)
        acc = before[bucket.index()][0].numpy() + (0 if e_old is None else np.asarray(e_old))
        e_new = np.asarray(st.feedback.residual(plan.name))
        sent = np.zeros_like(acc)
        c = int(plan.send.header[0][1])
        idx = plan.send.indices[0][:c].numpy()
        sent[idx] = plan.send.values[0][:c].to(torch.float32).numpy()
        assert np.array_equal(sent + e_new, acc)  # exact: e = acc - sent in float32
        assert np.all(plan.send.indices[0][c:].numpy() == -1)
        return fut

    model.register_comm_hook(state, hook)
    _train(model, _batches(rank, 4))


@pytest.mark.parametrize("value_dtype", ["float32", "bfloat16"])
def test_error_feedback_conserves_mass(value_dtype):
    spawn(_check_conservation, value_dtype)


def _check_checkpoint(rank: int, scheme: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    batches = _batches(rank, 6)
    whole = DDP(_model(), bucket_cap_mb=1)
    whole.register_comm_hook(TopKState(ratio=0.1, scheme=scheme, start_iter=1, module=whole), topk_hook)
    _train(whole, batches)

    first = DDP(_model(), bucket_cap_mb=1)
    state = TopKState(ratio=0.1, scheme=scheme, start_iter=1, module=first)
    first.register_comm_hook(state, topk_hook)
    opt = _train(first, batches[:3])
    saved = {"model": first.module.state_dict(), "opt": opt.state_dict(), "hook": state.state_dict()}
    assert saved["hook"]["residuals"] and saved["hook"]["iteration"] == 3

    net = _model()
    net.load_state_dict(saved["model"])
    # fresh buckets: the restored residuals go into DDP's initial layout, then follow the
    # parameters through its rebuild (one bucket, so top-k's sets do not depend on the layout)
    second = DDP(net, bucket_cap_mb=1)
    restored = TopKState(ratio=0.1, scheme=scheme, start_iter=1, module=second)
    restored.load_state_dict(saved["hook"])
    if scheme == "split":
        _check_split_placement(restored, second, saved["hook"])
    second.register_comm_hook(restored, topk_hook)
    _train(second, batches[3:])
    if scheme == "allgather":  # top-k over one bucket does not depend on its order: the same run
        for p, q in zip(whole.parameters(), second.parameters()):
            assert torch.equal(p, q)
    _same_parameters(second)


def _check_split_placement(state, model, saved) -> None:
    """The split scheme's regions follow the layout (the fresh DDP's initial one differs from
    the rebuilt one, so the run differs): each parameter's residual is placed exactly."""
    params = list(model.module.parameters())  # DDP's initial order differs from the rebuilt one

    class Bucket:
        def parameters(self):
            return params

        def index(self):
            return 0

    buf = torch.zeros(sum(p.numel() for p in params))
    plan = state.plan(Bucket(), buf, dist.group.WORLD, dist.get_world_size())
    placed = state._residual_of(plan)
    off = 0
    for name, p in model.module.named_parameters():
        want = saved["residuals"][name].numpy()
        np.testing.assert_array_equal(placed[off:off + p.numel()], want)
        off += p.numel()
    assert np.any(want != 0)
    state.reset()
    state.load_state_dict(saved)


@pytest.mark.parametrize("scheme", ["allgather", "split"])
def test_checkpoint_round_trip_through_a_fresh_ddp_model(scheme):
    spawn(_check_checkpoint, scheme)


def _check_world_change(rank: int) -> None:
    state = TopKState(ratio=0.1)
    saved = {"version": 1, "world_size": 3, "rank": rank, "iteration": 2, "settings": state.fingerprint().tolist(),
             "residuals": {}}
    with pytest.raises(ValueError, match="world size"):
        state.load_state_dict(saved)


def test_another_world_size_is_refused():
    spawn(_check_world_change)


def test_state_arguments():
    for kw, err, word in [({}, ValueError, "ratio"), ({"ratio": 0.1, "k": 3}, ValueError, "ratio"),
                          ({"ratio": 0.0}, ValueError, "ratio"), ({"k": 0}, ValueError, "k"),
                          ({"ratio": 0.1, "start_iter": -1}, ValueError, "start_iter"),
                          ({"k": 5, "error_feedback": 1}, TypeError, "error_feedback"),
                          ({"k": 5, "scheme": "ring"}, ValueError, "scheme"),
                          ({"k": 5, "value_dtype": "float16"}, ValueError, "value_dtype"),
                          ({"k": 5, "method": "cwmp"}, ValueError, "cost"),
                          ({"k": 5, "method": "threshold"}, ValueError, "tau"),
                          ({"k": 5, "link": (1.0,)}, TypeError, "link"),
                          ({"k": 5, "link": (1.0, -2.0)}, ValueError, "link"),
                          ({"k": 5, "threads": 0}, ValueError, "threads")]:
        with pytest.raises(err, match=word):
            TopKState(**kw)
    assert TopKState(k=50).k_for(20) == 20 and TopKState(ratio=0.01).k_for(1000) == 10


def test_threads_never_exceed_torchs():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert TopKState(k=5).threads_now() == 1
        assert TopKState(k=5, threads=4).threads_now() == 1
        torch.set_num_threads(2)
        assert TopKState(k=5).threads_now() == 2
        assert TopKState(k=5, threads=1).threads_now() == 1
    finally:
        torch.set_num_threads(before)


def test_the_selection_gets_the_thread_limit():
    """What the fused pass is told: torch's thread count, or threads= capped by it."""
    seen = []
    before = torch.get_num_threads()
    try:
        for torch_threads, threads, want in ((1, None, 1), (2, None, 2), (1, 4, 1), (2, 1, 1)):
            torch.set_num_threads(torch_threads)
            state = TopKState(k=3, threads=threads, scheme="allgather")
            inner = state.feedback.compress_into

            def spy(*args, **kwargs):
                seen.append(kwargs["threads"])
                return inner(*args, **kwargs)

            state.feedback.compress_into = spy
            local_pass(state, torch.randn(1000), 2)
            assert seen[-1] == want
    finally:
        torch.set_num_threads(before)


def test_local_pass_is_the_hooks_work():
    """local_pass (the benchmarks' hook CPU) combines W copies of the rank's own selection."""
    g = torch.randn(1000)
    state = TopKState(k=7, scheme="allgather")
    out = local_pass(state, g, 2)
    top = torch.topk(g.abs(), 7).indices
    expect = torch.zeros(1000)
    expect[top] = g[top]  # v / 2 + v / 2 == v exactly
    assert torch.equal(out, expect)
    with pytest.raises(ValueError, match="world"):
        local_pass(state, g, 0)
    with pytest.raises(ValueError, match="scheme"):
        local_pass(state, g, 2, "ring")


def test_bucket_off_the_cpu_is_refused():
    class Bucket:
        def buffer(self):
            return torch.zeros(4, device="meta")

    with pytest.raises(ValueError, match="bucket"):
        topk_hook(TopKState(k=2), Bucket())  # checked before any process group is needed
