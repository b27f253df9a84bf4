"""The model zoo: what can be trained, how it is built, where its features and Grad-CAM layer are.

Every model is described by a `ModelSpec` in `MODELS`. The spec names the head, the feature layer,
the Grad-CAM target and the first convolution by dotted paths ("layer4.-1" means the last child of
layer4), so the rest of Lumen (training, embeddings, Grad-CAM) never needs to know an architecture.

Nothing here downloads. ImageNet weights are used only when a copy already sits in the torch hub
cache (where `torch.hub` would have put it) or when the user points at a local .pth file. Machines
in a hospital often have no internet; a model that silently hangs on a download is worse than a
model that says plainly that it starts from random weights.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from core.model_catalogue import CATALOGUE, entry, min_input_size, typed_options

__all__ = [
    "MODELS", "ModelSpec", "build_model", "set_train_mode", "feature_layer", "features",
    "cam_target_layer", "head_parameters", "list_models", "imagenet_weights_path", "min_input_size",
]

#: (num_classes, in_channels, options) -> a model with random weights.
Builder = Callable[[int, int, dict[str, Any]], nn.Module]


# ---------------------------------------------------------------- the two small from-scratch models

def _logistic(num_classes: int, in_channels: int, options: dict[str, Any]) -> nn.Module:
    """Logistic regression on a downsampled image: the floor any network has to beat."""
    grid = options["grid"]
    return nn.Sequential(OrderedDict(
        pool=nn.AdaptiveAvgPool2d(grid),  # averaging is linear, so the whole model stays linear
        flatten=nn.Flatten(),
        head=nn.Linear(in_channels * grid * grid, num_classes),
    ))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel_size=3, padding=1),
        bn=nn.BatchNorm2d(cout),
        relu=nn.ReLU(),  # not in-place: Grad-CAM hooks this output
        pool=nn.MaxPool2d(2),
    ))


def _simple_cnn(num_classes: int, in_channels: int, options: dict[str, Any]) -> nn.Module:
    """A few conv blocks that train from scratch in minutes on CPU, sized for small crops."""
    blocks, width, dropout = options["blocks"], options["width"], options["dropout"]
    channels = [in_channels] + [width * 2 ** i for i in range(blocks)]
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(*[_conv_block(a, b) for a, b in zip(channels, channels[1:])]),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        dropout=nn.Dropout(float(dropout)),
        head=nn.Linear(channels[-1], num_classes),
    ))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # He init keeps activations' scale through ReLU layers
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


# ---------------------------------------------------------------- torchvision models

def _torchvision(builder: str) -> Builder:
    """A builder for a torchvision architecture, random init, head sized for num_classes."""
    def build(num_classes: int, in_channels: int, options: dict[str, Any]) -> nn.Module:
        # weights=None: never a download. num_classes sizes the head with the architecture's own init.
        model: nn.Module = getattr(torchvision.models, builder)(weights=None, num_classes=num_classes)
        if builder.startswith("densenet"):
            _expose_densenet_pooling(model)
        return model
    return build


def _expose_densenet_pooling(model: nn.Module) -> None:
    """Append DenseNet's final ReLU and pooling to `features` so the embedding has a module.

    DenseNet applies them functionally in forward(); appending them changes neither the output
    (ReLU and 1x1 average pooling of the result are no-ops) nor the state dict (no parameters).
    """
    features = model.get_submodule("features")
    features.add_module("relu5", nn.ReLU())
    features.add_module("pool5", nn.AdaptiveAvgPool2d(1))


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class ModelSpec:
    """One trainable architecture and where its parts are (dotted paths, "-1" = last child)."""

    name: str
    title: str
    description: str
    pretrainable: bool
    builder: Builder
    head: str  # the final Linear: replaced per dataset, the only trainable part when frozen
    feature: str  # its output, flattened, is the penultimate feature vector (the head's input)
    cam: str | None  # Grad-CAM target layer; None where the model has no spatial feature map
    first_conv: str | None  # adapted for grey input; None where in_channels is built in directly
    weights: str | None = None  # torchvision weights enum, only to learn the file name of its .url

    @property
    def defaults(self) -> dict[str, Any]:
        """The options a model is built with when none are given (core.model_catalogue's)."""
        return CATALOGUE[self.name].defaults

    @property
    def from_scratch(self) -> bool:
        """Whether the builder takes in_channels itself (no torchvision first conv to adapt)."""
        return self.weights is None


MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec("logistic", "Logistic regression",
              "Linear model on 16x16 downsampled pixels: the baseline any network must beat.",
              builder=_logistic, head="head", feature="flatten", cam=None, pretrainable=False, first_conv=None),
    ModelSpec("simple_cnn", "Simple CNN",
              "A few conv blocks trained from scratch: fast on CPU, good for small crops.",
              builder=_simple_cnn, head="head", feature="flatten", cam="features.-1.relu",
              pretrainable=False, first_conv=None),
    ModelSpec("resnet18", "ResNet18",
              "18-layer residual network: the usual first choice for fine-tuning.", pretrainable=True,
              builder=_torchvision("resnet18"), head="fc", feature="avgpool", cam="layer4.-1",
              first_conv="conv1", weights="ResNet18_Weights"),
    ModelSpec("vgg16", "VGG16",
              "Plain 16-layer network; large (most weights in its dense head) and slow on CPU.",
              pretrainable=True, builder=_torchvision("vgg16"), head="classifier.6",
              feature="classifier.4", cam="features.-2", first_conv="features.0",
              weights="VGG16_Weights"),
    ModelSpec("vgg19", "VGG19",
              "VGG16 with three more conv layers; even larger and slower.", pretrainable=True,
              builder=_torchvision("vgg19"), head="classifier.6", feature="classifier.4",
              cam="features.-2", first_conv="features.0", weights="VGG19_Weights"),
    ModelSpec("densenet121", "DenseNet121",
              "Densely connected 121-layer network: compact, strong on chest X-rays (CheXNet).",
              pretrainable=True, builder=_torchvision("densenet121"), head="classifier",
              feature="features", cam="features.norm5", first_conv="features.conv0",
              weights="DenseNet121_Weights"),
    ModelSpec("efficientnet_b0", "EfficientNet-B0",
              "Small, efficient network scaled for accuracy per computation.", pretrainable=True,
              builder=_torchvision("efficientnet_b0"), head="classifier.1", feature="avgpool",
              cam="features.-1", first_conv="features.0.0", weights="EfficientNet_B0_Weights"),
]}


def _spec(name: str) -> ModelSpec:
    entry(name)  # the catalogue names exactly these models (a test checks), and says the refusal
    return MODELS[name]


# ---------------------------------------------------------------- finding parts by path

def _module_at(model: nn.Module, path: str) -> nn.Module:
    """`model.get_submodule` that also understands negative indices ("layer4.-1")."""
    module = model
    for part in path.split("."):
        module = list(module.children())[int(part)] if re.fullmatch(r"-\d+", part) else getattr(module, part)
    return module


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, child = path.rpartition(".")
    setattr(_module_at(model, parent) if parent else model, child, new)


def _param_prefix(model: nn.Module, path: str) -> str:
    """The state-dict prefix of the module at `path` (resolves negative indices)."""
    target = _module_at(model, path)
    for name, module in model.named_modules():
        if module is target:
            return f"{name}."
    raise ValueError(f"{path} is not inside the model.")  # pragma: no cover (paths are ours)


# ---------------------------------------------------------------- weights

def imagenet_weights_path(name: str) -> Path | None:
    """Where torch.hub keeps this model's ImageNet weights (present or not); None if it has none.

    The file name comes from the torchvision weights enum's `.url`, which is only a string: reading
    it never downloads.
    """
    spec = _spec(name)
    if not spec.weights:
        return None
    url = getattr(torchvision.models, spec.weights).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


_DENSE_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pth: bare, or inside a Lumen checkpoint ("model") or "state_dict"."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and weights_only errors all mean "not usable weights"
        raise ValueError(f"Could not read weights from {path}: {exc}") from exc
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors).")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        key = key[len("module."):] if key.startswith("module.") else key  # saved from DataParallel
        match = _DENSE_OLD_KEY.match(key)  # torchvision's DenseNet files use pre-1.0 key names
        out[match.group(1) + match.group(2) if match else key] = value
    return out


def _fit_state_dict(model: nn.Module, spec: ModelSpec, state: dict[str, torch.Tensor],
                    source: Path) -> dict[str, torch.Tensor]:
    """The file's tensors made to fit the model, or ValueError saying why they cannot.

    Head tensors of another shape (another number of classes) are dropped: the new head keeps its
    fresh init. RGB first-conv filters are summed for grey input: a grey pixel g seen as (g, g, g)
    gives the same response. Everything is checked before the model is touched.
    """
    own = model.state_dict()
    state = dict(state)
    if spec.first_conv:
        key = _param_prefix(model, spec.first_conv) + "weight"
        if key in state and state[key].ndim == 4 and state[key].shape[1] == 3 and own[key].shape[1] == 1:
            state[key] = state[key].sum(dim=1, keepdim=True)
    head = _param_prefix(model, spec.head)
    for key in [k for k in state if k.startswith(head)]:
        if key in own and state[key].shape != own[key].shape:
            del state[key]

    def allowed_missing(key: str) -> bool:
        return key.startswith(head) or key.endswith("num_batches_tracked")

    missing = [k for k in own if k not in state and not allowed_missing(k)]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
             for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        problems = [f"{len(v)} {what} (e.g. {', '.join(v[:2])})"
                    for what, v in (("missing", missing), ("unexpected", unexpected),
                                    ("of another shape", wrong)) if v]
        raise ValueError(f"The weights in {source} do not fit {spec.title}: "
                         f"{'; '.join(problems)}. Is it a {spec.title} state dict?")
    return state


def _load(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    state = _fit_state_dict(model, spec, _read_state_dict(path), path)
    model.load_state_dict(state, strict=False)


def _adapt_first_conv(model: nn.Module, spec: ModelSpec, in_channels: int) -> None:
    """Give a torchvision model's first conv `in_channels` inputs (1 for grey, 3 for RGB).

    The random init is sliced (keeping the architecture's own init); pretrained RGB filters are
    summed later in `_fit_state_dict`.
    """
    if spec.from_scratch or in_channels == 3:
        return
    if in_channels != 1:
        raise ValueError(f"{spec.title} takes 1 (grey) or 3 (RGB) input channels, not {in_channels}.")
    assert spec.first_conv is not None, f"{spec.name}: a torchvision model names its first conv"
    old = _module_at(model, spec.first_conv)
    if not isinstance(old, nn.Conv2d):
        raise TypeError(f"{spec.name}.{spec.first_conv} is a {type(old).__name__}, not a Conv2d.")
    # torch types the attributes as tuple[int, ...] and the constructor's arguments as int | tuple[int, int]
    new = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding,  # type: ignore[arg-type]
                    old.dilation, old.groups, old.bias is not None, old.padding_mode)  # type: ignore[arg-type]
    with torch.no_grad():
        new.weight.copy_(old.weight[:, :1])
        if old.bias is not None and new.bias is not None:
            new.bias.copy_(old.bias)
    _set_module(model, spec.first_conv, new)


def _initial_weights(spec: ModelSpec, pretrained: str | Path | bool | None) -> tuple[Path | None, str]:
    """Which file to load (or None) and, when None, the sentence that says why."""
    if pretrained is None or pretrained is False or pretrained == "none":
        return None, f"{spec.title} starts from random weights (pretrained weights not requested)."
    if pretrained == "auto":
        path = imagenet_weights_path(spec.name) if spec.pretrainable else None
        if path is None:
            return None, f"{spec.title} starts from random weights (it has no ImageNet weights)."
        if not path.is_file():
            return None, (f"{spec.title} starts from random weights: no ImageNet weights found in "
                          f"{path.parent} (put {path.name} there to use them).")
        return path, ""
    if not isinstance(pretrained, (str, Path)):
        raise ValueError(f"pretrained must be 'auto', 'none' or a path to a .pth file, not {pretrained!r}.")
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise ValueError(f"Weights file not found: {path}. Use 'auto', 'none' or the path of a .pth state dict.")
    return path, ""


# ---------------------------------------------------------------- building

def build_model(name: str, num_classes: int, in_channels: int = 3, freeze: bool = False,
                pretrained: str | Path | None = "auto", options: dict[str, Any] | None = None
                ) -> tuple[nn.Module, dict[str, Any]]:
    """Build a model for `num_classes` and say plainly what it starts from.

    pretrained: "auto" (ImageNet weights if a local copy is in the torch hub cache, else random),
    "none" (random), or a path to a local .pth state dict (ValueError if missing or not fitting).
    A broken cached file under "auto" falls back to random weights with a message, so a bad cache
    never stops training; an explicit path never falls back, so a typo never goes unnoticed.
    freeze: only the head trains; call `set_train_mode(model, frozen=True)` each epoch.
    Returns (model, info) with info keys pretrained, weights_source, message, trainable_params,
    total_params.
    """
    spec = _spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number above 0, not {num_classes!r}.")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a whole number above 0, not {in_channels!r}.")
    model = spec.builder(num_classes, in_channels, typed_options(spec.name, options))
    _adapt_first_conv(model, spec, in_channels)

    path, message = _initial_weights(spec, pretrained)
    if path is not None:
        try:
            _load(model, spec, path)
            kind = "ImageNet weights" if pretrained == "auto" else "weights"
            message = f"{spec.title} starts from {kind} in {path} (new head for {num_classes} classes)."
        except ValueError as exc:
            if pretrained != "auto":
                raise
            path, message = None, f"{spec.title} starts from random weights: {exc}"
    if in_channels == 1 and path is not None and not spec.from_scratch:
        message += " Its first convolution sums the RGB filters to read grey images."
    if freeze:
        message += " " + _freeze(model, spec, pretrained=path is not None)
    info = {
        "pretrained": path is not None,
        "weights_source": str(path) if path is not None else None,
        "message": message,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
    }
    return model, info


def _freeze(model: nn.Module, spec: ModelSpec, pretrained: bool) -> str:
    """Stop gradients everywhere but the head; return the sentence for the build message."""
    head = {id(p) for p in _module_at(model, spec.head).parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    if all(id(p) in head for p in model.parameters()):
        return "Freezing changes nothing: the whole model is its linear head."
    note = "" if pretrained else " (on random features, since no pretrained weights were loaded)"
    return f"Backbone frozen: only the head trains{note}."


def head_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The head's parameters, e.g. for a higher learning rate than the backbone's."""
    return list(_module_at(model, _spec(name).head).parameters())


def set_train_mode(model: nn.Module, frozen: bool) -> nn.Module:
    """model.train(), but with frozen BatchNorm layers kept in eval mode.

    A frozen backbone must not drift: in train mode BatchNorm would keep updating its running
    statistics from the new data even though its weights are frozen, and would normalise with
    per-batch statistics the head never sees at evaluation. Call this at the start of every training
    epoch instead of model.train(). A BatchNorm counts as frozen when none of its own parameters
    needs gradients.
    """
    model.train()
    if frozen:
        for module in model.modules():
            if isinstance(module, _BatchNorm) and not any(p.requires_grad for p in module.parameters()):
                module.eval()
    return model


# ---------------------------------------------------------------- features and Grad-CAM layer

def feature_layer(model: nn.Module, name: str) -> nn.Module:
    """The module whose output, flattened, is the penultimate feature vector (the head's input)."""
    return _module_at(model, _spec(name).feature)


def features(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features (N, D) for a batch, in eval mode and without gradients.

    A forward hook on `feature_layer` catches them during one ordinary forward pass. The hook only
    records calls from this thread, because a model cached for a Streamlit server is shared by the
    threads of all sessions. Each module's train/eval mode is restored afterwards.
    """
    layer, owner = feature_layer(model, name), threading.get_ident()
    caught: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        if threading.get_ident() == owner:
            caught.append(output.detach().flatten(1).clone())  # clone: later in-place ops

    modes = {m: m.training for m in model.modules()}
    handle = layer.register_forward_hook(hook)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training
    return caught[-1]


def cam_target_layer(model: nn.Module, name: str) -> nn.Module:
    """The layer Grad-CAM explains: the last spatial feature map before pooling."""
    spec = _spec(name)
    if spec.cam is None:
        raise ValueError(f"{spec.title} has no convolutional feature map, so Grad-CAM cannot explain it; "
                         f"its weights (one per pixel and class) are themselves the explanation.")
    return _module_at(model, spec.cam)


# ---------------------------------------------------------------- for the UI

def list_models() -> list[dict[str, Any]]:
    """One row per model for a selectbox, with whether local ImageNet weights are present."""
    rows = []
    for spec in MODELS.values():
        path = imagenet_weights_path(spec.name)
        rows.append({
            "name": spec.name, "title": spec.title, "description": spec.description,
            "pretrainable": spec.pretrainable,
            "weights_present": bool(path and path.is_file()),
            "weights_path": str(path) if path else None,
        })
    return rows
