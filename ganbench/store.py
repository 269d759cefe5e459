"""Trial records in the Optuna storage (the source of truth) and their exports under results/.

A storage is either an Optuna RDB URL (``postgresql://...``, ``sqlite:///...``), shared by many
machines, or a path to an Optuna journal file; the default is ``results/<study>/study.journal``,
which several processes on one machine share safely (file-locked appends).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from .api import GanbenchError

RESULTS_DIR = Path(os.environ.get("GANBENCH_RESULTS", "results"))
RECORD_ATTR = "record"
POINT_ATTR = "point"
SPEC_ATTR = "spec"
HEARTBEAT_INTERVAL = 5  # seconds between heartbeats of a running trial
GRACE_PERIOD = 30  # a running trial with no heartbeat for this long belongs to a dead worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def results_dir() -> Path:
    return Path(os.environ.get("GANBENCH_RESULTS", str(RESULTS_DIR)))


def default_storage(study: str) -> str:
    return str(results_dir() / study / "study.journal")


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
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
            engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except ModuleNotFoundError as exc:
        raise GanbenchError(f"storage {redact(url)}: driver missing ({exc.name}); for PostgreSQL: pip install 'ganbench[postgres]'") from None
    except Exception as exc:  # sqlalchemy errors: bad URL, server down, bad credentials
        raise GanbenchError(f"cannot open storage {redact(url)}: {first_line(exc)}") from None


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def first_line(exc: BaseException) -> str:
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
    return trial_records(s.get_trials(deepcopy=False))


def latest_study() -> str:
    """The most recently modified study under results/ (for commands whose STUDY is optional)."""
    journals = sorted(results_dir().glob("*/study.journal"), key=lambda p: p.stat().st_mtime)
    if not journals:
        raise GanbenchError(f"no studies under {results_dir()}/; run `ganbench run --grid` first or name a study")
    return journals[-1].parent.name


def export_records(study: str, records: list[dict]) -> Path:
    """Write results/<study>/records.jsonl (an export; the storage stays the source of truth)."""
    out = results_dir() / study
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
