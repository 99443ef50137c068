"""gradsparse.integrations.ddp on CUDA buckets (docs/ddp.md, "On GPUs (NCCL)").

The GPU checks (marked ``requires_cuda``: they skip, with the reason, where the CUDA
backend is not built or no GPU is usable) run one rank over NCCL -- NCCL refuses two ranks
on one GPU, the 2- and 3-rank logic is covered over gloo -- and train a model whose
gradients are the same bits on every device (loss = sum_i <p_i, x_i>: the gradient of p_i
is x_i; SGD with lr = 0.5 scales exactly), so the GPU hook and the gloo CPU hook must
leave the same parameters and residuals, bit for bit, after N steps.

Here, without a GPU, the same bodies run the GPU path's code on CPU tensors over gloo at
W = 2 and 3, with `FakeOps`: the contract of ``gradsparse.cuda._ops`` (feedback_select,
scatter_mean) computed by the CPU engine, checking the arguments the contract asks for.
That checks everything of the GPU path but the kernels and NCCL: plans, payloads, headers,
the combine's bookkeeping, residuals through DDP's bucket rebuild and the checkpoint, and
the refusals.
"""
from __future__ import annotations

import datetime
import os
import socket
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the DDP hook needs torch (pip install torch==2.13.0)")
dist = pytest.importorskip("torch.distributed", reason="the DDP hook needs torch.distributed")

from cuda_util import requires_cuda  # noqa: E402
from ddp_reference import FakeBucket as _Bucket  # noqa: E402
from gloo import spawn  # noqa: E402
from gradsparse.compress import ErrorFeedback, scatter_mean  # noqa: E402
from gradsparse.integrations.ddp import TopKState, topk_hook  # noqa: E402
from gradsparse.integrations.ddp import gpu  # noqa: E402

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is needed")

SHAPES = [(37,), (20, 30), (5,), (300,), (7, 11)]
STEPS = 6
_VALUE = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _cost(p):
    """A CWMP cost per element: 1, 2, 3, 1, 2, ... (a tensor on the parameter's device)."""
    return (1.0 + torch.arange(p.numel(), device=p.device) % 3).reshape(p.shape)


SETTINGS = [
    {"ratio": 0.05, "scheme": "allgather"},
    {"ratio": 0.2, "scheme": "allgather", "value_dtype": "bfloat16"},
    {"ratio": 0.05, "scheme": "dense"},
    {"ratio": 0.1, "scheme": "allgather", "method": "cwmp", "cost": _cost},
    {"ratio": 0.1, "scheme": "allgather", "method": "cwmp", "cost": 2.0, "q": 1.0, "alpha": 0.0},
    {"ratio": 1.0, "scheme": "allgather", "method": "threshold", "tau": 1.5},
    {"ratio": 0.1, "scheme": "dense", "method": "threshold", "tau": 1.5},
    {"ratio": 0.05, "scheme": "allgather", "error_feedback": False},
    {"k": 3, "scheme": "auto", "link": (0.0, 1.0)},
]


# --------------------------------------------------------------------------- emulation


class FakeOps:
    """``gradsparse.cuda._ops``'s feedback_select and scatter_mean (contract.md of issue 18)
    on CPU tensors, through the CPU engine; asserts the arguments the contract requires."""

    calls = {"feedback_select": 0, "scatter_mean": 0}

    @staticmethod
    def feedback_select(g, e, *, k=None, tau=None, mode="magnitude", cost=None, q=2.0, alpha=1.0,
                        value_dtype="float32", out_values=None, out_indices=None):
        FakeOps.calls["feedback_select"] += 1
        assert g.dtype == e.dtype == torch.float32 and g.numel() == e.numel()
        assert g.is_contiguous() and e.is_contiguous() and mode == "magnitude"
        assert (k is None) != (tau is None)
        assert cost is None or isinstance(cost, float) or (cost.dtype == torch.float32 and cost.numel() == g.numel())
        ef = ErrorFeedback()
        ef.load_residual("b", e.numpy())
        n = g.numel()
        if k is not None:
            for out, dtype in ((out_values, _VALUE[value_dtype]), (out_indices, torch.int32)):
                assert out is not None and out.dtype == dtype and out.numel() == k and out.is_contiguous()
            ef.compress_into("b", g, k=k, cost=cost, q=q, alpha=alpha, values=out_values, indices=out_indices,
                             value_dtype=value_dtype)
            idx, vals, count = out_indices, out_values, None
        else:
            assert out_values is None and out_indices is None and cost is None
            vals = torch.empty(n, dtype=_VALUE[value_dtype])
            idx = torch.empty(n, dtype=torch.int32)
            count = ef.compress_into("b", g, tau=tau, cap=n, values=vals, indices=idx, value_dtype=value_dtype)[0]
            vals, idx = vals[:count].clone(), idx[:count].clone()
        e.copy_(torch.from_numpy(np.asarray(ef.residual("b"))))
        return idx, vals, count

    @staticmethod
    def scatter_mean(out, clear, vals, idx, world):
        FakeOps.calls["scatter_mean"] += 1
        assert out.dtype == torch.float32 and out.is_contiguous() and isinstance(world, float)
        assert clear is None or (clear.dtype == torch.int32 and clear.is_contiguous())
        assert len(vals) == len(idx)
        for v, i in zip(vals, idx):
            assert v.dtype in (torch.float32, torch.bfloat16) and i.dtype == torch.int32
            assert v.is_contiguous() and i.is_contiguous() and v.numel() == i.numel()
        scatter_mean(out, list(zip(vals, idx)), world, clear=clear)


_ROUTE = {"emulated": False, "gpu": False}


def _emulate() -> None:
    """In this worker: buckets take the GPU path while _ROUTE["gpu"] is set, through FakeOps."""
    _ROUTE["emulated"] = True
    gpu.handles = lambda device: device.type == "cuda" or _ROUTE["gpu"]
    gpu.load_ops = lambda: FakeOps


def _route(gpu_path: bool) -> None:
    """Plans made from now on take the GPU path (emulation only; on a GPU the device decides)."""
    _ROUTE["gpu"] = gpu_path and _ROUTE["emulated"]


def _emulated(rank: int, body: str, *args) -> None:
    _emulate()
    globals()[body](rank, "cpu", *args)
    assert FakeOps.calls["feedback_select"] > 0 or body == "_check_refusals", "the GPU path did not run"


# --------------------------------------------------------------------------- NCCL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nccl_worker(rank: int, port: int, world: int, body: str, *args) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120),
                            device_id=device)
    try:
        globals()[body](rank, f"cuda:{rank}", *args)
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group()
    os._exit(0)  # as tests/gloo.py: no teardown at interpreter exit


def spawn_nccl(body: str, *args, world: int = 1) -> None:
    """Runs the body named `body` as body(rank, "cuda:<rank>", *args) on `world` processes
    of one NCCL group (MASTER_ADDR=127.0.0.1, a free port)."""
    import torch.multiprocessing as mp

    mp.spawn(_nccl_worker, args=(_free_port(), world, body) + args, nprocs=world, join=True)


# --------------------------------------------------------------------------- bodies


class _Exact(torch.nn.Module):
    """loss = sum_i <p_i, x_i>: the gradient of p_i is x_i, the same bits on every device."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.ps = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES])

    def forward(self, xs):
        return sum((p * x).sum() for p, x in zip(self.ps, xs))


def _data(rank: int, steps: int):
    g = torch.Generator().manual_seed(100 + rank)
    return [[torch.randn(s, generator=g) for s in SHAPES] for _ in range(steps)]


def _ddp(device: str, group, bucket_cap_mb: float = 0.002, net=None):
    from torch.nn.parallel import DistributedDataParallel as DDP

    dev = torch.device(device)
    net = (net or _Exact()).to(dev)
    return DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None, bucket_cap_mb=bucket_cap_mb,
               process_group=group)


def _train(model, state, batches, device: str):
    model.register_comm_hook(state, topk_hook)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # x 0.5 is exact: the update is device-independent
    for xs in batches:
        opt.zero_grad()
        model([x.to(device) for x in xs]).backward()
        opt.step()
    return opt


def _run(rank: int, device: str, group, settings: dict, gpu_path: bool, steps: int = STEPS):
    """Trains the exact model with the hook; returns (parameters on the CPU, state)."""
    _route(gpu_path)
    model = _ddp(device, group)
    state = TopKState(start_iter=1, module=model, process_group=group, **settings)
    _train(model, state, _data(rank, steps), device)
    _route(False)
    return [p.detach().cpu() for p in model.module.parameters()], state


def _same(a, b, what: str) -> None:
    assert len(a) == len(b), what
    for j, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and torch.equal(x, y), f"{what}: tensor {j} differs"


def _same_residuals(a: dict, b: dict, what: str) -> None:
    assert set(a) == set(b) and a, what
    for name in a:
        assert a[name].device.type == "cpu", f"{what}: {name} saved on {a[name].device}"
        assert torch.equal(a[name], b[name]), f"{what}: the residual of {name} differs"


def _check_matches_cpu(rank: int, device: str) -> None:
    """Every setting: the GPU path leaves the parameters, residuals and scheme counts of the
    CPU hook on gloo, bit for bit; on a GPU also over a gloo group (CUDA tensors on gloo)."""
    cpu_group = dist.new_group(backend="gloo")
    for settings in SETTINGS:
        want, ref = _run(rank, "cpu", cpu_group, settings, gpu_path=False)
        for group in (None, cpu_group):
            got, state = _run(rank, device, group, settings, gpu_path=True)
            what = f"{settings} over {'the world group' if group is None else 'gloo'}"
            _same(got, want, what)
            _same_residuals(state.state_dict()["residuals"], ref.state_dict()["residuals"], what)
            assert state.schemes_used == ref.schemes_used or (
                settings["scheme"] == "auto" and set(state.schemes_used) <= {"allgather", "dense"}), what
            assert all(p.on_gpu for p in state._plans.values()) and state._plans
            assert all(r.device == torch.device(device) for r in state.residuals.values())


def _check_auto_leaves_split_out(rank: int, device: str) -> None:
    """A link where split is the cheapest (bytes dear, W = 3): the CPU hook takes it, the
    GPU path chooses between allgather and dense."""
    settings = {"ratio": 0.3, "scheme": "auto", "link": (0.0, 1.0)}
    _, ref = _run(rank, "cpu", None, settings, gpu_path=False)
    _, state = _run(rank, device, None, settings, gpu_path=True)
    assert "split" in ref.schemes_used, ref.schemes_used
    assert "split" not in state.schemes_used and state.schemes_used, state.schemes_used


def _check_checkpoint(rank: int, device: str) -> None:
    """Saved after 3 steps (CPU tensors by name), restored into a fresh DDP model -- on the
    GPU path and on the CPU -- the next 3 steps give the uninterrupted run's parameters."""
    cpu_group = dist.new_group(backend="gloo")
    batches = _data(rank, 6)
    settings = {"ratio": 0.1, "scheme": "allgather"}
    _route(True)
    whole = _ddp(device, None, bucket_cap_mb=1)  # one bucket: top-k does not depend on its layout
    _train(whole, TopKState(start_iter=1, **settings), batches, device)
    first = _ddp(device, None, bucket_cap_mb=1)
    state = TopKState(start_iter=1, module=first, **settings)
    _train(first, state, batches[:3], device)
    saved = state.state_dict()
    assert saved["iteration"] == 3 and saved["residuals"]
    assert all(r.device.type == "cpu" and r.dtype == torch.float32 for r in saved["residuals"].values())
    for target, group, gpu_path in ((device, None, True), ("cpu", cpu_group, False)):
        _route(gpu_path)
        net = _Exact()
        net.load_state_dict(first.module.state_dict())
        second = _ddp(target, group, bucket_cap_mb=1, net=net)
        restored = TopKState(start_iter=1, module=second, process_group=group, **settings)
        restored.load_state_dict(saved)
        _train(second, restored, batches[3:], target)
        _same([p.detach().cpu() for p in second.module.parameters()],
              [p.detach().cpu() for p in whole.module.parameters()], f"restored on {target}")
    _route(False)


def _check_over_bound(rank: int, device: str) -> None:
    """A threshold over the payload's bound: every rank raises the same error after the
    collective, and the residual keeps everything (e + g), as on the CPU."""
    _route(True)
    n = 1000
    buf = torch.linspace(-1.0, 1.0, n).to(device)
    state = TopKState(k=2, method="threshold", tau=1e-3, scheme="allgather", start_iter=0)
    fut = topk_hook(state, _Bucket(buf, [torch.nn.Parameter(torch.zeros(n, device=device))]))
    with pytest.raises(RuntimeError, match="over the bound of 2 "):
        fut.wait()
    (plan,) = state._plans.values()
    assert plan.on_gpu and torch.equal(plan.residual, buf)
    _route(False)


def _check_refusals(rank: int, device: str) -> None:
    """What the GPU path refuses, each with an error naming the setting, before any collective."""
    _route(True)
    params = [torch.nn.Parameter(torch.zeros(8, device=device))]
    with pytest.raises(ValueError, match="scheme: 'split' runs on CPU buckets only"):
        topk_hook(TopKState(k=2, scheme="split"), _Bucket(torch.ones(8, device=device), params))
    with pytest.raises(TypeError, match="float64 gradients .* takes float32 buckets"):
        topk_hook(TopKState(k=2), _Bucket(torch.ones(8, device=device, dtype=torch.float64), params))
    model = _ddp(device, None)
    model.register_comm_hook(TopKState(k=2, scheme="split"), topk_hook)
    with pytest.raises(RuntimeError, match="'split' runs on CPU buckets only"):  # raised inside DDP's backward
        model([x.to(device) for x in _data(rank, 1)[0]]).backward()
    _route(False)
    if torch.device(device).type == "cuda":  # the world group is NCCL here
        with pytest.raises(ValueError, match="bucket: CPU gradients on a process group"):
            topk_hook(TopKState(k=2), _Bucket(torch.ones(8), [torch.nn.Parameter(torch.zeros(8))]))


# --------------------------------------------------------------------------- here, without a GPU


@pytest.mark.parametrize("world", [2, 3])
def test_gpu_path_matches_the_cpu_hook_emulated(world):
    spawn(_emulated, "_check_matches_cpu", world=world)


def test_auto_leaves_split_out_on_the_gpu_path_emulated():
    spawn(_emulated, "_check_auto_leaves_split_out", world=3)


def test_checkpoint_round_trip_emulated():
    spawn(_emulated, "_check_checkpoint")


def test_threshold_over_its_bound_emulated():
    spawn(_emulated, "_check_over_bound")


def test_refusals_emulated():
    spawn(_emulated, "_check_refusals", world=1)


def test_transports():
    assert gpu.transports("cpu:gloo,cuda:nccl") == {"cpu": "gloo", "cuda": "nccl"}
    assert gpu.transports("gloo") == {"cpu": "gloo", "cuda": "gloo"}
    assert gpu.transports("NCCL") == {"cuda": "nccl"}
    for device, config in (("cpu", "gloo"), ("cpu", "cpu:gloo,cuda:nccl"), ("cuda", "nccl"), ("cuda", "gloo"),
                           ("cuda", "cpu:gloo,cuda:nccl")):
        gpu.check_transport(device, config)
    with pytest.raises(ValueError, match="bucket: CPU gradients on a process group whose backend \\(nccl\\)"):
        gpu.check_transport("cpu", "nccl")
    with pytest.raises(ValueError, match="bucket: CUDA gradients .* \\(cpu:gloo\\) has nothing for CUDA"):
        gpu.check_transport("cuda", "cpu:gloo")
    with pytest.raises(ValueError, match="has mpi for CUDA tensors"):
        gpu.check_transport("cuda", "mpi")


def _fake_cuda_buffer(dtype):
    """What check_bucket reads of a bucket's buffer, for a CUDA bucket (no CUDA tensor needed)."""
    return types.SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype)


def test_cuda_bucket_checks_without_a_gpu(monkeypatch):
    """The checks of a CUDA bucket that need no CUDA tensor: the transport, the dtype, the
    scheme, and the CUDA backend itself (a clear error where it is not built or no device)."""
    import gradsparse.cuda as gcuda

    monkeypatch.setattr(gpu, "group_config", lambda group: "cuda:nccl")
    with pytest.raises(TypeError, match="bucket: torch.bfloat16 gradients on cuda:0; .* float32"):
        TopKState(k=2).check_bucket(_fake_cuda_buffer(torch.bfloat16), None)
    with pytest.raises(ValueError, match="scheme: 'split' runs on CPU buckets only"):
        TopKState(k=2, scheme="split").check_bucket(_fake_cuda_buffer(torch.float32), None)
    with pytest.raises(ValueError, match="bucket: CPU gradients"):
        TopKState(k=2).check_bucket(torch.zeros(4), None)
    if not gcuda.available():
        with pytest.raises(ValueError, match="bucket: .*CUDA"):
            TopKState(k=2).check_bucket(_fake_cuda_buffer(torch.float32), None)
    monkeypatch.setattr(gpu, "group_config", lambda group: "mpi")
    with pytest.raises(ValueError, match="bucket: CUDA gradients .* \\(mpi\\)"):
        TopKState(k=2).check_bucket(_fake_cuda_buffer(torch.float32), None)


def test_a_gpu_plan_refuses_split_and_other_dtypes():
    state = TopKState(k=2, scheme="split")
    for scheme, dtype in (("split", torch.float32), ("allgather", torch.float16)):
        with pytest.raises(ValueError, match="bucket: a .* bucket on cuda"):
            state.make_plan("key", ((-1, 8),), 8, dtype, 2, 0, "x", scheme=scheme, device="cuda")


# --------------------------------------------------------------------------- on a GPU


@requires_cuda
def test_gpu_hook_matches_the_cpu_hook():
    spawn_nccl("_check_matches_cpu")


@requires_cuda
def test_gpu_checkpoint_round_trip():
    spawn_nccl("_check_checkpoint")


@requires_cuda
def test_gpu_threshold_over_its_bound():
    spawn_nccl("_check_over_bound")


@requires_cuda
def test_gpu_refusals():
    spawn_nccl("_check_refusals")
