"""AppTest of the Embeddings and Grad-CAM pages on a real tiny run."""
import pytest

from tests.conftest import open_page, train_tiny_run
from ui.text import md


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("analysis-home")
    train_tiny_run(home)
    return home


@pytest.mark.slow
def test_embeddings_page_draws_each_method(home, monkeypatch):
    at = open_page("pages/embeddings.py", home, monkeypatch, "tiny")
    for method in ("pca", "tsne"):
        at.selectbox(key="emb_method").select(method).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("300 items" in c.proto.spec for c in at.get("plotly_chart"))
    at.selectbox(key="emb_colour").select("review").run()
    assert not at.exception, [e.value for e in at.exception]
    at.toggle(key="emb_side").set_value(True).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2
    assert list((home / "runs" / "tiny" / "embeddings").glob("tsne-*.npy"))


def test_gradcam_page_single_and_set(home, monkeypatch):
    at = open_page("pages/gradcam.py", home, monkeypatch, "tiny")
    at.radio(key="cam_set").set_value("random").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("image")) >= 3
    at.selectbox(key="cam_method_single").select("GradCAM++").run()
    assert not at.exception
    assert any("inside the annotated mask" in c.value for c in at.caption)
    at.text_input(key="cam_layer_single").input("features.2").run()
    assert not at.exception and not at.error
    at.text_input(key="cam_layer_single").input("no.such.layer").run()
    assert any(md("no layer 'no.such.layer'") in e.value for e in at.error)  # shown as text
    at.text_input(key="cam_layer_single").input("").run()
    at.multiselect(key="cam_methods").set_value(["GradCAM", "EigenCAM"]).run()
    assert not at.exception
    assert sum("Removing the most salient" in m.value for m in at.markdown) == 2
    captions = [img.proto.imgs[0].caption for img in at.get("image") if "drop" in (img.proto.imgs[0].caption or "")]
    assert captions and all(" → " in c for c in captions)  # true → predicted under every picture of the set


def test_picking_another_image_runs_the_model_on_that_image_only(home, monkeypatch):
    """The set's maps are computed once: a pick in the one-image tab costs that image's passes alone."""
    from ui.cam_view import run_model

    at = open_page("pages/gradcam.py", home, monkeypatch, "tiny")
    at.radio(key="cam_set").set_value("random").run()  # both tabs drawn: one image, and the set's GradCAM
    model, _ = run_model(home / "runs" / "tiny")  # the page's own cached model
    batches: list[int] = []
    handle = model.register_forward_hook(lambda module, args, output: batches.append(len(args[0])))
    try:
        picker = at.selectbox(key="cam_one")
        picker.set_value(picker.options[1]).run()
    finally:
        handle.remove()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="cam_one").value == picker.options[1]
    assert batches and set(batches) == {1}, batches  # the set of 12 would pass through in batches of 12


@pytest.mark.slow
def test_embeddings_of_an_untrained_backbone_need_no_run(home, monkeypatch):
    at = open_page("pages/embeddings.py", home, monkeypatch, "tiny")
    at.radio(key="emb_source").set_value("an untrained backbone (no run needed)").run()
    at.selectbox(key="emb_bb_model").select("simple_cnn")
    at.selectbox(key="emb_bb_method").select("pca").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("300 images through an untrained simple_cnn" in c.value for c in at.caption)


@pytest.mark.slow
def test_side_by_side_needs_a_test_split(tmp_path, monkeypatch):
    home = tmp_path / "home"
    train_tiny_run(home, "no-test", split={"ratios": [0.8, 0.2, 0.0], "seed": 0, "grouped": True})
    at = open_page("pages/embeddings.py", home, monkeypatch, "no-test")
    at.selectbox(key="emb_method").select("pca").run()
    assert at.toggle(key="emb_side").disabled
    at.session_state["emb_side"] = True  # left on from a run that had a test split
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1  # one map of the splits there are, no empty test panel


def test_embeddings_page_at_100k_items_opens_an_item_typed_by_id(tmp_path, monkeypatch):
    """At 100k points the map carries row numbers only, and ids are typed, not listed."""
    from tests.big_run import write_big_run

    monkeypatch.setenv("LUMEN_HOME", str(tmp_path))
    run_dir = write_big_run(tmp_path)
    at = open_page("pages/embeddings.py", tmp_path, monkeypatch, run_dir.name)
    at.selectbox(key="emb_method").set_value("pca").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "100,000 items" in at.get("plotly_chart")[0].proto.spec
    at.text_input(key="emb_open_typed").input("no-such-item").run()
    assert any("No item of this run" in w.value for w in at.warning)
    at.text_input(key="emb_open_typed").input("test/7").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Nearest neighbours" in m.value for m in at.markdown)
