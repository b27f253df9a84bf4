"""AppTest of the Dataset page: the demo, and a dataset added through the form."""
import pytest
from streamlit.testing.v1 import AppTest

from core import registry
from core.scanning import scan
from core.sources import SourceSpec
from core.splits import assign_splits
from tests.conftest import ROOT, SHARED_DATA, write_course_csv
from ui.text import md

BCCD_CSV = SHARED_DATA / "bccd_crops" / "labels.csv"


def open_app() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def test_opens_on_the_glomeruli_demo():
    at = open_app()
    assert at.title[0].value == md(next(iter(registry.DEMO_DATASETS)))  # the name, shown as text
    shown = metrics(at)
    assert shown["Items"] == "300" and shown["Classes"] == "2"
    assert shown["Imbalance"] == "4.0 : 1"
    assert any("No leakage" in s.value for s in at.success)


def test_ungrouped_split_of_the_demo_shows_slide_leakage():
    at = open_app()
    at.toggle(key=f"split_grouped_{next(iter(registry.DEMO_DATASETS))}").set_value(False).run()
    assert not at.exception
    assert any("groups appear in more than one split" in e.value for e in at.error)


def test_zero_ratios_are_refused_with_a_message():
    at = open_app()
    for key in ("split_train", "split_val", "split_test"):
        at.number_input(key=key).set_value(0)
    at.run()
    assert any("add up to zero" in e.value for e in at.error)


def test_the_split_is_kept_while_another_tab_is_open():
    at = open_app()
    at.number_input(key="split_seed").set_value(7).run()
    at.session_state["ds_tab"] = "Image sizes"
    at.run()
    assert not at.number_input  # the split controls' tab did not run
    at.session_state["ds_tab"] = "Classes and splits"
    at.run()
    assert at.number_input(key="split_seed").value == 7


def test_switching_to_the_blood_demo():
    at = open_app()
    at.sidebar.selectbox(key="dataset").select(list(registry.DEMO_DATASETS)[1]).run()
    assert not at.exception
    assert metrics(at)["Classes"] == "3"


def test_add_bccd_csv_through_the_form():
    at = open_app()
    at.text_input(key="add_path").input(str(BCCD_CSV)).run()
    at.selectbox(key="add_label_col").select("cell_type")
    at.selectbox(key="add_group_col").select("source_image")
    at.text_input(key="add_name").input("BCCD crops")
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "BCCD crops"
    shown = metrics(at)
    assert shown["Items"] == "1,133" and shown["Classes"] == "3"
    assert "BCCD crops" in registry.list_datasets()
    assert at.text_input(key="add_path").value == "" and at.session_state["add_open"] is False  # form closed
    table = at.dataframe[0].value
    assert list(table["class"]) == ["Platelets", "RBC", "WBC", "total"]


def test_add_npz_with_class_names():
    at = open_app()
    at.text_input(key="add_path").input(str(SHARED_DATA / "medmnist" / "breastmnist.npz")).run()
    at.text_input(key="add_class_names").input("malignant")
    at.button(key="add_button").click().run()
    assert any("give 2 names" in e.value for e in at.error)
    at.text_input(key="add_class_names").input("malignant, benign")
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "breastmnist"
    assert list(at.dataframe[0].value["class"]) == ["benign", "malignant", "total"]


@pytest.mark.parametrize("path, message", [("/no/such/dir", "No such file or folder"),
                                           (str(ROOT / "core"), "holds no images")])
def test_adding_a_bad_path_shows_the_reason(path, message):
    at = open_app()
    at.text_input(key="add_path").input(path).run()
    at.button(key="add_button").click().run()
    assert any(message in e.value for e in at.error)
    assert not at.exception


def _grid_of_header_scan(folder: str) -> None:
    """Runs as its own script under AppTest, hence the imports inside."""
    from core.scanning import scan
    from core.sources import SourceSpec
    from ui.gallery import image_grid

    image_grid(scan(SourceSpec(folder)), columns=4)  # headers only: the truncation is not seen yet


def test_a_thumbnail_that_cannot_be_decoded_does_not_stop_the_grid(tmp_path):
    from PIL import Image

    from tests.conftest import gradient

    (tmp_path / "cls").mkdir()
    Image.fromarray(gradient(60, 40)).save(tmp_path / "cls" / "fine.png")
    Image.fromarray(gradient(300, 200)).save(tmp_path / "cls" / "cut.jpg")
    data = (tmp_path / "cls" / "cut.jpg").read_bytes()
    (tmp_path / "cls" / "cut.jpg").write_bytes(data[: len(data) // 2])
    at = AppTest.from_function(_grid_of_header_scan, args=(str(tmp_path),), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("image")) == 1
    assert any(md("cut.jpg") + ": cannot be decoded" in c.value for c in at.caption)  # the name shown as text


def test_split_percentages_of_zero_do_not_break_the_train_page():
    at = open_app()
    at.number_input(key="split_train").set_value(0).run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="train_split_train").value == 1


def test_grouping_follows_each_dataset_and_column_guesses_each_csv(tmp_path):
    at = open_app()
    at.sidebar.selectbox(key="dataset").select(list(registry.DEMO_DATASETS)[1]).run()
    at.sidebar.selectbox(key="dataset").select(list(registry.DEMO_DATASETS)[0]).run()
    assert at.toggle(key=f"split_grouped_{next(iter(registry.DEMO_DATASETS))}").value  # glomeruli have slides
    assert any("No leakage" in s.value for s in at.success)
    (tmp_path / "plain.csv").write_text("path,label\na.png,x\n")
    at.text_input(key="add_path").input(str(tmp_path / "plain.csv")).run()
    assert at.selectbox(key="add_group_col").value == "(none)"
    at.text_input(key="add_path").input(str(SHARED_DATA / "glomeruli" / "labels.csv")).run()
    assert at.selectbox(key="add_group_col").value == "slide_id"  # guessed afresh for this CSV


def table_with(at, column: str):
    """The first table on the page that has ``column``."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def test_the_course_csv_beside_its_image_folder_adds_in_three_actions(tmp_path):
    """`name,ground truth` beside images/: without the offer every one of its files is "not found"."""
    csv = write_course_csv(tmp_path)
    at = open_app()
    at.text_input(key="add_path").input(str(csv)).run()  # 1
    assert any("Of 24 files the CSV names (the first ones), 24 are not in the image folder, but 24 are in images/"
               in w.value for w in at.warning)
    at.button(key="add_use_root").click().run()  # 2
    assert at.text_input(key="add_image_root").value == "images" and not at.warning
    at.button(key="add_button").click().run()  # 3
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "public"
    shown = metrics(at)
    assert (shown["Items"], shown["Usable for training"], shown["Problems"]) == ("24", "24", "0")
    assert registry.list_datasets()["public"].image_root == "images"


def _course_form(at, csv) -> None:
    at.text_input(key="add_path").input(str(csv)).run()
    at.button(key="add_use_root").click().run()


def test_class_names_typed_in_the_form_name_the_classes(tmp_path):
    at = open_app()
    _course_form(at, write_course_csv(tmp_path))
    for text, message in (("GS", "give 2 names"), ("0=GS, 1=GS", "GS is given twice"),
                          ("0=nonGS", "leave out label 1")):
        at.text_input(key="add_class_names").input(text)
        at.button(key="add_button").click().run()
        assert any(message in e.value for e in at.error), text
    at.text_input(key="add_class_names").input("0=nonGS, 1=GS")
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value["class"]) == ["GS", "nonGS", "total"]
    assert registry.list_datasets()["public"].class_names == (("0", "nonGS"), ("1", "GS"))


def test_groups_from_file_names_with_a_live_preview(tmp_path):
    at = open_app()
    _course_form(at, write_course_csv(tmp_path))
    at.selectbox(key="add_group_preset").select("text before the last -").run()
    preview = table_with(at, "group")
    assert list(preview.columns) == ["name", "group"] and len(preview) == 6
    assert (preview["group"] == preview["name"].str.rsplit("-", n=1).str[0]).all()
    assert any(c.value.endswith("groups over 24 items.") for c in at.caption)
    at.selectbox(key="add_group_preset").select("a regular expression").run()
    at.text_input(key="add_group_regex").input("^(SAS|VUHSK").run()
    assert any("not a valid regular expression" in e.value for e in at.error)
    at.text_input(key="add_group_regex").input(r"^([A-Z]+)_").run()
    assert set(table_with(at, "group")["group"]) <= {"SAS", "SESCAM", "VUHSK"}
    at.selectbox(key="add_group_preset").select("text before the last -").run()
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.toggle(key="split_grouped_public").value  # there are groups now: the split keeps them whole
    assert any("No leakage" in s.value for s in at.success)


def test_none_as_the_label_column_adds_the_csv_unlabelled(tmp_path):
    at = open_app()
    _course_form(at, write_course_csv(tmp_path))
    assert at.selectbox(key="add_label_col").value == "ground truth"  # guessed
    at.selectbox(key="add_label_col").select("(none)")
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert metrics(at)["Unlabelled"] == "24" and metrics(at)["Classes"] == "0"


def test_names_with_slide_prefixes_suggest_grouping_in_one_click(tmp_path):
    at = open_app()
    _course_form(at, write_course_csv(tmp_path))
    at.button(key="add_button").click().run()
    assert not at.toggle(key="split_grouped_public").value
    suggestion = next(i.value for i in at.info if "file names look grouped" in i.value)
    assert "would make 10 groups" in suggestion
    at.button(key="group_by_names").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert registry.list_datasets()["public"].group_pattern == r"^(.+)_"
    assert at.toggle(key="split_grouped_public").value and not any("look grouped" in i.value for i in at.info)


def test_duplicates_show_each_copys_split_and_blank_cells(tmp_path):
    import shutil

    images = sorted((ROOT / "assets" / "demo" / "glomeruli" / "images" / "GS").glob("*.jpg"))[:8]
    for cls, files in (("GS", images[:4]), ("nonGS", images[4:])):
        (tmp_path / cls).mkdir()
        for path in files:
            shutil.copy(path, tmp_path / cls / path.name)
    shutil.copy(images[0], tmp_path / "nonGS" / "copy.jpg")
    at = open_app()
    at.text_input(key="add_path").input(str(tmp_path)).run()
    at.text_input(key="add_name").input("copies")
    at.button(key="add_button").click().run()
    assert not at.exception, [e.value for e in at.exception]
    manifest = scan(SourceSpec(str(tmp_path)))
    drawn = dict(zip(manifest["id"], assign_splits(manifest, ratios=(80, 10, 10), seed=0, group_column=None)))
    assert not any("copies" in frame.value.columns for frame in at.dataframe)  # only the open tab runs
    at.session_state["ds_tab"] = "Problems and duplicates"
    at.run()
    assert not any("Items per class" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
    dups = table_with(at, "copies")
    assert dict(zip(dups["id"], dups["split"])) == {i: drawn[i] for i in (f"GS/{images[0].name}", "nonGS/copy.jpg")}
    assert (dups["group"] == "").all()  # no group: a blank cell, not "None"
