"""The review store: who labelled which item how, and when, with every change kept.

One append-only table, ``events``, is the audit trail: each change of one field of one item by one
reader is a row (old and new value as JSON text). Current values are derived from it: the latest event
per (dataset, item, reader, field), found through the index that ends in ``id``. There is no second
table to keep in step, so the trail and the current values cannot disagree.

``dataset`` is the key the review page works under (a dataset name or a run id). Fields:

- ``label`` (a class, "uncertain" or "exclude"), ``confidence`` (1..5), ``note`` (plain text, never
  interpreted as HTML here or in the UI), ``flags`` (a subset of FLAGS), ``status`` (STATUSES);
- ``adjudicated``: an admin's final label for an item readers disagree on. It is an ordinary event of
  the admin (reader = the admin's name), so it shows in the trail; the latest one per item counts.

Writes are serialised per item: SQLite takes its write lock up front (BEGIN IMMEDIATE), PostgreSQL a
transaction-scoped advisory lock on (dataset, item, reader), so the old value read inside the
transaction is the true previous value even with many writers.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchModuleError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable

from core import workspace
from core.roles import Identity, require

FLAGS = ("artifact", "poor staining", "out of focus", "not the target structure")
SPECIAL_LABELS = ("uncertain", "exclude")
STATUSES = ("reviewed", "skipped", "to review")  # "to review": tagged from the embedding map
FIELDS = ("label", "confidence", "note", "flags", "status", "adjudicated")
CLEARABLE = ("label", "confidence", "status")  # what Store.clear withdraws; a cleared value is stored as null
NOTE_MAX = 10_000
RETRIES = 5  # attempts at a write that found the database busy
DEFAULT_POLICY = ("adjudicated", "majority", "dataset")

metadata = MetaData()
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("reader", Text, nullable=False),
    Column("role", String(20)),
    Column("field", String(20), nullable=False),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_events_key", "dataset", "item_id", "reader", "field", "id"),
)


class AnnotationError(ValueError):
    """An annotation that cannot be stored; the message says why."""


class AnnotationConflict(AnnotationError):
    """The value changed since the caller showed it (another window or session): nothing was written."""


def _as_stored(value: Any) -> str | None:
    """A value as the store keeps it, for comparing what a page showed with what is stored now."""
    if value is None or (not isinstance(value, (list, tuple, str)) and pd.isna(value)):
        return None
    if isinstance(value, np.integer):
        value = int(value)
    return _dump(list(value) if isinstance(value, tuple) else value)


# ---------------------------------------------------------------- engine


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000"}


def default_url() -> str:
    return os.environ.get("LUMEN_DB_URL") or f"sqlite:///{workspace.home() / 'annotations.db'}"


def open_store(url: str | None = None) -> Store:
    """The store at ``url`` (default: LUMEN_DB_URL, else a SQLite file in the workspace), one per URL."""
    url = url or default_url()
    with _stores_lock:
        if url not in _stores:
            store = Store(_create_engine(url))
            store.create_schema()
            _stores[url] = store
    return _stores[url]


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(url)
        return create_engine(url, pool_pre_ping=True)
    except (ImportError, NoSuchModuleError) as exc:
        driver = parsed.get_driver_name()
        package = DRIVER_PACKAGES.get(driver, driver)
        raise ImportError(f"The annotation database {parsed.render_as_string(hide_password=True)} needs the "
                          f"Python driver '{driver}': pip install '{package}'.") from exc


def _sqlite_engine(url: str) -> Engine:
    """WAL (readers never wait for the writer), a 30 s busy timeout, foreign keys, explicit BEGINs."""
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("writing") else "BEGIN")

    return engine


def _is_transient(exc: OperationalError) -> bool:
    """SQLite busy past its timeout, or a PostgreSQL serialisation failure / deadlock: try again."""
    return "locked" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) in ("40001", "40P01")


# ---------------------------------------------------------------- values


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _load(raw: object) -> Any:
    """JSON text back to a value; a missing one (None, or NaN in a pandas column) is None."""
    return json.loads(raw) if isinstance(raw, str) else None


def _load_column(column: pd.Series) -> list[Any]:
    """Decode a column of JSON texts, each distinct text once (labels repeat a lot)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    decoded = [_load(raw) for raw in uniques]
    return [decoded[code] for code in codes]


def as_text(value: object) -> str:
    """A stored value as plain text for tables and CSV (flags joined with '; ')."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return "; ".join(value) if isinstance(value, (list, tuple)) else str(value)


def _utc(column: pd.Series) -> pd.Series:
    """SQLite hands back naive UTC datetimes, PostgreSQL aware ones: make both aware UTC."""
    return pd.to_datetime(column, utc=True)


def validate(item_id: str, reader: str, *, label: str | None = None, confidence: int | None = None,
             note: str | None = None, flags: list[str] | None = None, status: str | None = None,
             classes: list[str], known_items: set[str] | None = None) -> dict[str, Any]:
    """The fields to write, normalised; AnnotationError with a plain message when one is wrong."""
    if not reader or not reader.strip():
        raise AnnotationError("Give a reader name: every change is recorded under who made it.")
    if not isinstance(item_id, str) or not item_id:
        raise AnnotationError(f"An item id is a non-empty text, not {item_id!r}.")
    if known_items is not None and item_id not in known_items:
        raise AnnotationError(f"Unknown item '{item_id}': it is not in this dataset.")
    allowed = [*classes, *SPECIAL_LABELS]
    if label is not None and label not in allowed:
        raise AnnotationError(f"Unknown label '{label}': use one of {', '.join(allowed)}.")
    if confidence is not None and (isinstance(confidence, bool) or confidence not in range(1, 6)):
        raise AnnotationError(f"Confidence must be a whole number from 1 to 5, not {confidence!r}.")
    if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX):
        raise AnnotationError(f"A note is text of at most {NOTE_MAX} characters.")
    if isinstance(flags, str):
        raise AnnotationError(f"Flags are a list (of {', '.join(FLAGS)}), not the text {flags!r}.")
    if flags is not None:
        unknown = set(flags) - set(FLAGS)
        if unknown:
            raise AnnotationError(f"Unknown flag(s) {', '.join(sorted(unknown))}: use {', '.join(FLAGS)}.")
        flags = [f for f in FLAGS if f in set(flags)]
    if status is not None and status not in STATUSES:
        raise AnnotationError(f"Unknown status '{status}': use {', '.join(STATUSES)}.")
    values = {"label": label, "confidence": None if confidence is None else int(confidence), "note": note,
              "flags": flags, "status": status}
    return {field: value for field, value in values.items() if value is not None}


# ---------------------------------------------------------------- the store


class Store:
    """Reads and writes annotations through one SQLAlchemy engine (shared, thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time anyway: queueing this process's threads here spares them
        # SQLite's busy-wait sleeps; BEGIN IMMEDIATE still orders them against other processes.
        self._thread_lock: AbstractContextManager[object, bool | None] = (
            threading.Lock() if self.is_sqlite else nullcontext())

    def create_schema(self) -> None:
        with self._writing("schema") as conn:
            metadata.create_all(conn)

    @contextmanager
    def _writing(self, key: str) -> Iterator[Connection]:
        """A write transaction that no other writer of the same key can interleave with."""
        with self._thread_lock, self.engine.connect() as conn:
            conn.execution_options(writing=True)
            with conn.begin():
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
                yield conn

    def annotate(self, dataset: str, item_id: str, reader: str, *, label: str | None = None,
                 confidence: int | None = None, note: str | None = None, flags: list[str] | None = None,
                 status: str | None = None, classes: list[str], known_items: set[str] | None = None,
                 role: str, expected: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Record what changed (None leaves a field as it is; note='' and flags=[] clear them).

        `expected`: the reader's values as the caller showed them (field -> value); when one of the
        fields written has changed since (the same reader in another window), AnnotationConflict is
        raised and nothing is written, instead of the last write silently winning.
        Returns the events written: one per field whose value differs from the reader's current one."""
        require(role, "annotate")
        values = validate(item_id, reader, label=label, confidence=confidence, note=note, flags=flags,
                          status=status, classes=classes, known_items=known_items)
        return self._write(dataset, item_id, reader.strip(), role, values, expected)

    def clear(self, dataset: str, item_id: str, reader: str, *, fields: tuple[str, ...] = CLEARABLE,
              known_items: set[str] | None = None, role: str,
              expected: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Withdraw a reader's values (a mis-click, a label on the wrong item): the item counts as not
        labelled by them again, while the trail keeps what was there. Returns the events written."""
        require(role, "annotate")
        unknown = set(fields) - set(CLEARABLE)
        if unknown:
            raise AnnotationError(f"Cannot clear {', '.join(sorted(unknown))}: only {', '.join(CLEARABLE)} "
                                  "(notes and flags clear by saving them empty).")
        validate(item_id, reader, classes=[], known_items=known_items)
        return self._write(dataset, item_id, reader.strip(), role, dict.fromkeys(fields), expected)

    def adjudicate(self, dataset: str, item_id: str, reader: str, label: str, *, classes: list[str],
                   known_items: set[str] | None = None, role: str) -> list[dict[str, Any]]:
        """An admin's final label for an item; it wins over the readers' in corrected labels."""
        require(role, "adjudicate")
        values = validate(item_id, reader, label=label, classes=classes, known_items=known_items)
        return self._write(dataset, item_id, reader.strip(), role, {"adjudicated": values["label"]})

    def _write(self, dataset: str, item_id: str, reader: str, role: str, values: dict[str, Any],
               expected: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        if not dataset:
            raise AnnotationError("Annotations belong to a dataset: give its key.")
        attempt = 0
        while True:
            try:
                with self._writing(json.dumps([dataset, item_id, reader])) as conn:
                    return self._append(conn, dataset, item_id, reader, role, values, expected)
            except OperationalError as exc:
                attempt += 1
                if attempt == RETRIES or not _is_transient(exc):
                    raise AnnotationError(f"The annotation store could not save this change ({exc.orig}). "
                                          "Nothing was saved: free disk space or ask whoever runs the "
                                          "database, then try again.") from exc
                time.sleep(0.05 * 2 ** attempt)

    def _append(self, conn: Connection, dataset: str, item_id: str, reader: str, role: str,
                values: dict[str, Any], expected: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        old = self._latest_values(conn, dataset, item_id, reader)
        if expected is not None:
            changed = [f for f in values if _as_stored(expected.get(f)) != old.get(f)]
            if changed:
                now = ", ".join(f"{f} is now {as_text(_load(old.get(f))) or 'empty'}" for f in changed)
                raise AnnotationConflict(f"This item changed after this page showed it ({now}; saved by you in "
                                         "another window or session). Nothing was saved: look again, then "
                                         "repeat your change if you still want it.")
        at = datetime.now(UTC)
        rows = [{"dataset": dataset, "item_id": item_id, "reader": reader, "role": role, "field": field,
                 "old_value": old.get(field), "new_value": _dump(value), "at": at}
                for field, value in values.items() if _dump(value) != old.get(field)]
        written = []
        for row in rows:  # one by one: the ids come back on every backend
            row_id = conn.execute(events.insert().values(**row).returning(events.c.id)).scalar_one()
            written.append({**row, "id": row_id, "old_value": _load(row["old_value"]),
                            "new_value": _load(row["new_value"])})
        return written

    @staticmethod
    def _latest_values(conn: Connection, dataset: str, item_id: str, reader: str) -> dict[str, str]:
        latest = (select(func.max(events.c.id))
                  .where(events.c.dataset == dataset, events.c.item_id == item_id, events.c.reader == reader)
                  .group_by(events.c.field))
        rows = conn.execute(select(events.c.field, events.c.new_value).where(events.c.id.in_(latest)))
        return dict(rows.all())

    # ------------------------------------------------------------ reading

    def _frame(self, query: Executable) -> pd.DataFrame:
        """A query's rows as a DataFrame, built column by column (pandas is slow on Row objects)."""
        with self.engine.connect() as conn:
            result = conn.execute(query)
            keys, rows = list(result.keys()), result.all()
        columns = zip(*rows) if rows else [()] * len(keys)
        return pd.DataFrame({key: pd.Series(list(values), dtype=object) for key, values in zip(keys, columns)})

    def _latest(self, dataset: str, reader: str | None = None, fields: tuple[str, ...] = FIELDS) -> pd.DataFrame:
        """The latest event of every (item, reader, field): the current values, one per row."""
        where = [events.c.dataset == dataset, events.c.field.in_(fields)]
        if reader is not None:
            where.append(events.c.reader == reader)
        latest = select(func.max(events.c.id)).where(*where).group_by(events.c.item_id, events.c.reader,
                                                                      events.c.field)
        return self._frame(select(events.c.item_id, events.c.reader, events.c.field, events.c.new_value,
                                  events.c.at).where(events.c.id.in_(latest)))

    def current(self, dataset: str, reader: str | None = None) -> pd.DataFrame:
        """One row per (item, reader): item_id, reader, each field's current value, updated."""
        columns = ["item_id", "reader", *FIELDS, "updated"]
        latest = self._latest(dataset, reader)
        if latest.empty:
            return pd.DataFrame(columns=columns)
        latest["value"] = _load_column(latest["new_value"])
        table = latest.pivot(index=["item_id", "reader"], columns="field", values="value")
        table = table.reindex(columns=list(FIELDS))
        table["updated"] = _utc(latest["at"]).groupby([latest["item_id"], latest["reader"]]).max()
        table["confidence"] = table["confidence"].astype("Int64")
        table = table.astype({f: object for f in FIELDS if f != "confidence"})
        table = table.where(table.notna(), None)
        table = table.reset_index().rename_axis(columns=None)
        return table.sort_values(["item_id", "reader"], ignore_index=True)[columns]

    def labels(self, dataset: str) -> pd.DataFrame:
        """Readers' current labels as a table: one row per item, one column per reader."""
        latest = self._latest(dataset, fields=("label",))
        if latest.empty:
            return pd.DataFrame()
        latest["label"] = _load_column(latest["new_value"])
        return latest.pivot(index="item_id", columns="reader", values="label")

    def adjudications(self, dataset: str) -> pd.Series:
        """The latest adjudicated label of every adjudicated item (whichever admin gave it)."""
        latest = (select(func.max(events.c.id))
                  .where(events.c.dataset == dataset, events.c.field == "adjudicated")
                  .group_by(events.c.item_id))
        rows = self._frame(select(events.c.item_id, events.c.new_value).where(events.c.id.in_(latest)))
        return pd.Series(_load_column(rows["new_value"]), index=rows["item_id"].to_numpy(),
                         name="adjudicated", dtype=object)

    def history(self, dataset: str, item_id: str | None = None) -> pd.DataFrame:
        """The audit trail, newest first; values as plain text (flags joined with '; ')."""
        query = select(events.c.id, events.c.at, events.c.item_id, events.c.reader, events.c.role, events.c.field,
                       events.c.old_value, events.c.new_value).where(events.c.dataset == dataset)
        if item_id is not None:
            query = query.where(events.c.item_id == item_id)
        trail = self._frame(query.order_by(events.c.id.desc()))
        for column in ("old_value", "new_value"):
            trail[column] = [as_text(_load(v)) for v in trail[column]]
        trail["at"] = _utc(trail["at"])
        return trail

    def version(self) -> int:
        """The newest event's id: a cheap cache key for the UI (it changes on every write)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(events.c.id))).scalar_one() or 0

    def readers(self, dataset: str) -> list[str]:
        query = select(events.c.reader).where(events.c.dataset == dataset).distinct().order_by(events.c.reader)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def datasets(self) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(events.c.dataset).distinct().order_by(events.c.dataset)).scalars())

    def count(self, dataset: str | None = None) -> int:
        query = select(func.count()).select_from(events)
        if dataset is not None:
            query = query.where(events.c.dataset == dataset)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()


# ---------------------------------------------------------------- agreement


def _paired(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """The items both sides gave a class label (not uncertain/exclude), aligned on item id."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return both[~both["a"].isin(SPECIAL_LABELS) & ~both["b"].isin(SPECIAL_LABELS)]


def cohen_kappa(a: pd.Series, b: pd.Series) -> float:
    """Cohen's kappa over the items both labelled; NaN when it says nothing (< 2 items, one category)."""
    from sklearn.metrics import cohen_kappa_score

    both = _paired(a, b)
    if len(both) < 2 or len(set(both["a"]) | set(both["b"])) < 2:
        return float("nan")
    return float(cohen_kappa_score(both["a"].astype(str), both["b"].astype(str)))


def agreement(store: Store, dataset: str, dataset_labels: pd.Series | None = None,
              model_labels: pd.Series | None = None) -> pd.DataFrame:
    """Kappa, raw agreement and n for each pair of readers, and each reader vs dataset label and model.

    The label Series are indexed by item id."""
    labels = store.labels(dataset)
    pairs = [(a, b, labels[a], labels[b]) for a, b in combinations(labels.columns, 2)]
    for name, other in (("dataset label", dataset_labels), ("model", model_labels)):
        if other is not None:
            pairs += [(reader, name, labels[reader], other) for reader in labels.columns]
    rows = []
    for first, second, a, b in pairs:
        both = _paired(a, b)
        rows.append({"a": first, "b": second, "kappa": cohen_kappa(a, b), "n": len(both),
                     "agreement": float((both["a"] == both["b"]).mean()) if len(both) else float("nan")})
    return pd.DataFrame(rows, columns=["a", "b", "kappa", "n", "agreement"])


def disagreements(store: Store, dataset: str) -> pd.DataFrame:
    """Items two or more readers labelled differently (uncertain/exclude count as labels), to adjudicate.

    Columns: item_id, labels ("reader: label; ..."), readers (how many), adjudicated (label or None)."""
    columns = ["item_id", "labels", "readers", "adjudicated"]
    labels = store.labels(dataset)
    if labels.empty:
        return pd.DataFrame(columns=columns)
    votes = labels.melt(ignore_index=False, value_name="label").dropna(subset=["label"]).reset_index()
    stats = votes.groupby("item_id")["label"].agg(["size", "nunique"])
    differ = votes[votes["item_id"].isin(stats.index[(stats["size"] >= 2) & (stats["nunique"] >= 2)])]
    text = (differ["reader"] + ": " + differ["label"].astype(str)).groupby(differ["item_id"]).agg("; ".join)
    table = pd.DataFrame({"item_id": text.index, "labels": text.to_numpy(),
                          "readers": stats["size"].reindex(text.index).to_numpy()})
    table["adjudicated"] = table["item_id"].map(store.adjudications(dataset)).astype(object)
    return table.where(table.notna(), None)[columns]


# ---------------------------------------------------------------- export


def _export_table(store: Store, dataset: str | None) -> pd.DataFrame:
    keys = store.datasets() if dataset is None else [dataset]
    frames = [store.current(key).assign(dataset=key) for key in keys]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=["dataset", "item_id", "reader", *FIELDS, "updated"])
    table = pd.concat(frames, ignore_index=True)
    return table[["dataset", "item_id", "reader", *FIELDS, "updated"]]


def annotations_bytes(store: Store, dataset: str | None, format: str = "csv", *,
                      who: Identity | str) -> tuple[bytes, int]:
    """Current values per (dataset, item, reader) as CSV or JSON bytes, and the row count; dataset
    None: all. In memory, so two sessions downloading at once never share a file."""
    require(who, "download annotations")
    if format not in ("csv", "json"):
        raise AnnotationError(f"Unknown export format '{format}': use csv or json.")
    table = _export_table(store, dataset)
    table["updated"] = [t.isoformat() for t in table["updated"]]
    if format == "csv":
        table["flags"] = table["flags"].map(as_text)
        return table.to_csv(index=False).encode(), len(table)
    records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return json.dumps(records, indent=2, ensure_ascii=False, default=int).encode(), len(table)


def export_annotations(store: Store, dataset: str | None, path: str | Path, format: str = "csv", *,
                       who: Identity | str) -> int:
    """Write the annotations (see annotations_bytes) to `path`, atomically; returns the rows written."""
    data, rows = annotations_bytes(store, dataset, format, who=who)
    workspace.atomic_write_bytes(Path(path), data)
    return rows


def majority_labels(labels: pd.DataFrame) -> pd.Series:
    """Per item, the label more than half of its readers gave; items without one are left out."""
    if labels.empty:
        return pd.Series(dtype=object)
    stacked = labels.reset_index().melt(id_vars="item_id", value_name="label").dropna(subset=["label"])
    counts = stacked.groupby(["item_id", "label"]).size().rename("votes").reset_index()
    counts["readers"] = counts["item_id"].map(stacked.groupby("item_id").size())
    winners = counts[counts["votes"] * 2 > counts["readers"]]
    return pd.Series(winners["label"].to_numpy(), index=winners["item_id"].to_numpy(), dtype=object)


def corrected_labels_csv(store: Store, dataset: str, items: pd.DataFrame, path: str | Path,
                         policy: tuple[str, ...] = DEFAULT_POLICY, *, who: Identity | str) -> dict[str, str | int]:
    """Write a CSV source (path,label,original_label,source,group,split,mask_path) with the corrected labels.

    ``items`` is a manifest (id, path, label, split, group) or predictions joined with the paths
    (item_id, path, ...). For each item the first of ``policy`` that gives a label wins: "adjudicated"
    (an admin's), "majority" (more than half its readers), "dataset" (the original label). Items that
    end up "exclude" or "uncertain" are left out of the CSV, as are items without a file; the returned
    counts say how many."""
    require(who, "export data")
    unknown = set(policy) - set(DEFAULT_POLICY)
    if unknown:
        raise AnnotationError(f"Unknown label source(s) {', '.join(sorted(unknown))}: use {', '.join(DEFAULT_POLICY)}.")
    items = items.rename(columns={"id": "item_id"})
    if "path" not in items:
        raise AnnotationError("A corrected-labels CSV names each image's file: pass the dataset manifest "
                              "(or predictions joined with its path column).")
    if "index" in items and (items["index"].fillna(-1).astype(int) >= 0).any():
        raise AnnotationError("Items of an npz archive have no file of their own, so no CSV source can name them.")
    items = items[items["path"].fillna("").astype(str) != ""].drop_duplicates("item_id").set_index("item_id")
    candidates = {"adjudicated": store.adjudications(dataset), "majority": majority_labels(store.labels(dataset)),
                  "dataset": items["label"].dropna()}
    label = pd.Series(None, index=items.index, dtype=object)
    source = pd.Series(None, index=items.index, dtype=object)
    for name in policy:
        found = candidates[name].reindex(items.index)
        fill = label.isna() & found.notna()
        label.loc[fill], source.loc[fill] = found[fill], name
    masks = items["mask_path"] if "mask_path" in items else pd.Series(None, index=items.index, dtype=object)
    table = pd.DataFrame({"path": [_csv_path(p, Path(path)) for p in items["path"]], "label": label,
                          "original_label": items["label"], "source": source,
                          "group": items.get("group"), "split": items.get("split"),
                          # masks travel with their images, so Grad-CAM's mask energy still works
                          "mask_path": [_csv_path(m, Path(path)) if isinstance(m, str) and m else None
                                        for m in masks]})
    keep = label.notna() & ~label.isin(SPECIAL_LABELS)
    workspace.atomic_write_bytes(Path(path), table[keep].to_csv(index=False).encode())
    return {"path": str(path), "written": int(keep.sum()), "excluded": int((label == "exclude").sum()),
            "uncertain": int((label == "uncertain").sum()), "unlabelled": int(label.isna().sum()),
            "changed": int((keep & (label != items["label"])).sum())}


def _csv_path(image: str, csv_path: Path) -> str:
    """Relative to the CSV's folder when the image lies under it, else absolute."""
    image_path = Path(image).resolve()
    folder = csv_path.resolve().parent
    return image_path.relative_to(folder).as_posix() if image_path.is_relative_to(folder) else str(image_path)
