"""The padding page, driven through Streamlit's AppTest: previews, size changes and export."""
from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import registry
from core.preprocess import PAD_MODES
from core.scanning import scan, usable
from tests.conftest import ROOT

BCCD = "Demo: blood cells (BCCD crops)"
VARIANTS_PER_ITEM = 1 + len(PAD_MODES) + 2  # original, every pad mode, stretch, centre crop


@pytest.fixture
def page(tmp_path, monkeypatch):
    """The padding page on the BCCD demo (variable-size crops) in a private workspace."""
    monkeypatch.setenv("LUMEN_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["dataset"] = BCCD
    at.switch_page("pages/padding.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at) -> list[str]:
    return [image.proto.imgs[0].caption for image in at.get("image")]


def item_lines(at) -> list[str]:
    return [m.value for m in at.markdown if "padding would fill" in m.value]


def test_page_shows_every_variant_of_each_sampled_item(page):
    count = page.number_input(key="padding_count").value
    lines = item_lines(page)
    assert len(lines) == count
    shown = captions(page)
    assert len(shown) == count * VARIANTS_PER_ITEM
    assert sum(c.startswith("original ") for c in shown) == count
    for name in ["zero", "white", "edge", "reflect", "mean colour", "stretch", "centre crop"]:
        assert shown.count(name) == count
    assert any(" 0%" not in line for line in lines)  # BCCD crops are not square
    assert page.get("plotly_chart"), "the padding-share histogram is missing"
    assert "usable images" in " ".join(c.value for c in page.caption)


@pytest.mark.parametrize("choice", [128, 512])
def test_changing_the_size_reruns_cleanly(page, choice):
    page.radio(key="padding_size_choice").set_value(choice).run()
    assert not page.exception
    assert any(f"{choice}×{choice}" in s.value for s in page.subheader)
    assert len(captions(page)) == len(item_lines(page)) * VARIANTS_PER_ITEM


def test_custom_size_and_sample_controls(page):
    page.radio(key="padding_size_choice").set_value("custom").run()
    page.number_input(key="padding_custom_size").set_value(40).run()
    assert any("40×40" in s.value for s in page.subheader)
    before = item_lines(page)
    page.button[0].click().run()  # Shuffle
    assert not page.exception and item_lines(page) != before
    page.number_input(key="padding_count").set_value(2).run()
    assert len(item_lines(page)) == 2
    page.radio(key="padding_how").set_value("Chosen by id").run()
    chosen = page.multiselect(key=f"padding_ids::{BCCD}")
    chosen.set_value(chosen.options[:1]).run()
    assert not page.exception and len(item_lines(page)) == 1
    page.multiselect(key=f"padding_ids::{BCCD}").set_value([]).run()
    assert not page.exception and not captions(page)
    assert any("at least one image" in i.value for i in page.info)


def test_a_dataset_of_square_images_says_padding_changes_nothing(page):
    assert not any("already square" in i.value for i in page.info)
    page.session_state["dataset"] = "Demo: glomeruli (GS vs non-GS)"
    page.run()
    assert not page.exception
    assert any("already square" in i.value for i in page.info)
    assert all("fill 0%" in line for line in item_lines(page))


def set_export(at, folder, size: int) -> None:
    at.selectbox(key="padding_export_pad").set_value("reflect")
    next(n for n in at.number_input if n.label == "Size").set_value(size)
    at.run()
    folder_box = next(t for t in at.text_input if t.label == "Output folder")
    assert f"{size}px" in folder_box.value  # one default folder per setting: no export replaces another
    folder_box.set_value(str(folder))
    next(b for b in at.button if b.label == "Export").click()
    at.run()


def test_export_through_the_page_writes_a_csv_and_registers_it(page, tmp_path):
    out = tmp_path / "export"
    set_export(page, out, 32)
    assert not page.exception and not page.error
    table = pd.read_csv(out / "labels.csv")
    assert len(table) == int(usable(scan(registry.DEMO_DATASETS[BCCD])).sum())
    assert set(table["label"]) == set(scan(registry.DEMO_DATASETS[BCCD])["label"])
    assert any("Wrote" in s.value for s in page.success)

    name_box = next(t for t in page.text_input if t.key.startswith("padding_register_name"))
    assert "32 px" in name_box.value  # the default names this export's settings
    name_box.set_value("bccd 32").run()
    next(b for b in page.button if b.label == "Add the export as a dataset").click().run()
    assert not page.exception and not page.error
    assert "bccd 32" in registry.list_datasets()
    assert any("Added the dataset" in s.value for s in page.success)
    assert page.session_state["dataset"] == "bccd 32"  # the new dataset is the one shown now
    page.session_state["dataset"] = BCCD
    page.run()
    set_export(page, out, 64)  # the same folder again: it is a dataset now, so it is refused
    assert any("holds the dataset 'bccd 32'" in e.value for e in page.error)
    first = out / pd.read_csv(out / "labels.csv")["path"].iloc[0]
    assert Image.open(first).size == (32, 32)  # its images were not replaced by 64 px ones


def test_export_into_a_foreign_folder_shows_an_error_not_a_traceback(page, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("keep me")
    set_export(page, foreign, 32)
    assert not page.exception
    assert any("not empty" in e.value for e in page.error)
    assert not (foreign / "labels.csv").exists()


def test_page_works_on_a_dataset_added_by_the_user(tmp_path, monkeypatch):
    from core.sources import SourceSpec
    from tests.conftest import SHARED_DATA
    monkeypatch.setenv("LUMEN_HOME", str(tmp_path / "home"))
    registry.add_dataset("BCCD full", SourceSpec(str(SHARED_DATA / "bccd_crops" / "labels.csv"),
                                                 label_column="cell_type", group_column="source_image"), who="admin")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["dataset"] = "BCCD full"
    at.switch_page("pages/padding.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(item_lines(at)) > 0
