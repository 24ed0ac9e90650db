"""The override list of one trial's job: its sampled values, the fixed values, its identity.

A job whose task config declares the node ``optuna: {storage: null, study_name: null, trial:
null}`` learns which trial it is from three overrides appended last, so they win over
anything the user wrote: ``optuna.storage=<resolved storage>``, ``optuna.study_name=<name>``
and ``optuna.trial=<number>`` (read by ``sweep/trial_reporter.py`` to report epochs for
pruning). A config without the node (an app written for the stock plugin) opts out: its jobs
get no identity and exactly the stock plugin's overrides, and nothing is added to the config
it receives.

The identity is bookkeeping, not a choice of the user: one more override,
``hydra.job.config.override_dirname.exclude_keys=[<the user's keys>, optuna.storage,
optuna.study_name, optuna.trial]``, keeps it out of ``hydra.job.override_dirname``, so job
directories named after it (``hydra.sweep.subdir=${hydra.job.override_dirname}``) are the
stock plugin's. It is a ``hydra.*`` override, so it is not among the task overrides either
(``.hydra/overrides.yaml`` still lists the identity).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.core.override_parser.types import Quote, QuotedString, Transformer

from ._search_space import SearchSpace


def quote_for_override(text: str) -> str:
    """``text`` as a single-quoted Hydra override value that parses back to exactly ``text``.

    ``${`` is escaped as well: OmegaConf would otherwise read it as an interpolation.
    """
    return QuotedString(text=text.replace("${", "\\${"), quote=Quote.single).with_quotes()


IDENTITY_KEYS = ("optuna.storage", "optuna.study_name", "optuna.trial")
EXCLUDE_KEYS = "hydra.job.config.override_dirname.exclude_keys"


def identity_overrides(
    storage_url: str, study_name: str, trial_number: int, exclude_keys: Sequence[str] = (),
) -> list[str]:
    """The three ``optuna.*`` overrides that tell a job its storage, study and trial, then the
    override that keeps them out of ``override_dirname`` (``exclude_keys``: the user's own)."""
    keys = list(exclude_keys) + [k for k in IDENTITY_KEYS if k not in exclude_keys]
    return [
        f"optuna.storage={quote_for_override(storage_url)}",
        f"optuna.study_name={quote_for_override(study_name)}",
        f"optuna.trial={trial_number}",
        # Transformer.str quotes a key only where the override grammar needs it
        f"{EXCLUDE_KEYS}={Transformer.str(keys)}",
    ]


def trial_overrides(
    space: SearchSpace,
    params: Mapping[str, Any],
    extra_fixed: Mapping[str, Any],
    identity: list[str],
) -> list[str]:
    """Sampled params, fixed overrides, deletions, custom-search-space extras, identity."""
    lines = [space.override_for(key, value) for key, value in params.items()]
    lines += [line for key, line in space.fixed_lines.items() if key not in params]
    lines += list(space.deletions.values())
    # Transformer.str: Hydra's public formatter of a value as override text
    lines += [f"{key}={Transformer.str(value)}" for key, value in extra_fixed.items()]
    return lines + identity
