"""Models: the standard FL CIFAR-10 CNN, a CIFAR ResNet-18, EvoFed's CIFAR-10 and
Fashion-MNIST CNNs, and a tiny model for tests. Which data each takes is
:data:`gradsparse.fl.config.MODEL_INPUTS` (checked by ``Config.validate``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from ..errors import ArgumentError

__all__ = ["CNN", "EvoFedCNN", "EvoFedFMNIST", "ResNet18", "Tiny", "build_model"]


class CNN(nn.Module):
    """The FedAvg CIFAR-10 CNN: conv5x5(32) - pool - conv5x5(64) - pool - fc(512) - fc(10)."""

    def __init__(self, num_classes: int = 10, c1: int = 32, c2: int = 64, hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c1, 5)
        self.conv2 = nn.Conv2d(c1, c2, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(c2 * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class EvoFedCNN(nn.Module):
    """The CIFAR-10 network of EvoFed's official code (mahi97/EvoFL): conv5x5(64, SAME) -
    ReLU - avgpool2 - conv5x5(128, SAME) - ReLU - avgpool2 - fc(256) - ReLU - fc(10);
    2,309,770 parameters, no BatchNorm."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 5, padding=2)
        self.conv2 = nn.Conv2d(64, 128, 5, padding=2)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(128 * 8 * 8, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class EvoFedFMNIST(nn.Module):
    """The Fashion-MNIST network of EvoFed's official code (mahi97/EvoFL, evosax's ``CNN``
    with features 8/16, 5x5 kernels and no hidden linear layer): conv5x5(8, SAME) - ReLU -
    avgpool2 - conv5x5(16, SAME) - ReLU - avgpool2 - fc(10) on 1x28x28 images; 11,274
    parameters (208 + 3,216 + 7,850). The official code flattens channels-last, so its fc
    weights are a row permutation of these."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 16, 5, padding=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 7 * 7, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs: a 3x3 stem without max-pooling, stages of w/2w/4w/8w
    channels (w = `width`, 64: 11.17M parameters) with two basic blocks each."""

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for stage, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** stage
            layers.append(nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Tiny(nn.Module):
    """About 1.5k parameters: conv3x3(8, stride 2) - adaptive pool 4x4 - fc(10), for images
    of any size with `in_channels` channels. For tests."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 3, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(8 * 16, num_classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def _torchvision_resnet18(num_classes: int):
    """torchvision's ResNet-18 adapted to 32x32 (3x3 stem, no max-pool), or None."""
    try:
        import torchvision
    except ImportError:
        return None
    m = torchvision.models.resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def build_model(name: str, num_classes: int = 10, in_channels: Optional[int] = None) -> nn.Module:
    """Model `name` for images with `in_channels` channels (None: the model's own; 3 for
    ``tiny``). Only ``tiny`` adapts; the others take the one input shape of
    :data:`gradsparse.fl.config.MODEL_INPUTS` and refuse another channel count."""
    if name == "tiny":
        return Tiny(num_classes, 3 if in_channels is None else in_channels)
    own = 1 if name == "evofed-fmnist" else 3
    if in_channels is not None and in_channels != own:
        raise ArgumentError(f"in_channels: model {name!r} takes {own}-channel images, got {in_channels}")
    if name == "cnn":
        return CNN(num_classes)
    if name == "resnet18":
        return _torchvision_resnet18(num_classes) or ResNet18(num_classes)
    if name == "evofed-cnn":
        return EvoFedCNN(num_classes)
    if name == "evofed-fmnist":
        return EvoFedFMNIST(num_classes)
    raise ArgumentError(f"model: expected 'cnn', 'resnet18', 'tiny', 'evofed-cnn' or 'evofed-fmnist', got {name!r}")


def forward_flops(model: nn.Module, shape=(1, 3, 32, 32)) -> int:
    """FLOPs (2 per multiply-add) of one forward pass of conv and linear layers."""
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            total[0] += 2 * out.numel() * k
        elif isinstance(mod, nn.Linear):
            total[0] += 2 * out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(shape))
    finally:
        for h in hs:
            h.remove()
    return total[0]
