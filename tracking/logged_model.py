"""The trained model as an MLflow Model of the ``mlflow.pytorch`` flavour, in a form whose
loading runs no code.

**The form: ``serialization_format="pt2"`` (torch.export).** ``mlflow.pytorch`` can save a
module two ways (mlflow/pytorch/__init__.py, MLflow 3.17):

* ``"pickle"``: ``torch.save`` of the whole module with cloudpickle; loading unpickles it,
  i.e. runs whatever code the file names. Refused by this project's trust rule.
* ``"pt2"`` (MLflow 3's default outside Databricks): ``torch.export`` traces ``forward`` into
  a graph of ATen operators, saved by ``torch.export.save`` as a zip of JSON (the graph),
  raw tensor bytes (the weights) and a small ``torch.save`` of the traced sample input (two
  tensors, which load under ``weights_only=True``): no other pickled object. No project code
  is imported on load either: the graph is self-contained.

Models-from-code (a Python file logged with the model plus a state dict read with
``weights_only=True``) would keep the weights safe, but loading it runs that Python file from
the artifact: code again. So this module logs ``pt2``, never ``pickle``.

**Loading: ``load_pyfunc``, or MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false.** A ``.pt2`` file is
not safe by itself: ``torch.export.load`` unpickles a record without the weights-only
restriction when the archive's config says so, and the sample inputs after a failed
``weights_only=True`` try (torch/export/pt2_archive/_package.py,
torch/_export/serde/serialize.py), so a tampered artifact could run code. MLflow guards
against this only when pickle deserialisation is disallowed,
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``, which is *not* its default (3.17 defaults it to
true): then it first checks every record of the archive (JSON / text, raw
tensor bytes, or a ``torch.load(..., weights_only=True)`` payload; torch >= 2.10) and refuses
anything else (``mlflow.pytorch._validate_pt2_archive_is_pickle_free``). ``load_pyfunc`` loads
with that variable set to false; a plain ``mlflow.pyfunc.load_model`` is as safe only when the
user exports it.

**What predict expects and returns.** ``mlflow.pyfunc.load_model(uri).predict(x)`` takes
``x``: float32 (B, C, H, W) images *normalised as in training*,
``(pixel / 255 - mean) / std`` per channel (``data.normalize``; the mean and std are in the
model's metadata) and returns float32 (B, num_classes) class scores: the logits (softmax
gives probabilities). The signature says so (TensorSpecs with a free batch dimension), the
input example holds two normalised test images; the batch dimension is exported dynamic, so
any B >= 1 works.

**What is logged** (as ``mlflow.pytorch.log_model`` does, through the job's own retried
client rather than the fluent API's global tracking URI and active run): a LoggedModel in the
run's experiment (the UI's Models column) with the run's source tags, its files (MLmodel,
data/model.pt2, input example, requirements), the run's output link at the final epoch,
status READY (FAILED when the export fails); with ``register_as`` also a version of that
registered model. (``Model.log``, behind ``mlflow.pytorch.log_model``, would also create the
LoggedModel in the fluent API's current experiment unless it is given one, and tag it with
MLflow's resolved context tags, the git remote's URL, which may hold a token, among them.)
The requirements (torch pinned without its local label, ``+cpu``, as MLflow
pins it; MLflow adds itself) are given rather than inferred: inference would load the model in
a subprocess (seconds).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tracking.client import TrackingClient

MODEL_NAME = "model"  # the LoggedModel's name, as mlflow.pytorch.log_model(name="model")
SERIALIZATION = "pt2"
EXAMPLE_SIZE = 2  # images in the input example; > 1 so that torch.export keeps B dynamic
MODEL_VERSIONS_TAG = "mlflow.modelVersions"  # on a LoggedModel: its registered versions
ALLOW_PICKLE_ENV = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


class ModelExportError(RuntimeError):
    """The model could not be saved in the ``pt2`` form (torch.export does not support some
    operation of its forward): the job goes on, its run tagged, nothing else logged."""


@dataclass(frozen=True)
class LoggedModelInfo:
    """``model_id``; ``uri`` (``models:/<model_id>``, for mlflow.pyfunc.load_model); with a
    registration, ``registered`` = ``models:/<name>/<version>``."""

    model_id: str
    uri: str
    registered: str | None = None


def signature(channels: int, image_size: int, num_classes: int) -> Any:
    """float32 (-1, C, H, W) in, float32 (-1, num_classes) out. Unnamed: pyfunc turns a named
    input spec into a dict, which the pytorch flavour's predict refuses."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f32 = np.dtype(np.float32)
    return ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, channels, image_size, image_size))]),
        outputs=Schema([TensorSpec(f32, (-1, num_classes))]))


def save_pytorch_model(model: torch.nn.Module, example: torch.Tensor, path: str | Path,
                       mlflow_model: Any = None, metadata: Mapping[str, Any] | None = None
                       ) -> None:
    """``mlflow.pytorch.save_model`` of a CPU copy of ``model`` in eval mode (the job's model
    stays where it is), form ``pt2``, with ``signature`` and the first ``EXAMPLE_SIZE`` images of
    ``example`` (normalised float (B, C, H, W)) as input example. Raises ModelExportError."""
    import mlflow.pytorch
    import torch

    x = example[:EXAMPLE_SIZE].detach().to("cpu", torch.float32)
    try:
        cpu = copy.deepcopy(model).cpu().eval()
        with torch.no_grad():
            num_classes = int(cpu(x).shape[-1])
        mlflow.pytorch.save_model(
            cpu, str(path), mlflow_model=mlflow_model,
            signature=signature(x.shape[1], x.shape[-1], num_classes),
            input_example=x.numpy(), serialization_format=SERIALIZATION,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            metadata=dict(metadata or {}))
    except Exception as err:
        raise ModelExportError(f"{type(err).__name__}: {err}") from err


def log_pytorch_model(client: TrackingClient, *, experiment_id: str, run_id: str,
                      model: torch.nn.Module, example: torch.Tensor, step: int,
                      metadata: Mapping[str, Any], tags: Mapping[str, str],
                      register_as: str | None = None) -> LoggedModelInfo:
    """Log ``model`` to run ``run_id`` (see the module doc); every store call retried by
    ``client``. ModelExportError when the export fails (the LoggedModel is then FAILED)."""
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    call = client.call
    logged = call("create logged model", lambda c: c.create_logged_model(
        experiment_id, name=MODEL_NAME, source_run_id=run_id, tags=dict(tags)))
    model_id = logged.model_id
    with tempfile.TemporaryDirectory(prefix="mlflow-model-") as tmp:
        path = Path(tmp) / MODEL_NAME
        mlflow_model = Model(artifact_path=logged.artifact_location, run_id=run_id,
                             model_uuid=model_id, model_id=model_id)
        try:
            save_pytorch_model(model, example, path, mlflow_model, metadata)
        except ModelExportError:
            call("fail logged model", lambda c: c.finalize_logged_model(model_id, "FAILED"))
            raise
        call("log model files", lambda c: c.log_model_artifacts(model_id, str(path)))
    call("link model to run",
         lambda c: c.log_outputs(run_id, [LoggedModelOutput(model_id, step=step)]))
    call("finalize logged model", lambda c: c.finalize_logged_model(model_id, "READY"))
    registered = None
    if register_as:
        version = register(client, register_as, model_id, run_id)
        registered = f"models:/{register_as}/{version}"
    return LoggedModelInfo(model_id, f"models:/{model_id}", registered)


def register(client: TrackingClient, name: str, model_id: str, run_id: str) -> str:
    """A new version of registered model ``name`` (created if missing) from LoggedModel
    ``model_id``, linked both ways as ``mlflow.register_model`` links them; returns the
    version."""
    from mlflow.exceptions import MlflowException

    def create(c: Any) -> None:
        try:
            c.create_registered_model(name)
        except MlflowException as err:
            if err.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                raise

    client.call("create registered model", create)
    version = client.call("create model version", lambda c: c.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id)).version
    link = json.dumps([{"name": name, "version": version}])
    client.call("tag logged model", lambda c: c.set_logged_model_tags(
        model_id, {MODEL_VERSIONS_TAG: link}))
    return str(version)


@contextmanager
def pickle_refused() -> Iterator[None]:
    """MLflow's loaders refuse pickled payloads while inside (``ALLOW_PICKLE_ENV`` = false,
    read by MLflow at load time); the variable is restored after."""
    before = os.environ.get(ALLOW_PICKLE_ENV)
    os.environ[ALLOW_PICKLE_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ALLOW_PICKLE_ENV, None)
        else:
            os.environ[ALLOW_PICKLE_ENV] = before


def load_pyfunc(model_uri: str) -> Any:
    """``mlflow.pyfunc.load_model(model_uri)`` with pickled payloads refused: a ``pt2`` model
    whose archive holds anything but JSON, raw tensors and ``weights_only`` payloads raises
    MlflowException instead of running code (see the module doc). ``model_uri``: any MLflow
    model URI (``models:/<model_id>``, ``models:/<name>/<version>``, ``runs:/...``, a folder)
    of the tracking / registry URI set as usual (``mlflow.set_tracking_uri``)."""
    import mlflow.pyfunc

    with pickle_refused():
        return mlflow.pyfunc.load_model(model_uri)
