"""The config schema: one dataclass per config group (model, data, trainer, tracking), so Hydra
refuses an unknown key or a value of the wrong type while it composes, before any job exists.

Each group's YAML files merge onto their dataclass through their defaults list (Hydra's
"structured config as schema" pattern)::

    # conf/trainer/default.yaml           (conf/model_base/mixer.yaml: /model_schema@_here_)
    defaults:
      - /trainer_schema@_here_
      - _self_

The dataclasses are stored in Hydra's ConfigStore under top-level names (``model_schema``,
``data_schema``, ``trainer_schema``, ``tracking_schema``; not as a group, which ``--help``
would list as options) when this module is imported. sweep/__init__.py imports it, and Hydra
imports ``sweep`` before it composes anything (its plugin scan, at the start of every
``hydra.main``, ``hydra.compose`` or sweep, imports hydra_plugins/, whose sweepers import
sweep.prelaunch), so every composition of conf/ has the schema. (Naming this module in
conf/config.yaml's ``hydra.searchpath`` as ``structured://sweep.config_schema`` would import it
too, but Hydra 1.3 then serves its own ``hydra/config`` from that source and refuses it as an
"automatically matched schema".) It imports only the standard library, OmegaConf and Hydra's
ConfigStore, so ``--help`` stays fast.

Fields, types and defaults are those of the YAML files: a key the files set per option (the
dataset's name, size, root) is ``MISSING`` here; ``X | None`` where the files allow null. The
fields are the keyword arguments of each group's consumer (``models.Mixer``,
``training.TrainerConfig``, ``data.load_dataset`` and ``data.BatchAugment``,
``tracking.MlflowTracker``) plus the keys the job reads by name; tests/test_config_schema.py
keeps them equal (BatchAugment's ``mix_prob`` and ``fill`` are not config keys). Values are
still checked for meaning by sweep/validate.py.

A float key is a ``Number`` (int or float, each kept as written: ``model.sb_lambda=0`` stays 0,
``trainer.warmup_epochs`` 1 or 0.5), so the schema changes no composed value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigNode, ConfigStore
from omegaconf import II, MISSING

# A float key: PEP 484's ``float``, which takes an int too. OmegaConf keeps each as written
# (its ``float`` would turn 1 into 1.0, so change the logged params, the messages and each job's
# config fingerprint, sweep/task.py, against which existing checkpoints resume).
Number = int | float


@dataclass
class ModelConfig:
    """conf/model_base/mixer.yaml: ``models.Mixer``'s keyword arguments, one field each."""

    _target_: str = "models.Mixer"
    name: str = MISSING
    block: str = MISSING
    token_mixer: str = "mlp"
    mlp: str = MISSING
    dim: int = 128
    depth: int = 4
    patch_size: int = 4
    token_ratio: Number = 0.5
    channel_ratio: Number = 4.0
    n_iter: int = 1
    sb_lambda: Number = 0.0
    drop_path: Number = 0.0
    norm: str = "table"
    layer_scale: Number = 0.0
    num_heads: int = 4
    implicit_iters: int = 4
    contraction: Number = 0.9
    power_iters: int = 8
    energy_step: Number = 0.5
    mlp_bias: bool = False
    init: str = "default"
    v_init: str = "default"
    img_size: int = II("data.image_size")
    in_chans: int = II("data.channels")
    num_classes: int = II("data.num_classes")


@dataclass
class AugmentConfig:
    """conf/data/*.yaml ``augment``: ``data.BatchAugment``'s keyword arguments (those the
    task does not supply) that the files set; padding and flip depend on the dataset."""

    crop_padding: int = MISSING
    flip: bool = MISSING
    mixup: Number = 0.0
    cutmix: Number = 0.0
    switch_prob: Number = 0.5
    erase: Number = 0.0
    random_resized_crop: bool = False
    randaugment: str | None = None


@dataclass
class DataConfig:
    """conf/data/*.yaml: ``data.load_dataset``'s keyword arguments (less ``seed``, the run's)
    and ``augment``. The dataset's name, root and sizes are each file's own."""

    name: str = MISSING
    root: str | None = MISSING
    image_size: int = MISSING
    channels: int = MISSING
    num_classes: int = MISSING
    val_fraction: Number = 0.1
    val_seed: int | None = 0
    max_train: int | None = None
    max_test: int | None = None
    eval_crop_pct: Number | None = None
    cache_dir: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class TrainerConfig:
    """conf/trainer/default.yaml: ``training.TrainerConfig``, field for field."""

    epochs: int = 10
    batch_size: int = 128
    lr: Number = 5.0e-4
    lr_batch: int = 512
    weight_decay: Number = 0.05
    warmup_epochs: Number = 1
    min_lr: Number = 1.0e-6
    label_smoothing: Number = 0.1
    grad_clip: Number | None = 1.0
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    threads: int | None = None
    eval_batch_size: int = 1000
    resume: bool = True
    checkpoint: bool = True
    progress: str = "auto"
    divergence_loss: Number = 1.0e4
    devices: int | None = None
    dist_timeout_s: Number = 300


@dataclass
class TrackingConfig:
    """conf/tracking/mlflow.yaml: ``tracking.MlflowTracker``'s keyword arguments (``uri`` null:
    resolved by the job) and the keys the job reads by name (``enabled``, ``log_checkpoint``)."""

    enabled: bool = True
    uri: str | None = None
    experiment: str = "mixer-symmetry"
    description: str | None = None
    artifact_location: str | None = None
    log_checkpoint: bool = True
    system_metrics: bool = True
    system_metrics_interval_s: Number = 10.0
    log_model: bool = True
    register_model: str | None = None
    retries: int = 6
    retry_backoff_s: Number = 1.0


# config group -> its schema (the ConfigStore name is "<group>_schema")
SCHEMAS: dict[str, type] = {"model": ModelConfig, "data": DataConfig,
                            "trainer": TrainerConfig, "tracking": TrackingConfig}


class _SharedNode(ConfigNode):
    """A stored schema that copies of the ConfigStore share instead of copying it.

    Hydra deep-copies the whole store for each composition and each config group it lists
    (``CachingConfigRepository``: 107 times for ``--help``, where copying these four schemas
    would cost ~0.4 s), and ``ConfigStore.load`` deep-copies the node it hands out, so the
    stored node is never changed and one instance serves every copy."""

    def __deepcopy__(self, memo: dict) -> _SharedNode:
        return self


def register() -> None:
    """Store each schema in Hydra's ConfigStore as ``<group>_schema`` (idempotent)."""
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(name=f"{group}_schema", node=schema, provider="mixerlab")
        stored = store.repo[f"{group}_schema.yaml"]
        store.repo[f"{group}_schema.yaml"] = _SharedNode(**vars(stored))


register()  # on import (see the module docstring)
