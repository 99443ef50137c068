"""Data: CIFAR-10 from the official python-format files, via torchvision, or synthetic.

Images are held in memory as uint8 ``(N, 3, 32, 32)`` arrays; :class:`ImageSet` turns
batches into float tensors (normalised, and augmented with random crop + flip when asked)
using an explicit ``torch.Generator``, so runs are reproducible.

The official files are pickles. They are read with a restricted unpickler that only
rebuilds numpy arrays, lists, dicts, strings and numbers, so a folder of untrusted files
cannot run code.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
from typing import Optional, Tuple

import numpy as np
from ..errors import ArgumentError

__all__ = ["ImageSet", "load_cifar10", "synthetic", "check_cifar_source", "find_cifar_dir", "CIFAR_MEAN", "CIFAR_STD",
           "DEFAULT_ROOT"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILE = "test_batch"
#: where torchvision downloads CIFAR-10 when no data_dir is given
DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "gradsparse", "cifar10")


def _has_torchvision() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("torchvision") is not None
    except (ImportError, ValueError):
        return False


def find_cifar_dir(data_dir: Optional[str]) -> Optional[str]:
    """The folder holding the official files: `data_dir` itself or its cifar-10-batches-py."""
    if not data_dir:
        return None
    for cand in (data_dir, os.path.join(data_dir, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(cand, _TEST_FILE)) and any(
                os.path.isfile(os.path.join(cand, f)) for f in _TRAIN_FILES):
            return cand
    return None


def _no_data_message(data_dir: Optional[str]) -> str:
    where = f"no CIFAR-10 python-format files in {data_dir!r}" if data_dir else "no CIFAR-10 data source"
    return (f"data_dir: {where}. Either pass --data-dir pointing at a folder holding the official "
            "python-format files (cifar-10-batches-py: data_batch_1..5, test_batch), or install torchvision "
            "and pass --download to fetch CIFAR-10 (or use --data synthetic for a smoke run)")


def check_cifar_source(data_dir: Optional[str], download: bool) -> None:
    """Raises ValueError (naming both options) when no CIFAR-10 source is usable."""
    if find_cifar_dir(data_dir) is not None:
        return
    if _has_torchvision() and (download or find_cifar_dir(data_dir or DEFAULT_ROOT) is not None):
        return
    if data_dir and not os.path.isdir(data_dir):
        raise ArgumentError(_no_data_message(data_dir).replace("no CIFAR-10 python-format files in", "no such folder"))
    raise ArgumentError(_no_data_message(data_dir))


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds only what the official CIFAR-10 batches contain."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    # numpy 2 pickles name numpy._core, numpy 1.x ones numpy.core: load either with this numpy
    _CORE = "numpy._core." if importlib.util.find_spec("numpy._core") is not None else "numpy.core."

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            if module.startswith(("numpy.core.", "numpy._core.")):
                module = self._CORE + module.split(".", 2)[2]
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = _SafeUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, ImportError, AttributeError) as e:
        raise ArgumentError(f"data_dir: {path!r} is not a CIFAR-10 python batch ({e})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ArgumentError(f"data_dir: {path!r} is not a CIFAR-10 python batch (no data/labels)")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
        raise ArgumentError(f"data_dir: {path!r} has data of shape {x.shape} / {x.dtype} and {y.shape} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ArgumentError(f"data_dir: {path!r} has labels outside 0..9")
    return x.reshape(-1, 3, 32, 32), y


def load_cifar10(data_dir: Optional[str], download: bool = False):
    """(train_x, train_y, test_x, test_y) as uint8 / int64 numpy arrays."""
    folder = find_cifar_dir(data_dir)
    if folder is None and _has_torchvision():
        root = data_dir or DEFAULT_ROOT
        folder = find_cifar_dir(root)
        if folder is None and download:
            import torchvision  # optional: only its downloader is used
            torchvision.datasets.CIFAR10(root=root, train=True, download=True)
            folder = find_cifar_dir(root)
    if folder is None:
        raise ArgumentError(_no_data_message(data_dir))
    parts = [_read_batch(os.path.join(folder, f)) for f in _TRAIN_FILES if os.path.isfile(os.path.join(folder, f))]
    tx = np.concatenate([p[0] for p in parts])
    ty = np.concatenate([p[1] for p in parts])
    vx, vy = _read_batch(os.path.join(folder, _TEST_FILE))
    return tx, ty, vx, vy


def synthetic(n_train: int, n_test: int, seed: int = 0):
    """A CIFAR-shaped 10-class dataset with learnable structure: each class has a smooth
    random prototype (4x4 colour pattern upsampled to 32x32); an image is its class's
    prototype, randomly shifted and scaled in brightness, plus pixel noise."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    protos = rng.uniform(0, 1, size=(10, 3, 4, 4))
    protos = np.repeat(np.repeat(protos, 8, axis=2), 8, axis=3)

    def make(n: int):
        y = rng.integers(0, 10, size=n)
        gain = rng.uniform(0.6, 1.0, size=(n, 1, 1, 1))
        x = protos[y] * gain + rng.normal(0, 0.25, size=(n, 3, 32, 32))
        shift = rng.integers(-3, 4, size=(n, 2))
        for i in range(n):
            x[i] = np.roll(x[i], tuple(shift[i]), axis=(1, 2))
        return np.clip(x * 255, 0, 255).astype(np.uint8), y.astype(np.int64)

    tx, ty = make(n_train)
    vx, vy = make(n_test)
    return tx, ty, vx, vy


class ImageSet:
    """uint8 images + labels; ``batch(idx, augment, gen)`` returns float tensors."""

    def __init__(self, x: np.ndarray, y: np.ndarray, normalize: bool = True):
        import torch
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        self.normalize = normalize
        self.mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx, augment: bool = False, gen=None):
        import torch
        x = self.x[idx]
        if augment:
            n = x.shape[0]
            padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
            off = torch.randint(0, 9, (n, 2), generator=gen)
            x = _crop(padded, off)
            flip = torch.rand(n, generator=gen) < 0.5
            x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
        x = x.float().div_(255.0)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x, self.y[idx]


def _crop(padded, off):
    """32x32 crops of (n, 3, 40, 40) images at per-image offsets ``off`` (n, 2)."""
    import torch
    n = padded.shape[0]
    ar = torch.arange(32)
    rows = (off[:, 0:1] + ar)  # (n, 32)
    cols = (off[:, 1:2] + ar)
    bi = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[bi, rows.view(n, 32, 1), cols.view(n, 1, 32)]  # (n, 32, 32, 3)
    return out.permute(0, 3, 1, 2).contiguous()
