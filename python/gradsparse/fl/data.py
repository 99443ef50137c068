"""Data: CIFAR-10 from the official python-format files, Fashion-MNIST from the official
IDX files, either via torchvision, or synthetic.

Images are held in memory as uint8 ``(N, C, H, W)`` arrays (CIFAR-10 and synthetic:
``(N, 3, 32, 32)``; Fashion-MNIST: ``(N, 1, 28, 28)``); :class:`ImageSet` turns batches into
float tensors (normalised per channel, and, for 32x32 sources, augmented with random crop +
flip when asked) using an explicit ``torch.Generator``, so runs are reproducible.

The official CIFAR-10 files are pickles. They are read with a restricted unpickler that only
rebuilds numpy arrays, lists, dicts, strings and numbers, so a folder of untrusted files
cannot run code. The Fashion-MNIST IDX files (raw or gzip) are parsed with numpy from their
header, checked against it, and never read past what the header announces.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import zlib
from typing import Optional, Tuple

import numpy as np
from ..errors import ArgumentError

__all__ = ["ImageSet", "load_cifar10", "load_fmnist", "synthetic", "check_cifar_source", "check_fmnist_source",
           "find_cifar_dir", "find_fmnist_dir", "read_idx", "source_stats", "CIFAR_MEAN", "CIFAR_STD",
           "FMNIST_MEAN", "FMNIST_STD", "DEFAULT_ROOT", "FMNIST_ROOT"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
FMNIST_MEAN = (0.2860,)
FMNIST_STD = (0.3530,)
_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILE = "test_batch"
#: where torchvision downloads CIFAR-10 when no data_dir is given
DEFAULT_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "gradsparse", "cifar10")
#: where torchvision downloads Fashion-MNIST when no data_dir is given
FMNIST_ROOT = os.path.join(os.path.expanduser("~"), ".cache", "gradsparse", "fmnist")
#: the official Fashion-MNIST files: (train images, train labels, test images, test labels)
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")


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


# ----------------------------------------------------------------------------- Fashion-MNIST

_IDX_UBYTE = 0x08          #: the IDX type code of unsigned bytes (the only one the official files use)
_IDX_MAX_ITEMS = 10 ** 7   #: more images than this in one file is not Fashion-MNIST


def _fmnist_file(folder: str, name: str) -> Optional[str]:
    """`name` in `folder`, raw or gzip-compressed (raw first), or None."""
    for cand in (name, name + ".gz"):
        path = os.path.join(folder, cand)
        if os.path.isfile(path):
            return path
    return None


def find_fmnist_dir(data_dir: Optional[str]) -> Optional[str]:
    """The folder holding the four official IDX files: `data_dir` itself or its
    FashionMNIST/raw (torchvision's layout)."""
    if not data_dir:
        return None
    for cand in (data_dir, os.path.join(data_dir, "FashionMNIST", "raw")):
        if all(_fmnist_file(cand, f) is not None for f in FMNIST_FILES):
            return cand
    return None


def _no_fmnist_message(data_dir: Optional[str]) -> str:
    where = f"no Fashion-MNIST IDX files in {data_dir!r}" if data_dir else "no Fashion-MNIST data source"
    return (f"data_dir: {where}. Either pass --data-dir pointing at a folder (or its FashionMNIST/raw) holding "
            f"the official files {', '.join(FMNIST_FILES)} (each raw or .gz, from "
            "https://github.com/zalandoresearch/fashion-mnist), or install torchvision and pass --download "
            "to fetch Fashion-MNIST")


def check_fmnist_source(data_dir: Optional[str], download: bool) -> None:
    """Raises ValueError (naming both options) when no Fashion-MNIST source is usable."""
    if find_fmnist_dir(data_dir) is not None:
        return
    if _has_torchvision() and (download or find_fmnist_dir(data_dir or FMNIST_ROOT) is not None):
        return
    if data_dir and not os.path.isdir(data_dir):
        raise ArgumentError(_no_fmnist_message(data_dir).replace("no Fashion-MNIST IDX files in", "no such folder"))
    raise ArgumentError(_no_fmnist_message(data_dir))


def read_idx(path: str, ndim: int, item_shape: Tuple[int, ...] = ()) -> np.ndarray:
    """The uint8 array of an IDX file (gzip-compressed when `path` ends in .gz) with `ndim`
    dimensions, whose dimensions after the first must be `item_shape` (when given).

    The header (magic ``00 00 08 ndim``, then `ndim` big-endian uint32 sizes) is checked
    before any data is read; then exactly the announced number of bytes is read (one more
    to detect trailing bytes), so a corrupt or crafted file cannot make it read or
    decompress more than that. A bad file raises ArgumentError naming ``data_dir`` and it."""
    def bad(msg: str) -> ArgumentError:
        return ArgumentError(f"data_dir: {path!r} is not a valid IDX file: {msg}")

    head_len = 4 + 4 * ndim
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as fh:
            head = fh.read(head_len)
            if len(head) < 4:
                raise bad(f"truncated ({len(head)} bytes, no complete magic number)")
            magic = int.from_bytes(head[:4], "big")
            want = (_IDX_UBYTE << 8) | ndim
            if magic != want:
                raise bad(f"magic number 0x{magic:08x}, expected 0x{want:08x} (unsigned bytes, {ndim} dimensions)")
            if len(head) < head_len:
                raise bad(f"truncated header ({len(head)} of {head_len} bytes)")
            dims = tuple(int(v) for v in np.frombuffer(head, dtype=">u4", offset=4))
            if item_shape and dims[1:] != tuple(item_shape):
                raise bad(f"items of shape {dims[1:]}, expected {tuple(item_shape)}")
            if dims[0] > _IDX_MAX_ITEMS:
                raise bad(f"{dims[0]} items announced, more than {_IDX_MAX_ITEMS}")
            size = int(np.prod(dims, dtype=np.int64))
            body = fh.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise bad(f"cannot be read ({type(e).__name__}: {e})") from None
    if len(body) < size:
        raise bad(f"truncated: the header announces {dims[0]} items ({size} data bytes), found {len(body)} bytes")
    if len(body) > size:
        raise bad(f"bytes beyond the {dims[0]} items ({size} data bytes) its header announces")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()  # writable, as torch wants


def _read_fmnist_pair(folder: str, images: str, labels: str) -> Tuple[np.ndarray, np.ndarray]:
    ipath, lpath = _fmnist_file(folder, images), _fmnist_file(folder, labels)
    x = read_idx(ipath, 3, (28, 28))
    y = read_idx(lpath, 1)
    if x.shape[0] != y.shape[0]:
        raise ArgumentError(f"data_dir: {ipath!r} holds {x.shape[0]} images but {lpath!r} holds {y.shape[0]} labels")
    if y.size and y.max() > 9:
        raise ArgumentError(f"data_dir: {lpath!r} has labels outside 0..9 (largest {int(y.max())})")
    return x.reshape(-1, 1, 28, 28), y.astype(np.int64)


def load_fmnist(data_dir: Optional[str], download: bool = False):
    """(train_x, train_y, test_x, test_y) of Fashion-MNIST as uint8 ``(N, 1, 28, 28)`` /
    int64 numpy arrays, from the official IDX files in `data_dir` (or its FashionMNIST/raw),
    or downloaded there (default: :data:`FMNIST_ROOT`) by torchvision with `download`."""
    folder = find_fmnist_dir(data_dir)
    if folder is None and _has_torchvision():
        root = data_dir or FMNIST_ROOT
        folder = find_fmnist_dir(root)
        if folder is None and download:
            import torchvision  # optional: only its downloader is used
            torchvision.datasets.FashionMNIST(root=root, train=True, download=True)  # fetches all four files
            folder = find_fmnist_dir(root)
    if folder is None:
        raise ArgumentError(_no_fmnist_message(data_dir))
    tx, ty = _read_fmnist_pair(folder, FMNIST_FILES[0], FMNIST_FILES[1])
    vx, vy = _read_fmnist_pair(folder, FMNIST_FILES[2], FMNIST_FILES[3])
    return tx, ty, vx, vy


# ----------------------------------------------------------------------------- synthetic

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


def source_stats(source: str) -> Tuple[Tuple[float, ...], Tuple[float, ...], bool]:
    """(per-channel mean, std, whether ``augment`` crops and flips) of a data source.
    Fashion-MNIST is never augmented: the official EvoFed code trains it without
    augmentation, and ``Config.resolved`` records ``augment`` false for it."""
    if source == "fmnist":
        return FMNIST_MEAN, FMNIST_STD, False
    return CIFAR_MEAN, CIFAR_STD, True


class ImageSet:
    """uint8 images ``(N, C, H, W)`` + labels; ``batch(idx, augment, gen)`` returns float
    tensors. `mean`/`std` have one value per channel. ``augment`` is a random crop (pad 4) +
    horizontal flip of 32x32 images; with `crop_flip` False (Fashion-MNIST) or images of
    another size it does nothing."""

    def __init__(self, x: np.ndarray, y: np.ndarray, normalize: bool = True, mean=CIFAR_MEAN, std=CIFAR_STD,
                 crop_flip: bool = True):
        import torch
        if x.ndim != 4 or len(mean) != x.shape[1] or len(std) != x.shape[1]:
            raise ArgumentError(f"x: expected (N, C, H, W) images with C = {len(mean)} channels (one mean/std each), "
                                f"got shape {x.shape}")
        self.x = torch.from_numpy(np.ascontiguousarray(x))
        self.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        self.normalize = normalize
        self.crop_flip = bool(crop_flip) and tuple(x.shape[2:]) == (32, 32)
        c = x.shape[1]
        self.mean = torch.tensor(mean).view(1, c, 1, 1)
        self.std = torch.tensor(std).view(1, c, 1, 1)

    @classmethod
    def for_source(cls, source: str, x: np.ndarray, y: np.ndarray, normalize: bool = True) -> "ImageSet":
        """An ImageSet with the statistics and augmentation of data source `source`."""
        mean, std, crop_flip = source_stats(source)
        return cls(x, y, normalize, mean, std, crop_flip)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def batch(self, idx, augment: bool = False, gen=None):
        """Images `idx` as normalised floats (random crop + flip with `augment`, when this
        set augments at all) and their labels."""
        import torch
        x = self.x[idx]
        if augment and self.crop_flip:
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
