"""Credentials in URLs (``scheme://user:password@host/...``) never reach a record.

A password may come in a tracking URI (``tracking.uri=http://alice:pw@host:5000``), an Optuna
storage URL (``hydra.sweeper.storage=postgresql://bob:pw@db/optuna``) or any other URL. The
platform keeps such a URL in two halves:

* the **clean URL**, without ``user:password@``, is what every config, override, tag, note,
  file and log line holds (sweep/run.py cleans the command line before Hydra parses it, and
  the tracking and storage openers clean any URL they are handed);
* the **credentials** live only in the environment, which the jobs inherit (Hydra's local
  launcher: the same process; submitit's local executor copies ``os.environ``; ``sbatch``
  exports the submitting environment unless told ``--export=NONE``):

  - ``MIXERLAB_URL_CREDENTIALS`` (``CREDENTIALS_ENV``): one credentialed URL prefix
    ``scheme://user:password@host:port`` per line, the userinfo exactly as given (so
    percent-encoding survives for SQLAlchemy); ``credentialed`` puts it back, in memory only,
    into the URL handed to MlflowClient / Optuna (database stores);
  - for ``http(s)`` tracking servers also MLflow's own ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD`` (percent-decoded), which MLflow's REST client sends as HTTP
    basic auth with every request (mlflow/utils/credentials.py ``get_default_host_creds``,
    mlflow/utils/rest_utils.py). The URL itself must then carry no userinfo: ``requests``
    would replace that header with the URL's own.

slurm/sweep_driver.sbatch writes the same ``CREDENTIALS_ENV`` format from bash.

``redact`` is the one redaction of text (``user:password@`` -> ``user:***@``), for anything
printed or logged; ``install_log_redaction`` applies it to every log record of the process.

A URL is recognised as ``scheme://user:password@host``: the user part holds no ``: / ? # @``,
the password anything but white space up to the ``@`` before the host (a raw ``@`` or ``/`` in
it included). A URL with an ``@`` in its path or query after a ``host:port``
(``http://h:5000/p?mail=a@b``) reads as credentials too: it is redacted or cut short.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from urllib.parse import unquote

CREDENTIALS_ENV = "MIXERLAB_URL_CREDENTIALS"
MLFLOW_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
REDACTED = "***"

# scheme://user:password@host: the user holds no ``: / ? # @``; the password runs to the first
# ``@`` followed by a host[:port] without another ``@`` (so a raw ``@`` in it is covered too)
_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^:/?#@\s'\"]*):(?P<password>\S*?)@"
    r"(?=[^@\s/?#'\",\]}]*(?:[/?#\s'\",\]}]|$))")
# the host[:port] after ``scheme://`` (or after the userinfo's ``@``)
_HOSTPORT = re.compile(r"[^/?#\s'\",\]}]*")
_HTTP = ("http", "https")
_factory_installed = False


def redact(text: str) -> str:
    """``text`` with every URL's ``user:password@`` replaced by ``user:***@``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}://{m['user']}:{REDACTED}@", str(text))


def split_credentials(uri: str) -> tuple[str, str | None]:
    """(``uri`` without its ``user:password@``, that ``user:password`` or None)."""
    match = _CREDENTIALS.search(uri)
    if match is None:
        return uri, None
    userinfo = f"{match['user']}:{match['password']}"
    return uri[:match.start()] + f"{match['scheme']}://" + uri[match.end():], userinfo


def _key(scheme: str, rest: str) -> str:
    """``scheme://host:port`` of a URL, ``rest`` being what follows ``scheme://[userinfo@]``."""
    return f"{scheme.lower()}://{_HOSTPORT.match(rest).group(0)}"


def _stored() -> dict[str, str]:
    """The credentials in the environment: ``scheme://host:port`` -> ``user:password``."""
    out = {}
    for line in os.environ.get(CREDENTIALS_ENV, "").splitlines():
        match = _CREDENTIALS.match(line.strip())
        if match:
            out[_key(match["scheme"], line.strip()[match.end():])] = \
                f"{match['user']}:{match['password']}"
    return out


def _store(key: str, userinfo: str) -> None:
    entries = {**_stored(), key: userinfo}
    scheme_sep = "://"
    os.environ[CREDENTIALS_ENV] = "\n".join(
        k.replace(scheme_sep, f"{scheme_sep}{u}@", 1) for k, u in entries.items())


def stash_credentials(text: str) -> str:
    """``text`` (a URL, or an override holding URLs) with each URL's ``user:password@`` moved
    into the environment (see the module docstring); returns the clean text."""
    clean = str(text)
    while (match := _CREDENTIALS.search(clean)) is not None:
        scheme, userinfo = match["scheme"], f"{match['user']}:{match['password']}"
        rest = clean[match.end():]
        _store(_key(scheme, rest), userinfo)
        if scheme.lower() in _HTTP:
            _set_mlflow_credentials(userinfo)
        clean = clean[:match.start()] + f"{scheme}://" + rest
    return clean


def strip_argv(argv: list[str]) -> list[str]:
    """Command-line arguments with every URL's credentials moved into the environment."""
    return [stash_credentials(arg) for arg in argv]


def credentialed(uri: str) -> str:
    """The URL to hand to a client library (never to write anywhere): ``uri`` cleaned
    (``stash_credentials``), then, for a database server's URL, with its stored
    ``user:password@`` back in (SQLite has no login: its URL stays clean); an ``http(s)`` URL
    stays clean and its credentials are set as MLflow's ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD``."""
    clean = stash_credentials(uri)
    scheme, sep, rest = clean.partition("://")
    if not sep or scheme.lower().partition("+")[0] == "sqlite":  # a file: no login to give
        return clean
    userinfo = _stored().get(_key(scheme, rest))
    if userinfo is None:
        return clean
    if scheme.lower() in _HTTP:
        _set_mlflow_credentials(userinfo)
        return clean
    return f"{scheme}://{userinfo}@{rest}"


def _set_mlflow_credentials(userinfo: str) -> None:
    user, _, password = userinfo.partition(":")
    os.environ[MLFLOW_USERNAME_ENV] = unquote(user)
    os.environ[MLFLOW_PASSWORD_ENV] = unquote(password)


def install_log_redaction() -> None:
    """Make every log record of this process (the console, Hydra's ``<job>.log`` files)
    pass through ``redact``: a log record factory, which survives Hydra's reconfiguration of
    the handlers. Idempotent."""
    global _factory_installed
    if _factory_installed:
        return
    make_record = logging.getLogRecordFactory()

    def redacted_record(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's to report
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(redacted_record)
    _factory_installed = True


def create_private(path: str | os.PathLike) -> bool:
    """Create the empty file ``path`` readable and writable by its owner only (0600, whatever
    the umask), unless it exists; True when it was created here. For the files of run data the
    platform creates: a SQLite tracking store or Optuna database (SQLite gives its -journal,
    -wal and -shm files the database's own mode), the Optuna journal and the sweep's parent-run
    file. A file that exists keeps its mode: the user chose it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return False
    return True


def _strip_stdin_argv() -> None:
    """``python -m tracking.secrets`` (for slurm/sweep_driver.sbatch, which must not keep a
    password on its own command line): NUL-terminated arguments on stdin; on stdout,
    NUL-terminated, the resulting ``CREDENTIALS_ENV``, ``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD`` (empty when unset), then the clean arguments."""
    data = os.fsdecode(sys.stdin.buffer.read())
    clean = strip_argv(data.split("\0")[:-1])
    env = [os.environ.get(k, "") for k in (CREDENTIALS_ENV, MLFLOW_USERNAME_ENV,
                                             MLFLOW_PASSWORD_ENV)]
    sys.stdout.buffer.write(b"".join(os.fsencode(x) + b"\0" for x in env + clean))


if __name__ == "__main__":
    _strip_stdin_argv()
