"""Models: the standard FL CIFAR-10 CNN, a CIFAR ResNet-18, EvoFed's CIFAR-10 CNN, and a
tiny model for tests."""
from __future__ import annotations

import torch
from torch import nn
from ..errors import ArgumentError

__all__ = ["CNN", "EvoFedCNN", "ResNet18", "Tiny", "build_model"]


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
    """ResNet-18 for 32x32 inputs: a 3x3 stem without max-pooling, stages of 64/128/256/512
    channels with two basic blocks each (11.17M parameters)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(_Block(cin, cout, stride), _Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Tiny(nn.Module):
    """A few thousand parameters: conv3x3(8, stride 2) - pool - fc(10). For tests."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
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


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    if name == "cnn":
        return CNN(num_classes)
    if name == "tiny":
        return Tiny(num_classes)
    if name == "resnet18":
        return _torchvision_resnet18(num_classes) or ResNet18(num_classes)
    if name == "evofed-cnn":
        return EvoFedCNN(num_classes)
    raise ArgumentError(f"model: expected 'cnn', 'resnet18', 'tiny' or 'evofed-cnn', got {name!r}")


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
