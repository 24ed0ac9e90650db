"""A config that breaks the schema (sweep/config_schema.py), said in one line: the key, the type
it takes, and for an unknown key the closest valid one.

Hydra refuses an unknown key (``trainer.lrr=0.1``, or a typo in an experiment file) or a value
of the wrong type (``trainer.epochs=abc``, ``model.dim=1.5``) while it composes, with
OmegaConf's message (``Key 'lrr' not in 'TrainerConfig'``, and for the first even the advice
to add it with ``+``). ``schema_error_message`` turns that exception into::

    trainer.lrr=0.1 is not a trainer setting; did you mean trainer.lr (a number)? valid: ...
    trainer.epochs='abc' is invalid; trainer.epochs takes int

Hydra composes inside its own error reporter, which prints the raw message and exits 1, so
``python sweep/run.py`` composes the command line once first (``refuse_schema_errors``, ~0.1 s,
as Hydra would: same overrides, same mode) and ends with the line above and status 2 (as any
user error, sweep/user_errors.py) before Hydra starts anything. A sweep's own jobs (grid
values, ``+variant=a,b``, the Optuna sweeper's params) are composed by the sweeper before it
launches any (sweep/prelaunch.py's ``check_jobs``), which lists each such error, as
``schema_error_message`` words it, among the sweep's other bad values.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import operator
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from tracking.secrets import redact

# Hydra names the file whose merge failed: "In 'experiment/bad': ConfigKeyError raised ..."
_IN_FILE = re.compile(r"In '([^']+)':")
# `python sweep/run.py` flags after which the command line is only overrides (others: Hydra's)
_MULTIRUN_FLAGS = ("-m", "--multirun")


def schema_error_message(err: BaseException, overrides: Sequence[str] = ()) -> str | None:
    """``err``, raised while composing, as one line when it is an unknown key or a value of the
    wrong type (None otherwise). ``overrides``: the command line's, to show an unknown key's
    value as it was given."""
    cause = _omegaconf_cause(err)
    if cause is None:
        return None
    origin = next((m.group(1) for e in _chain(err) if (m := _IN_FILE.match(str(e)))), None)
    where = f" (in {origin})" if origin else ""
    parent = cause.parent_node
    key = str(cause.key)
    unknown = isinstance(cause, ConfigKeyError | ConfigAttributeError)
    if unknown and isinstance(parent, DictConfig) and key not in parent:
        return _unknown_key(cause.full_key, parent, _given(cause.full_key, overrides), where)
    if isinstance(cause, ValidationError) and cause.object_type is not None:
        expected = _type_name(_field_type(cause.object_type, key))
        if expected is None:
            return None
        if expected == "bool":
            expected = "bool (true or false)"
        return (f"{cause.full_key}={_shown(cause.value)}{where} is invalid; "
                f"{cause.full_key} takes {expected}")
    return None


def refuse_schema_errors(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """Compose ``argv`` (overrides, with or without ``-m``) as Hydra will; raise ``Refused``
    (sweep/user_errors.py) naming an unknown key or a wrong type. Any other problem, or a
    command line with other flags (``--help``, ``--cfg``, ``-cn``...), is left to Hydra."""
    multirun = any(a in _MULTIRUN_FLAGS for a in argv)
    overrides = [a for a in argv if a not in _MULTIRUN_FLAGS]
    if any(a.startswith("-") for a in overrides):
        return
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        try:
            GlobalHydra.instance().config_loader().load_configuration(
                config_name, list(overrides),
                run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN)
        except Exception as err:  # noqa: BLE001 - only a schema error is ours to report
            message = schema_error_message(err, overrides)
            if message is None:
                return
            from sweep.user_errors import Refused

            raise Refused(f"invalid configuration:\n  - {message}") from err


def _unknown_key(full_key: str, parent: DictConfig, value: str | None, where: str) -> str:
    """'<key>[=<value>] is not a <section> setting; did you mean <section>.<closest> (<type>)?
    valid: <keys>' (the 'did you mean' part only when a valid key is close)."""
    section, _, key = full_key.rpartition(".")
    valid = sorted(str(k) for k in parent)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = ";"
    if close:
        expected = _type_name(_field_type(OmegaConf.get_type(parent), close[0]))
        hint = (f"; did you mean {section + '.' if section else ''}{close[0]}"
                f"{f' ({expected})' if expected else ''}?")
    shown = "" if value is None else f"={redact(value)}"
    kind = f"a {section}" if section else "a top-level"
    return f"{full_key}{shown}{where} is not {kind} setting{hint} valid: {', '.join(valid)}"


def _field_type(owner: type | None, key: str) -> object:
    """The annotation of dataclass ``owner``'s field ``key`` (None: not a dataclass field)."""
    if owner is None or not dataclasses.is_dataclass(owner):
        return None
    return typing.get_type_hints(owner).get(key)


def _type_name(tp: object) -> str | None:
    """int -> 'int'; int | float -> 'a number'; str | None -> 'str or null'; a dataclass ->
    'a section (A, B)'; None when ``tp`` is none of these."""
    args = set(typing.get_args(tp))
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if type(None) in args:
            inner = _type_name(functools.reduce(operator.or_, args - {type(None)}))
            return None if inner is None else f"{inner} or null"
        return "a number" if args == {int, float} else None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a section ({', '.join(f.name for f in dataclasses.fields(tp))})"
    return tp.__name__ if isinstance(tp, type) else None


def _given(full_key: str, overrides: Sequence[str]) -> str | None:
    """The value ``full_key`` has on the command line (``+``/``++`` prefixes allowed)."""
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+") == full_key:
            return value
    return None


def _shown(value: object) -> str:
    """A value as the user wrote it: 'abc', 1.5, null, true, [1, 2] (passwords redacted)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return redact(repr(value))


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def _omegaconf_cause(err: BaseException) -> OmegaConfBaseException | None:
    """The OmegaConf error under Hydra's ConfigCompositionException that names a config key."""
    return next((e for e in _chain(err) if isinstance(e, OmegaConfBaseException)
                 and e.full_key), None)
