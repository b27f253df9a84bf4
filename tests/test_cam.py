"""Grad-CAM: maps peak on the evidence, every method runs on real runs, masks and sharing are right."""
import glob
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from core import cam, train
from core.__main__ import main
from core.images import load_array
from core.models import build_model
from core.preprocess import Preprocessor
from core.registry import DEMO_DATASETS
from core.runconfig import make_config
from core.runmodel import load_run_model, preprocessor_of

GLOMERULI = next(iter(DEMO_DATASETS.values()))
DEMO_IMAGE = GLOMERULI.path.replace("labels.csv", "images/GS/SAS_21904_001-0.jpg")
DEMO_MASK = GLOMERULI.path.replace("labels.csv", "masks/SAS_21904_001-0.png")


# ---------------------------------------------------------------- a known case

def _squares(n: int, gen: torch.Generator):
    """Noise images with a 6x6 square at a random place: bright for class 1, dark for class 0."""
    x = torch.rand(n, 1, 32, 32, generator=gen) * 0.3 + 0.2
    y = torch.randint(0, 2, (n,), generator=gen)
    corners = torch.randint(0, 32 - 6, (n, 2), generator=gen)
    for image, label, (r, c) in zip(x, y, corners.tolist()):
        image[0, r:r + 6, c:c + 6] = float(label)
    return x, y, corners


@pytest.mark.slow
def test_gradcam_peaks_on_the_square_that_decides_the_class():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model, _ = build_model("simple_cnn", 2, in_channels=1, options={"blocks": 2, "width": 8, "dropout": 0.0})
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(30):
        x, y, _ = _squares(32, gen)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    x, y, corners = _squares(48, gen)
    assert (cam.predict_proba(model, x).argmax(1) == y.numpy()).mean() > 0.9
    maps = cam.compute_cams(model, "simple_cnn", x, "GradCAM", y.tolist(), batch_size=16)
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    inside = [r - 1 <= pr <= r + 6 and c - 1 <= pc <= c + 6 for (pr, pc), (r, c) in zip(peaks, corners.tolist())]
    assert np.mean(inside) >= 0.8, inside
    faith = cam.confidence_drop(model, x, maps, y.tolist())
    assert faith.drop_salient.mean() > faith.drop_random.mean() + 0.2
    assert "random 20%" in faith.sentence()


# ---------------------------------------------------------------- real runs

def _tiny_run(tmp_path_factory, model: dict, size: int):
    config = make_config({"dataset": {"name": "demo glomeruli", "source": GLOMERULI.to_dict()},
                          "preprocess": {"size": size}, "epochs": 1, "batch_size": 32, "model": model})
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LUMEN_HOME", str(tmp_path_factory.mktemp("home")))
        assert train.run(config, run_dir)["state"] == "finished"
    return run_dir


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory, {"name": "simple_cnn"}, 32)


@pytest.fixture(scope="module")
def frozen_resnet_run(tmp_path_factory):
    return _tiny_run(tmp_path_factory, {"name": "resnet18", "freeze": True, "pretrained": "none"}, 64)


def _inputs(ckpt: dict, n: int) -> torch.Tensor:
    folder = GLOMERULI.path.replace("labels.csv", "images/GS")
    paths = sorted(glob.glob(folder + "/*.jpg"))[:n]
    return torch.cat([cam.model_input(load_array(p), ckpt)[0] for p in paths])


@pytest.mark.parametrize("method", list(cam.METHODS))
def test_every_method_runs_on_a_real_run(cnn_run, method):
    model, ckpt = load_run_model(cnn_run)
    x = _inputs(ckpt, 3)
    # Two passes for three images; ScoreCAM's batch also sizes its 256 masked copies per image.
    maps = cam.compute_cams(model, "simple_cnn", x, method, [0, 1, 0], batch_size=64 if method == "ScoreCAM" else 2)
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and np.isfinite(maps).all()


@pytest.mark.slow
@pytest.mark.parametrize("method", list(cam.METHODS))
def test_every_method_runs_on_a_frozen_backbone(frozen_resnet_run, method):
    model, ckpt = load_run_model(frozen_resnet_run)
    assert ckpt["config"]["model"]["freeze"]
    head = {id(p) for p in model.fc.parameters()}
    for p in model.parameters():  # as the frozen run trained it: only the head needs gradients
        p.requires_grad_(id(p) in head)
    x = _inputs(ckpt, 4)
    # ScoreCAM costs one forward pass per channel: layer1's 64 rather than layer4's 512 keep it quick.
    layer = "layer1" if method == "ScoreCAM" else None
    maps = cam.compute_cams(model, "resnet18", x, method, None, target_layer=layer)
    assert maps.shape == (len(x), 64, 64) and np.isfinite(maps).all()
    assert maps.reshape(len(x), -1).std(axis=1).max() > 0.01  # gradients (or activations) reached layer4
    assert [p.requires_grad for p in model.parameters()] == [id(p) in head for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_input_matches_training_and_image_shows_the_padding(cnn_run):
    model, ckpt = load_run_model(cnn_run)
    wide = np.full((20, 40, 3), 200, dtype=np.uint8)
    x, image = cam.model_input(wide, ckpt)
    assert x.shape == (1, 3, 32, 32) and image.shape == (32, 32, 3)
    assert (image[:7] == 0).all() and (image[12:20] == 200).all()  # zero padding above the strip
    mean = torch.tensor(preprocessor_of(ckpt).mean).view(3, 1, 1)
    std = torch.tensor(preprocessor_of(ckpt).std).view(3, 1, 1)
    assert torch.allclose(x[0] * std + mean, torch.from_numpy(image).permute(2, 0, 1).float() / 255, atol=1e-5)


def test_bad_method_target_and_layer_are_refused(cnn_run):
    model, ckpt = load_run_model(cnn_run)
    x = _inputs(ckpt, 1)
    with pytest.raises(ValueError, match="Unknown CAM method"):
        cam.compute_cams(model, "simple_cnn", x, "saliency")
    with pytest.raises(ValueError, match="out of range"):
        cam.compute_cams(model, "simple_cnn", x, "gradcam", [5])
    with pytest.raises(ValueError, match="no layer"):
        cam.compute_cams(model, "simple_cnn", x, "gradcam", target_layer="features.9")
    assert cam.method_name("grad-cam++") == "GradCAM++"
    override = cam.compute_cams(model, "simple_cnn", x, "gradcam", target_layer="features.2.relu")
    assert override.shape == (1, 32, 32)


def test_an_empty_selection_gives_empty_results(cnn_run):
    """A gallery of, say, every false negative may be empty."""
    model, _ = load_run_model(cnn_run)
    none = torch.zeros(0, 3, 32, 32)
    assert cam.compute_cams(model, "simple_cnn", none, "gradcam", []).shape == (0, 32, 32)
    assert cam.confidence_drop(model, none, np.zeros((0, 32, 32), np.float32)).before.shape == (0,)


# ---------------------------------------------------------------- sharing a cached model

def test_threads_sharing_a_model_get_their_own_maps(cnn_run):
    model, ckpt = load_run_model(cnn_run)
    x = _inputs(ckpt, 8)
    jobs = {"a": (x[:4], [0, 0, 0, 0]), "b": (x[4:], [1, 1, 1, 1])}
    expected = {k: cam.compute_cams(model, "simple_cnn", xs, "GradCAM", t) for k, (xs, t) in jobs.items()}
    got, stop = {}, threading.Event()

    def work(key):
        xs, t = jobs[key]
        got[key] = [cam.compute_cams(model, "simple_cnn", xs, "GradCAM", t, batch_size=1) for _ in range(3)]

    def bystander():  # another session's plain forward passes (e.g. features) on the same model
        with torch.no_grad():
            while not stop.is_set():
                model(x[:2])

    threads = [threading.Thread(target=work, args=(k,)) for k in jobs] + [threading.Thread(target=bystander)]
    for thread in threads:
        thread.start()
    for thread in threads[:2]:
        thread.join()
    stop.set()
    threads[2].join()
    for key in jobs:
        for maps in got[key]:
            np.testing.assert_allclose(maps, expected[key], atol=1e-5)
    assert not model.features[-1].relu._forward_hooks  # every hook removed
    assert all(p.requires_grad for p in model.parameters())  # overlapping save/restore would lose these


# ---------------------------------------------------------------- masks

def test_mask_energy_maths():
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True
    assert cam.mask_energy(mask.astype(np.float32), mask) == 1.0
    assert cam.mask_energy(np.ones((4, 4)), mask) == 0.5
    assert cam.mask_energy(np.where(mask, 0.0, 1.0), mask) == 0.0
    assert np.isnan(cam.mask_energy(np.zeros((4, 4)), mask))
    with pytest.raises(ValueError, match="differ in size"):
        cam.mask_energy(np.ones((8, 8)), mask)


@pytest.mark.parametrize("values", [(0, 255), (0, 1)])
def test_mask_follows_the_image_geometry(tmp_path, values):
    """A 20x40 mask whose left half is set: padded to 40x40 then resized, as its image is."""
    raw = np.full((20, 40), values[0], dtype=np.uint8)
    raw[:, :20] = values[1]
    Image.fromarray(raw).save(tmp_path / "mask.png")
    ckpt = {"preprocessor": Preprocessor(20, "edge", "pad").to_dict()}
    mask = cam.load_mask(tmp_path / "mask.png", ckpt)
    expected = np.zeros((20, 20), dtype=bool)
    expected[5:15, :10] = True  # 10 rows of padding above and below, halved by the resize
    np.testing.assert_array_equal(mask, expected)
    assert cam.mask_energy(np.ones((20, 20)), mask) == pytest.approx(0.25)
    crop = cam.mask_like_input(raw, Preprocessor(20, fit="crop"))
    assert crop[:, :10].all() and not crop[:, 10:].any()  # the centre 20x20 square is half mask


def test_demo_mask_energy_is_a_share(cnn_run):
    model, ckpt = load_run_model(cnn_run)
    result = cam.explain(model, ckpt, load_array(DEMO_IMAGE), "gradcam")
    mask = cam.load_mask(DEMO_MASK, ckpt)
    assert mask.shape == result.cam.shape and 0.3 < mask.mean() < 1
    assert 0 <= cam.mask_energy(result.cam, mask) <= 1


# ---------------------------------------------------------------- pictures and command line

def test_overlay_and_png():
    image = np.zeros((16, 16), dtype=np.uint8)
    heat = np.zeros((16, 16), dtype=np.float32)
    heat[0, 0] = 1
    assert (cam.overlay(image, heat, alpha=0) == 0).all()
    full = cam.overlay(image, heat, alpha=1)
    assert full.shape == (16, 16, 3) and full[0, 0, 0] > 100 and full[8, 8, 2] > 100  # jet: red hot, blue cold
    png = Image.open(io.BytesIO(cam.cam_png(image, heat)))
    assert png.size == (3 * 128 + 8, 128)


def test_cli_writes_a_png_and_refuses_bad_input(cnn_run, tmp_path, capsys):
    out = tmp_path / "cam.png"
    assert main(["cam", str(cnn_run), "--image", DEMO_IMAGE, "--method", "gradcam++", "--out", str(out),
                 "--target", "GS"]) == 0
    printed = capsys.readouterr().out
    assert "predicted:" in printed and "target: GS" in printed and str(out) in printed
    assert Image.open(out).size == (3 * 128 + 8, 128)
    for args, message in [(["--image", str(tmp_path / "none.jpg")], "Cannot read the image"),
                          (["--image", DEMO_IMAGE, "--method", "saliency"], "Unknown CAM method"),
                          (["--image", DEMO_IMAGE, "--target", "tumour"], "Unknown class 'tumour'")]:
        assert main(["cam", str(cnn_run), "--out", str(tmp_path / "x.png"), *args]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
