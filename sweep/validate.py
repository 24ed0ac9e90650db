"""Check a composed job config without running it: every bad value, named, with what is valid.

Cheap (no model is built, no data decoded), so a sweeper checks all its jobs before it
launches any, and a single run fails before a tracking run exists. Sections a config does
not have (e.g. a small test app's) are not checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from data import DATASETS, BatchAugment, DatasetError, load_dataset
from data.resize import check_crop_pct
from data.split import check_fraction, check_val_seed
from models import ZOO_TARGETS, Mixer, model_config_errors
from tracking import MlflowTracker
from tracking.client import resolve_tracking_uri
from tracking.mlflow_tracker import settings_errors
from tracking.secrets import redact, split_credentials
from tracking.uri import TrackingConfigError, check_artifact_location, check_tracking_uri
from training import TrainerConfig

FINAL_METRICS = ("test_acc", "test_loss", "train_loss", "reg_loss", "best_test_acc",
                 "final_test_acc", "num_params", "val_acc", "val_loss")
VAL_METRICS = ("val_acc", "val_loss")  # reported only when data.val_fraction > 0


class ConfigError(ValueError):
    """One or more invalid configuration values (one line each)."""


def config_errors(cfg: DictConfig) -> list[str]:
    """Every invalid value in a job config, each as '<key>=<value> is invalid; <valid>'."""
    errors = top_level_errors(cfg) + unknown_key_errors(cfg) + password_errors(cfg)
    if "model" in cfg:
        # the model table knows which _target_s build a zoo model and what a name must build
        errors += model_config_errors(OmegaConf.to_container(cfg.model, resolve=True))
    if "data" in cfg:
        reader = DATASETS.get(cfg.data.name)
        if reader is None:
            errors.append(f"data.name={cfg.data.name!r} is unknown; valid: {sorted(DATASETS)}")
        else:
            try:
                reader.sources(None if cfg.data.root is None else Path(cfg.data.root))
            except DatasetError as err:
                errors.append(str(err))
        errors += data_value_errors(cfg.data)
    if "trainer" in cfg:
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}  # others: reported above
        trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
        try:
            TrainerConfig(**{k: v for k, v in trainer.items() if k in fields})
        except (ValueError, TypeError) as err:
            errors.append(str(err))
    if "tracking" in cfg and cfg.tracking.get("enabled"):
        errors += tracking_errors(cfg.tracking)
    if "objective" in cfg and "trainer" in cfg:
        names = list(cfg.objective) if OmegaConf.is_list(cfg.objective) else [cfg.objective]
        for name in names:
            if name not in FINAL_METRICS and not str(name).startswith("symmetry/"):
                errors.append(f"objective={name!r} is not a metric the job reports; valid: "
                              f"{list(FINAL_METRICS)} or a symmetry/* metric")
            val_fraction = OmegaConf.select(cfg, "data.val_fraction", default=None)
            if name in VAL_METRICS and val_fraction == 0:
                errors.append(f"objective={name!r} needs a validation split, but "
                              f"data.val_fraction={val_fraction}; set data.val_fraction in "
                              f"(0, 1) (e.g. 0.1) or choose an objective other than "
                              f"{' / '.join(VAL_METRICS)}")
    return errors


def data_value_errors(data: DictConfig) -> list[str]:
    """The values of ``data`` that load_dataset or BatchAugment would refuse when the job
    starts (val_fraction, val_seed, eval_crop_pct, the augment settings: a RandAugment spec...),
    found without loading anything: BatchAugment is built with stand-in statistics."""
    errors = []
    checks = ((check_fraction, "val_fraction"), (check_val_seed, "val_seed"),
              (check_crop_pct, "eval_crop_pct"))
    for check, key in checks:
        if key in data:
            try:
                check(data[key])
            except ValueError as err:
                errors.append(f"data.{key}: {err}")
    augment = data.get("augment")
    if isinstance(augment, DictConfig):
        kwargs = OmegaConf.to_container(augment, resolve=True)
        accepted = _keywords(BatchAugment) or set()
        channels = data.get("channels") or 1
        try:
            BatchAugment(**{k: v for k, v in kwargs.items() if k in accepted},
                         num_classes=int(data.get("num_classes") or 1),
                         mean=(0.5,) * channels, std=(0.5,) * channels)
        except (ValueError, TypeError) as err:
            errors.append(f"data.augment: {err}")
    return errors


def top_level_errors(cfg: DictConfig) -> list[str]:
    """``seed`` an integer; ``run_name`` null or a name; ``sweep_name`` a name."""
    errors = []
    seed = cfg.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        errors.append(f"seed={_shown(seed)} is invalid; it must be an integer")
    for key, nullable in (("run_name", True), ("sweep_name", False)):
        value = cfg.get(key, "-")
        if value is None and nullable:
            continue
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or value == "":
            null = "null (a name from the config) or " if nullable else ""
            errors.append(f"{key}={_shown(value)} is invalid; it must be {null}a non-empty name")
    return errors


# What each config section is passed to (sweep/task.py's build_* functions), less the keyword
# arguments the task supplies itself, plus the keys it reads by name: so the valid keys.
_SECTIONS: dict[str, tuple[Callable[..., object], tuple[str, ...], tuple[str, ...]]] = {
    "trainer": (TrainerConfig, (), ()),
    "data": (load_dataset, ("seed",), ("augment",)),
    "data.augment": (BatchAugment, ("label_smoothing", "num_classes", "mean", "std"), ()),
    "tracking": (MlflowTracker, (), ("enabled", "log_checkpoint")),
    "model": (Mixer, (), ("_target_",)),  # checked when _target_ builds a zoo model
}


def _keywords(fn: Callable[..., object]) -> set[str] | None:
    """The keyword arguments ``fn`` accepts (None: any, it takes **kwargs)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def unknown_key_errors(cfg: DictConfig) -> list[str]:
    """Each key of a section that nothing reads (a typo such as ``+trainer.lrr=0.1``), named with
    the closest valid key (``closest_key_error``)."""
    errors = []
    for section, (target, supplied, by_name) in _SECTIONS.items():
        node = OmegaConf.select(cfg, section, default=None)
        if not isinstance(node, DictConfig):
            continue
        if section == "model" and node.get("_target_") not in ZOO_TARGETS:
            continue  # another class (a test app's): instantiate reports its own arguments
        accepted = _keywords(target)
        if accepted is None:
            continue
        valid = (accepted - set(supplied)) | set(by_name)
        for key in node:
            if key not in valid:
                errors.append(closest_key_error(section, str(key), node[key], valid))
    return errors


def closest_key_error(section: str, key: str, value: object, valid: Iterable[str]) -> str:
    """'<section>.<key>=<value> is not a <section> setting; did you mean <section>.<closest>?
    valid: <keys>' (the 'did you mean' part only when a valid key is close)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {section}.{close[0]}?" if close else ";"
    return (f"{section}.{key}={_shown(value)} is not a {section} setting{hint} valid: "
            f"{', '.join(valid)}")


def _shown(value: object) -> str:
    """A config value as the user wrote it: 'abc', 0.1, [1, 2], {'a': 1}."""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=False)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return repr(value)


def password_errors(cfg: DictConfig) -> list[str]:
    """Each config value that holds a ``user:password@`` URL. The command line's are moved to
    the environment before Hydra sees them (sweep/run.py); a config file's would be copied by
    Hydra into ``.hydra/config.yaml`` (logged as the ``config`` artifact) and ``multirun.yaml``
    before any of the project's code runs, so it is refused. Unresolved, so ``${oc.env:VAR}``
    (the password in the environment) is fine."""
    errors = []

    def walk(node: object, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{key}[{i}]")
        elif isinstance(node, str) and split_credentials(node)[1] is not None:
            errors.append(f"{key}={redact(node)!r} holds a password in a config file; pass the "
                          f"URL on the command line (its password is moved to the environment) "
                          f"or write it as ${{oc.env:VAR}}")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return errors


def tracking_errors(tracking: DictConfig) -> list[str]:
    """A URI that cannot be a store (its form; a SQLite file or folder that cannot be written:
    the default store in the launch directory too) and an artifact location that cannot be
    written (tracking/uri.py). No network: a sweep's driver probes a server once, before any
    job (sweep/mlflow_parent.py), and a job whose server is down waits for it."""
    errors = []
    launch_dir = HydraConfig.get().runtime.cwd if HydraConfig.initialized() else os.getcwd()
    uri = resolve_tracking_uri(tracking.get("uri"), launch_dir)  # as sweep/task.py does
    location = tracking.get("artifact_location")
    for check, value in ((check_tracking_uri, uri), (check_artifact_location, location)):
        try:
            if value:
                check(str(value))
        except TrackingConfigError as err:
            errors.append(str(err))
    # the records' settings (system metrics, model logging), before any job starts
    errors += settings_errors(**{k: tracking[k] for k in (
        "system_metrics", "system_metrics_interval_s", "log_model", "register_model")
        if k in tracking})
    return errors


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError listing every invalid value."""
    errors = config_errors(cfg)
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
