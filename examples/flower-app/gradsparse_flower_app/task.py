"""The example's data, model, local training and evaluation: plain torch, nothing of
gradsparse's compression (that is the ClientApp's mod and the ServerApp's strategy).

Every process (the ServerApp and each ClientApp) builds the same data from the run config:
synthetic CIFAR-shaped images by default, CIFAR-10 from `data-dir` when it is set. A node
trains on its own IID share of the training images, chosen by its `partition-id` out of
`num-partitions` (node config); the server evaluates the global model on the test images.
"""
from __future__ import annotations

import functools
from typing import Mapping, Tuple

import numpy as np
import torch
from torch import nn

from gradsparse.fl.data import ImageSet, load_cifar10, synthetic
from gradsparse.fl.models import build_model
from gradsparse.fl.partition import iid


@functools.lru_cache(maxsize=2)
def _load(data_dir: str, train_samples: int, test_samples: int, seed: int):
    if data_dir:
        return load_cifar10(data_dir)
    return synthetic(train_samples, test_samples, seed=seed)


def load_data(cfg: Mapping) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) for run config `cfg`."""
    return _load(str(cfg["data-dir"]), int(cfg["train-samples"]), int(cfg["test-samples"]), int(cfg["seed"]))


def node_share(cfg: Mapping, partition_id: int, num_partitions: int) -> ImageSet:
    """The training images of partition `partition_id` of `num_partitions` (IID, seeded)."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id: expected 0..{num_partitions - 1}, got {partition_id}")
    x, y, _, _ = load_data(cfg)
    parts = iid(y, num_partitions, np.random.default_rng(int(cfg["seed"])))
    return ImageSet(x[parts[partition_id]], y[parts[partition_id]])


def test_set(cfg: Mapping) -> ImageSet:
    """The held-out images the server evaluates the global model on."""
    _, _, x, y = load_data(cfg)
    return ImageSet(x, y)


def new_model(cfg: Mapping) -> nn.Module:
    """The run's model, initialised from the run's seed (the same in every process)."""
    torch.manual_seed(int(cfg["seed"]))
    return build_model(str(cfg["model"]))


def train(model: nn.Module, data: ImageSet, cfg: Mapping, seed: int) -> float:
    """`local-epochs` epochs of SGD (momentum 0.9) on `data`; the mean training loss."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=float(cfg["lr"]), momentum=0.9)
    batch = int(cfg["batch-size"])
    model.train()
    losses = []
    for _ in range(int(cfg["local-epochs"])):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(data), batch):
            x, y = data.batch(order[start:start + batch], augment=True, gen=gen)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch: int = 256) -> Tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on `data`."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(data), batch):
        x, y = data.batch(torch.arange(start, min(start + batch, len(data))))
        out = model(x)
        loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += int((out.argmax(1) == y).sum())
    return loss / len(data), correct / len(data)
