"""MLflow's standard source tags, which the UI shows as a run's "Source" and "Version".

``source_tags(entry_point)`` gives, for the script a run comes from:

* ``mlflow.source.name``: the script's path inside its git checkout (``sweep/run.py``), or the
  path as given outside one;
* ``mlflow.source.type``: ``LOCAL`` (MLflow's type for a script run as a process; its other
  types are Databricks notebooks and jobs, and MLflow Projects);
* ``mlflow.source.git.commit``: the checkout's HEAD, only when the script is in a git checkout
  (no tag, and no error, outside one or without git).

``user()`` is ``mlflow.user``, the UI's "User" (MLflow accepts it only when a run is created).

MLflow's own resolution (``mlflow.tracking.context.registry.resolve_tags``, used by the fluent
API) also records ``mlflow.source.git.repoURL``, the remote's URL, which may hold a token
(``https://user:token@host/...``): it is left out here, and the other values pass through
``redact`` (tracking/secrets.py). No MLflow import: the tag names are MLflow's documented
constants (``mlflow.utils.mlflow_tags``).
"""

from __future__ import annotations

import getpass
import subprocess
from pathlib import Path

from tracking.secrets import redact

SOURCE_NAME = "mlflow.source.name"
SOURCE_TYPE = "mlflow.source.type"
GIT_COMMIT = "mlflow.source.git.commit"
LOCAL = "LOCAL"
USER = "mlflow.user"


def user() -> str:
    """The login name, as MLflow records it; "unknown" without one."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database entry (some containers)
        return "unknown"


def git_checkout(path: str | Path) -> tuple[str, Path] | None:
    """(HEAD commit, top folder) of the git checkout holding ``path`` (a file or folder), or
    None outside one, without git, or when git fails (one subprocess, a few ms)."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        folder = folder.parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD", "--show-toplevel"],
                             capture_output=True, text=True, cwd=folder, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None
    return lines[0], Path(lines[1])


def git_commit(path: str | Path) -> str:
    """The HEAD commit of the checkout holding ``path``; "" outside one."""
    found = git_checkout(path)
    return found[0] if found else ""


def source_tags(entry_point: str | Path) -> dict[str, str]:
    """The source tags of a run started by the script ``entry_point`` (see the module doc)."""
    name = str(entry_point)
    tags = {SOURCE_TYPE: LOCAL}
    path = Path(entry_point)
    found = git_checkout(path) if path.exists() else None
    if found is not None:
        commit, top = found
        tags[GIT_COMMIT] = commit
        try:
            name = str(path.resolve().relative_to(top.resolve()))
        except ValueError:
            name = str(path.resolve())
    tags[SOURCE_NAME] = redact(name)
    return tags
