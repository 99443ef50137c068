"""Fashion-MNIST in the FL harness: the IDX reader (raw and gzip, torchvision's folder
layout) against hand-written files, its refusals of corrupt ones, the evofed-fmnist model
(the official EvoFed FMNIST CNN: 11,274 parameters), model/data compatibility, and one
EvoFed round end to end through the CLI on tiny IDX files."""
from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pytest

from gradsparse.errors import ArgumentError
from gradsparse.fl import Config
from gradsparse.fl.data import FMNIST_FILES, find_fmnist_dir, load_fmnist, read_idx


def idx_bytes(a: np.ndarray) -> bytes:
    """An IDX file of uint8 array `a`, written from the format's definition."""
    head = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    return head + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def write(path, data: bytes) -> str:
    path = str(path)
    if path.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        with open(path, "wb") as fh:
            fh.write(data)
    return path


def make_fmnist(folder, n_train: int = 60, n_test: int = 20, gz: bool = True, seed: int = 0):
    """Four IDX files of random images, every class in both splits; returns the arrays."""
    rng = np.random.default_rng(seed)
    os.makedirs(str(folder), exist_ok=True)
    arrays = []
    for n in (n_train, n_test):
        arrays.append(rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        arrays.append((np.arange(n) % 10).astype(np.uint8))
    for name, a in zip(FMNIST_FILES, arrays):
        write(os.path.join(str(folder), name + (".gz" if gz else "")), idx_bytes(a))
    return arrays


# ----------------------------------------------------------------------------- reader

@pytest.mark.parametrize("gz", [True, False])
def test_load_fmnist_reads_the_official_files(tmp_path, gz):
    tx, ty, vx, vy = make_fmnist(tmp_path, gz=gz)
    x, y, x2, y2 = load_fmnist(str(tmp_path))
    assert x.shape == (60, 1, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], tx)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(x2[:, 0], vx)
    np.testing.assert_array_equal(y2, vy)


def test_torchvision_layout_and_raw_before_gz(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    make_fmnist(raw, gz=True, seed=1)
    tx = make_fmnist(raw, gz=False, seed=2)[0]  # torchvision keeps both: the raw file is read
    assert find_fmnist_dir(str(tmp_path)) == str(raw)
    np.testing.assert_array_equal(load_fmnist(str(tmp_path))[0][:, 0], tx)


def bad_file(tmp_path, data: bytes, gz: bool = False) -> str:
    return write(tmp_path / ("f.gz" if gz else "f"), data)


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_refuses_corrupt_files(tmp_path, gz):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    cases = {
        "magic number 0x00000801": bytes([0, 0, 8, 1]) + good[4:],       # a label file's magic
        "magic number 0x00000d03": bytes([0, 0, 0x0D, 3]) + good[4:],    # float data
        "truncated (2 bytes": good[:2],
        "truncated header": good[:10],
        "items of shape (28, 27)": good[:12] + (27).to_bytes(4, "big") + good[16:],
        "truncated: the header announces 3 items": good[:-1],
        "bytes beyond": good + b"\0",
        "more than": bytes([0, 0, 8, 3]) + (2 ** 31).to_bytes(4, "big") + good[8:],
    }
    for msg, data in cases.items():
        path = bad_file(tmp_path, data, gz)
        with pytest.raises(ArgumentError, match="data_dir: .*f(.gz)?' is not a valid IDX file") as e:
            read_idx(path, 3, (28, 28))
        assert msg in str(e.value), (msg, str(e.value))


def test_read_idx_refuses_broken_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    path = str(tmp_path / "f.gz")
    for cut in (data[:10], data[:-12], b"\x1f\x8b" + b"\xff" * 30):  # cut short, no trailer, garbage
        with open(path, "wb") as fh:
            fh.write(cut)
        with pytest.raises(ArgumentError, match=r"data_dir: '.*f\.gz' is not a valid IDX file"):
            read_idx(path, 3, (28, 28))


def test_image_label_count_mismatch_and_bad_labels(tmp_path):
    make_fmnist(tmp_path, gz=False)
    write(tmp_path / FMNIST_FILES[1], idx_bytes((np.arange(59) % 10).astype(np.uint8)))
    with pytest.raises(ArgumentError, match=r"holds 60 images but .*train-labels-idx1-ubyte' holds 59 labels"):
        load_fmnist(str(tmp_path))
    write(tmp_path / FMNIST_FILES[1], idx_bytes(np.full(60, 10, np.uint8)))
    with pytest.raises(ArgumentError, match=r"labels outside 0\.\.9"):
        load_fmnist(str(tmp_path))


def test_missing_files_are_refused_naming_the_folder(tmp_path):
    make_fmnist(tmp_path)
    os.remove(tmp_path / (FMNIST_FILES[3] + ".gz"))
    with pytest.raises(ArgumentError, match="data_dir: no Fashion-MNIST IDX files in .*t10k-labels-idx1-ubyte"):
        Config(data="fmnist", data_dir=str(tmp_path), model="evofed-fmnist").validate()
    with pytest.raises(ArgumentError, match="data_dir: no such folder"):
        Config(data="fmnist", data_dir=str(tmp_path / "nope"), model="evofed-fmnist").validate()


# ----------------------------------------------------------------------------- model and config

def test_evofed_fmnist_model_is_the_official_cnn():
    pytest.importorskip("torch")
    import torch
    from gradsparse.fl.models import build_model
    m = build_model("evofed-fmnist")
    shapes = [tuple(p.shape) for p in m.parameters()]
    # conv5x5 1->8, conv5x5 8->16 (SAME), 2 avg-pools: 16x7x7 -> fc 10
    assert shapes == [(8, 1, 5, 5), (8,), (16, 8, 5, 5), (16,), (10, 784), (10,)]
    assert sum(p.numel() for p in m.parameters()) == 11274
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ArgumentError, match="in_channels: model 'evofed-fmnist' takes 1-channel images, got 3"):
        build_model("evofed-fmnist", in_channels=3)
    assert build_model("tiny", in_channels=1).conv.in_channels == 1


def test_model_and_data_must_match(tmp_path):
    make_fmnist(tmp_path)
    for model in ("cnn", "evofed-cnn", "resnet18"):
        with pytest.raises(ArgumentError, match=f"model: '{model}' takes 3x32x32 .* data 'fmnist' has 1x28x28"):
            Config(data="fmnist", data_dir=str(tmp_path), model=model).validate()
    with pytest.raises(ArgumentError, match="model: 'evofed-fmnist' takes 1x28x28 .* data 'synthetic' has 3x32x32"):
        Config(data="synthetic", model="evofed-fmnist").validate()
    Config(data="fmnist", data_dir=str(tmp_path), model="tiny").validate()


def test_fmnist_is_never_augmented(tmp_path):
    pytest.importorskip("torch")
    import torch
    from gradsparse.fl.data import ImageSet
    make_fmnist(tmp_path)
    cfg = Config(data="fmnist", data_dir=str(tmp_path), model="evofed-fmnist").validate()
    assert cfg.augment and cfg.resolved().augment is False  # recorded as it ran: one experiment either way
    assert cfg.settings_hash() == cfg.replace(augment=False).settings_hash()
    x, y, _, _ = load_fmnist(str(tmp_path))
    s = ImageSet.for_source("fmnist", x, y)
    a, _ = s.batch(torch.arange(8), augment=True, gen=torch.Generator().manual_seed(0))
    ref = (torch.from_numpy(x[:8]).float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(a, ref)


# ----------------------------------------------------------------------------- end to end

def test_cli_runs_evofed_on_fmnist_end_to_end(tmp_path, capsys):
    pytest.importorskip("torch")
    from gradsparse.fl import records as rec
    from gradsparse.fl.__main__ import main as cli
    data = tmp_path / "data"
    make_fmnist(data / "FashionMNIST" / "raw", n_train=100, n_test=30)
    out = tmp_path / "runs"
    code = cli(["run", "--method", "evofed", "--data", "fmnist", "--data-dir", str(data), "--model", "evofed-fmnist",
                "--partition", "class-pairs", "--clients", "5", "--rounds", "1", "--threads", "1",
                "--out-dir", str(out), "--no-plot", "--progress", "off", "--batch-size", "16",
                "--set", "params.preset=fmnist", "--set", "params.population=8", "--set", "val_fraction=0"])
    assert code == 0
    assert "result: evofed-" in capsys.readouterr().out
    run_dir = os.path.join(str(out), os.listdir(str(out))[0])
    (row,) = rec.read(run_dir)
    assert row["method"] == "evofed" and row["params"]["preset"] == "fmnist"
    assert 0 <= row["test_acc"] <= 1 and np.isfinite(row["test_loss"])
    # 5 clients, 8 float32 fitness values each way per client (plus the payload header)
    assert row["uplink_bytes"] >= 5 * 8 * 4 and row["downlink_bytes"] >= 5 * 8 * 4
    with open(os.path.join(run_dir, "experiment.json")) as fh:
        setting = json.load(fh)["setting"]
    assert setting["model"] == "evofed-fmnist" and setting["augment"] is False
    assert setting["data"]["train"] == 100
    assert setting["data"]["test"] == 30
