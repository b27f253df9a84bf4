"""AppTest of the Review page: filter, label, move on, agree, export corrected labels."""
from pathlib import Path

import pandas as pd
import pytest

from core import annotations, registry
from core.__main__ import main as cli
from core.registry import DEMO_DATASETS
from core.scanning import scan
from tests.conftest import open_page, train_tiny_run
from ui.hotkeys import label_shortcut
from ui.text import md


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("review-home")
    train_tiny_run(home, dataset_name="glomeruli demo")
    return home


@pytest.fixture
def at(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("LUMEN_DB_URL", f"sqlite:///{tmp_path / 'annotations.db'}")
    return open_page("pages/review.py", trained, monkeypatch, "tiny")


def _position(app) -> str:
    return next(m.value for m in app.markdown if " of " in m.value and " · " in m.value)


def test_labelling_needs_a_name(at):
    assert any("Type your name" in w.value for w in at.warning)
    assert all(b.disabled for b in at.button if b.key and b.key.startswith("rv_label_"))


def test_filter_label_and_next(at, tmp_path):
    at.sidebar.text_input(key="reader_name").input("Dr A").run()
    at.multiselect(key="rv_outcome").set_value(["FN"]).run()
    first = _position(at)
    assert "FN" in first
    at.button(key="rv_label_GS").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _position(at) != first or "1 of 1" in first
    store = annotations.open_store()
    dataset = next(iter(DEMO_DATASETS.values())).path
    labels = store.current(dataset, "Dr A")
    assert labels["label"].tolist() == ["GS"] and labels["status"].tolist() == ["reviewed"]
    at.button(key="rv_prev").click().run()
    assert _position(at).startswith(first) and _position(at).endswith("your label: **GS**")
    at.button(key="rv_clear").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert _position(at).startswith(first) and "your label" not in _position(at)
    assert at.button(key="rv_clear").disabled
    assert store.current(dataset, "Dr A")["label"].tolist() == [None]
    at.selectbox(key="rv_status").set_value("labelled by me").run()
    assert any("No item matches" in i.value for i in at.info)


def test_two_readers_agreement_and_corrected_labels(at, trained):
    store = annotations.open_store()
    dataset = next(iter(DEMO_DATASETS.values())).path
    items = pd.read_parquet(trained / "runs" / "tiny" / "predictions.parquet")["item_id"].tolist()[:6]
    for i, item in enumerate(items):
        store.annotate(dataset, item, "Dr A", label="GS", classes=["GS", "nonGS"], role="annotator")
        store.annotate(dataset, item, "Dr B", label="GS" if i % 2 else "nonGS", classes=["GS", "nonGS"],
                       role="annotator")
    at.run()
    assert not at.exception
    assert not any("kappa" in df.value.columns for df in at.dataframe)  # only the open tab runs
    at.session_state["rv_tab"] = "Agreement"
    at.run()
    kappa_table = next(df.value for df in at.dataframe if "kappa" in df.value.columns)
    pair = kappa_table[(kappa_table["a"] == "Dr A") & (kappa_table["b"] == "Dr B")]
    assert len(pair) == 1 and pair["n"].iloc[0] == 6
    at.session_state["rv_tab"] = "Export"
    at.run()
    at.button(key="rv_corrected").click().run()
    assert not at.exception, [e.value for e in at.exception]
    name = "glomeruli demo (corrected)"
    assert name in registry.list_datasets()
    corrected = scan(registry.list_datasets()[name])
    assert len(corrected) == 300
    assert corrected["mask_path"].notna().all()  # the glomeruli masks come along, for Grad-CAM's mask energy
    relabelled = corrected.set_index("id")
    assert (relabelled["label"] == "GS").sum() >= 60  # majority GS on the odd items adds GS labels
    page_file = Path(registry.list_datasets()[name].path)
    cli_file = page_file.with_name("from-the-command-line.csv")  # same folder: the same relative paths
    assert cli(["annotations", "corrected-labels", str(trained / "runs" / "tiny"), "--out", str(cli_file)]) == 0
    assert cli_file.read_bytes() == page_file.read_bytes()


def test_blind_mode_hides_the_model(at, trained):
    at.selectbox(key="rv_sort").select("likely label error (in-sample)").run()
    at.sidebar.toggle(key="rv_blind").set_value(True).run()
    line = _position(at)
    assert "model" not in line and "dataset label" not in line and "GS/" not in line  # no class folder either
    assert all(at.multiselect(key=k).disabled for k in ("rv_truth", "rv_pred", "rv_outcome"))
    test_ids = sorted(pd.read_parquet(trained / "runs" / "tiny" / "predictions.parquet").query(
        "split == 'test'")["item_id"])
    assert md(test_ids[0].rsplit("/", 1)[-1]) in line  # id order, not mistakes first (shown as text)


def test_blind_mode_hides_other_readers_in_the_audit_trail(at, trained):
    store = annotations.open_store()
    dataset = next(iter(DEMO_DATASETS.values())).path
    item = pd.read_parquet(trained / "runs" / "tiny" / "predictions.parquet")["item_id"].iloc[0]
    store.annotate(dataset, item, "Dr Other", label="GS", classes=["GS", "nonGS"], role="annotator")
    store.annotate(dataset, item, "Dr Me", label="nonGS", classes=["GS", "nonGS"], role="annotator")
    at.sidebar.text_input(key="reader_name").input("Dr Me")
    at.sidebar.toggle(key="rv_blind").set_value(True)
    at.session_state["rv_tab"] = "Audit trail"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    trails = [df.value for df in at.dataframe if "reader" in df.value.columns and "new_value" in df.value.columns]
    assert trails and all(set(t["reader"]) <= {"Dr Me"} for t in trails)


def test_nearest_neighbours_in_the_item_view(at):
    at.toggle(key="rv_near").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum("d=" in (img.proto.imgs[0].caption or "") for img in at.get("image")) == 8


def test_label_buttons_carry_their_shortcut_digit(at):
    keys = {b.label: b.proto.shortcut for b in at.button if b.key and b.key.startswith("rv_label_")}
    assert keys == {"GS": "1", "nonGS": "2", "uncertain": "3", "exclude": "4"}
    assert {k: at.button(key=k).proto.shortcut for k in ("rv_prev", "rv_next", "rv_clear")} == {
        "rv_prev": "left", "rv_next": "right", "rv_clear": "backspace"}
    assert [label_shortcut(i) for i in (1, 9, 10, 11)] == ["1", "9", "0", None]  # 0 is the tenth; no eleventh
