"""The three source kinds, and every problem kind, on real files."""
import json
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import images
from core.scanning import scan, usable
from core.sources import SourceError, SourceSpec, list_items, source_signature, suggest_image_root, with_class_names
from core.splits import assign_splits
from tests.conftest import SHARED_DATA, gradient, write_course_csv, write_mode_zoo

BCCD = SHARED_DATA / "bccd_crops"
PBC = SHARED_DATA / "blood_pbc"


def _copy_some(src_dir, dst_dir, count):
    dst_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(src_dir.glob("*.jpg"))[:count]:
        shutil.copy(path, dst_dir / path.name)


def test_class_folders_with_mixed_case_split_folders(tmp_path):
    for split, n in (("TRAIN", 4), ("Val", 2), ("test", 3)):
        for cls in ("basophil", "platelet"):
            _copy_some(PBC / cls, tmp_path / split / cls, n)
    manifest = scan(SourceSpec(str(tmp_path)))
    assert len(manifest) == 18
    assert manifest.groupby("split").size().to_dict() == {"test": 6, "train": 8, "val": 4}
    assert set(manifest["label"]) == {"basophil", "platelet"}
    assert manifest["problem"].isna().all()


def test_class_folders_without_splits_read_every_mode(tmp_path):
    write_mode_zoo(tmp_path / "modes")
    _copy_some(PBC / "ig", tmp_path / "ig", 3)
    manifest = scan(SourceSpec(str(tmp_path)), verify=True)
    assert manifest["label"].value_counts().to_dict() == {"modes": 9, "ig": 3}
    assert manifest["split"].isna().all()
    assert manifest["problem"].isna().all(), manifest["problem"].dropna().tolist()
    rotated = manifest[manifest["id"].str.endswith("exif_rotated.jpg")].iloc[0]
    assert (rotated.width, rotated.height) == (30, 40)
    assert set(manifest["format"]) >= {"JPEG", "PNG", "TIFF", "BMP"}


def test_csv_source_with_groups_blank_labels_and_relative_paths():
    spec = SourceSpec(str(BCCD / "labels.csv"), label_column="wbc_subtype", group_column="source_image")
    manifest = scan(spec)
    table = pd.read_csv(BCCD / "labels.csv", keep_default_na=False)
    assert len(manifest) == len(table)
    assert manifest["label"].isna().sum() == (table["wbc_subtype"] == "").sum()
    assert manifest["group"].nunique() == table["source_image"].nunique()
    widths = manifest.set_index("id")["width"]
    assert (widths.loc[table["path"]].to_numpy() == table["width"].to_numpy()).mean() > 0.95
    assert usable(manifest).sum() == (table["wbc_subtype"] != "").sum()


def test_npz_source_keeps_predefined_splits():
    manifest = scan(SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz"),
                               class_names=(("0", "malignant"), ("1", "benign"))))
    assert manifest.groupby("split").size().to_dict() == {"test": 156, "train": 546, "val": 78}
    assert set(manifest["label"]) == {"malignant", "benign"}
    assert (manifest["width"] == 28).all() and (manifest["mode"] == "L").all()


@pytest.mark.parametrize("names, message", [("malignant", "give 2 names"), ("0=malignant", "leave out label 1"),
                                            ("a, a", "a is given twice"), ("0=a, 0=b", "0 is given twice"),
                                            ("a, ", "must not be empty"), ("0=a, b", "not a mix")])
def test_npz_class_names_must_cover_every_label_once(names, message):
    with pytest.raises(SourceError, match=message):
        list_items(with_class_names(SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz")), names))


def _broken_folder(tmp_path):
    good = tmp_path / "data" / "good"
    good.mkdir(parents=True)
    Image.fromarray(gradient(50, 40)).save(good / "ok.png")
    (good / "empty.png").write_bytes(b"")
    (good / "notes.jpg").write_text("this is not an image")
    data = (good / "ok.png").read_bytes()
    (good / "truncated.png").write_bytes(data[: len(data) // 2])
    Image.fromarray(gradient(200, 150)).save(good / "cut.jpg", quality=95)
    jpeg = (good / "cut.jpg").read_bytes()
    (good / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])  # header intact, scan data cut
    Image.new("L", (300, 300)).save(good / "bomb.png")
    return tmp_path / "data"


def test_every_broken_file_becomes_a_problem_row(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 50_000)
    manifest = scan(SourceSpec(str(_broken_folder(tmp_path))), verify=True).set_index("id")
    problems = manifest["problem"]
    assert problems["good/ok.png"] is None or pd.isna(problems["good/ok.png"])
    assert "empty file" in problems["good/empty.png"]
    assert "not an image" in problems["good/notes.jpg"]
    assert "truncated" in problems["good/truncated.png"]
    assert "too large" in problems["good/bomb.png"]


def test_truncation_is_caught_by_verification_not_by_headers(tmp_path):
    folder = _broken_folder(tmp_path)
    headers_only = scan(SourceSpec(str(folder))).set_index("id")
    assert pd.isna(headers_only.loc["good/cut.jpg", "problem"])
    assert headers_only.loc["good/cut.jpg", "width"] == 200
    verified = scan(SourceSpec(str(folder)), verify=True).set_index("id")
    assert verified["verified"].sum() >= 2
    assert "truncated" in verified.loc["good/cut.jpg", "problem"]


def test_csv_missing_files_and_unknown_labels(tmp_path):
    Image.fromarray(gradient(20, 20)).save(tmp_path / "a.png")
    Image.fromarray(gradient(20, 20)).save(tmp_path / "b.png")
    (tmp_path / "list.csv").write_text("name,ground truth\na.png,tumour\nb.png,banana\nc.png,normal\nd.png,\n")
    spec = SourceSpec(str(tmp_path / "list.csv"), classes=("tumour", "normal"))
    manifest = scan(spec).set_index("id")
    assert pd.isna(manifest.loc["a.png", "problem"])
    assert "unknown label 'banana'" in manifest.loc["b.png", "problem"]
    assert "file not found" in manifest.loc["c.png", "problem"]
    assert "file not found" in manifest.loc["d.png", "problem"]


def test_csv_names_without_their_extension_find_the_image(tmp_path):
    Image.fromarray(gradient(20, 20)).save(tmp_path / "img_001.png")
    Image.fromarray(gradient(20, 20)).save(tmp_path / "img_002.JPG")
    (tmp_path / "list.csv").write_text("name;ground truth\nimg_001;a\nimg_002;b\nimg_003;a\n")
    manifest = scan(SourceSpec(str(tmp_path / "list.csv"))).set_index("id")
    assert manifest.loc["img_001", "path"].endswith("img_001.png") and pd.isna(manifest.loc["img_001", "problem"])
    assert manifest.loc["img_002", "path"].endswith("img_002.JPG") and manifest.loc["img_002", "width"] == 20
    assert "file not found" in manifest.loc["img_003", "problem"]


def test_a_csv_with_a_header_and_no_rows_is_refused_plainly(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\n")
    with pytest.raises(SourceError, match="holds no images"):
        list_items(SourceSpec(str(tmp_path / "list.csv")))


def test_a_csv_whose_files_are_all_missing_lists_each_one(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\na.png,x\nb.png,y\n")
    manifest = scan(SourceSpec(str(tmp_path / "list.csv")))
    assert manifest["problem"].str.startswith("file not found").all() and len(manifest) == 2


def test_changed_files_are_rescanned(tmp_path):
    cls = tmp_path / "x"
    cls.mkdir()
    Image.fromarray(gradient(20, 10)).save(cls / "a.png")
    assert scan(SourceSpec(str(tmp_path)))["width"].tolist() == [20]
    Image.fromarray(gradient(64, 10)).save(cls / "a.png")
    Image.fromarray(gradient(8, 8)).save(cls / "b.png")
    assert scan(SourceSpec(str(tmp_path)))["width"].tolist() == [64, 8]


def _age(root):
    """Date every folder under ``root`` a minute back, as a dataset copied in long ago: a file added now
    changes its folder's time even where the clock's tick is coarse."""
    past = time.time() - 60
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (past, past))


def test_a_file_added_in_a_class_folder_shows_without_a_rescan(tmp_path):
    from ui.state import load_manifest

    deep = tmp_path / "GS" / "slide 1"
    deep.mkdir(parents=True)
    (tmp_path / "nonGS").mkdir()
    for folder in (deep, tmp_path / "nonGS"):
        Image.fromarray(gradient(20, 20)).save(folder / "a.png")
    _age(tmp_path)
    spec = SourceSpec(str(tmp_path))
    assert len(load_manifest(spec)) == 2
    Image.fromarray(gradient(20, 20)).save(deep / "b.png")  # two levels down: the root's time stays
    assert sorted(load_manifest(spec)["id"]) == ["GS/slide 1/a.png", "GS/slide 1/b.png", "nonGS/a.png"]
    (tmp_path / "nonGS" / "a.png").unlink()
    assert sorted(load_manifest(spec)["id"]) == ["GS/slide 1/a.png", "GS/slide 1/b.png"]


def test_a_csv_source_signature_follows_the_csv_and_its_image_folder(tmp_path):
    (tmp_path / "images").mkdir()
    Image.fromarray(gradient(20, 20)).save(tmp_path / "images" / "a.png")
    csv = tmp_path / "list.csv"
    csv.write_text("path,label\nimages/a.png,x\nimages/b.png,y\n")
    _age(tmp_path)
    spec = SourceSpec(str(csv))
    before = source_signature(spec)
    assert source_signature(spec) == before  # nothing changed: the cache key stays
    Image.fromarray(gradient(20, 20)).save(tmp_path / "images" / "b.png")  # the missing file arrives
    after_image = source_signature(spec)
    csv.write_text("path,label\nimages/a.png,x\nimages/b.png,z\n")
    assert len({before, after_image, source_signature(spec)}) == 3


def test_an_npz_source_signature_is_the_file_alone(tmp_path):
    npz = tmp_path / "data.npz"
    np.savez(npz, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.zeros((2, 1), np.uint8))
    spec = SourceSpec(str(npz))
    before = source_signature(spec)
    (tmp_path / "notes.txt").write_text("beside the archive, not in it")
    assert source_signature(spec) == before
    np.savez(npz, train_images=np.zeros((3, 4, 4), np.uint8), train_labels=np.zeros((3, 1), np.uint8))
    assert source_signature(spec) != before
    assert source_signature(SourceSpec(str(tmp_path / "gone"))) == "unreadable"


@pytest.mark.parametrize("spec, message", [
    (SourceSpec("/no/such/folder"), "No such file or folder"),
    (SourceSpec(str(BCCD / "labels.csv"), label_column="nope"), "no label column 'nope'"),
    (SourceSpec(str(BCCD / "labels.csv"), group_column="patient"), "no group column 'patient'"),
])
def test_unreadable_sources_raise_clear_errors(spec, message):
    with pytest.raises(SourceError, match=message):
        list_items(spec)


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        list_items(SourceSpec(str(tmp_path)))


def test_npz_without_image_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "odd.npz", x=np.zeros(3))
    with pytest.raises(SourceError, match="no train_images"):
        list_items(SourceSpec(str(tmp_path / "odd.npz")))


def test_a_csv_takes_an_image_folder_and_offers_the_one_its_files_are_in(tmp_path):
    csv = write_course_csv(tmp_path)
    beside = SourceSpec(str(csv))
    assert list_items(beside)["problem"].str.startswith("file not found").all()  # 24 missing, no hint
    hint = suggest_image_root(beside)
    assert (hint.folder, hint.checked, hint.found_now, hint.found_there) == ("images", 24, 0, 24)
    for root in ("images", str(tmp_path / "images")):  # relative to the CSV's folder, or absolute
        listing = list_items(SourceSpec(str(csv), image_root=root))
        assert listing["problem"].isna().all() and listing["path"].str.endswith(".png").all()
        assert suggest_image_root(SourceSpec(str(csv), image_root=root)) is None
    assert listing["label"].value_counts().to_dict() == {"0": 12, "1": 12}


def test_no_image_folder_is_offered_when_the_files_are_found_or_nowhere(tmp_path):
    csv = write_course_csv(tmp_path)
    (tmp_path / "images").rename(tmp_path / "elsewhere")
    (tmp_path / "empty").mkdir()
    assert suggest_image_root(SourceSpec(str(csv))).folder == "elsewhere"
    shutil.rmtree(tmp_path / "elsewhere")
    assert suggest_image_root(SourceSpec(str(csv))) is None


def test_a_csv_source_signature_follows_its_image_folder(tmp_path):
    csv = write_course_csv(tmp_path, per_class=2)
    spec = SourceSpec(str(csv), image_root="images")
    _age(tmp_path)
    before = source_signature(spec)
    Image.fromarray(gradient(20, 20)).save(tmp_path / "images" / "new.png")
    assert source_signature(spec) != before


@pytest.mark.parametrize("text", ["nonGS, GS", "0=nonGS, 1=GS", " 1 = GS ,0=nonGS"])
def test_numeric_csv_labels_take_class_names_in_either_form(tmp_path, text):
    spec = with_class_names(SourceSpec(str(write_course_csv(tmp_path, per_class=3)), image_root="images"), text)
    assert dict(spec.class_names) == {"0": "nonGS", "1": "GS"}
    assert list_items(spec)["label"].value_counts().to_dict() == {"nonGS": 3, "GS": 3}
    assert SourceSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # stored as JSON, read back whole
    assert spec.to_dict()["class_names"] == {"0": "nonGS", "1": "GS"}


def test_labels_sort_by_value_for_names_in_label_order(tmp_path):
    Image.fromarray(gradient(20, 20)).save(tmp_path / "a.png")
    (tmp_path / "list.csv").write_text("path,label\na.png,10\na.png,2\na.png,\n")
    spec = with_class_names(SourceSpec(str(tmp_path / "list.csv")), "two, ten")
    assert spec.class_names == (("2", "two"), ("10", "ten"))
    assert list_items(spec)["label"].tolist() == ["ten", "two", None]  # a blank label stays unlabelled


@pytest.mark.parametrize("names, message", [
    ((("0", "nonGS"),), "leave out label 1, which the data has"),
    ((("0", "GS"), ("1", "GS")), "GS is given twice"),
])
def test_a_stored_mapping_that_misses_a_label_or_repeats_a_name_is_refused(tmp_path, names, message):
    spec = SourceSpec(str(write_course_csv(tmp_path, per_class=2)), image_root="images", class_names=names)
    with pytest.raises(SourceError, match=message):
        list_items(spec)


def test_none_as_the_label_column_means_unlabelled(tmp_path):
    csv = write_course_csv(tmp_path, per_class=2)
    assert list_items(SourceSpec(str(csv), image_root="images"))["label"].notna().all()  # guessed: ground truth
    unlabelled = list_items(SourceSpec(str(csv), image_root="images", label_column=""))
    assert unlabelled["label"].isna().all() and unlabelled["problem"].isna().all()


@pytest.mark.parametrize("pattern, groups", [
    (r"^([^_]+)_", {"SAS", "SESCAM", "VUHSK"}),  # text before the first _: the centre
    (r"^(.+)-", {"SAS_21883_001", "SESCAM_102", "VUHSK_1432"}),  # text before the last -: the slide
])
def test_groups_from_the_file_names_of_a_folder(tmp_path, pattern, groups):
    for cls, name in (("GS", "SAS_21883_001-3.png"), ("GS", "SESCAM_102-1.png"), ("nonGS", "VUHSK_1432-25.png"),
                      ("nonGS", "unmatched.png")):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(gradient(20, 20)).save(tmp_path / cls / name)
    listing = list_items(SourceSpec(str(tmp_path), group_pattern=pattern)).set_index("id")
    assert set(listing["group"].dropna()) == groups
    assert listing.loc["nonGS/unmatched.png", "group"] is None  # no match: a group of its own in splits


def test_groups_from_the_names_in_a_csv_keep_splits_whole(tmp_path):
    spec = SourceSpec(str(write_course_csv(tmp_path)), image_root="images", group_pattern=r"^(.+)-")
    manifest = scan(spec)
    slides = manifest["id"].str.rsplit("-", n=1).str[0]
    assert (manifest["group"] == slides).all()
    split = assign_splits(manifest, seed=0)
    assert (manifest.assign(split=split).groupby("group")["split"].nunique() == 1).all()


@pytest.mark.parametrize("spec, message", [
    (SourceSpec(str(SHARED_DATA / "medmnist" / "breastmnist.npz"), group_pattern=r"^(.+)_"),
     "npz file has no file names"),
    (SourceSpec(str(SHARED_DATA / "bccd_crops" / "labels.csv"), group_column="source_image", group_pattern=r"^(.+)_"),
     "not both"),
    (SourceSpec(str(PBC), group_pattern=r"^(.+"), "not a valid regular expression"),
    (SourceSpec(str(PBC), group_pattern=r"^([a-z]+)_(\d+)"), "has 2 capture groups; it needs exactly one"),
])
def test_group_patterns_that_cannot_work_are_refused_plainly(spec, message):
    with pytest.raises(SourceError, match=message):
        list_items(spec)


def test_registry_entries_written_before_the_new_fields_still_load():
    old = {"path": "/data/pneumoniamnist.npz", "kind": "npz", "path_column": None, "label_column": None,
           "group_column": None, "split_column": None, "mask_column": None, "classes": None,
           "label_names": ["normal", "pneumonia"]}
    spec = SourceSpec.from_dict(old)
    assert spec.class_names == (("0", "normal"), ("1", "pneumonia"))
    assert (spec.image_root, spec.group_pattern) == (None, None)
    named = scan(SourceSpec.from_dict({**old, "path": str(SHARED_DATA / "medmnist" / "pneumoniamnist.npz")}))
    assert set(named["label"]) == {"normal", "pneumonia"}


def test_an_excel_csv_with_a_byte_order_mark_and_an_animated_gif(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM; an animation is a problem row, not silently dropped."""
    from PIL import Image

    from core.scanning import scan

    Image.new("RGB", (8, 8), "red").save(tmp_path / "still.png")
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    (tmp_path / "labels.csv").write_bytes("path,label\nstill.png,a\nmoving.gif,b\n".encode("utf-8-sig"))
    manifest = scan(SourceSpec(str(tmp_path / "labels.csv"))).set_index("id")
    assert manifest.loc["still.png", "problem"] is None or pd.isna(manifest.loc["still.png", "problem"])
    assert "2 frames" in manifest.loc["moving.gif", "problem"]


def test_data_roots_confine_sources_links_and_exports(tmp_path, monkeypatch):
    """A dataset outside the roots is refused; a class folder linking out of them lists as problems;
    /proc is never data; an export may not write outside the roots."""
    from PIL import Image

    from core.export import ExportError, export_preprocessed
    from core.scanning import scan

    inside, outside = tmp_path / "lab", tmp_path / "elsewhere"
    for folder in (inside / "data" / "a", outside / "b"):
        folder.mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(folder / "x.png")
    (inside / "data" / "b").symlink_to(outside / "b", target_is_directory=True)
    monkeypatch.setenv("LUMEN_DATA_ROOTS", str(inside))
    with pytest.raises(SourceError, match="outside the data roots"):
        list_items(SourceSpec(str(outside)))
    with pytest.raises(SourceError, match="never data"):
        list_items(SourceSpec("/proc/self"))
    listed = list_items(SourceSpec(str(inside / "data"))).set_index("id")
    assert pd.isna(listed.loc["a/x.png", "problem"])
    assert "outside the data roots" in listed.loc["b/x.png", "problem"]
    manifest = scan(SourceSpec(str(inside / "data")))
    with pytest.raises(ExportError, match="outside the data roots"):
        export_preprocessed(manifest, outside / "export", 16, who="admin")
    monkeypatch.delenv("LUMEN_DATA_ROOTS")
    assert pd.isna(list_items(SourceSpec(str(inside / "data"))).set_index("id").loc["b/x.png", "problem"])
