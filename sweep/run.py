"""Train one configuration, or with -m a sweep of them.

    python sweep/run.py model=asym model.sb_lambda=1e-3 trainer.epochs=5
    python sweep/run.py -m model=asym model.sb_lambda=0,1e-4,1e-2,1 seed=0,1,2
    python sweep/run.py -m +experiment=search            # Optuna (hydra/sweeper=optuna)
    python sweep/run.py -m hydra/launcher=local_debug ... # SLURM through submitit

A bad value, a checkpoint of another configuration or an unwritable output dir ends the command
with one line per problem and exit status 2 (sweep/user_errors.py); Ctrl-C ends it with one
line saying how the job's run was closed and how to resume (status 130; SIGTERM 143).
``HYDRA_FULL_ERROR=1`` shows the traceback of either.

A password in a URL argument (``tracking.uri=http://user:pw@host:5000``,
``hydra.sweeper.storage=postgresql://user:pw@host/db``) is moved into the environment before
Hydra reads the command line (tracking/secrets.py), so the config, the overrides Hydra saves
and passes to every job, the records and the logs hold only the clean URL; the jobs inherit
the credentials. Every log line of the process is redacted (``user:***@``) as well.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

# `python sweep/run.py` puts sweep/ on sys.path, not the project root: add it so the
# packages import the same way with or without an installed project.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from sweep.schema_errors import refuse_schema_errors  # noqa: E402
from tracking.secrets import install_log_redaction, strip_argv  # noqa: E402

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"  # main's config_path

# The task, the validator and the error types import torch and the data/model packages (~1.6 s):
# imported where they are used, so `--help`, `--cfg` and `--info` answer without them.


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | list[float]:
    from sweep.task import run_task
    from sweep.user_errors import refused_as_one_message

    install_log_redaction()  # again in a submitit job, which unpickles `main` without this file
    with refused_as_one_message():
        return run_task(cfg)


def cli() -> int:
    """``main`` as a command: its exit status, after the one line that ends it (a user error, or
    an interruption) unless a traceback is wanted."""
    try:
        # an unknown key or a wrong type: one line, before Hydra starts (sweep/schema_errors.py)
        refuse_schema_errors(sys.argv[1:], CONF_DIR, "config")
        main()
    except (SystemExit, GeneratorExit):
        raise
    except BaseException as err:  # imported only now: it pulls in torch (see above)
        from sweep.termination import JobTerminated, closing_line
        from sweep.user_errors import EXIT_USER_ERROR, Refused, traceback_wanted

        if traceback_wanted() or not isinstance(err, Refused | KeyboardInterrupt):
            raise
        if isinstance(err, Refused):  # a user error: one line per problem
            print(err, file=sys.stderr)
            return EXIT_USER_ERROR
        # Ctrl-C, or SIGTERM (JobTerminated)
        print(closing_line(err), file=sys.stderr)
        return 143 if isinstance(err, JobTerminated) else 130
    return 0


if __name__ == "__main__":
    sys.argv[1:] = strip_argv(sys.argv[1:])  # before Hydra reads it: credentials -> environment
    install_log_redaction()
    status = cli()
    # Exit in well under a second, not 2-4 s (docs/PERFORMANCE.md "Sweep tail"): the
    # interpreter's final collections would walk the 300 000-500 000 objects torch, MLflow and
    # Hydra leave, over and over as modules are torn down. Garbage is collected (finalised)
    # once here and the rest frozen out of those collections: atexit handlers (logging's
    # flush, MLflow's async-logging queues), thread joins and the refcount teardown of modules
    # still run; only cycles still alive at exit go uncollected, which Python never promises.
    gc.collect()
    gc.freeze()
    sys.exit(status)
