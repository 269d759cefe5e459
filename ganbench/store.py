"""Trial records in the Optuna storage (the source of truth) and their exports under results/.

A storage is either an Optuna RDB URL (``postgresql://...``, ``sqlite:///...``), shared by many
machines, or a path to an Optuna journal file; the default is ``results/<study>/study.journal``,
which several processes on one machine share safely (file-locked appends).
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import optuna
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .api import GanbenchError

RESULTS_DIR = Path(os.environ.get("GANBENCH_RESULTS", "results"))
RECORD_ATTR = "record"
POINT_ATTR = "point"
SPEC_ATTR = "spec"


def _seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment (tests shorten these to run in seconds)."""
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise GanbenchError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise GanbenchError(f"{name}={raw!r}: expected a positive number of seconds")
    return value


HEARTBEAT_INTERVAL = _seconds("GANBENCH_HEARTBEAT_INTERVAL", 5)  # between heartbeats of a running trial
GRACE_PERIOD = _seconds("GANBENCH_GRACE_PERIOD", 30)  # no heartbeat for this long: the worker is dead
# How long a worker waits out an unreachable RDB server (a restart) before it gives up.
STORAGE_PATIENCE = _seconds("GANBENCH_STORAGE_PATIENCE", 120)
# What an RDB storage raises when its server is away: Optuna wraps SQLAlchemy's errors raised in
# a commit in StorageInternalError; reads raise them as they are.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (StorageInternalError, sqlalchemy.exc.SQLAlchemyError)
T = TypeVar("T")

optuna.logging.set_verbosity(optuna.logging.WARNING)


def results_dir() -> Path:
    return Path(os.environ.get("GANBENCH_RESULTS", str(RESULTS_DIR)))


#: Study names become folder names under results/: no path separators, no leading dot.
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")


def study_dir(study: str) -> Path:
    """results/<study>, for a study name that is a plain folder name (never a path out of results/)."""
    if not STUDY_NAME.fullmatch(study):
        raise GanbenchError(f"invalid study name {study!r}: use letters, digits and _ . + - "
                            "(it names the folder results/<study>/), not starting with '.' or '-'")
    return results_dir() / study


def default_storage(study: str) -> str:
    return str(study_dir(study) / "study.journal")


def is_url(storage: str) -> bool:
    return "://" in storage


def open_storage(storage: str) -> BaseStorage:
    """Open a storage, turning connection problems into one clear GanbenchError."""
    if is_url(storage):
        return _open_rdb(storage)
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open-lock works on every file system (the default symlink lock does not on some).
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _open_rdb(url: str) -> BaseStorage:
    engine_url = postgres_driver(url)
    try:
        sqlalchemy.engine.make_url(engine_url)
    except Exception as exc:
        raise GanbenchError(f"storage {redact(url)} is not a valid database URL ({first_line(exc)}); "
                            "expected e.g. postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    try:
        with warnings.catch_warnings():  # the heartbeat is "experimental" since Optuna 2.9; workers rely on it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                engine_url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                engine_kwargs=_engine_kwargs(engine_url))
    except ImportError as exc:  # Optuna re-raises the driver's ModuleNotFoundError with its own words
        missing = getattr(exc.__cause__, "name", None) or first_line(exc)
        raise GanbenchError(f"storage {redact(url)}: database driver missing ({missing})") from None
    except Exception as exc:  # sqlalchemy errors: bad URL, server down, bad credentials
        raise GanbenchError(f"cannot open storage {redact(url)}: {first_line(exc)}") from None


def postgres_driver(url: str) -> str:
    """A bare postgresql:// (or postgres://) URL with the driver that is installed made explicit.

    SQLAlchemy's default driver for postgresql:// changed from psycopg2 (2.0) to psycopg 3 (2.1);
    whichever of the two is installed serves, so the URL does not depend on SQLAlchemy's version.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in ("postgresql", "postgres"):
        return url
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}{sep}{rest}"
    raise GanbenchError(f"storage {redact(url)}: no PostgreSQL driver installed; pip install 'ganbench[postgres]'")


def _engine_kwargs(url: str) -> dict[str, Any] | None:
    """Pooled connections are checked before use (they die when the server restarts); for
    PostgreSQL, a server that does not answer fails the connection in 10 s instead of hanging, and
    TCP keepalives notice a server machine that vanished in about a minute (not hours)."""
    if url.startswith("sqlite"):
        return None
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        given = sqlalchemy.engine.make_url(url).query  # the URL's own ?connect_timeout=... wins
        kwargs["connect_args"] = {k: v for k, v in _PG_CONNECT.items() if k not in given}
    return kwargs


_PG_CONNECT = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def retrying(action: Callable[[], T], what: str, patience: float | None = None) -> T:
    """``action()``, retried while the storage is unreachable (a server restart) for up to
    ``patience`` seconds; then a GanbenchError saying what was being done."""
    deadline = time.monotonic() + (STORAGE_PATIENCE if patience is None else patience)
    delay = 0.5
    while True:
        try:
            return action()
        except STORAGE_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise GanbenchError(f"lost the storage while {what}: {first_line(exc)}") from None
            time.sleep(delay)
            delay = min(2 * delay, 5.0)


@contextmanager
def storage_guard(storage: str) -> Iterator[None]:
    """Turn a storage failure inside the block into one line (a GanbenchError), not a traceback."""
    try:
        yield
    except STORAGE_ERRORS as exc:
        raise GanbenchError(f"storage {redact(storage)}: {first_line(exc)}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def first_line(exc: BaseException) -> str:
    if isinstance(exc, StorageInternalError) and exc.__cause__ is not None:
        exc = exc.__cause__  # Optuna's own message is generic; the driver's says what happened
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_study(study: str, storage: str | None = None) -> optuna.Study:
    url = storage or default_storage(study)
    if not is_url(url) and not Path(url).exists():
        raise GanbenchError(f"no study {study!r}: {url} does not exist (run `ganbench run --grid --study {study}` first)")
    try:
        return optuna.load_study(study_name=study, storage=open_storage(url))
    except KeyError:
        raise GanbenchError(f"no study {study!r} in storage {redact(url)}") from None
    except GanbenchError:
        raise
    except Exception as exc:
        raise GanbenchError(f"cannot read study {study!r} from {redact(url)}: {first_line(exc)}") from None


def trial_records(trials: list[FrozenTrial]) -> list[dict]:
    """The records of finished trials (completed, diverged, pruned, or failed with a reason).

    Trials without a record are workers that died mid-trial; their point is rerun, so they are
    not results.
    """
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        record = t.user_attrs.get(RECORD_ATTR)
        if record is not None and t.state.is_finished():
            out.append({**record, "trial_number": t.number})
    return out


def load_records(study: str, storage: str | None = None) -> list[dict]:
    s = load_study(study, storage)
    with storage_guard(storage or default_storage(study)):
        return trial_records(s.get_trials(deepcopy=False))


def latest_study() -> str:
    """The most recently modified study under results/ (for commands whose STUDY is optional)."""
    journals = sorted(results_dir().glob("*/study.journal"), key=lambda p: p.stat().st_mtime)
    if not journals:
        raise GanbenchError(f"no studies under {results_dir()}/; run `ganbench run --grid` first or name a study")
    return journals[-1].parent.name


def export_records(study: str, records: list[dict]) -> Path:
    """Write results/<study>/records.jsonl (an export; the storage stays the source of truth)."""
    out = study_dir(study)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r, default=_json_default) + "\n")
    tmp.replace(path)  # atomic: an interrupted export never truncates the previous one
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def objective_value(record: dict) -> float:
    """The number Optuna stores for a finished trial: the final primary metric, +inf (or -inf
    for higher-is-better metrics) when it is missing or non-finite, so bad trials sort last."""
    primary = record.get("primary")
    value = (record.get("metrics") or {}).get(primary) if primary else None
    if value is None or not math.isfinite(value):
        return math.inf if record.get("lower_is_better", True) else -math.inf
    return float(value)


__all__ = ["TrialState", "open_storage", "load_study", "load_records", "export_records", "default_storage"]
