"""Features and 2-D layouts of a real tiny run: shapes, caching in the run directory, neighbours."""
import numpy as np
import pandas as pd
import pytest

from core import embeddings
from tests.conftest import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    home = tmp_path_factory.mktemp("emb-home")
    run = train_tiny_run(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(home))
        yield run


def test_features_have_one_row_per_item_and_are_cached(run_dir, monkeypatch):
    (run_dir / "features.npz").unlink(missing_ok=True)
    assert not embeddings.features_cached(run_dir)
    reported = []
    frame = embeddings.load_features(run_dir, progress=lambda done, total: reported.append((done, total)))
    assert reported and reported[-1] == (300, 300) and reported == sorted(reported)
    assert embeddings.features_cached(run_dir)
    feats = frame.attrs["features"]
    assert feats.shape == (300, 256) and len(frame) == 300  # simple CNN: 256 channels before the head
    assert set(frame["split"]) == {"train", "val", "test"}
    monkeypatch.setattr(embeddings, "compute_features", lambda *a, **k: pytest.fail("recomputed"))
    again = embeddings.load_features(run_dir)
    assert np.array_equal(again.attrs["features"], feats)


# t-SNE, and UMAP with its numba compile (~20 s the first time in a process), are slow tests
@pytest.mark.parametrize("method", ["pca", *(pytest.param(m, marks=pytest.mark.slow) for m in ("tsne", "umap"))])
def test_layouts_are_2d_and_stored_with_the_run(run_dir, method, monkeypatch):
    frame = embeddings.layout(run_dir, method, ("train", "test"))
    assert list(frame.columns[-2:]) == ["x", "y"] and np.isfinite(frame[["x", "y"]]).all().all()
    assert set(frame["split"]) == {"train", "test"}
    assert list((run_dir / "embeddings").glob(f"{method}-*.npy"))
    monkeypatch.setattr(embeddings, "reduce", lambda *a, **k: pytest.fail("recomputed"))
    assert embeddings.layout(run_dir, method, ("test", "train"))[["x", "y"]].equals(frame[["x", "y"]])


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="Unknown method"):
        embeddings.reduce(np.zeros((10, 3)), "mds")


def test_nearest_neighbours_find_an_exact_copy_first(run_dir):
    frame = embeddings.load_features(run_dir).copy()
    feats = frame.attrs["features"].copy()
    feats[5] = feats[17]  # make item 5 a feature-space twin of item 17
    frame.attrs["features"] = feats
    near = embeddings.NeighbourIndex(frame).nearest(frame["item_id"].iloc[17], k=3)
    assert near["item_id"].iloc[0] == frame["item_id"].iloc[5]
    assert near["distance"].iloc[0] == pytest.approx(0, abs=1e-6)
    assert (np.diff(near["distance"]) >= 0).all()


def test_embed_cli_writes_a_layout(run_dir, tmp_path, cli):
    import pandas as pd

    out = tmp_path / "layout.csv"
    result = cli("embed", run_dir, "--method", "pca", "--split", "test", "--out", out)
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out)
    assert set(frame["split"]) == {"test"} and {"x", "y", "item_id"} <= set(frame.columns)
    bad = cli("embed", run_dir, "--method", "mds", "--out", out)
    assert bad.returncode == 2 and "unknown method" in bad.stderr


def test_backbone_features_without_a_run_are_cached(monkeypatch):
    from core.registry import DEMO_DATASETS
    spec = list(DEMO_DATASETS.values())[1]  # the blood-cell demo: no run has been trained on it
    frame = embeddings.backbone_features(spec, "simple_cnn", size=32)
    assert len(frame) == 333 and frame.attrs["features"].shape == (333, 256)
    assert set(frame["label"]) == {"Platelets", "RBC", "WBC"}
    monkeypatch.setattr("core.models.features", lambda *a, **k: pytest.fail("recomputed"))
    again = embeddings.backbone_features(spec, "simple_cnn", size=32)
    assert np.array_equal(again.attrs["features"], frame.attrs["features"])
    xy = embeddings.reduce(frame.attrs["features"], "pca")
    assert xy.shape == (333, 2)


def test_neighbour_index_agrees_with_a_full_sort_of_cosine_distances():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"item_id": [f"i{k}" for k in range(500)], "split": "train"})
    frame.attrs["features"] = rng.normal(size=(500, 12)).astype(np.float32)
    unit = frame.attrs["features"] / np.linalg.norm(frame.attrs["features"], axis=1, keepdims=True)
    for row in (0, 250, 499):
        distance = 1 - unit @ unit[row]
        expected = [i for i in np.argsort(distance, kind="stable") if i != row][:8]
        near = embeddings.NeighbourIndex(frame).nearest(f"i{row}", k=8)
        assert near["item_id"].tolist() == [f"i{i}" for i in expected]
        assert np.allclose(near["distance"], distance[expected], atol=1e-6)
        assert "features" not in near.attrs  # a slice must not drag the whole matrix along


def test_a_layout_does_not_carry_the_feature_matrix(run_dir):
    assert embeddings.layout(run_dir, "pca", ("test",)).attrs == {}
