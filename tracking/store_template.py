"""A new SQLite tracking store starts as a copy of an empty, migrated one.

MLflow builds a new SQLite store's schema by running every alembic migration of its history
one after the other (about 1.5-2.7 s on this project's 2-core machines), once per new file:
each test, each ``make demo`` in a fresh folder, each new sweep store pays it. The result is
the same for every store of one MLflow version, so it is built once per machine and version,
the way MLflow builds it, into ``<cache>/mlflow-stores/mlflow-<version>.db`` (``<cache>``:
$MIXERLAB_CACHE, else ~/.cache/mixer-symmetry-lab, the folder of the data cache), without
MLflow's "Default" experiment. A new store is then a page copy of that file (SQLite's backup
API, ~10 ms), checked, and MLflow opens it as a store of its own version (its schema check
passes) and adds the "Default" experiment with this store's own artifact location, as on a
store it had created itself.

Anything that goes wrong on the way (a read-only cache, a template that fails its check)
leaves the new file empty, and MLflow creates the schema itself, as before.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

TEMPLATE_DIR = "mlflow-stores"
DEFAULT_EXPERIMENT_ID = 0  # MLflow's "Default", created per store with the store's own paths


def template_dir() -> Path:
    """<$MIXERLAB_CACHE, else ~/.cache/mixer-symmetry-lab>/mlflow-stores."""
    env = os.environ.get("MIXERLAB_CACHE")
    root = Path(env) if env else Path.home() / ".cache" / "mixer-symmetry-lab"
    return root / TEMPLATE_DIR


def template_path() -> Path:
    """The template for this MLflow version, built here on first use (under a lock: concurrent
    jobs build it once)."""
    path = _template_file()
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if not path.exists():
            _build(path)
    finally:
        os.close(fd)
    return path


def _template_file() -> Path:
    """Where the template of this MLflow version is (whether or not it is built yet)."""
    import mlflow

    return template_dir() / f"mlflow-{mlflow.__version__}.db"


def _drop_if_unsound(template: Path) -> None:
    """Remove a template that fails its check, so the next new store rebuilds it."""
    if not template.exists():
        return
    try:
        _check(template)
    except ValueError as err:
        log.warning("removing the unsound store template (%s)", err)
        template.unlink(missing_ok=True)


def _build(path: Path) -> None:
    """Have MLflow create a store in a scratch file, drop its "Default" experiment, and move
    the file into place whole (a reader never sees a half-built template)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        db = Path(scratch) / "store.db"
        store = SqlAlchemyStore(f"sqlite:///{db}", str(Path(scratch) / "artifacts"))
        store.engine.dispose()
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM experiments WHERE experiment_id = ?",
                        (DEFAULT_EXPERIMENT_ID,))
        con.close()
        _check(db)
        os.chmod(db, 0o600)
        os.replace(db, path)
    log.info("built the template of new MLflow stores: %s", path)


def _read_only(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)


def _check(db: Path) -> None:
    """Raise ValueError unless ``db`` is a sound SQLite file with a schema revision and no
    experiment or run."""
    con = _read_only(db)
    try:
        if con.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise ValueError(f"{db}: failed SQLite's integrity check")
        if not con.execute("SELECT version_num FROM alembic_version").fetchall():
            raise ValueError(f"{db}: no schema revision")
        for table in ("experiments", "runs"):
            if con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]:  # noqa: S608
                raise ValueError(f"{db}: {table} is not empty")
    except sqlite3.Error as err:
        raise ValueError(f"{db}: {err}") from err
    finally:
        con.close()


def seed_new_store(db: Path) -> bool:
    """Fill ``db``, a new and still empty SQLite file, with a copy of the template; True when it
    was filled. Call it under the store's creation lock. The file keeps its own mode (owner
    only, see tracking/secrets.py ``create_private``). Any failure leaves ``db`` empty (MLflow
    then creates the schema itself) and is logged, never raised."""
    if not db.exists() or db.stat().st_size:
        return False
    try:
        template = template_path()
        src = _read_only(template)
        dst = sqlite3.connect(db)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        _check(db)
    except Exception as err:  # noqa: BLE001 - MLflow's own creation is the fallback
        log.warning("new MLflow store %s: could not copy the schema template (%s); MLflow "
                    "creates it instead", db, err)
        os.truncate(db, 0)
        _drop_if_unsound(_template_file())
        return False
    return True
