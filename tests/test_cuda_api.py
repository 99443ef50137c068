"""The public API on CUDA tensors.

Two groups:

* tests that run everywhere: ``gradsparse.cuda``'s build facts without the backend,
  ``show_config``/``config``/``cuda_available``, no torch at import, and the clear error a
  CUDA tensor gives when the backend is missing;
* comparison tests, each run on two backends: ``cuda`` (a real device; marked
  ``requires_cuda``, skipped with the reason where there is none) and ``fake`` (CPU tensors
  routed through the CUDA layer onto tests/cuda_fake.py, a CPU stand-in for
  ``gradsparse.cuda._ops``: it checks the Python layer on every machine). Every public
  function's result on the device must equal the CPU path's bit for bit: indices, values,
  sorted order, residuals (NaN payloads made by arithmetic aside, see feedback_cuda).
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import numpy as np
import pytest

import gradsparse
import gradsparse.cuda as gcuda
from gradsparse.errors import ArgumentError, ArgumentTypeError

from cuda_util import cuda_ready, requires_cuda
from inputs import DTYPES, KINDS, gen

torch = pytest.importorskip("torch")

import cuda_fake  # noqa: E402  (needs torch)

_TORCH = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
_INT_VIEW = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


# ----------------------------------------------------------------------------- without the backend

def test_info_has_every_field():
    info = gcuda.info()
    assert set(info) == {"built", "devices", "archs", "runtime", "driver", "reason"}
    assert isinstance(info["built"], bool) and isinstance(info["devices"], int)
    assert info["built"] == gcuda.built()
    assert gcuda.available() == (info["devices"] > 0) == gradsparse.cuda_available()
    assert gcuda.device_count() == info["devices"]
    assert bool(info["reason"]) == (not gcuda.available())


@pytest.mark.skipif(gcuda.built(), reason="the CUDA backend is built here")
def test_without_backend():
    info = gcuda.info()
    assert info == {"built": False, "devices": 0, "archs": "", "runtime": "", "driver": "",
                    "reason": info["reason"]}
    assert "GRADSPARSE_CUDA=ON" in info["reason"]
    assert not gcuda.built() and not gcuda.available() and gcuda.device_count() == 0
    assert gradsparse.cuda_available() is False
    with pytest.raises(ArgumentError, match=r"^x: a CUDA tensor needs the CUDA backend.*GRADSPARSE_CUDA=ON") as e:
        gcuda.require("x")
    assert isinstance(e.value, ValueError) and isinstance(e.value, RuntimeError)


def test_config_and_show_config(capsys):
    cfg = gradsparse.config()
    info = gcuda.info()
    for key in ("devices", "archs", "runtime", "driver", "reason"):
        assert cfg[f"cuda_{key}"] == info[key]
    assert cfg["cuda_built"] == info["built"]
    gradsparse.show_config()
    out = capsys.readouterr().out
    for line in ("CUDA built", "CUDA devices", "CUDA archs", "CUDA runtime"):
        assert line in out
    assert ("CUDA unusable" in out) == (not gcuda.available())
    if not info["built"]:
        assert "GRADSPARSE_CUDA=ON" in out


def test_public_names():
    assert "cuda_available" in gradsparse.__all__ and "cuda" in gradsparse.__all__
    assert gradsparse.cuda_available.__doc__


def test_import_does_not_import_torch():
    code = ("import sys, json, io, contextlib\n"
            "import gradsparse, gradsparse.cuda\n"
            "gradsparse.cuda.info(); gradsparse.cuda.built(); gradsparse.cuda_available(); gradsparse.config()\n"
            "with contextlib.redirect_stdout(io.StringIO()): gradsparse.show_config()\n"
            "print(json.dumps(['torch' in sys.modules, 'gradsparse.cuda._ops' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, False]


@contextlib.contextmanager
def _cpu_as_cuda():
    """CPU tensors take the CUDA path with the real require() (no stand-in for _ops)."""
    from gradsparse import _convert

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_convert, "CUDA_DEVICE_TYPES", ("cuda", "cpu"))
        yield


@pytest.mark.skipif(gcuda.available(), reason="the CUDA backend is usable here")
def test_cuda_tensor_without_backend_says_how_to_build():
    x = torch.randn(100)
    calls = {
        "x": [lambda: gradsparse.sparsify(x, 3), lambda: gradsparse.threshold(x, 0.5),
              lambda: gradsparse.random_k(x, 3, 1), lambda: gradsparse.ErrorFeedback().compress("a", x, 3)],
        "xs[0]": [lambda: gradsparse.sparsify_many([x, x], 3)],
        "input": [lambda: gradsparse.topk(x, 3), lambda: gradsparse.topk(x.clone().requires_grad_(), 3)],
        "update['a']": [lambda: gradsparse.ErrorFeedback().compress_many({"a": x}, 3),
                        lambda: gradsparse.ErrorFeedback().apply({"a": x}, lambda acc: (None, acc))],
    }
    with _cpu_as_cuda():
        for name, fns in calls.items():
            for fn in fns:
                with pytest.raises(ArgumentError, match=r"^" + name.replace("[", r"\[") + r": .*CUDA") as e:
                    fn()
                if not gcuda.built():
                    assert "GRADSPARSE_CUDA=ON" in str(e.value)


# ----------------------------------------------------------------------------- backends

class Backend:
    """Where the device half of a comparison runs: a real CUDA device, or the CPU stand-in."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.device = torch.device("cuda" if name == "cuda" else "cpu")

    def to(self, t):
        return t.to(self.device) if self.name == "cuda" else t.clone()

    def on(self):
        return contextlib.nullcontext() if self.name == "cuda" else cuda_fake.fake_cuda()

    @property
    def large(self) -> bool:
        """Large sizes only on a real device (the stand-in checks the layer, not the kernels)."""
        return self.name == "cuda"


@pytest.fixture(params=[pytest.param("cuda", marks=requires_cuda), "fake"])
def backend(request):
    cuda_fake.calls.clear()
    return Backend(request.param)


def _bits(t):
    t = t.detach().cpu().contiguous()
    if t.is_floating_point():
        return t.view(_INT_VIEW[t.element_size()]).numpy()
    return t.numpy()


def same(dev, ref, backend, *, nan_payload: bool = True, what: str = "") -> None:
    """`dev` (a result on the backend's device) equals `ref` (the CPU's) bit for bit; with
    nan_payload=False any NaN equals any NaN."""
    assert isinstance(dev, torch.Tensor), what
    assert dev.device.type == backend.device.type, what
    assert dev.dtype == ref.dtype and tuple(dev.shape) == tuple(ref.shape), (what, dev.dtype, ref.dtype, dev.shape,
                                                                              ref.shape)
    a, b = _bits(dev), _bits(ref)
    if not nan_payload and dev.is_floating_point():
        nan = torch.isnan(dev.detach().cpu().float()).numpy() & torch.isnan(ref.detach().float()).numpy()
        a, b = np.where(nan, 0, a), np.where(nan, 0, b)
    np.testing.assert_array_equal(a, b, err_msg=what)


def same_sparse(dev, ref, backend, *, nan_payload: bool = True, what: str = "") -> None:
    assert isinstance(dev, gradsparse.Sparse) and dev.shape == ref.shape, what
    same(dev.indices, ref.indices, backend, what=f"{what} indices")
    same(dev.values, ref.values, backend, nan_payload=nan_payload, what=f"{what} values")


def tensor(kind: str, n: int, dtype: str, seed: int = 0):
    return torch.from_numpy(gen(kind, n, dtype, seed)).to(_TORCH[dtype])


def ks(n: int):
    return sorted({1, max(1, n // 1000), max(1, n // 100), max(1, n // 10), n})


def sizes(backend):
    return [1, 7, 4097, 200_003] if backend.large else [1, 7, 4097]


# ----------------------------------------------------------------------------- selection

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_sparsify_magnitude(backend, dtype, kind):
    for n in sizes(backend):
        x = tensor(kind, n, dtype)
        xd = backend.to(x)
        for k in ks(n):
            ref = gradsparse.sparsify(x, k)
            with backend.on():
                got = gradsparse.sparsify(xd, k)
            same_sparse(got, ref, backend, what=f"n={n} k={k}")
        ref = gradsparse.sparsify(x, budget=max(1, n // 100))
        with backend.on():
            got = gradsparse.sparsify(xd, budget=max(1, n // 100))
        same_sparse(got, ref, backend, what=f"n={n} energy")


def _cost(kind: str, n: int, shape, backend, dtype=np.float64):
    c = (np.random.default_rng(n).choice([0.5, 1.0, 2.0, 4.0], n) if kind == "ties"
         else np.exp(np.random.default_rng(n).uniform(-3, 3, n))).astype(dtype).reshape(shape)
    return c


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cost_kind", ["scalar", "array32", "array64", "prepared"])
@pytest.mark.parametrize("qa", [(2.0, 1.0), (1.0, 1.0), (2.0, 0.0), (3.0, 0.5)])
def test_sparsify_cwmp(backend, dtype, cost_kind, qa):
    q, alpha = qa
    for n, kind in [(4097, "random"), (4097, "ties"), (1000, "mixed")] + ([(200_003, "random")] if backend.large else []):
        x = tensor(kind, n, dtype, seed=3)
        xd = backend.to(x)
        if cost_kind == "scalar":
            c_cpu = c_dev = 1.5
        elif cost_kind == "prepared":
            c_cpu = c_dev = gradsparse.PreparedCost(_cost("ties", n, (n,), backend, np.float32))
        else:
            arr = _cost("random", n, (n,), backend, np.float32 if cost_kind == "array32" else np.float64)
            c_cpu = torch.from_numpy(arr)
            c_dev = backend.to(c_cpu)
        total = float(np.sum(np.broadcast_to(np.asarray(c_cpu if cost_kind == "scalar" else
                                                        (c_cpu.numpy() if cost_kind != "prepared" else c_cpu.numpy()),
                                                        dtype=np.float64), (n,))))
        budgets = [("k", k) for k in ks(n)] + [("budget", b) for b in (total * 0.01, total * 0.3, total * 2)]
        for what, b in budgets:
            args = {what: b, "cost": c_cpu, "q": q, "alpha": alpha}
            ref = gradsparse.sparsify(x, **args)
            with backend.on():
                got = gradsparse.sparsify(xd, **dict(args, cost=c_dev))
            same_sparse(got, ref, backend, what=f"{kind} n={n} {what}={b}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["random", "ties", "nan", "inf", "signed_zeros", "denormal", "mixed"])
def test_threshold(backend, dtype, kind):
    n = 200_003 if backend.large else 4097
    x = tensor(kind, n, dtype)
    xd = backend.to(x)
    mags = np.abs(x.double().numpy())
    finite = mags[np.isfinite(mags)]
    taus = [0.0, float("inf")] + ([float(np.quantile(finite, p)) for p in (0.5, 0.99, 1.0)] if finite.size else [])
    for tau in taus:
        ref = gradsparse.threshold(x, tau)
        with backend.on():
            got = gradsparse.threshold(xd, tau)
        same_sparse(got, ref, backend, what=f"tau={tau}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [False, True])
def test_random_k(backend, dtype, scale):
    for n in sizes(backend):
        x = tensor("mixed" if not scale else "random", n, dtype)
        xd = backend.to(x)
        for k in ks(n):
            for seed in (0, 12345, 2**64 - 1):
                ref = gradsparse.random_k(x, k, seed, scale=scale)
                with backend.on():
                    got = gradsparse.random_k(xd, k, seed, scale=scale)
                same_sparse(got, ref, backend, nan_payload=not scale, what=f"n={n} k={k} seed={seed}")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_random_k_scale_overflow(backend, dtype):
    big = {"float16": 60000.0, "bfloat16": 3.0e38, "float32": 3.0e38}[dtype]
    x = torch.full((70_000,), big, dtype=_TORCH[dtype])
    with pytest.raises(ArgumentError, match="^scale: ") as cpu_error:
        gradsparse.random_k(x, 7, 1, scale=True)
    with backend.on(), pytest.raises(ArgumentError, match="^scale: ") as dev_error:
        gradsparse.random_k(backend.to(x), 7, 1, scale=True)
    assert str(dev_error.value) == str(cpu_error.value)


def _many(dtype: str, count: int = 20, seed: int = 0):
    """`count` tensors of many shapes (the same for every seed) and adversarial kinds."""
    rng = np.random.default_rng(count)
    shapes = [(int(rng.integers(1, 3000)),) if i % 3 else (int(rng.integers(1, 40)), int(rng.integers(1, 60)))
              for i in range(count)]
    kinds = [KINDS[i % len(KINDS)] for i in range(count)]
    dts = [DTYPES[i % 4] for i in range(count)] if dtype == "mixed" else [dtype] * count
    return [tensor(k, int(np.prod(s)), d, seed + i).reshape(s) for i, (k, s, d) in enumerate(zip(kinds, shapes, dts))]


@pytest.mark.parametrize("dtype", DTYPES + ["mixed"])
@pytest.mark.parametrize("costs", [None, "arrays", "prepared"])
def test_sparsify_many(backend, dtype, costs):
    xs = _many(dtype)
    xd = [backend.to(x) for x in xs]
    total = sum(x.numel() for x in xs)
    if costs is None:
        cc = cd = None
    elif costs == "arrays":
        cc = [torch.from_numpy(_cost("random", x.numel(), x.shape, backend)) if i % 2 else 0.75
              for i, x in enumerate(xs)]
        cd = [backend.to(c) if isinstance(c, torch.Tensor) else c for c in cc]
    else:
        cc = cd = [gradsparse.PreparedCost(_cost("ties", x.numel(), x.shape, backend, np.float32)) for x in xs]
    budgets = [("k", k) for k in ks(total)] + [("ratio", 0.05), ("budget", total * 0.02)]
    for what, b in budgets:
        ref = gradsparse.sparsify_many(xs, **{what: b}, costs=cc)
        with backend.on():
            got = gradsparse.sparsify_many(xd, **{what: b}, costs=cd)
        assert len(got) == len(ref)
        for i, (g, r) in enumerate(zip(got, ref)):
            same_sparse(g, r, backend, what=f"{what}={b} tensor {i}")


_TOPK_CASES = [((4097,), 0), ((33, 130), 1), ((33, 130), 0), ((3, 40, 5), 1), ((3, 40, 5), -1), ((6, 1, 9), 1)]


@pytest.mark.parametrize("dtype", DTYPES + ["int32", "uint8"])
@pytest.mark.parametrize("kind", ["random", "ties", "nan", "inf", "signed_zeros", "mixed", "sorted", "reverse"])
def test_topk(backend, dtype, kind):
    cases = _TOPK_CASES + ([((8, 50_000), 1), ((50_000, 3), 0)] if backend.large else [])
    for shape, dim in cases:
        n = int(np.prod(shape))
        if dtype in ("int32", "uint8"):
            v = np.random.default_rng(n).integers(0, 7, n)
            x = torch.from_numpy(v.astype(dtype)).reshape(shape)
        else:
            x = tensor(kind, n, dtype).reshape(shape)
        xd = backend.to(x)
        length = shape[dim]
        for k in sorted({0, 1, max(1, length // 10), length}):
            for largest in (True, False):
                for key in (None, "abs"):
                    for sorted_ in (True, False):
                        if key == "abs" and dtype == "uint8":
                            continue
                        ref = gradsparse.topk(x, k, dim, largest, sorted_, key=key)
                        with backend.on():
                            got = gradsparse.topk(xd, k, dim, largest, sorted_, key=key)
                        assert type(got) is type(ref)
                        what = f"shape={shape} dim={dim} k={k} largest={largest} key={key} sorted={sorted_}"
                        same(got.values, ref.values, backend, what=what)
                        same(got.indices, ref.indices, backend, what=what)
    if backend.name == "fake" and dtype not in ("int32", "uint8"):
        assert "topk_rows" in cuda_fake.calls


def test_topk_edges(backend):
    x = torch.randn(5, 0, 3)
    scalar = torch.tensor(2.5)
    strided = torch.randn(40, 30).t()  # non-contiguous
    for args in [(x, 0, 1), (x, 2, 2), (scalar, 1), (scalar, 0), (strided, 4, 0), (strided, 7, 1)]:
        ref = gradsparse.topk(*args)
        with backend.on():
            got = gradsparse.topk(backend.to(args[0]), *args[1:])
        same(got.values, ref.values, backend)
        same(got.indices, ref.indices, backend)
    # out=: written on the device, resized like torch
    y = torch.randn(4, 100)
    ref = gradsparse.topk(y, 5)
    vals, idx = backend.to(torch.empty(0)), backend.to(torch.empty(0, dtype=torch.int64))
    with backend.on():
        got = gradsparse.topk(backend.to(y), 5, out=(vals, idx))
    assert got.values is vals and got.indices is idx
    same(vals, ref.values, backend)
    same(idx, ref.indices, backend)


def test_topk_autograd(backend):
    x = torch.randn(6, 50, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64)
    (gradsparse.topk(x, 4, 1, key="abs").values * w).sum().backward()
    xd = backend.to(x.detach()).requires_grad_()
    with backend.on():
        res = gradsparse.topk(xd, 4, 1, key="abs")
        (res.values * backend.to(w)).sum().backward()
    same(xd.grad, x.grad, backend)


# ----------------------------------------------------------------------------- error feedback

def _steps(dtype: str, n: int, count: int = 4):
    return [tensor(kind, n, dtype, seed=s) for s, kind in enumerate(["random", "ties", "mixed", "random"][:count])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("budget", ["k", "energy", "cost"])
def test_feedback_compress(backend, dtype, budget):
    n = 200_003 if backend.large else 4097
    args = {"k": {"k": n // 50}, "energy": {"budget": n / 70},
            "cost": {"k": n // 30, "cost": torch.from_numpy(_cost("ties", n, (n,), backend, np.float32))}}[budget]
    dev_args = dict(args, cost=backend.to(args["cost"])) if "cost" in args else args
    cpu, dev = gradsparse.ErrorFeedback(), gradsparse.ErrorFeedback()
    for i, x in enumerate(_steps(dtype, n)):
        with np.errstate(all="ignore"):  # (numpy warns for inf - inf on the CPU path)
            ref = cpu.compress("w", x, **args)
        with backend.on():
            got = dev.compress("w", backend.to(x), **dev_args)
            res = dev.residual("w")
        same_sparse(got, ref, backend, nan_payload=False, what=f"step {i}")
        same(res, cpu.residual("w"), backend, nan_payload=False, what=f"residual {i}")
    if backend.name == "fake":
        fused = dtype == "float32" and budget != "energy"
        assert ("feedback_select" in cuda_fake.calls) == fused


@pytest.mark.parametrize("dtype", DTYPES + ["mixed"])
def test_feedback_compress_many(backend, dtype):
    cpu, dev = gradsparse.ErrorFeedback(), gradsparse.ErrorFeedback()
    for step in range(3):
        xs = _many(dtype, count=8, seed=step)
        update = {f"t{i}": x for i, x in enumerate(xs)}
        with np.errstate(all="ignore"):  # (numpy warns for inf - inf on the CPU path)
            ref = cpu.compress_many(update, ratio=0.03)
        with backend.on():
            got = dev.compress_many({k: backend.to(v) for k, v in update.items()}, ratio=0.03)
        for name in update:
            same_sparse(got[name], ref[name], backend, nan_payload=False, what=f"step {step} {name}")
            with backend.on():
                same(dev.residual(name), cpu.residual(name), backend, nan_payload=False)


_INTO = [("k", {"k": 40}), ("ratio", {"ratio": 0.02}), ("tau", {"tau": 1.5}), ("tau_small_cap", {"tau": 0.5, "cap": 30}),
         ("budget", {"budget": 25.0}), ("cost", {"k": 25, "cost": "array"}), ("prepared", {"k": 25, "cost": "prepared"})]


@pytest.mark.parametrize("value_dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("regions", [1, 3])
@pytest.mark.parametrize("case", [c for c, _ in _INTO])
def test_feedback_compress_into(backend, value_dtype, regions, case):
    n = 200_003 if backend.large else 5003
    args = dict(dict(_INTO)[case])
    dev_args = dict(args)
    if args.get("cost") == "array":
        args["cost"] = torch.from_numpy(_cost("random", n, (n,), backend, np.float32))
        dev_args["cost"] = backend.to(args["cost"])
    elif args.get("cost") == "prepared":
        args["cost"] = dev_args["cost"] = gradsparse.PreparedCost(_cost("ties", n, (n,), backend, np.float32))
    m = -(-n // regions)
    cap = args.get("cap", args["k"] if "k" in args else (max(1, round(0.02 * m)) if "ratio" in args else m))
    vdt = torch.float32 if value_dtype == "float32" else torch.bfloat16
    cpu, dev = gradsparse.ErrorFeedback(), gradsparse.ErrorFeedback()
    for step, x in enumerate(_steps("float32", n)):
        v_cpu = torch.empty(regions * cap, dtype=vdt)
        i_cpu = torch.empty(regions * cap, dtype=torch.int32)
        ref = cpu.compress_into("b", x, **args, regions=regions, values=v_cpu, indices=i_cpu, value_dtype=value_dtype)
        v_dev, i_dev = backend.to(torch.full_like(v_cpu, 7)), backend.to(torch.full_like(i_cpu, 7))
        with backend.on():
            got = dev.compress_into("b", backend.to(x), **dev_args, regions=regions, values=v_dev, indices=i_dev,
                                    value_dtype=value_dtype)
            res = dev.residual("b")
        assert got == ref, f"step {step}"
        same(i_dev, i_cpu, backend, what=f"indices {step}")
        same(v_dev, v_cpu, backend, nan_payload=False, what=f"values {step}")
        same(res, cpu.residual("b"), backend, nan_payload=False, what=f"residual {step}")
    if case == "tau_small_cap":
        assert any(c > cap for c in ref), "the case should overflow a region"


def test_feedback_apply(backend):
    cpu, dev = gradsparse.ErrorFeedback(), gradsparse.ErrorFeedback()

    def send(acc):  # top-k sent as a Sparse for one tensor, a dense rounded copy for the other
        top = gradsparse.sparsify(acc["a"], 30)
        b = acc["b"]  # numpy on the CPU path, a tensor on the device
        return "ok", {"a": top, "b": b.to(torch.float16) if isinstance(b, torch.Tensor) else b.astype(np.float16)}

    for step in range(3):
        update = {"a": tensor("mixed", 1000, "float32", step), "b": tensor("random", 77, "float64", step)}
        with np.errstate(all="ignore"):
            assert cpu.apply(update, send) == "ok"
        with backend.on():
            assert dev.apply({k: backend.to(v) for k, v in update.items()}, send) == "ok"
            for name in update:
                same(dev.residual(name), cpu.residual(name), backend, nan_payload=False, what=f"{step} {name}")


def test_feedback_state_dict_and_add_at(backend):
    cpu, dev = gradsparse.ErrorFeedback(), gradsparse.ErrorFeedback()
    xs = _steps("float32", 3000)
    for x in xs[:2]:
        cpu.compress("w", x, 50)
        with backend.on():
            dev.compress("w", backend.to(x), 50)
    with backend.on():
        state = dev.state_dict()
    assert state["w"].device.type == "cpu"  # saved as the CPU path saves it
    same(state["w"], cpu.state_dict()["w"], Backend("fake"), nan_payload=False)
    # a loaded state goes to the next tensor's device
    fresh = gradsparse.ErrorFeedback()
    fresh.load_state_dict(state)
    idx = np.array([5, 9, 5, 2999])
    vals = np.array([1.0, 2.0, 3.0, -4.0], dtype=np.float32)
    for x in xs[2:]:
        ref = cpu.compress("w", x, 50)
        with backend.on():
            got = fresh.compress("w", backend.to(x), 50)
        same_sparse(got, ref, backend, nan_payload=False)
        cpu.add_at("w", idx, vals)  # repeated positions
        with backend.on():
            fresh.add_at("w", backend.to(torch.from_numpy(idx)), vals)
            fresh.add_at("w", [1, 2], np.array([0.5, 0.25]))
            same(fresh.residual("w"), (cpu.add_at("w", [1, 2], np.array([0.5, 0.25])), cpu.residual("w"))[1],
                 backend, nan_payload=False)
    # pickling keeps the residual (as a host copy that goes to the next tensor's device)
    import pickle

    with backend.on():
        again = pickle.loads(pickle.dumps(fresh))
        same(again.residual("w").to(backend.device), fresh.residual("w"), backend)


# ----------------------------------------------------------------------------- errors

def _errors(fn):
    try:
        fn()
    except (ArgumentError, ArgumentTypeError) as e:
        return type(e), str(e).split(":")[0]
    return None


def test_bad_input_same_errors(backend):
    x = torch.randn(50)
    bad = [
        lambda x: gradsparse.sparsify(x, 0), lambda x: gradsparse.sparsify(x, 51), lambda x: gradsparse.sparsify(x),
        lambda x: gradsparse.sparsify(x, ratio=1.5), lambda x: gradsparse.sparsify(x, 3, q=-1.0),
        lambda x: gradsparse.sparsify(x, 3, cost=-1.0), lambda x: gradsparse.sparsify(x, 3, cost=x.abs() - 10),
        lambda x: gradsparse.sparsify(x[:0], 1), lambda x: gradsparse.sparsify(x.int(), 3),
        lambda x: gradsparse.sparsify(x.to(torch.complex64), 3), lambda x: gradsparse.threshold(x, -1.0),
        lambda x: gradsparse.random_k(x, 51, 1), lambda x: gradsparse.random_k(x, 3, -1),
        lambda x: gradsparse.random_k(x, 3, 1, scale=1), lambda x: gradsparse.topk(x, 51),
        lambda x: gradsparse.topk(x, 3, dim=2), lambda x: gradsparse.topk(x, 3, key="sq"),
        lambda x: gradsparse.sparsify_many([x, x], 101), lambda x: gradsparse.sparsify_many([x], 3, costs=[1.0, 2.0]),
        lambda x: gradsparse.sparsify(x.requires_grad_(), 3),
        lambda x: gradsparse.ErrorFeedback().compress("a", x, 51),
        lambda x: gradsparse.ErrorFeedback().compress_into("a", x, k=3, values=x[:3].clone(),
                                                           indices=x[:3].clone()),
        lambda x: gradsparse.ErrorFeedback().compress_into("a", x.double(), k=3, values=x[:3].clone(),
                                                           indices=x[:3].int()),
    ]
    for i, fn in enumerate(bad):
        ref = _errors(lambda: fn(x.clone()))
        assert ref is not None, i
        with backend.on():
            got = _errors(lambda: fn(backend.to(x)))
        assert got == ref, (i, got, ref)


def test_residual_size_change_raises(backend):
    ef = gradsparse.ErrorFeedback()
    with backend.on():
        ef.compress("a", backend.to(torch.randn(10)), 2)
        with pytest.raises(ArgumentError, match="^x: tensor 'a' has 11 elements"):
            ef.compress("a", backend.to(torch.randn(11)), 2)


@requires_cuda
def test_mixed_devices_raise():
    xc, xg = torch.randn(100), torch.randn(100, device="cuda")
    cases = {
        "xs[1]": lambda: gradsparse.sparsify_many([xg, xc], 5),
        "xs[0]": lambda: gradsparse.sparsify_many([xc, xg], 5),
        "cost": lambda: gradsparse.sparsify(xg, 5, cost=xc.abs() + 1),
        "cost ": lambda: gradsparse.sparsify(xg, 5, cost=np.ones(100)),
        "out": lambda: gradsparse.topk(xg, 5, out=(torch.empty(5), torch.empty(5, dtype=torch.int64))),
        "update['b']": lambda: gradsparse.ErrorFeedback().compress_many({"a": xg, "b": xc}, 5),
        "values": lambda: gradsparse.ErrorFeedback().compress_into(
            "a", xg, k=3, values=torch.empty(3), indices=torch.empty(3, dtype=torch.int32, device="cuda")),
    }
    for name, fn in cases.items():
        with pytest.raises(ArgumentError, match=r"^" + name.strip().replace("[", r"\[") + ":"):
            fn()


@requires_cuda
def test_device_change_raises_and_loaded_state_moves():
    ef = gradsparse.ErrorFeedback()
    ef.compress("a", torch.randn(100, device="cuda"), 5)
    with pytest.raises(ArgumentError, match="^x: tensor 'a' is on the CPU, but its residual lives on cuda"):
        ef.compress("a", torch.randn(100), 5)
    state = ef.state_dict()
    assert state["a"].device.type == "cpu"
    ef.load_state_dict(state)
    ef.compress("a", torch.randn(100, device="cuda"), 5)  # a loaded residual moves to the device
    assert ef.residual("a").device.type == "cuda"
    cpu = gradsparse.ErrorFeedback()
    cpu.compress("a", torch.randn(100), 5)
    with pytest.raises(ArgumentError, match="^x: tensor 'a' is on cuda:0, but its residual lives on the CPU"):
        cpu.compress("a", torch.randn(100, device="cuda"), 5)


@requires_cuda
def test_repeated_runs_and_streams_agree():
    x = tensor("ties", 1_000_003, "float32")
    xd = x.cuda()
    ref = gradsparse.sparsify(x, 10_000)
    cost = torch.from_numpy(_cost("ties", x.numel(), (x.numel(),), None)).cuda()
    ref_c = gradsparse.sparsify(xd, budget=3000.0, cost=cost)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())  # the inputs were made on the default stream
    for _ in range(3):
        same_sparse(gradsparse.sparsify(xd, 10_000), ref, Backend("cuda"))
        with torch.cuda.stream(side):
            got = gradsparse.sparsify(xd, 10_000)
            got_c = gradsparse.sparsify(xd, budget=3000.0, cost=cost)
            top = gradsparse.topk(xd[:1_000_000].view(1000, 1000)[:, 3:], 17)
        side.synchronize()
        same_sparse(got, ref, Backend("cuda"))
        same_sparse(got_c, ref_c, Backend("cuda"))
        ref_top = gradsparse.topk(x[:1_000_000].view(1000, 1000)[:, 3:], 17)
        same(top.values, ref_top.values, Backend("cuda"))
        same(top.indices, ref_top.indices, Backend("cuda"))


def test_cuda_ready_matches_marker():
    assert cuda_ready() == (gcuda.available() and torch.cuda.is_available())
