"""The sweep driver's own handle on a journal-file study: appends without ``fsync``.

Optuna's ``JournalFileBackend.append_logs`` takes the file's lock, appends one JSON line and
calls ``fsync`` before releasing the lock. The driver appends about five lines per trial (the
new trial, each parameter, its ``driver`` attr, the result), and the ``fsync`` calls were most
of the sweeper's own per-trial time (about 2 ms each on a local disk; see
benchmarks/optuna_overhead.py).

What ``fsync`` adds is durability against an operating-system crash or power loss, not
visibility: the line is in the page cache, which every process on the machine reads, before
the lock is released, and NFS flushes a file to the server when it is closed (close-to-open
consistency), which ``append_logs`` does before releasing the lock too. A driver's host that
crashes loses the driver with it; a result whose line did not reach the disk leaves that trial
RUNNING in the journal, and the next run of the command fails it (``driver interrupted``) and
reruns its parameters (``_stale_trials.py``). The jobs' own reports (``TrialReporter``,
intermediate values) keep Optuna's backend and its ``fsync``.

The lock, the file format and the reading are Optuna's (a subclass overriding only
``append_logs``); tests/test_optuna_async.py checks that Optuna's own backend reads the lines.
"""

from __future__ import annotations

import json
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file


class DriverJournalBackend(JournalFileBackend):
    """``JournalFileBackend`` whose appends are flushed to the file but not ``fsync``ed."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        what_to_write = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        with get_lock_file(self._lock), open(self._file_path, "ab") as f:
            f.write(what_to_write.encode("utf-8"))
            f.flush()


def driver_journal(path: str) -> JournalStorage:
    """A ``JournalStorage`` over ``path`` (already created by ``open_storage``) for the driver."""
    return JournalStorage(DriverJournalBackend(path))
