"""Where an Optuna study lives: one storage string, resolved the same way by the sweeper and the
jobs (and opened by the analysis).

The sweeper (hydra_plugins/mixerlab_optuna_sweeper) resolves the user's ``storage`` setting
once (``resolve_storage_url``) and hands the result to every job as the override
``optuna.storage=...``; the job (``TrialReporter``) opens it with ``open_storage``, and
analysis/fig_optuna.py opens a finished study the same way. Keeping both halves here, in the
lowest package all three may import, guarantees that they agree.

Accepted forms:

* ``None`` -> ``journal://<abs sweep dir>/optuna_journal.log``.
* ``journal://<path>`` -> Optuna's ``JournalStorage`` over a ``JournalFileBackend`` (append-only
  log with symlink locks: safe for many processes on a shared/NFS file system, unlike SQLite).
  ``journal:///abs/file.log`` is absolute, ``journal://rel/file.log`` relative to the driver's cwd.
* anything else is an Optuna/SQLAlchemy storage URL passed to Optuna unchanged, except that a
  relative ``sqlite:///file.db`` is made absolute, since jobs may run in another directory.

A ``user:password@`` in a database URL never enters the resolved string (which the jobs' overrides,
``optimization_results.yaml`` and the logs hold): ``resolve_storage_url`` moves it into the
environment and ``open_storage`` puts it back, in memory only, for Optuna (tracking/secrets.py).
The journal file and a SQLite database that ``open_storage`` creates are readable by their owner
only (0600).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tracking.secrets import create_private, credentialed, stash_credentials

if TYPE_CHECKING:  # optuna is imported lazily: slow, and not needed to resolve a string
    from optuna.storages import BaseStorage

JOURNAL_SCHEME = "journal://"
DEFAULT_JOURNAL_FILE = "optuna_journal.log"
_SQLITE_PREFIX = "sqlite:///"


def resolve_storage_url(storage: str | None, sweep_dir: str) -> str:
    """The canonical, cwd-independent storage string for ``storage`` (see module docstring)."""
    if storage is None or str(storage).strip() == "":
        return JOURNAL_SCHEME + os.path.abspath(os.path.join(sweep_dir, DEFAULT_JOURNAL_FILE))
    storage = stash_credentials(str(storage))
    if storage.startswith(JOURNAL_SCHEME):
        path = storage[len(JOURNAL_SCHEME):]
        if not path:
            raise ValueError(f"storage '{storage}': the journal:// scheme needs a file path")
        return JOURNAL_SCHEME + os.path.abspath(os.path.expanduser(path))
    if storage.startswith(_SQLITE_PREFIX):
        path = storage[len(_SQLITE_PREFIX):]
        # sqlite:////abs (four slashes) is already absolute; ":memory:" cannot be shared anyway
        if path and not path.startswith("/") and not path.startswith(":memory:"):
            return _SQLITE_PREFIX + os.path.abspath(path)
    return storage


def journal_path(url: str) -> str | None:
    """The log file of a ``journal://`` storage string, or None for other storages."""
    return url[len(JOURNAL_SCHEME):] if url.startswith(JOURNAL_SCHEME) else None


def open_storage(url: str) -> BaseStorage | str:
    """What ``optuna.create_study``/``load_study`` take as ``storage`` for a resolved string: a
    JournalStorage, or the database URL with its credentials (never to be written anywhere)."""
    path = journal_path(url)
    if path is None:
        url = stash_credentials(url)
        db = url[len(_SQLITE_PREFIX):].partition("?")[0] if url.startswith(_SQLITE_PREFIX) else ""
        if db.startswith("/") and os.path.isdir(os.path.dirname(db)):
            create_private(db)
        return credentialed(url)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    create_private(path)
    # JournalFileBackend's default lock is a symlink lock, which is atomic on NFS too
    return JournalStorage(JournalFileBackend(path))
