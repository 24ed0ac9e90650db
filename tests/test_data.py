"""The data package: readers on tiny real-format files, the cache, splits, batching and
batch augmentation, plus the real Fashion-MNIST install."""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from data import DATASETS, BatchAugment, DatasetError, batches, load_dataset, normalize
from data.beta import sample_beta
from data.cache import cache_path
from data.normalize import from_pixels, to_pixels
from data.randaugment import parse_spec
from data.resize import eval_crop, resize_images
from data.split import class_quotas, holdout
from sweep.validate import config_errors

REPO = Path(__file__).resolve().parents[1]
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- tiny real-format files


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """An IDX file of uint8 ``array``: magic 0x0000 08 <ndim>, big-endian dims, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I",
                                                                  *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_idx(root: Path, n_train: int = 6, n_test: int = 4, gz: bool = False, seed: int = 0
             ) -> dict[str, np.ndarray]:
    """The four MNIST files with random content in root; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(root / name, array, gz=gz)
    return arrays


def cifar_batch(n: int, label_key: bytes, num_classes: int, rng: np.random.Generator) -> dict:
    """A batch dict as in the real files: bytes keys, (n, 3072) uint8 data, list labels."""
    batch = {
        b"batch_label": b"testing batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key: rng.integers(0, num_classes, n).tolist(),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = rng.integers(0, 20, n).tolist()
    return batch


def make_cifar(root: Path, kind: str, protocol: int = 2) -> Path:
    """A tiny CIFAR-10 (5 x 3 train, 2 test) or CIFAR-100 (4 train, 3 test) tree under root;
    returns the dataset folder."""
    rng = np.random.default_rng(1)
    if kind == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = {f"data_batch_{k}": cifar_batch(3, b"labels", 10, rng) for k in range(1, 6)}
        files["test_batch"] = cifar_batch(2, b"labels", 10, rng)
        files["batches.meta"] = {b"label_names": [f"class{k}".encode() for k in range(10)],
                                 b"num_cases_per_batch": 3}
    else:
        folder = root / "cifar-100-python"
        files = {"train": cifar_batch(4, b"fine_labels", 100, rng),
                 "test": cifar_batch(3, b"fine_labels", 100, rng),
                 "meta": {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
                          b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]}}
    folder.mkdir(parents=True)
    for name, obj in files.items():
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
    return folder


def make_imagefolder(root: Path) -> None:
    """Two classes of PNG/JPEG images of different sizes and modes; val holds class b only.

    Class a is red in its centred square with green side bands (which the centre crop must
    cut away); class b is blue.
    """
    def banded(w: int, h: int) -> Image.Image:
        img = np.zeros((h, w, 3), dtype=np.uint8)
        img[..., 1] = 255
        side = min(w, h)
        x0, y0 = (w - side) // 2, (h - side) // 2
        img[y0:y0 + side, x0:x0 + side] = (255, 0, 0)
        return Image.fromarray(img)

    for split, cls in (("train", "a"), ("train", "b"), ("val", "b")):
        (root / split / cls).mkdir(parents=True)
    banded(60, 20).save(root / "train/a/wide.png")
    banded(20, 44).save(root / "train/a/tall.PNG")
    Image.new("RGB", (33, 17), (0, 0, 255)).save(root / "train/b/small.jpg", quality=95)
    Image.new("RGB", (16, 16), (0, 0, 255)).save(root / "train/b/tiny.jpeg", quality=95)
    Image.new("L", (25, 25), 200).save(root / "val/b/gray.png")  # grey: 1 channel on disk
    (root / "train/a/notes.txt").write_text("not an image")


def raising_reader(name: str):
    """DATASETS[name] whose decode fails: proves a load was served by the cache."""
    def decode(root, image_size):
        raise AssertionError("decoded although the cache was fresh")
    return replace(DATASETS[name], decode=decode)


# ---------------------------------------------------------------- digits


def test_digits_shapes_split_and_stats(tmp_path):
    data = load_dataset("digits", cache_dir=str(tmp_path))
    assert data.train_x.shape == (1437, 1, 8, 8) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (360, 1, 8, 8) and data.test_y.dtype == torch.int64
    assert data.train_y.shape == (1437,) and data.val_x is None and data.val_y is None
    assert (data.num_classes, data.channels, data.image_size) == (10, 1, 8)
    assert data.classes == [str(k) for k in range(10)]
    assert int(data.train_x.max()) == 255  # 16 scaled to 255
    # stratified: 36 test images per class (digits has 178..183 per class)
    assert data.test_y.bincount().tolist() == pytest.approx([36] * 10, abs=1)
    x = data.train_x.double() / 255
    assert data.mean[0] == pytest.approx(x.mean().item())
    assert data.std[0] == pytest.approx(x.std(unbiased=False).item())
    # the split does not depend on the seed or the cache
    again = load_dataset("digits", seed=5, cache_dir=str(tmp_path / "other"))
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.test_y, data.test_y)


def test_val_split_deterministic_and_disjoint(tmp_path):
    a = load_dataset("digits", val_fraction=0.2, val_seed=3, cache_dir=str(tmp_path))
    b = load_dataset("digits", val_fraction=0.2, val_seed=3, cache_dir=str(tmp_path))
    c = load_dataset("digits", val_fraction=0.2, val_seed=4, cache_dir=str(tmp_path))
    assert (len(a.train_y), len(a.val_y)) == (1150, 287)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_y, b.train_y)
    assert not torch.equal(a.val_x, c.val_x)
    # on row ids: the two parts are disjoint, cover everything and keep the original order
    ids = torch.arange(100)
    train, _, val, _ = holdout(ids, ids, 0.25, seed=3)
    assert len(val) == 25 and not set(train.tolist()) & set(val.tolist())
    assert sorted(train.tolist() + val.tolist()) == list(range(100))
    assert torch.equal(train, train.sort().values)


def test_val_split_is_stratified_and_the_same_for_every_run_seed(tmp_path):
    full = load_dataset("digits", cache_dir=str(tmp_path))
    runs = [load_dataset("digits", val_fraction=0.1, seed=s, cache_dir=str(tmp_path))
            for s in (0, 1, 7)]  # val_seed 0 (the default): one split for every run
    for other in runs[1:]:
        assert torch.equal(other.val_x, runs[0].val_x) and torch.equal(other.train_y,
                                                                       runs[0].train_y)
    data = runs[0]
    per_class, val_per_class = full.train_y.bincount(), data.val_y.bincount(minlength=10)
    # 1437 -> 144 held out; each class floor or ceil of its share 0.1 n_k (largest remainder)
    assert len(data.val_y) == 144 and len(data.train_y) == 1293
    share = per_class.double() * 144 / 1437
    assert ((val_per_class == share.floor()) | (val_per_class == share.ceil())).all()
    assert torch.equal(data.train_y.bincount(minlength=10) + val_per_class, per_class)
    # disjoint and together the whole train split: match images back to their rows
    rows = {bytes(img.numpy()): i for i, img in enumerate(full.train_x)}
    val_rows = [rows[bytes(img.numpy())] for img in data.val_x]
    train_rows = [rows[bytes(img.numpy())] for img in data.train_x]
    assert not set(val_rows) & set(train_rows)
    assert len(set(val_rows) | set(train_rows)) == len(set(rows.values()))
    # val_seed null: the run's seed draws the split
    a, b = (load_dataset("digits", val_fraction=0.1, val_seed=None, seed=s,
                         cache_dir=str(tmp_path)) for s in (0, 1))
    assert torch.equal(a.val_x, data.val_x) and not torch.equal(b.val_x, data.val_x)


def test_class_quotas_round_by_largest_remainder():
    # shares 0.3 * (5, 3, 2) = 1.5, 0.9, 0.6: floors 1, 0, 0 sum to 1, so 2 more go to the
    # largest remainders (0.9, 0.6); the total is n_val and every class gets floor or ceil
    assert class_quotas(torch.tensor([5, 3, 2]), 3).tolist() == [1, 1, 1]
    assert class_quotas(torch.tensor([6000] * 10), 6000).tolist() == [600] * 10
    assert class_quotas(torch.tensor([4, 4, 4]), 2).tolist() == [1, 1, 0]  # ties: class order
    y = torch.tensor([0] * 9 + [1] * 3)
    _, train_y, _, val_y = holdout(torch.arange(12), y, 0.25, seed=0)
    assert val_y.tolist() == [0, 0, 1] and train_y.bincount().tolist() == [7, 2]


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(val_seed=1.5), r"val_seed must be an integer, or null for the run's seed, got 1.5"),
    (dict(val_seed=True), "val_seed must be an integer"),
    (dict(eval_crop_pct=0.0), r"eval_crop_pct must be null \(no crop\) or in \(0, 1\]"),
    (dict(eval_crop_pct=1.5), "eval_crop_pct .* got 1.5"),
])
def test_split_and_crop_arguments_are_checked(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("digits", cache_dir=str(tmp_path), **kwargs)


def test_eval_crop_resizes_then_cuts_out_the_centre(tmp_path):
    # timm's eval transform at crop_pct 0.5: 16 px -> resize to 32, centre 16 x 16: the
    # middle half of the image, upscaled 2x
    x = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    x[..., 4:12, 4:12] = 200
    out = eval_crop(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert (out[..., 1:15, 1:15] == 200).all() and out.float().mean() > 180
    assert torch.equal(eval_crop(x, 1.0), x)
    # load_dataset crops the test and validation images only, after the split
    plain = load_dataset("digits", val_fraction=0.1, cache_dir=str(tmp_path))
    crop = load_dataset("digits", val_fraction=0.1, eval_crop_pct=0.875,
                        cache_dir=str(tmp_path))
    assert torch.equal(crop.train_x, plain.train_x)
    assert torch.equal(crop.test_x, eval_crop(plain.test_x, 0.875))
    assert torch.equal(crop.val_x, eval_crop(plain.val_x, 0.875))
    assert not torch.equal(crop.test_x, plain.test_x)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_val_fraction_out_of_range(tmp_path, bad):
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        load_dataset("digits", val_fraction=bad, cache_dir=str(tmp_path))


def test_max_train_max_test_take_prefixes(tmp_path):
    full = load_dataset("digits", cache_dir=str(tmp_path))
    small = load_dataset("digits", max_train=50, max_test=7, cache_dir=str(tmp_path))
    assert torch.equal(small.train_x, full.train_x[:50])
    assert torch.equal(small.test_y, full.test_y[:7])
    assert small.mean == full.mean  # statistics of the full train split


def test_to_moves_every_tensor(tmp_path):
    data = load_dataset("digits", val_fraction=0.1, cache_dir=str(tmp_path)).to("meta")
    tensors = [data.train_x, data.train_y, data.test_x, data.test_y, data.val_x, data.val_y]
    assert all(t.device.type == "meta" for t in tensors)
    assert data.classes and data.mean  # metadata kept


def test_resize_to_other_image_size(tmp_path):
    data = load_dataset("digits", image_size=20, cache_dir=str(tmp_path))
    assert data.train_x.shape == (1437, 1, 20, 20) and data.train_x.dtype == torch.uint8
    half = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    half[..., :4] = 255  # left half white
    up = resize_images(half, 16)
    assert up.shape == (2, 1, 16, 16) and up.dtype == torch.uint8
    assert (up[..., :7] == 255).all() and (up[..., 9:] == 0).all()
    assert (resize_images(torch.full((1, 3, 9, 9), 77, dtype=torch.uint8), 4) == 77).all()


# ---------------------------------------------------------------- IDX (MNIST, Fashion-MNIST)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_reader(tmp_path, gz):
    arrays = make_idx(tmp_path / "mnist", gz=gz)
    data = load_dataset("mnist", root=str(tmp_path / "mnist"), cache_dir=str(tmp_path / "c"))
    assert data.train_x.shape == (6, 1, 28, 28) and data.test_x.shape == (4, 1, 28, 28)
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.train_y.dtype == torch.int64 and data.mean == (0.1307,)
    resized = load_dataset("mnist", root=str(tmp_path / "mnist"), image_size=32,
                           cache_dir=str(tmp_path / "c"))
    assert resized.train_x.shape == (6, 1, 32, 32) and resized.image_size == 32


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_file_names_it(tmp_path, gz):
    make_idx(tmp_path, gz=gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    path = tmp_path / name
    if gz:
        path.write_bytes(path.read_bytes()[:300])  # a cut-off download
        match = "truncated"
    else:
        path.write_bytes(path.read_bytes()[:1000])
        match = r"expected 4720 bytes, found 1000"  # 16 + 6 * 28 * 28
    with pytest.raises(DatasetError, match=match) as err:
        load_dataset("mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert str(path) in str(err.value)


def test_idx_wrong_magic_and_count_mismatch(tmp_path):
    make_idx(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros(5, dtype=np.uint8))  # 6 images, 5 labels
    with pytest.raises(DatasetError, match="holds 6 images but .* holds 5 labels"):
        load_dataset("mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    write_idx(labels, np.zeros((6, 1), dtype=np.uint8))  # 2-D: magic 0x00000802
    with pytest.raises(DatasetError, match="magic number 0x00000802, expected 0x00000801"):
        load_dataset("mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_fashion_mnist_real(tmp_path):
    data = load_dataset("fashion_mnist", cache_dir=str(tmp_path), num_classes=10, channels=1)
    assert data.train_x.shape == (60000, 1, 28, 28) and data.test_x.shape == (10000, 1, 28, 28)
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.train_y.bincount().tolist() == [6000] * 10
    assert data.train_y[:5].tolist() == [9, 0, 0, 3, 0]  # the published first labels
    # its published statistics, which the loader reports, are those of the data
    assert data.train_x.float().mean().item() / 255 == pytest.approx(data.mean[0], abs=1e-3)
    cached = load_dataset("fashion_mnist", cache_dir=str(tmp_path))
    assert torch.equal(cached.train_x, data.train_x) and torch.equal(cached.test_y, data.test_y)


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("point_at_folder", [False, True])
def test_cifar10_reader(tmp_path, protocol, point_at_folder):
    folder = make_cifar(tmp_path, "cifar10", protocol)
    root = folder if point_at_folder else tmp_path
    data = load_dataset("cifar10", root=str(root), cache_dir=str(tmp_path / "c"))
    assert data.train_x.shape == (15, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    assert data.classes == [f"class{k}" for k in range(10)] and data.channels == 3
    with open(folder / "data_batch_2", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    # row layout: 1024 red, 1024 green, 1024 blue values, each image row by row
    first = batch[b"data"][0]
    assert np.array_equal(data.train_x[3, 1].numpy(), first[1024:2048].reshape(32, 32))
    assert data.train_y[3:6].tolist() == batch[b"labels"]


def test_cifar100_uses_fine_labels(tmp_path):
    folder = make_cifar(tmp_path, "cifar100")
    data = load_dataset("cifar100", root=str(tmp_path), cache_dir=str(tmp_path / "c"),
                        num_classes=100)
    with open(folder / "test", "rb") as f:
        test = pickle.load(f, encoding="bytes")
    assert data.num_classes == 100 and data.classes[7] == "fine7"
    assert data.test_y.tolist() == test[b"fine_labels"] != test[b"coarse_labels"]
    assert data.train_x.shape == (4, 3, 32, 32)


def test_cifar_corrupt_file_names_it(tmp_path):
    folder = make_cifar(tmp_path, "cifar10")
    batch = folder / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DatasetError, match="cannot unpickle") as err:
        load_dataset("cifar10", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert str(batch) in str(err.value)


def test_cifar_pickle_cannot_run_code(tmp_path):
    folder = make_cifar(tmp_path, "cifar10")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(DatasetError, match="posix.mkdir is not allowed|os.mkdir is not allowed"):
        load_dataset("cifar10", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert not marker.exists()


# ---------------------------------------------------------------- image folder


def test_imagefolder_reader(tmp_path):
    make_imagefolder(tmp_path / "imgs")
    data = load_dataset("imagefolder", root=str(tmp_path / "imgs"), image_size=12,
                        cache_dir=str(tmp_path / "c"), num_classes=2)
    assert data.classes == ["a", "b"] and data.mean == (0.485, 0.456, 0.406)
    assert data.train_x.shape == (4, 3, 12, 12) and data.train_x.dtype == torch.uint8
    assert data.train_y.tolist() == [0, 0, 1, 1]  # sorted classes, sorted files
    # the centre crop keeps the red square and drops the green bands of wide/tall images
    # (bicubic weights reach one pixel past the crop, as resize-then-crop's would)
    red = torch.tensor([255, 0, 0], dtype=torch.float32)
    inner = data.train_x[:2, :, 1:-1, 1:-1].float().permute(0, 2, 3, 1)
    assert (inner - red).abs().max() <= 2 and data.train_x[:2, 1].float().mean() < 8
    blue = data.train_x[2:].float().mean(dim=(2, 3))
    assert blue[:, 2].min() > 240 and blue[:, :2].max() < 15  # JPEG: nearly exact
    # val labelled with train's class list; a grey image becomes 3 equal channels
    assert data.test_y.tolist() == [1] and data.test_x.shape == (1, 3, 12, 12)
    assert (data.test_x == 200).all()


def test_imagefolder_class_count_checked(tmp_path):
    make_imagefolder(tmp_path)
    with pytest.raises(DatasetError, match=r"has 2 classes .*num_classes=100"):
        load_dataset("imagefolder", root=str(tmp_path), cache_dir=str(tmp_path / "c"),
                     num_classes=100)
    with pytest.raises(DatasetError, match=r"3 channel\(s\), but channels=1"):
        load_dataset("imagefolder", root=str(tmp_path), cache_dir=str(tmp_path / "c"),
                     channels=1)


def test_imagefolder_val_class_unknown_to_train(tmp_path):
    make_imagefolder(tmp_path)
    (tmp_path / "val" / "zebra").mkdir()
    with pytest.raises(DatasetError, match=r"class folders that train/ lacks: \['zebra'\]"):
        load_dataset("imagefolder", root=str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_imagefolder_corrupt_image_names_it(tmp_path):
    make_imagefolder(tmp_path)
    bad = tmp_path / "train" / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match="cannot decode") as err:
        load_dataset("imagefolder", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert str(bad) in str(err.value)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("name, layout, how", [
    ("fashion_mnist", "train-images-idx3-ubyte[.gz]", "apt-get install dataset-fashion-mnist"),
    ("mnist", "t10k-labels-idx1-ubyte[.gz]", "yann.lecun.com"),
    ("cifar10", "cifar-10-batches-py/data_batch_1", "cifar-10-python.tar.gz"),
    ("cifar100", "cifar-100-python/meta", "www.cs.toronto.edu/~kriz/cifar.html"),
    ("imagefolder", "train/<class>/<image>.{jpg,jpeg,png}", "one folder per WordNet id"),
])
def test_missing_root_error_names_path_layout_and_source(tmp_path, name, layout, how):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as err:
        load_dataset(name, root=str(missing), cache_dir=str(tmp_path / "c"))
    message = str(err.value)
    assert str(missing) in message and layout in message and how in message


def test_missing_file_is_named(tmp_path):
    make_idx(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetError, match=r"lacks t10k-images-idx3-ubyte\[\.gz\]"):
        load_dataset("fashion_mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'.*'cifar10'.*'digits'"):
        load_dataset("svhn")


# ---------------------------------------------------------------- cache


def test_cache_serves_second_load(tmp_path, monkeypatch):
    make_idx(tmp_path / "src", gz=True)
    kw = dict(root=str(tmp_path / "src"), image_size=30)
    first = load_dataset("mnist", cache_dir=str(tmp_path / "c"), **kw)
    monkeypatch.setitem(DATASETS, "mnist", raising_reader("mnist"))
    second = load_dataset("mnist", cache_dir=str(tmp_path / "c"), **kw)
    monkeypatch.undo()
    fresh = load_dataset("mnist", cache_dir=str(tmp_path / "fresh"), **kw)
    for t in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(second, t), getattr(fresh, t))
        assert torch.equal(getattr(first, t), getattr(fresh, t))
    assert second.classes == fresh.classes
    cached = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(cached) == 2 and all(n.endswith(".pt") for n in cached)  # no temp files left


def test_cache_rebuilt_when_source_changes(tmp_path, caplog):
    arrays = make_idx(tmp_path)
    load_dataset("mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    images = arrays["train-images-idx3-ubyte"]
    images[0] = 255 - images[0]  # same size, new content
    path = write_idx(tmp_path / "train-images-idx3-ubyte", images)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        data = load_dataset("mnist", root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    assert np.array_equal(data.train_x[0, 0].numpy(), images[0])
    assert "stale" in caplog.text and "rebuilding" in caplog.text


def test_corrupt_cache_is_rebuilt_not_trusted(tmp_path, caplog):
    make_idx(tmp_path)
    cache = tmp_path / "c"
    good = load_dataset("mnist", root=str(tmp_path), cache_dir=str(cache))
    train_file = cache_path(cache, "mnist", 28, tmp_path, "train")
    train_file.write_bytes(b"PK\x03\x04 garbage, half a zip")
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        data = load_dataset("mnist", root=str(tmp_path), cache_dir=str(cache))
    assert "unreadable" in caplog.text
    assert torch.equal(data.train_x, good.train_x)
    assert torch.load(train_file, weights_only=True)["x"].shape == (6, 1, 28, 28)  # rewritten


def test_cache_with_wrong_dtype_is_rebuilt(tmp_path, caplog):
    make_idx(tmp_path)
    cache = tmp_path / "c"
    good = load_dataset("mnist", root=str(tmp_path), cache_dir=str(cache))
    test_file = cache_path(cache, "mnist", 28, tmp_path, "test")
    blob = torch.load(test_file, weights_only=True)
    blob["x"] = blob["x"].float()  # right key, wrong content
    torch.save(blob, test_file)
    with caplog.at_level(logging.WARNING, logger="data.cache"):
        data = load_dataset("mnist", root=str(tmp_path), cache_dir=str(cache))
    assert "wrong shape or dtype" in caplog.text
    assert data.test_x.dtype == torch.uint8 and torch.equal(data.test_x, good.test_x)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXERLAB_CACHE", str(tmp_path / "env-cache"))
    load_dataset("digits", max_train=3)
    assert len(list((tmp_path / "env-cache").glob("digits-8px-*-train.pt"))) == 1


# ---------------------------------------------------------------- normalize and batches


def test_normalize():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    out = normalize(x, (0.5, 0.2, 0.0), (0.5, 0.1, 2.0))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == pytest.approx([-1.0, 0.0, 0.5], abs=1e-6)
    with pytest.raises(ValueError, match="one mean and std per channel"):
        normalize(x, (0.5,), (0.5,))


def test_batches_cover_everything_once():
    x, y = torch.arange(10).view(10, 1), torch.arange(10)
    plain = list(batches(x, y, 4, shuffle=False))
    assert [b[1].tolist() for b in plain] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = list(batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    order = torch.cat([b[1] for b in shuffled]).tolist()
    assert sorted(order) == list(range(10)) and order != list(range(10))
    assert all(torch.equal(bx[:, 0], by) for bx, by in shuffled)  # rows stay paired
    again = list(batches(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert torch.cat([b[1] for b in again]).tolist() == order
    dropped = list(batches(x, y, 4, shuffle=True, drop_last=True,
                           generator=torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in dropped] == [4, 4]


# ---------------------------------------------------------------- augmentation


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_augment_disabled_is_identity():
    x, y = torch.randn(5, 3, 8, 8), torch.tensor([0, 1, 2, 3, 1])
    out, target = BatchAugment(num_classes=4)(x, y, gen())
    assert out is x and torch.equal(target, F.one_hot(y, 4).float())
    _, smooth = BatchAugment(label_smoothing=0.2, num_classes=4)(x, y, gen())
    assert smooth[0].tolist() == pytest.approx([0.85, 0.05, 0.05, 0.05])


def test_augment_everything_on_shapes_and_reproducible():
    aug = BatchAugment(crop_padding=2, flip=True, mixup=0.8, cutmix=1.0, erase=0.5,
                       label_smoothing=0.1, num_classes=7)
    x, y = torch.randn(16, 3, 12, 12), torch.randint(0, 7, (16,), generator=gen(9))
    out, target = aug(x, y, gen(1))
    assert out.shape == x.shape and target.shape == (16, 7) and target.dtype == torch.float32
    assert torch.allclose(target.sum(1), torch.ones(16))
    out2, target2 = aug(x, y, gen(1))
    assert torch.equal(out, out2) and torch.equal(target, target2)
    out3, _ = aug(x, y, gen(2))
    assert not torch.equal(out, out3)


def test_crop_shifts_content_with_zero_padding():
    x = torch.zeros(64, 1, 7, 7)
    x[:, 0, 3, 3] = 1.0  # one bright pixel at the centre
    out, _ = BatchAugment(crop_padding=2, num_classes=2)(x, torch.zeros(64, dtype=torch.long),
                                                         gen())
    shifts = set()
    for img in out[:, 0]:
        (r, c), = torch.nonzero(img).tolist()  # still exactly one bright pixel
        shifts.add((r - 3, c - 3))
    assert shifts <= {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    assert len(shifts) > 10  # per-sample offsets, not one per batch
    # content pushed past the border is replaced by the fill, 0 by default
    edge = torch.zeros(64, 1, 7, 7)
    edge[:, 0, :, 0] = 1.0
    out, _ = BatchAugment(crop_padding=2, num_classes=2)(edge, torch.zeros(64, dtype=torch.long),
                                                         gen())
    assert out.sum(dim=(1, 2, 3)).min() == 0  # left column shifted out for some samples


def test_flip_flips_about_half():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(200, 2, 3, 5).contiguous()
    out, _ = BatchAugment(flip=True, num_classes=2)(x, torch.zeros(200, dtype=torch.long), gen())
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped ^ kept).all() and 70 < int(flipped.sum()) < 130


@pytest.mark.parametrize("mixup, cutmix", [(1.0, 0.0), (0.0, 1.0)])
def test_mix_labels_follow_pixels(mixup, cutmix):
    """Sample b is constant b with label b, so each output pixel shows which sample it came
    from and the targets must weigh the classes as the pixels do."""
    b = 8
    x = torch.arange(float(b)).view(b, 1, 1, 1).expand(b, 1, 16, 16).contiguous()
    y = torch.arange(b)
    for seed in range(5):
        out, target = BatchAugment(mixup=mixup, cutmix=cutmix, num_classes=b)(x, y, gen(seed))
        assert torch.allclose(target.sum(1), torch.ones(b))
        # the class weights reproduce the mean pixel value
        assert torch.allclose(out.mean(dim=(1, 2, 3)), target @ torch.arange(float(b)),
                              atol=1e-5)
        partner = target[0, b - 1]  # sample 0 is mixed with the last one
        if cutmix:  # pixels are copied, not blended: the share of foreign pixels is 1 - lam
            assert torch.isin(out[0], torch.tensor([0.0, b - 1.0])).all()
            assert (out[0] == b - 1).float().mean() == pytest.approx(partner.item())


def test_mix_prob_zero_never_mixes():
    x, y = torch.randn(6, 1, 4, 4), torch.arange(6)
    out, target = BatchAugment(mixup=1.0, cutmix=1.0, mix_prob=0.0, num_classes=6)(x, y, gen())
    assert torch.equal(out, x) and torch.equal(target, torch.eye(6))


def test_erase_fills_a_rectangle_per_sample():
    x = torch.full((50, 3, 20, 20), 100.0)  # noise is never exactly 100
    out, _ = BatchAugment(erase=1.0, num_classes=2)(x, torch.zeros(50, dtype=torch.long), gen())
    changed = (out != x).any(1)  # (B, H, W)
    areas = changed.flatten(1).float().mean(1)
    assert (areas > 0).all() and areas.max() <= 0.5
    for mask in changed:  # the changed pixels form one solid rectangle
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        assert int(mask.sum()) == len(rows) * len(cols)
    half, _ = BatchAugment(erase=0.5, num_classes=2)(x, torch.zeros(50, dtype=torch.long), gen())
    assert 10 < int((half != x).flatten(1).any(1).sum()) < 40


def test_random_resized_crop_boxes_follow_timm():
    """Channel 0 holds the column index, channel 1 the row index: each output's value range
    is its box. Boxes hold 8 % to 100 % of the area at aspect ratio 3/4 to 4/3 (+- rounding),
    vary per sample, and the resize reads inside the box only."""
    b, n = 400, 32
    cols = torch.arange(float(n)).expand(n, n)
    x = torch.stack([cols, cols.T]).expand(b, 2, n, n).contiguous()
    out, _ = BatchAugment(random_resized_crop=True, num_classes=2)(
        x, torch.zeros(b, dtype=torch.long), gen())
    assert out.shape == x.shape
    left, right = out[:, 0].amin((1, 2)), out[:, 0].amax((1, 2))
    top, bottom = out[:, 1].amin((1, 2)), out[:, 1].amax((1, 2))
    box_w, box_h = right - left + 1, bottom - top + 1
    area = box_w * box_h / n ** 2
    assert area.min() >= 0.06 and area.max() <= 1.0 and area.std() > 0.15
    assert (0.7 < box_w / box_h).all() and (box_w / box_h < 1.45).all()
    assert left.min() >= 0 and right.max() <= n - 1 and len(set(left.tolist())) > 10
    assert (out[:, 0].diff(dim=2) >= 0).all()  # upscaled, never mirrored or shuffled
    # timm's order: crop first; padded crop and resized crop exclude each other
    with pytest.raises(ValueError, match="random_resized_crop=true is the crop.*crop_padding=0"):
        BatchAugment(random_resized_crop=True, crop_padding=4, num_classes=2)


def test_randaugment_runs_on_pixel_values_and_is_reproducible():
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    pixels = torch.randint(0, 256, (16, 3, 12, 12), generator=gen(4), dtype=torch.uint8)
    x, y = normalize(pixels, mean, std), torch.zeros(16, dtype=torch.long)
    aug = BatchAugment(randaugment="rand-m9-mstd0.5-inc1", num_classes=2, mean=mean, std=std)
    assert aug.randaugment.fill == (125.0, 122.0, 115.0)  # timm: round(255 * mean)
    out, _ = aug(x, y, gen(1))
    again, _ = aug(x, y, gen(1))
    assert torch.equal(out, again) and not torch.equal(out, x)
    back = to_pixels(out, mean, std)  # still whole pixel values, normalised as the test set
    assert torch.allclose(back, (out * torch.tensor(std).view(1, 3, 1, 1)
                                 + torch.tensor(mean).view(1, 3, 1, 1)) * 255, atol=1e-3)
    assert torch.allclose(from_pixels(back, mean, std), out, atol=1e-6)
    unchanged = (out == x).flatten(1).all(1)  # ~ 0.5^2 of the images draw no op
    assert 0 < int(unchanged.sum()) < 12
    with pytest.raises(ValueError, match="needs the images' normalisation: pass mean= and std="):
        BatchAugment(randaugment="rand-m9-mstd0.5-inc1", num_classes=2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(crop_padding=-1), "crop_padding"),
    (dict(mixup=-0.5), "mixup"),
    (dict(erase=1.5), r"erase is a probability, must be in \[0, 1\], got 1.5"),
    (dict(switch_prob=-0.1), "switch_prob"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(num_classes=0), "num_classes"),
    (dict(random_resized_crop=1), "random_resized_crop must be a bool, got 1"),
    (dict(randaugment="rand-m9-w0"), "unknown RandAugment spec 'rand-m9-w0'"),
])
def test_augment_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BatchAugment(**{"num_classes": 3, **kwargs})


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_beta_sampler_matches_moments(alpha):
    s = sample_beta(alpha, (40000,), gen(int(alpha * 10)), "cpu").double()
    assert s.min() >= 0 and s.max() <= 1
    assert s.mean().item() == pytest.approx(0.5, abs=0.01)
    assert s.var().item() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.03)


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "data").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_data_configs_fit_the_api(path, tmp_path):
    cfg = OmegaConf.load(path)
    assert cfg.name == path.stem and cfg.name in DATASETS
    reader = DATASETS[cfg.name]
    assert (cfg.channels, cfg.image_size) == (reader.channels, reader.default_image_size)
    BatchAugment(**OmegaConf.to_container(cfg.augment), num_classes=cfg.num_classes)
    assert (cfg.val_fraction, cfg.val_seed, cfg.eval_crop_pct) == (0.1, 0, None)
    assert (cfg.augment.random_resized_crop, cfg.augment.randaugment) == (False, None)
    if not OmegaConf.is_missing(cfg, "root") and cfg.name != "mnist":  # mnist is not installed
        data = load_dataset(cfg.name, root=cfg.root, image_size=cfg.image_size,
                            num_classes=cfg.num_classes, channels=cfg.channels, max_train=10,
                            max_test=10, cache_dir=str(tmp_path), val_fraction=cfg.val_fraction,
                            val_seed=cfg.val_seed, eval_crop_pct=cfg.eval_crop_pct)
        assert data.num_classes == cfg.num_classes and data.sizes["val"] == 1


def compose_job(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_paper_profile_data_is_timms_transform(tmp_path):
    cfg = compose_job("profile=paper", f"data.root={tmp_path}")
    aug = cfg.data.augment
    assert (aug.random_resized_crop, aug.crop_padding, aug.flip) == (True, 0, True)
    assert (aug.randaugment, aug.switch_prob, cfg.data.eval_crop_pct) == (
        "rand-m9-mstd0.5-inc1", 0.5, 0.875)
    built = BatchAugment(**OmegaConf.to_container(aug), num_classes=10, mean=(0.5,) * 3,
                         std=(0.25,) * 3)
    assert built.randaugment.spec == parse_spec("rand-m9-mstd0.5-inc1")
    errors = config_errors(cfg)  # only: no CIFAR-10 at data.root
    assert len(errors) == 1 and errors[0].startswith("cifar10: ")


def test_selection_on_validation_is_checked_before_any_job():
    assert compose_job().objective == "val_acc"
    assert compose_job("+experiment=search").objective == "val_acc"
    assert config_errors(compose_job("data=digits")) == []
    errors = config_errors(compose_job("data=digits", "data.val_fraction=0"))
    assert errors == ["objective='val_acc' needs a validation split, but data.val_fraction=0; "
                      "set data.val_fraction in (0, 1) (e.g. 0.1) or choose an objective other "
                      "than val_acc / val_loss"]
    assert config_errors(compose_job("data=digits", "data.val_fraction=0",
                                     "objective=test_acc")) == []
    # a non-integer val_seed is refused earlier, at composition (sweep/config_schema.py)
    errors = config_errors(compose_job("data=digits", "data.augment.randaugment=rand-m9-x",
                                       "data.eval_crop_pct=2"))
    assert len(errors) == 2 and "unknown RandAugment spec 'rand-m9-x'" in errors[1]
    assert errors[0].startswith("data.eval_crop_pct: eval_crop_pct must be null")
