"""The review store under load and misuse: no annotation lost, every change in the audit trail.

Each store test runs on SQLite and, when a server can be started here, on a private throwaway
PostgreSQL cluster (Debian's `postgresql` package, run as the `postgres` user when we are root).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from core import annotations
from core.__main__ import main as cli
from core.annotations import AnnotationError, agreement, cohen_kappa, corrected_labels_csv, disagreements
from core.scanning import scan
from core.sources import SourceSpec
from tests.conftest import ROOT, gradient

CLASSES = ["GS", "non-GS"]
THREADS, WRITES = 8, 250


# ---------------------------------------------------------------- PostgreSQL server


def _pg_bin() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: on PATH, else Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    return Path(candidates[-1]).parent if candidates else None


def _as_postgres(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway cluster over a unix socket in a temporary folder; yields (socket folder, admin connection)."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg (PostgreSQL driver) not installed: "
                                                    "pip install 'psycopg[binary]'")
    bin_dir = _pg_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not installed: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="lumen-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "log.txt"

    def run(*command):
        return subprocess.run(_as_postgres(*command), capture_output=True, text=True, timeout=120)

    init = run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    start = init.returncode == 0 and run(
        str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
        "-o", f"-k {root} -c listen_addresses='' -c max_connections=200 -F")
    if not start or start.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {(init.stderr or (start and start.stderr) or '')[-500:]}")
    admin = psycopg.connect(host=str(root), user="postgres", dbname="postgres", autocommit=True)
    try:
        yield root, admin
    finally:
        admin.close()
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


_databases = iter(range(10**6))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database per test: a SQLite file, or a new database on the throwaway cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'annotations.db'}"
    socket_dir, admin = request.getfixturevalue("pg_server")
    name = f"lumen_test_{next(_databases)}"
    admin.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://postgres@/{name}?host={socket_dir}"


@pytest.fixture
def store(db_url):
    store = annotations.open_store(db_url)
    yield store
    store.engine.dispose()


# ---------------------------------------------------------------- helpers


def run_threads(work) -> list:
    """Run work(thread_index) in THREADS threads started together; re-raise the first failure."""
    barrier, results, errors = threading.Barrier(THREADS), [None] * THREADS, []

    def target(t):
        barrier.wait()
        try:
            results[t] = work(t)
        except Exception as exc:  # noqa: BLE001 - handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def raw_events(store) -> pd.DataFrame:
    """Every stored event, decoded, in id order (what the trail says, without the store's derivation)."""
    with store.engine.connect() as conn:
        rows = conn.execute(annotations.events.select().order_by(annotations.events.c.id)).mappings().all()
    table = pd.DataFrame([dict(r) for r in rows])
    for column in ("old_value", "new_value"):
        table[column] = pd.Series([json.loads(v) if isinstance(v, str) else None for v in table[column]],
                                  dtype=object)
    return table


def assert_trail_is_a_chain(table: pd.DataFrame) -> None:
    """Per item/reader/field, each event's old value is the previous event's new value."""
    for key, chain in table.groupby(["dataset", "item_id", "reader", "field"]):
        olds, news = chain["old_value"].tolist(), chain["new_value"].tolist()
        assert olds == [None, *news[:-1]], key


def last_writes(table: pd.DataFrame) -> dict:
    """(item, reader, field) -> the newest value, folded from the raw events."""
    return {(r.item_id, r.reader, r.field): r.new_value for r in table.itertuples()}  # id order: last wins


def current_as_dict(current: pd.DataFrame) -> dict:
    values = {}
    for row in current.to_dict(orient="records"):
        for field in annotations.FIELDS:
            if row[field] is not None and not (field == "confidence" and pd.isna(row[field])):
                values[(row["item_id"], row["reader"], field)] = row[field]
    return values


# ---------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_threads_on_distinct_items_lose_nothing(store):
    def work(t):
        return sum(len(store.annotate("ds", f"t{t}-{i}", f"reader{t}", label=CLASSES[i % 2],
                                      confidence=1 + i % 5, classes=CLASSES, role="annotator")) for i in range(WRITES))

    assert sum(run_threads(work)) == THREADS * WRITES * 2
    assert store.count("ds") == THREADS * WRITES * 2
    trail = store.history("ds")
    assert len(trail) == THREADS * WRITES * 2 and trail["id"].is_monotonic_decreasing
    assert (trail["old_value"] == "").all()
    current = store.current("ds")
    assert len(current) == THREADS * WRITES
    assert current_as_dict(current) == last_writes(raw_events(store))


@pytest.mark.slow
def test_threads_on_the_same_items_keep_an_exact_trail(store):
    """Four threads per reader fight over 25 items: every note lands, every old value is the true one."""
    items = [f"item{i}" for i in range(25)]

    def work(t):
        rng = np.random.default_rng(t)
        return [store.annotate("ds", items[i % 25], f"reader{t % 2}", note=f"{t}:{i}",
                               label=CLASSES[rng.integers(2)], classes=CLASSES, known_items=set(items),
                               role="annotator")
                for i in range(WRITES)]

    written = [event for calls in run_threads(work) for call in calls for event in call]
    table = raw_events(store)
    assert len(table) == len(written) == store.count("ds")
    notes = table[table["field"] == "note"]
    assert sorted(notes["new_value"]) == sorted(f"{t}:{i}" for t in range(THREADS) for i in range(WRITES))
    assert_trail_is_a_chain(table)
    assert current_as_dict(store.current("ds")) == last_writes(table)
    assert sorted(e["id"] for e in written) == table["id"].tolist()


WRITER = """
import sys, time
from pathlib import Path
from core.annotations import open_store
store, me, flag = open_store(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
(flag.parent / f"ready{me}").touch()
while not flag.exists():
    time.sleep(0.01)
for i in range(150):
    store.annotate("ds", f"item{i % 10}", "shared", note=f"{me}:{i}", label=["GS", "non-GS"][i * me % 2],
                   classes=["GS", "non-GS"], role="annotator")
"""


@pytest.mark.slow
def test_processes_on_the_same_items_keep_an_exact_trail(store, db_url, tmp_path):
    """Other app instances on the same database: the database itself must order the writers."""
    go = tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, str(p), str(go)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for p in range(1, 4)]
    while len(list(tmp_path.glob("ready*"))) < len(writers) and all(w.poll() is None for w in writers):
        threading.Event().wait(0.02)
    go.touch()
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    table = raw_events(store)
    assert sorted(table.loc[table["field"] == "note", "new_value"]) == sorted(
        f"{p}:{i}" for p in range(1, 4) for i in range(150))
    assert_trail_is_a_chain(table)
    assert current_as_dict(store.current("ds")) == last_writes(table)


def test_a_new_process_sees_everything(store, db_url):
    for i in range(50):
        store.annotate("ds", f"item{i}", "alice", label=CLASSES[i % 2], flags=["artifact"], classes=CLASSES,
                       role="annotator")
    store.annotate("ds", "item0", "alice", label="exclude", note="<b>blurred</b>", classes=CLASSES, role="annotator")
    script = ("import json, sys; from core.annotations import open_store; s = open_store(sys.argv[1]); "
              "c = s.current('ds'); print(json.dumps({'events': s.count(), 'rows': len(c), "
              "'item0': c[c.item_id == 'item0'].iloc[0][['label', 'note', 'flags']].tolist()}))")
    out = subprocess.run([sys.executable, "-c", script, db_url], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"events": 102, "rows": 50,
                                      "item0": ["exclude", "<b>blurred</b>", ["artifact"]]}


# ---------------------------------------------------------------- refusals and the audit trail


@pytest.mark.parametrize("kwargs, message", [
    ({"label": "tumour"}, "Unknown label 'tumour'"),
    ({"item_id": "nowhere"}, "Unknown item 'nowhere'"),
    ({"reader": "   "}, "Give a reader name"),
    ({"confidence": 7}, "Confidence must be"),
    ({"flags": ["smudge"]}, "Unknown flag"),
])
def test_bad_annotations_are_refused_and_not_stored(store, kwargs, message):
    call = {"item_id": "a", "reader": "alice", "label": "GS", **kwargs}
    with pytest.raises(AnnotationError, match=message):
        store.annotate("ds", call.pop("item_id"), call.pop("reader"), classes=CLASSES, known_items={"a"},
                       role="annotator", **call)
    assert store.count() == 0


def test_the_store_refuses_what_a_role_may_not_do(store):
    with pytest.raises(PermissionError, match="A viewer cannot annotate"):
        store.annotate("ds", "a", "vera", label="GS", classes=CLASSES, role="viewer")
    with pytest.raises(PermissionError, match="An annotator cannot adjudicate; that needs the admin role"):
        store.adjudicate("ds", "a", "ann", "GS", classes=CLASSES, role="annotator")
    with pytest.raises(PermissionError, match="Unknown role 'owner'"):
        store.annotate("ds", "a", "olga", label="GS", classes=CLASSES, role="owner")
    assert store.count() == 0


def test_only_changes_are_recorded_with_old_and_new_values(store):
    assert len(store.annotate("ds", "a", "alice", label="GS", confidence=3, classes=CLASSES, role="annotator")) == 2
    assert store.annotate("ds", "a", "alice", label="GS", confidence=3, classes=CLASSES, role="annotator") == []
    [event] = store.annotate("ds", "a", "alice", label="non-GS", confidence=3, classes=CLASSES, role="annotator")
    assert (event["field"], event["old_value"], event["new_value"]) == ("label", "GS", "non-GS")
    store.annotate("ds", "a", "alice", flags=["out of focus", "artifact"], classes=CLASSES, role="annotator")
    trail = store.history("ds", "a")
    assert trail[["field", "old_value", "new_value"]].values.tolist() == [
        ["flags", "", "artifact; out of focus"], ["label", "GS", "non-GS"], ["confidence", "", "3"],
        ["label", "", "GS"]]
    assert store.readers("ds") == ["alice"]


def test_a_cleared_label_no_longer_counts_but_stays_in_the_trail(store):
    store.annotate("ds", "a", "alice", label="GS", confidence=4, status="reviewed", note="odd", classes=CLASSES,
                   role="annotator")
    store.annotate("ds", "a", "bob", label="GS", classes=CLASSES, role="annotator")
    cleared = store.clear("ds", "a", "alice", role="annotator")
    assert sorted((e["field"], e["old_value"], e["new_value"]) for e in cleared) == [
        ("confidence", 4, None), ("label", "GS", None), ("status", "reviewed", None)]
    assert store.clear("ds", "a", "alice", role="annotator") == []  # nothing left to clear
    mine = store.current("ds", "alice").iloc[0]
    assert mine["label"] is None and pd.isna(mine["confidence"]) and mine["status"] is None
    assert mine["note"] == "odd"  # only the named fields are withdrawn
    assert annotations.majority_labels(store.labels("ds")).to_dict() == {"a": "GS"}  # bob alone now
    assert len(annotations.disagreements(store, "ds")) == 0
    trail = store.history("ds", "a")
    assert ["label", "GS", ""] in trail[["field", "old_value", "new_value"]].values.tolist()
    store.annotate("ds", "a", "alice", label="non-GS", classes=CLASSES, role="annotator")  # labelling again works
    assert store.current("ds", "alice")["label"].tolist() == ["non-GS"]


def test_clearing_is_checked_like_labelling(store):
    store.annotate("ds", "a", "alice", label="GS", classes=CLASSES, role="annotator")
    with pytest.raises(PermissionError):
        store.clear("ds", "a", "alice", role="viewer")
    with pytest.raises(annotations.AnnotationError, match="Cannot clear note"):
        store.clear("ds", "a", "alice", fields=("note",), role="annotator")
    with pytest.raises(annotations.AnnotationError, match="Unknown item"):
        store.clear("ds", "zzz", "alice", known_items={"a"}, role="annotator")
    assert store.current("ds", "alice")["label"].tolist() == ["GS"]


def test_default_store_lives_in_the_workspace(lumen_home, monkeypatch):
    monkeypatch.delenv("LUMEN_DB_URL", raising=False)
    store = annotations.open_store()
    assert store.engine.url.database == str(lumen_home / "annotations.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_missing_driver_is_named():
    with pytest.raises(ImportError, match="pip install 'pg8000'"):
        annotations.open_store("postgresql+pg8000://user:secret@localhost/lumen")


# ---------------------------------------------------------------- agreement


def test_kappa_matches_sklearn_on_the_items_both_labelled():
    a = pd.Series({"1": "GS", "2": "GS", "3": "non-GS", "4": "non-GS", "5": "GS", "6": "uncertain", "7": "GS",
                   "9": "non-GS"})
    b = pd.Series({"1": "GS", "2": "non-GS", "3": "non-GS", "4": "non-GS", "5": "GS", "6": "GS", "7": "exclude",
                   "8": "GS"})
    both = ["1", "2", "3", "4", "5"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a[both], b[both]))
    assert np.isnan(cohen_kappa(a[["1"]], b[["1"]]))
    assert np.isnan(cohen_kappa(a[["1", "2"]], a[["1", "2"]].map(lambda _: "GS")))


def test_agreement_and_disagreements(store):
    alice = {"a": "GS", "b": "GS", "c": "non-GS", "d": "non-GS"}
    bob = {"a": "GS", "b": "non-GS", "c": "non-GS", "d": "uncertain"}
    for reader, labels in (("alice", alice), ("bob", bob)):
        for item, label in labels.items():
            store.annotate("ds", item, reader, label=label, classes=CLASSES, role="annotator")
    truth = pd.Series({"a": "GS", "b": "GS", "c": "non-GS", "d": "GS"})
    model = pd.Series({"a": "GS", "b": "non-GS", "c": "non-GS", "d": "non-GS"})
    table = agreement(store, "ds", truth, model).set_index(["a", "b"])
    assert table.loc[("alice", "bob"), "n"] == 3
    assert table.loc[("alice", "bob"), "kappa"] == pytest.approx(cohen_kappa_score(["GS", "GS", "non-GS"],
                                                                                   ["GS", "non-GS", "non-GS"]))
    assert table.loc[("alice", "dataset label"), "kappa"] == pytest.approx(
        cohen_kappa_score(list(alice.values()), truth.tolist()))
    assert table.loc[("bob", "model"), "kappa"] == pytest.approx(1.0)
    queue = disagreements(store, "ds")
    assert queue["item_id"].tolist() == ["b", "d"]
    assert queue["labels"].tolist() == ["alice: GS; bob: non-GS", "alice: non-GS; bob: uncertain"]
    store.adjudicate("ds", "b", "root", "GS", classes=CLASSES, role="admin")
    assert disagreements(store, "ds")["adjudicated"].tolist() == ["GS", None]


# ---------------------------------------------------------------- back to training


@pytest.fixture
def small_source(tmp_path) -> Path:
    folder = tmp_path / "crops"
    (folder / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        Image.fromarray(gradient(20 + i, 20)).save(folder / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "diagnosis": CLASSES[i % 2], "slide": f"s{i // 2}"})
    pd.DataFrame(rows).to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv"


def test_corrected_labels_csv_loads_as_a_dataset(store, small_source):
    manifest = scan(SourceSpec(path=str(small_source), label_column="diagnosis", group_column="slide"))
    votes = [("img/0.png", "alice", "non-GS"), ("img/0.png", "bob", "non-GS"),  # majority: GS -> non-GS
             ("img/1.png", "alice", "GS"), ("img/1.png", "bob", "non-GS"),  # a tie: adjudicated below
             ("img/2.png", "alice", "exclude"), ("img/3.png", "alice", "uncertain"),
             ("img/4.png", "alice", "non-GS"), ("img/4.png", "bob", "GS")]  # a tie: the dataset label stays
    for item, reader, label in votes:
        store.annotate("ds", item, reader, label=label, classes=CLASSES, known_items=set(manifest["id"]),
                       role="annotator")
    store.adjudicate("ds", "img/1.png", "root", "non-GS", classes=CLASSES, role="admin")
    store.adjudicate("ds", "img/1.png", "root", "GS", classes=CLASSES, role="admin")  # the latest adjudication counts
    out = small_source.parent / "corrected.csv"
    counts = corrected_labels_csv(store, "ds", manifest, out, who="admin")
    assert counts == {"path": str(out), "written": 4, "excluded": 1, "uncertain": 1, "unlabelled": 0, "changed": 2}
    loaded = scan(SourceSpec(path=str(out), label_column="label", group_column="group")).set_index("id")
    assert loaded["problem"].isna().all()
    assert loaded["label"].to_dict() == {"img/0.png": "non-GS", "img/1.png": "GS", "img/4.png": "GS",
                                         "img/5.png": "non-GS"}
    assert loaded.loc["img/0.png", "group"] == "s0"
    table = pd.read_csv(out).set_index("path")
    assert table.loc["img/0.png", ["original_label", "source"]].tolist() == ["GS", "majority"]
    assert table.loc["img/1.png", "source"] == "adjudicated" and table.loc["img/4.png", "source"] == "dataset"
    elsewhere = small_source.parent.parent / "exports" / "corrected.csv"  # not above the images: absolute paths
    assert corrected_labels_csv(store, "ds", manifest, elsewhere, who="admin")["written"] == 4
    assert Path(pd.read_csv(elsewhere)["path"][0]).is_absolute()
    assert scan(SourceSpec(path=str(elsewhere), label_column="label"))["problem"].isna().all()


def test_export_command_writes_csv_and_json(store, db_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LUMEN_DB_URL", db_url)
    store.annotate("ds", "a", "alice", label="GS", confidence=4, note="ok, <i>fine</i>",
                   flags=["artifact", "poor staining"], status="reviewed", classes=CLASSES, role="annotator")
    store.annotate("run-2", "b", "bob", label="exclude", classes=CLASSES, role="annotator")
    assert cli(["annotations", "export", "--out", str(tmp_path / "all.csv")]) == 0
    table = pd.read_csv(tmp_path / "all.csv", keep_default_na=False)
    assert table[["dataset", "item_id", "reader", "label"]].values.tolist() == [
        ["ds", "a", "alice", "GS"], ["run-2", "b", "bob", "exclude"]]
    assert table.loc[0, ["note", "flags", "status"]].tolist() == ["ok, <i>fine</i>", "artifact; poor staining",
                                                                  "reviewed"]
    assert cli(["annotations", "export", "--out", str(tmp_path / "one.txt"), "--format", "json",
                "--dataset", "ds"]) == 0
    [record] = json.loads((tmp_path / "one.txt").read_text())
    assert {k: record[k] for k in ("item_id", "reader", "confidence", "flags")} == {
        "item_id": "a", "reader": "alice", "confidence": 4, "flags": ["artifact", "poor staining"]}
    assert "1 annotation rows written" in capsys.readouterr().out


def test_a_change_made_elsewhere_since_the_page_showed_it_is_not_overwritten(store):
    """Two windows of one reader: the second save must not silently undo the first."""
    classes = ["GS", "nonGS"]
    store.annotate("d", "a.png", "ann", label="GS", confidence=4, classes=classes, role="annotator")
    shown = store.current("d", "ann").iloc[0].to_dict()  # both windows show GS, confidence 4
    store.annotate("d", "a.png", "ann", label="nonGS", classes=classes, expected=shown, role="annotator")  # window one
    with pytest.raises(annotations.AnnotationConflict, match="label is now nonGS"):
        store.annotate("d", "a.png", "ann", label="uncertain", classes=classes, expected=shown,
                       role="annotator")  # window two
    assert store.current("d", "ann").iloc[0]["label"] == "nonGS"
    store.annotate("d", "a.png", "ann", confidence=2, classes=classes, expected=shown,
                   role="annotator")  # confidence did not move
    with pytest.raises(annotations.AnnotationConflict):
        store.clear("d", "a.png", "ann", expected=shown, role="annotator")
    fresh = store.current("d", "ann").iloc[0].to_dict()
    store.clear("d", "a.png", "ann", expected=fresh, role="annotator")
    assert store.current("d", "ann").iloc[0]["label"] is None


def test_a_store_that_cannot_write_says_so_plainly(tmp_path):
    """A full disk (here: a read-only database file) gives a message, not a driver traceback."""
    path = tmp_path / "annotations.db"
    writable = annotations.open_store(f"sqlite:///{path}")
    writable.annotate("d", "a.png", "ann", label="GS", classes=["GS", "nonGS"], role="annotator")
    writable.engine.dispose()
    engine = annotations.create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    store = annotations.Store(engine)
    with pytest.raises(AnnotationError, match="could not save this change.*Nothing was saved"):
        store.annotate("d", "a.png", "ann", label="nonGS", classes=["GS", "nonGS"], role="annotator")
    engine.dispose()
