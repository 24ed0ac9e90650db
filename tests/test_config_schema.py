"""The config schema (sweep/config_schema.py): every config of conf/ composes onto it, its
fields are what each group's consumer takes, and an unknown key or a wrong type is refused while
composing with one line naming the key, its type and the closest valid key
(sweep/schema_errors.py). Composition only: nothing is trained."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from data import BatchAugment, load_dataset
from models import Mixer
from sweep.config_schema import (
    SCHEMAS,
    AugmentConfig,
    DataConfig,
    ModelConfig,
    Number,
    TrackingConfig,
    TrainerConfig,
)
from sweep.schema_errors import refuse_schema_errors, schema_error_message
from sweep.user_errors import Refused
from tracking import MlflowTracker
from training import TrainerConfig as TrainingTrainerConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TRAINER_KEYS = ("batch_size, checkpoint, compile, device, devices, dist_timeout_s, "
                "divergence_loss, epochs, eval_batch_size, grad_clip, label_smoothing, lr, "
                "lr_batch, min_lr, precision, progress, resume, threads, warmup_epochs, "
                "weight_decay")


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _refusal(*overrides: str) -> str | None:
    """schema_error_message of composing ``overrides`` (the test fails if it composes)."""
    with pytest.raises(Exception) as err:  # noqa: PT011 - Hydra's ConfigCompositionException
        _compose(*overrides)
    return schema_error_message(err.value, overrides)


def _every_config() -> list[tuple[str, ...]]:
    """Each option of each group on the default config: model x the default data, every data,
    size, tracking and profile option, every experiment and variant."""
    sets: list[tuple[str, ...]] = [()]
    for group, prefix in (("model", ""), ("data", ""), ("size", ""), ("tracking", ""),
                          ("profile", ""), ("experiment", "+"), ("variant", "+")):
        sets += [(f"{prefix}{group}={p.stem}",) for p in sorted((CONF / group).glob("*.yaml"))]
    return sets


@pytest.mark.parametrize("overrides", _every_config(), ids=lambda o: " ".join(o) or "default")
def test_every_config_composes_onto_the_schema(overrides):
    cfg = _compose(*overrides)
    for group, schema in SCHEMAS.items():
        assert OmegaConf.get_type(cfg[group]) is schema, group
    assert OmegaConf.get_type(cfg.data.augment) is AugmentConfig


def _yaml(path: Path) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    node.pop("defaults")
    return node


def _fields(schema: type) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)


def test_schema_defaults_are_the_yaml_files():
    assert _yaml(CONF / "model_base" / "mixer.yaml") == _fields(ModelConfig)
    assert _yaml(CONF / "trainer" / "default.yaml") == _fields(TrainerConfig)
    assert _yaml(CONF / "tracking" / "mlflow.yaml") == _fields(TrackingConfig)
    assert _yaml(CONF / "tracking" / "none.yaml").keys() == _fields(TrackingConfig).keys()
    schema = _fields(DataConfig)
    for path in (CONF / "data").glob("*.yaml"):
        data = _yaml(path)
        for node, defaults in ((data, schema), (data["augment"], schema["augment"])):
            assert node.keys() == defaults.keys(), path.name
            # a key every dataset shares has the schema's default; '???' ones are each file's
            assert [k for k, v in defaults.items()
                    if v not in ("???", node[k]) and not isinstance(v, dict)] == [], path.name


def _keywords(fn) -> dict[str, object]:
    """``fn``'s keyword arguments and their annotations."""
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    return {name: hints[name] for name, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _schema_types(schema: type) -> dict[str, object]:
    """Each field's annotation, a ``Number`` (int | float: PEP 484's float) read as float."""
    def read(tp: object) -> object:
        return float if tp == Number else float | None if tp == Number | None else tp
    return {f.name: read(typing.get_type_hints(schema)[f.name]) for f in dataclasses.fields(schema)}


def test_model_schema_is_the_mixer_signature():
    """Every keyword argument of models.Mixer, with its type, and ``_target_``."""
    fields = _schema_types(ModelConfig)
    assert fields.pop("_target_") is str
    assert fields == _keywords(Mixer)


def test_trainer_schema_is_the_trainer_config():
    """trainer is passed whole to training.TrainerConfig (sweep/task.py)."""
    assert _schema_types(TrainerConfig) == _schema_types(TrainingTrainerConfig)


def test_tracking_schema_is_what_the_job_passes_and_reads():
    """MlflowTracker's keyword arguments (``uri`` may be null: the job resolves it against the
    launch directory first) and the keys sweep/task.py reads by name."""
    fields = _schema_types(TrackingConfig)
    assert {fields.pop("enabled"), fields.pop("log_checkpoint")} == {bool}
    assert fields.pop("uri") == str | None
    expected = _keywords(MlflowTracker)
    assert expected.pop("uri") is str
    assert fields == expected


def test_data_schema_is_what_the_job_passes():
    """load_dataset's keyword arguments less the run's ``seed``, plus ``augment``: BatchAugment's
    less those the task supplies; ``mix_prob`` and ``fill`` are not config keys."""
    assert set(_schema_types(DataConfig)) == set(_keywords(load_dataset)) - {"seed"} | {"augment"}
    supplied = {"label_smoothing", "num_classes", "mean", "std"}
    not_exposed = {"mix_prob", "fill"}
    augment = _keywords(BatchAugment)
    assert set(_schema_types(AugmentConfig)) == set(augment) - supplied - not_exposed
    assert _schema_types(AugmentConfig) == {k: augment[k] for k in _schema_types(AugmentConfig)}


def test_unknown_key_is_refused_with_the_closest_key():
    assert _refusal("trainer.lrr=0.1") == (
        f"trainer.lrr=0.1 is not a trainer setting; did you mean trainer.lr (a number)? valid: "
        f"{TRAINER_KEYS}")
    assert _refusal("data.augment.flipp=false").startswith(
        "data.augment.flipp=false is not a data.augment setting; did you mean "
        "data.augment.flip (bool)? valid: crop_padding, cutmix, erase, flip, ")
    assert _refusal("modell.dim=8").startswith(
        "modell is not a top-level setting; did you mean model? valid: data, hydra, model, ")


def test_a_typo_in_an_experiment_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ntrainer:\n  epochs: 2\n  lrr: 0.1\n")
    assert _refusal(f"hydra.searchpath=[file://{tmp_path}]", "+experiment=typo") == (
        f"trainer.lrr (in experiment/typo) is not a trainer setting; did you mean trainer.lr "
        f"(a number)? valid: {TRAINER_KEYS}")


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.epochs=abc", "trainer.epochs='abc' is invalid; trainer.epochs takes int"),
    ("model.dim=1.5", "model.dim=1.5 is invalid; model.dim takes int"),
    ("model.dim=null", "model.dim=null is invalid; model.dim takes int"),
    ("trainer.grad_clip=abc",
     "trainer.grad_clip='abc' is invalid; trainer.grad_clip takes a number or null"),
    ("model.sb_lambda=[1]", "model.sb_lambda=[1] is invalid; model.sb_lambda takes a number"),
    ("data.val_seed=0.5", "data.val_seed=0.5 is invalid; data.val_seed takes int or null"),
    ("model.mlp_bias=maybe",
     "model.mlp_bias='maybe' is invalid; model.mlp_bias takes bool (true or false)"),
])
def test_wrong_type_is_refused_naming_key_and_type(override, message):
    assert _refusal(override) == message


def test_other_composition_errors_are_left_to_hydra():
    assert _refusal("model=nope") is None  # Hydra's own message lists the options


def test_the_command_line_is_checked_as_hydra_will_compose_it():
    with pytest.raises(Refused, match=r"trainer\.lrr=0\.1 is not a trainer setting; did you "
                                      r"mean trainer\.lr \(a number\)\?"):
        refuse_schema_errors(["-m", "seed=0,1", "trainer.lrr=0.1"], CONF, "config")
    refuse_schema_errors(["-m", "model=asym", "model.sb_lambda=0,1e-2"], CONF, "config")
    refuse_schema_errors(["--cfg", "job", "trainer.lrr=0.1"], CONF, "config")  # Hydra's


def test_run_refuses_an_unknown_key_before_launching_anything(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "sweep" / "run.py"), "trainer.lrr=0.1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MIXERLAB_CACHE": str(tmp_path / ".cache")})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("invalid configuration:\n  - trainer.lrr=0.1 is not a trainer "
                                  "setting; did you mean trainer.lr (a number)?"), done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # no output dir, no MLflow store, no data cache


def test_a_loaded_schema_is_a_copy():
    """The store's schema nodes are shared by Hydra's copies of the store (config_schema's
    _SharedNode), so a loaded one must be its own copy."""
    loaded = ConfigStore.instance().load("trainer_schema.yaml").node
    loaded.epochs = 99
    assert ConfigStore.instance().load("trainer_schema.yaml").node.epochs == 10
