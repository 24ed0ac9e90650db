"""Errors a person can act on: which exceptions mean "fix your input", and how they are shown.

A user error (a bad config value, a checkpoint of another configuration, a dataset that is
missing or corrupt, a tracking setting that cannot work, an output dir that cannot be written)
ends `python sweep/run.py ...` with its message alone on stderr, one line per problem, and exit
status 2: the traceback would only show where the platform noticed. ``HYDRA_FULL_ERROR=1``
(Hydra's own switch, named under every error Hydra prints) shows it.

Hydra prints a traceback for any ``Exception`` a job raises (and only warns of one raised by a
callback), so outside a sweep's jobs a user error leaves as ``Refused``, a ``BaseException``
that passes Hydra by; run.py's entry point prints its message (or, with the switch set, its
traceback, which shows the user error as its cause). In a sweep's job the error stays what it
is, so the sweeper records that job as failed (failed_jobs.yaml, an Optuna FAIL trial) and goes
on with the others; a sweep's bad values are found before any job (sweep/prelaunch.py).

Which exceptions count: the classes of ``user_error_types()``, and any exception whose class
sets ``user_error = True`` (how a package that does not import this one opts in).

A config that breaks the schema (an unknown key, a wrong type) is refused the same way, with one
line from sweep/schema_errors.py, before Hydra starts: run.py composes the command line first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig

TRACEBACK_ENV = "HYDRA_FULL_ERROR"
EXIT_USER_ERROR = 2  # as argparse for a bad command line


class UserError(ValueError):
    """A user error raised by sweep/ itself (e.g. an unwritable output dir)."""

    user_error = True


class Refused(BaseException):  # noqa: N818 - it is the outcome, not a failure of the code
    """A user error on its way past Hydra to run.py's entry point (``str`` is the message)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes that are user errors. Imported here, not with this module: they
    pull in torch and the data/model packages, which run.py's error path (a schema error found
    before Hydra starts, sweep/schema_errors.py) does not need."""
    from data import DatasetError
    from sweep.validate import ConfigError
    from tracking.uri import TrackingConfigError
    from training.checkpoint import CheckpointError

    return (ConfigError, CheckpointError, DatasetError, TrackingConfigError)


def is_user_error(err: BaseException) -> bool:
    """``err`` is the user's to fix (see the module docstring)."""
    return isinstance(err, user_error_types()) or getattr(type(err), "user_error", False) is True


def traceback_wanted() -> bool:
    """The user asked for tracebacks (``HYDRA_FULL_ERROR=1``, as Hydra reads it)."""
    return os.environ.get(TRACEBACK_ENV) == "1"


def _in_sweep() -> bool:
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    return hc is not None and hc.mode is not None and hc.mode.name == "MULTIRUN"


@contextmanager
def refused_as_one_message() -> Iterator[None]:
    """Within the block, a user error leaves as ``Refused`` (caused by it, for a traceback on
    demand), except in a sweep's job."""
    try:
        yield
    except Exception as err:
        if is_user_error(err) and not _in_sweep():
            raise Refused(str(err)) from err
        raise
