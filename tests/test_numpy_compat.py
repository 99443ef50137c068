"""numpy 1.x and 2 both: arrays rebuilt by pickle (numpy 1.x gives them dtype objects that
are equal to, but not the same object as, the canonical ones) are accepted as costs, and
CIFAR-10 batches pickled by either numpy major version load (numpy 2 names numpy._core,
numpy 1.x numpy.core). Both failed only under numpy 1.x before they were fixed."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

import gradsparse as gs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpickled_cost_arrays_are_accepted(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(300).astype(np.float32)
    cost = rng.uniform(0.5, 2.0, 300).astype(dtype)
    again = pickle.loads(pickle.dumps(cost))
    want = gs.sparsify(x, 20, cost=cost).indices
    np.testing.assert_array_equal(gs.sparsify(x, 20, cost=again).indices, want)
    p = pickle.loads(pickle.dumps(gs.PreparedCost(cost)))
    assert p.dtype == dtype
    np.testing.assert_array_equal(gs.sparsify(x, 20, cost=p).indices, want)


@pytest.mark.parametrize("core", ["numpy._core", "numpy.core"])
def test_cifar_batches_pickled_by_either_numpy_major_load(tmp_path, core):
    pytest.importorskip("torch", reason="gradsparse.fl's data module needs torch")
    from gradsparse.fl.data import load_cifar10
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4]}
        raw = pickle.dumps(d, protocol=3)  # protocol 3 names modules in text lines: renamed here
        raw = raw.replace(b"numpy._core.", b"numpy.core.").replace(b"numpy.core.", core.encode() + b".")
        (folder / name).write_bytes(raw)
    tx, ty, vx, vy = load_cifar10(str(tmp_path))
    assert tx.shape == (20, 3, 32, 32) and vx.shape == (4, 3, 32, 32) and ty.tolist()[:4] == [1, 2, 3, 4]
