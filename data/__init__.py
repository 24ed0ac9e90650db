"""Image datasets held in memory as uint8 tensors, batched and augmented on any device.

    data = load_dataset("fashion_mnist", image_size=32, val_fraction=0.1)
    augment = BatchAugment(crop_padding=2, flip=True, num_classes=data.num_classes)
    for xb, yb in batches(data.train_x, data.train_y, 256, shuffle=True, generator=g):
        x, y_soft = augment(normalize(xb, data.mean, data.std), yb, g)
"""

from data.augment import BatchAugment
from data.batches import batches
from data.dataset import ImageData
from data.load import DATASETS, load_dataset
from data.normalize import normalize
from data.reader import DatasetError

__all__ = [
    "DATASETS", "BatchAugment", "DatasetError", "ImageData", "batches", "load_dataset",
    "normalize",
]
