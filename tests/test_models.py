"""The model zoo (core.models): shapes, freezing, local weights, features and Grad-CAM layers.

Everything runs on CPU from random init; nothing downloads. The torch hub cache is pointed at an
empty temporary folder in every test, so a developer's own cache cannot change the outcome.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from core.model_catalogue import CATALOGUE
from core.models import (
    MODELS,
    build_model,
    cam_target_layer,
    feature_layer,
    features,
    head_parameters,
    imagenet_weights_path,
    list_models,
    min_input_size,
    set_train_mode,
)

ALL = list(MODELS)
#: The large torchvision models take most of this file's time: `make test-fast` (not slow) leaves them out.
HEAVY = {"vgg16", "vgg19", "densenet121", "efficientnet_b0"}
ALL_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in HEAVY else name for name in ALL]
TORCHVISION = [name for name, spec in MODELS.items() if spec.pretrainable]
# VGG and DenseNet are tested at 64 px, the rest at 32 (both sizes are in the supported range).
SIZE = {"vgg16": 64, "vgg19": 64, "densenet121": 64}
INFO_KEYS = {"pretrained", "weights_source", "message", "trainable_params", "total_params"}


@pytest.fixture(autouse=True)
def hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub dir: "auto" must find nothing unless a test puts a file there."""
    folder = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(folder))
    return folder


@pytest.fixture(scope="module")
def built():
    """Models built once per module (VGG takes seconds to initialise): (name, classes, channels, freeze)."""
    cache: dict = {}

    def get(name: str, classes: int, channels: int, freeze: bool = False):
        key = (name, classes, channels, freeze)
        if key not in cache:
            torch.manual_seed(0)
            cache[key] = build_model(name, classes, channels, freeze=freeze, pretrained="none")
        return cache[key]
    return get


def batch(channels: int, size: int, n: int = 2) -> torch.Tensor:
    return torch.randn(n, channels, size, size, generator=torch.Generator().manual_seed(1))


def head_of(model: nn.Module, name: str) -> nn.Linear:
    (linear,) = [m for m in _modules_owning(model, head_parameters(model, name)) if isinstance(m, nn.Linear)]
    return linear


def _modules_owning(model: nn.Module, params) -> list[nn.Module]:
    ids = {id(p) for p in params}
    return [m for m in model.modules() if any(id(p) in ids for p in m.parameters(recurse=False))]


def resnet_state(seed: int = 0) -> dict:
    """A stand-in for ImageNet weights: a randomly initialised torchvision ResNet18, 1000 classes."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


# ---------------------------------------------------------------- shapes

@pytest.mark.parametrize("classes,channels,freeze", [(2, 3, False), (8, 1, True)], ids=["rgb-2", "grey-8"])
@pytest.mark.parametrize("name", ALL_PARAMS)
def test_logits_have_one_column_per_class(built, name, classes, channels, freeze):
    model, info = built(name, classes, channels, freeze)
    model.eval()
    with torch.no_grad():
        logits = model(batch(channels, SIZE.get(name, 32)))
    assert logits.shape == (2, classes)
    assert torch.isfinite(logits).all()
    assert set(info) == INFO_KEYS
    assert info["pretrained"] is False and info["weights_source"] is None
    assert info["total_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,size", [("logistic", 28), ("simple_cnn", 28), ("logistic", 224),
                                       ("simple_cnn", 224), ("resnet18", 224),
                                       pytest.param("efficientnet_b0", 32, marks=pytest.mark.slow)])
def test_runs_across_the_supported_sizes(name, size):
    model, _ = build_model(name, 3, 1, pretrained="none")
    with torch.no_grad():
        assert model.eval()(batch(1, size, n=1)).shape == (1, 3)
    assert min_input_size(name) <= size


# ---------------------------------------------------------------- freezing

@pytest.mark.parametrize("name", ALL_PARAMS)
def test_freeze_trains_only_the_head(built, name):
    model, info = built(name, 8, 1, True)
    head = {id(p) for p in head_parameters(model, name)}
    assert head and all(p.requires_grad for p in head_parameters(model, name))
    assert all(not p.requires_grad for p in model.parameters() if id(p) not in head)
    assert info["trainable_params"] == sum(p.numel() for p in head_parameters(model, name))

    set_train_mode(model, frozen=True)
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(not m.training for m in norms)
    assert head_of(model, name).training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = nn.functional.cross_entropy(model(batch(1, SIZE.get(name, 32))), torch.tensor([0, 5]))
    loss.backward()
    optimiser.step()
    after = model.state_dict()
    (prefix,) = [n + "." for n, m in model.named_modules() if m is head_of(model, name)]
    head_keys = {k for k in after if k.startswith(prefix)}
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and changed <= head_keys  # running statistics of frozen BatchNorm included
    # Random EfficientNet features are tiny with BatchNorm in eval mode, so a head weight step may
    # round away; gradients show which parameters the step was allowed to move.
    assert all((p.grad is not None) == (id(p) in head) for p in model.parameters())


def test_unfrozen_train_mode_trains_every_layer(built):
    model, info = built("resnet18", 2, 3, False)
    set_train_mode(model, frozen=False)
    assert all(m.training for m in model.modules())
    assert info["trainable_params"] == info["total_params"]


def test_freezing_logistic_says_it_changes_nothing():
    model, info = build_model("logistic", 2, freeze=True)
    assert info["trainable_params"] == info["total_params"]
    assert "changes nothing" in info["message"]


# ---------------------------------------------------------------- weights

@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0"])
def test_auto_without_local_weights_says_random(hub, name):
    _, info = build_model(name, 2, pretrained="auto")
    assert info["pretrained"] is False and info["weights_source"] is None
    assert "random weights" in info["message"]
    assert imagenet_weights_path(name).name in info["message"]
    assert str(hub) in info["message"]


def test_local_file_loads_the_backbone(tmp_path):
    state = resnet_state()
    path = tmp_path / "my_resnet.pth"
    torch.save(state, path)
    model, info = build_model("resnet18", 2, pretrained=str(path))
    assert info["pretrained"] is True and info["weights_source"] == str(path)
    assert str(path) in info["message"]
    loaded = model.state_dict()
    assert loaded["fc.weight"].shape == (2, state["fc.weight"].shape[1])
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert not torch.equal(loaded["layer1.0.conv1.weight"], build_model("resnet18", 2, pretrained="none")[0]
                           .state_dict()["layer1.0.conv1.weight"])


def test_auto_uses_a_copy_in_the_torch_hub_cache(hub):
    state = resnet_state(seed=3)
    target = hub / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    target.parent.mkdir(parents=True)
    torch.save(state, target)
    model, info = build_model("resnet18", 5, pretrained="auto")
    assert info["pretrained"] is True and info["weights_source"] == str(target)
    assert "ImageNet" in info["message"]
    assert torch.equal(model.state_dict()["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    present = {row["name"]: row["weights_present"] for row in list_models()}
    assert present["resnet18"] is True and present["vgg16"] is False


def test_grey_input_sums_the_rgb_filters(tmp_path):
    state = resnet_state()
    path = tmp_path / "resnet.pth"
    torch.save(state, path)
    grey, info = build_model("resnet18", 1000, in_channels=1, pretrained=path)
    rgb, _ = build_model("resnet18", 1000, in_channels=3, pretrained=path)
    assert torch.equal(grey.conv1.weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(grey.fc.weight, state["fc.weight"])  # a head that fits is kept
    x = batch(1, 32)
    with torch.no_grad():  # a grey image seen as (g, g, g) gives the same answer
        assert torch.allclose(grey.eval()(x), rgb.eval()(x.repeat(1, 3, 1, 1)), atol=1e-4)
    assert "grey" in info["message"]


def test_frozen_pretrained_batchnorm_keeps_its_statistics(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(resnet_state(), path)
    model, info = build_model("resnet18", 2, freeze=True, pretrained=path)
    assert "frozen" in info["message"]
    set_train_mode(model, frozen=True)
    before = model.bn1.running_mean.clone()
    model(batch(3, 32) * 5 + 3)
    assert torch.equal(model.bn1.running_mean, before)


def test_missing_weights_file_raises_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError, match="not found") as error:
        build_model("resnet18", 2, pretrained=str(missing))
    assert str(missing) in str(error.value)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "cnn.pth"
    torch.save(build_model("simple_cnn", 2, pretrained="none")[0].state_dict(), path)
    with pytest.raises(ValueError, match="do not fit ResNet18"):
        build_model("resnet18", 2, pretrained=path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("not weights")
    with pytest.raises(ValueError, match="Could not read"):
        build_model("resnet18", 2, pretrained=path)


def test_a_broken_cached_file_falls_back_to_random_under_auto(hub):
    target = imagenet_weights_path("resnet18")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated download")
    _, info = build_model("resnet18", 2, pretrained="auto")
    assert info["pretrained"] is False and "random weights" in info["message"]


def test_densenet_files_with_old_key_names_load(tmp_path):
    """torchvision's DenseNet files name layers 'norm.1' where modules now say 'norm1'."""
    torch.manual_seed(0)
    state = torchvision.models.densenet121(weights=None).state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # as in old files
    old = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()}
    assert old.keys() != state.keys()
    path = tmp_path / "densenet.pth"
    torch.save(old, path)
    model, info = build_model("densenet121", 3, pretrained=path)
    assert info["pretrained"] is True
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("classifier."))


def test_lumen_checkpoint_loads_and_other_class_counts_keep_the_new_head(tmp_path):
    source, _ = build_model("simple_cnn", 2, pretrained="none")
    path = tmp_path / "last.pt"
    torch.save({"model": source.state_dict(), "epoch": 4}, path)
    same, _ = build_model("simple_cnn", 2, pretrained=path)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), source.state_dict().values()))
    other, info = build_model("simple_cnn", 5, pretrained=path)
    assert info["pretrained"] is True and other.head.out_features == 5
    assert torch.equal(other.features[0].conv.weight, source.features[0].conv.weight)


# ---------------------------------------------------------------- features and Grad-CAM layer

@pytest.mark.parametrize("name", ALL_PARAMS)
def test_features_are_what_the_head_sees(built, name):
    model, _ = built(name, 2, 3, False)
    x = batch(3, SIZE.get(name, 32))
    model.train()
    feats = features(model, name, x)
    head = head_of(model, name)
    assert feats.shape == (2, head.in_features)
    assert all(m.training for m in model.modules())  # modes restored
    assert any(feature_layer(model, name) is m for m in model.modules())
    with torch.no_grad():
        assert torch.allclose(head(feats), model.eval()(x), atol=1e-4)


@pytest.mark.parametrize("name", [p for p in ALL_PARAMS if p != "logistic"])
def test_cam_target_is_a_feature_map_inside_the_model(built, name):
    model, _ = built(name, 2, 3, False)
    layer = cam_target_layer(model, name)
    assert any(layer is m for m in model.modules())
    shapes = []
    handle = layer.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    with torch.no_grad():
        model.eval()(batch(3, SIZE.get(name, 32)))
    handle.remove()
    assert len(shapes) == 1 and len(shapes[0]) == 4  # (N, C, H, W): something to draw a map from


@pytest.mark.slow
def test_cam_targets_are_the_usual_layers(built):
    resnet, vgg, dense, eff, cnn = (built(n, 2, 3)[0] for n in
                                    ("resnet18", "vgg16", "densenet121", "efficientnet_b0", "simple_cnn"))
    assert cam_target_layer(resnet, "resnet18") is resnet.layer4[-1]
    last_conv = max(i for i, m in enumerate(vgg.features) if isinstance(m, nn.Conv2d))
    assert cam_target_layer(vgg, "vgg16") is vgg.features[last_conv + 1]
    assert isinstance(vgg.features[last_conv + 1], nn.ReLU)
    assert cam_target_layer(dense, "densenet121") is dense.features.norm5
    assert cam_target_layer(eff, "efficientnet_b0") is eff.features[-1]
    assert any(cam_target_layer(cnn, "simple_cnn") is m for m in cnn.features[-1].modules())


def test_logistic_has_no_cam_layer(built):
    with pytest.raises(ValueError, match="Grad-CAM"):
        cam_target_layer(built("logistic", 2, 3)[0], "logistic")


# ---------------------------------------------------------------- the two from-scratch models

def test_simple_cnn_uses_he_initialisation():
    torch.manual_seed(0)
    model, _ = build_model("simple_cnn", 2, pretrained="none")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == MODELS["simple_cnn"].defaults["blocks"]
    for conv in convs:
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
        assert torch.count_nonzero(conv.bias) == 0


def test_simple_cnn_options_shape_the_network():
    model, _ = build_model("simple_cnn", 2, in_channels=1, options={"blocks": 3, "width": 8, "dropout": 0.0})
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)] == [8, 16, 32]
    assert features(model, "simple_cnn", batch(1, 28)).shape == (2, 32)
    assert min_input_size("simple_cnn", {"blocks": 3}) == 8
    for bad in ({"blocks": 0}, {"width": 2.5}, {"dropout": 1.0}, {"widht": 8}):
        with pytest.raises(ValueError):
            build_model("simple_cnn", 2, options=bad)


def test_logistic_is_a_linear_model_on_16px_pixels():
    model, info = build_model("logistic", 4, in_channels=1)
    assert info["total_params"] == (16 * 16 + 1) * 4
    x, y = batch(1, 28), batch(1, 28) * 2 + 1
    with torch.no_grad():
        mixed = model(0.3 * x + 0.7 * y)
        assert torch.allclose(mixed, 0.3 * model(x) + 0.7 * model(y), atol=1e-5)


# ---------------------------------------------------------------- registry and errors

def test_list_models_describes_every_model():
    rows = list_models()
    assert [row["name"] for row in rows] == ALL
    for row in rows:
        assert row["title"] and row["description"]
        assert row["pretrainable"] == (row["name"] in TORCHVISION)
        assert row["weights_present"] is False
    assert {"logistic", "simple_cnn", "resnet18", "vgg16", "vgg19"} <= set(ALL)


def test_unknown_names_and_settings_are_refused():
    with pytest.raises(ValueError, match="resnet18"):
        build_model("resnet181", 2)
    with pytest.raises(ValueError, match="pretrained"):
        build_model("resnet18", 2, pretrained=3)
    with pytest.raises(ValueError, match="channels"):
        build_model("resnet18", 2, in_channels=4)
    with pytest.raises(ValueError):
        build_model("resnet18", 0)
    with pytest.raises(ValueError, match="option"):
        build_model("resnet18", 2, options={"blocks": 2})


def test_features_do_not_leave_hooks_behind(built):
    model, _ = built("resnet18", 2, 3, False)
    features(model, "resnet18", batch(3, 32))
    assert not feature_layer(model, "resnet18")._forward_hooks


def test_the_torch_free_catalogue_names_every_model():
    """core.model_catalogue validates configs without torch; it must know exactly the models built here."""
    assert list(CATALOGUE) == list(MODELS)
