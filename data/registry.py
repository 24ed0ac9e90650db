"""The datasets load_dataset knows, by name."""

from __future__ import annotations

from data.cifar import CIFAR10, CIFAR100
from data.digits import DIGITS
from data.idx import FASHION_MNIST, MNIST
from data.imagefolder import IMAGEFOLDER
from data.reader import Reader

DATASETS: dict[str, Reader] = {
    "digits": DIGITS,
    "mnist": MNIST,
    "fashion_mnist": FASHION_MNIST,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "imagefolder": IMAGEFOLDER,
}
