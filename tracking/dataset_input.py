"""A job's dataset as MLflow run inputs: one input per split, as ``mlflow.log_input`` logs it.

Each split (train, validation when the job holds one out, test) is logged as an
``mlflow.data.NumpyDataset`` with

* ``name``: the dataset's name (``digits``, ``fashion_mnist``...), the same for every split;
* ``digest``: the first 16 hex digits of a SHA-256 over the split's images and labels, every
  byte of them (MLflow's own digest of a NumPy array reads only its first 10 000 values: a few
  images), with their shapes and dtypes;
* ``profile``: MLflow's, ``features_shape`` [N, C, H, W] and ``targets_shape`` [N] (N is the
  split's size);
* ``source``: the folder the data was read from (``local``), or, for a dataset with no folder
  (scikit-learn's bundled digits), the code that loaded it (``code``: the run's
  ``mlflow.source.*`` tags, tracking/source_tags.py; not MLflow's default, which adds the git
  remote's URL), with any ``user:password@`` redacted;
* input tags ``mlflow.data.context`` = ``training`` / ``validation`` / ``testing`` (MLflow's
  context tag, shown in the UI's Dataset column) and ``num_samples`` = N.

The same split logged twice (a resumed job) is stored once: MLflow keeps one dataset per
experiment, name and digest, and one input per run and dataset.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from tracking.secrets import redact

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

CONTEXT_TAG = "mlflow.data.context"
SIZE_TAG = "num_samples"
# split name -> MLflow context (the values MLflow's documentation uses)
CONTEXTS = {"train": "training", "val": "validation", "test": "testing"}


def digest(x: np.ndarray, y: np.ndarray) -> str:
    """16 hex digits of SHA-256 over the bytes, shapes and dtypes of ``x`` and ``y``."""
    h = hashlib.sha256()
    for array in (x, y):
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return h.hexdigest()[:16]


def dataset_inputs(name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   source: str | None, code_tags: Mapping[str, str]) -> list[DatasetInput]:
    """One MLflow DatasetInput per split (keys of ``CONTEXTS``; (images, labels) each), read
    from ``source`` (a folder or URI; None: the code with ``code_tags``)."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.numpy_dataset import NumpyDataset
    from mlflow.entities import DatasetInput, InputTag

    unknown = set(splits) - set(CONTEXTS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; valid: {list(CONTEXTS)}")
    if source is None:
        origin = CodeDatasetSource(tags={k: redact(v) for k, v in code_tags.items()})
    else:
        with warnings.catch_warnings():
            # MLflow registers its local-artifact source class twice and warns, on every job,
            # that a local path "can be interpreted in multiple ways" (both are the same class)
            warnings.filterwarnings("ignore", message="The specified dataset source can be")
            origin = resolve_dataset_source(redact(source))
    inputs = []
    for split, (x, y) in splits.items():
        dataset = NumpyDataset(features=x, targets=y, source=origin, name=name,
                               digest=digest(x, y))
        # what mlflow.log_input logs: the dataset entity with its context tag
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[
            InputTag(CONTEXT_TAG, CONTEXTS[split]), InputTag(SIZE_TAG, str(len(y)))]))
    return inputs
