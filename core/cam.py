"""Grad-CAM and its family: where a run's model looks, and whether that map deserves belief.

The input is built by `model_input` with the checkpoint's own Preprocessor, so the heatmap lies
over exactly the pixels the model saw (padding included).
Two numbers say whether a map is right: `confidence_drop` (does hiding the salient pixels hurt the
class score more than hiding as many random ones?) and `mask_energy` (how much of the heat falls
inside an annotated mask, such as the glomeruli's).

Sharing: a Streamlit server caches one model object for all sessions, and CAM methods work by
hooking a layer of that object. Without care, two sessions' hooks would catch each other's forward
passes and one user would see another's heatmap. So every computation holds a per-model lock, its
hooks record only the calling thread's passes (a forward from another thread, e.g. feature
extraction, is ignored) and pytorch-grad-cam's context manager removes them even on errors.
"""
from __future__ import annotations

import io
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.metrics.perturbation_confidence import PerturbationConfidenceMetric, RemoveMostRelevantFirst
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from core.images import as_rgb, load_array
from core.models import cam_target_layer, head_parameters
from core.preprocess import Preprocessor
from core.runmodel import preprocessor_of

__all__ = [
    "METHODS", "method_name", "model_lock", "model_input", "predict_proba", "compute_cams",
    "explain", "Explanation", "confidence_drop", "Faithfulness", "mask_energy", "mask_like_input",
    "load_mask", "heatmap", "overlay", "cam_png",
]

#: Display name -> pytorch-grad-cam class. EigenCAM ignores the target class (it shows the main
#: component of the activations); ScoreCAM needs no gradients but one forward pass per channel.
METHODS = {
    "GradCAM": GradCAM,
    "GradCAM++": GradCAMPlusPlus,
    "XGradCAM": XGradCAM,
    "LayerCAM": LayerCAM,
    "HiResCAM": HiResCAM,
    "EigenCAM": EigenCAM,
    "ScoreCAM": ScoreCAM,
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def method_name(name: str) -> str:
    """The display name for a method given in any case or spelling ("gradcam", "Grad-CAM++")."""
    names = {_key(n): n for n in METHODS}
    if _key(name) not in names:
        raise ValueError(f"Unknown CAM method '{name}': use one of {', '.join(METHODS)}.")
    return names[_key(name)]


# ---------------------------------------------------------------- one lock per shared model

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock that serialises CAM work on this model object across threads (sessions).

    Keyed by the object itself in a weak dictionary: a dropped model frees its lock, and a new model
    that happens to reuse a freed id() never inherits one.
    """
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.RLock())


@contextmanager
def _explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode and no weight gradients while a map is computed; everything restored afterwards.

    Gradients reach the target layer through the input instead (it requires grad), which works the
    same whether the backbone was frozen or not, skips the weight gradients nobody needs, and leaves
    no .grad tensors on the shared model.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for module, training in modes:
            module.training = training


ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], None]


def _this_thread_only(cam: BaseCAM, layer: nn.Module) -> None:
    """Re-register pytorch-grad-cam's two hooks so they ignore forward passes of other threads.

    The lock only orders CAM calls; a plain forward from another session (features, predictions)
    would otherwise land in this map's recorded activations. Uses grad-cam 1.5's recorder
    (handles, save_activation, save_gradient); tests/test_cam.py fails if that changes.
    """
    owner, recorder = threading.get_ident(), cam.activations_and_grads
    for handle in recorder.handles:
        handle.remove()

    def mine(hook: ForwardHook) -> ForwardHook:
        return lambda module, args, output: hook(module, args, output) if threading.get_ident() == owner else None

    recorder.handles = [layer.register_forward_hook(mine(recorder.save_activation)),
                        layer.register_forward_hook(mine(recorder.save_gradient))]


# ---------------------------------------------------------------- input, exactly as in training

def model_input(arr: np.ndarray, ckpt: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    """(1, C, S, S) normalised tensor for the run's model, and the uint8 image it shows.

    Both come from the checkpoint's own Preprocessor. The image is what the model saw after
    padding/cropping and resizing (HxW grey or HxWx3), so a heatmap can be drawn over it pixel for
    pixel, padding visible.
    """
    preprocessor = preprocessor_of(ckpt)
    pixels = preprocessor.pixels(arr)
    x = preprocessor.tensor(torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).unsqueeze(0))
    return x, pixels[:, :, 0] if pixels.shape[2] == 1 else pixels


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def predict_proba(model: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, K), in eval mode, under the model's lock."""
    out = []
    with model_lock(model), _explaining(model), torch.no_grad():
        for start in range(0, max(len(inputs), 1), batch_size):  # an empty batch still gives (0, K)
            logits = model(inputs[start:start + batch_size].to(_device(model)))
            out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out).numpy()


# ---------------------------------------------------------------- the maps

def _layer(model: nn.Module, model_name: str, target_layer: nn.Module | str | None) -> nn.Module:
    """The architecture's CAM layer, or an override given as a module or a named_modules() name."""
    if target_layer is None:
        return cam_target_layer(model, model_name)
    if isinstance(target_layer, nn.Module):
        return target_layer
    try:
        return model.get_submodule(target_layer)
    except AttributeError as exc:
        raise ValueError(f"The model has no layer '{target_layer}'.") from exc


def _check_targets(targets: Sequence[int] | None, n_images: int, n_classes: int) -> list[int] | None:
    """Targets validated up front: pytorch-grad-cam's context manager swallows IndexErrors."""
    if targets is None:
        return None
    checked = [int(t) for t in targets]
    if len(checked) != n_images:
        raise ValueError(f"Got {len(checked)} target classes for {n_images} images.")
    bad = [t for t in checked if not 0 <= t < n_classes]
    if bad:
        raise ValueError(f"Target class {bad[0]} is out of range: the model has {n_classes} classes.")
    return checked


def compute_cams(model: nn.Module, model_name: str, inputs: torch.Tensor, method: str,
                 targets: Sequence[int] | None = None, target_layer: nn.Module | str | None = None,
                 batch_size: int = 32) -> np.ndarray:
    """Heatmaps (N, S, S) in [0, 1] for a batch of model inputs, `batch_size` images per pass.

    targets: one class index per image, or None for each image's predicted class.
    target_layer: None (the architecture's own, see core.models), a module or a dotted name.
    Safe to call from several threads on one shared model (see the module docstring).
    """
    cam_class = METHODS[method_name(method)]
    layer = _layer(model, model_name, target_layer)
    checked = _check_targets(targets, len(inputs), head_parameters(model, model_name)[0].shape[0])
    if len(inputs) == 0:
        return np.zeros((0, *inputs.shape[-2:]), dtype=np.float32)
    maps: list[npt.NDArray[np.float32]] = []
    with model_lock(model), _explaining(model), cam_class(model, [layer]) as cam:
        _this_thread_only(cam, layer)
        cam.batch_size = batch_size  # ScoreCAM's batch of masked copies
        for start in range(0, len(inputs), batch_size):
            x = inputs[start:start + batch_size].detach().to(_device(model))
            chunk = None if checked is None else [ClassifierOutputTarget(t) for t in checked[start:start + batch_size]]
            maps.append(cam(x.requires_grad_(cam.uses_gradients), chunk))
    if sum(len(m) for m in maps) != len(inputs):  # the context manager swallowed an IndexError
        raise RuntimeError(f"{method} failed on this model and layer; see the message printed above.")
    return np.clip(np.concatenate(maps), 0.0, 1.0)


@dataclass
class Explanation:
    """One image explained: what the model saw, the map, and the classes involved."""

    image: np.ndarray  # uint8 preprocessed input (HxW or HxWx3)
    cam: np.ndarray  # (S, S) in [0, 1]
    probs: np.ndarray  # (K,) softmax
    predicted: str
    target: str
    method: str


def explain(model: nn.Module, ckpt: dict[str, Any], arr: np.ndarray, method: str, target: str | None = None,
            target_layer: nn.Module | str | None = None) -> Explanation:
    """CAM of one raw image for a class name (default: the predicted class), for the CLI and pages."""
    classes = list(ckpt["classes"])
    if target is not None and target not in classes:
        raise ValueError(f"Unknown class '{target}': this run's classes are {', '.join(classes)}.")
    x, image = model_input(arr, ckpt)
    probs = predict_proba(model, x)[0]
    predicted = classes[int(probs.argmax())]
    target = predicted if target is None else target
    cam = compute_cams(model, ckpt["config"]["model"]["name"], x, method, [classes.index(target)], target_layer)
    return Explanation(image, cam[0], probs, predicted, target, method_name(method))


# ---------------------------------------------------------------- is the map right?

@dataclass
class Faithfulness:
    """Target-class probability before and after hiding the most salient or random pixels."""

    fraction: float
    before: npt.NDArray[np.float32]
    salient: npt.NDArray[np.float32]
    random: npt.NDArray[np.float32]

    @property
    def drop_salient(self) -> npt.NDArray[np.float32]:
        return self.before - self.salient

    @property
    def drop_random(self) -> npt.NDArray[np.float32]:
        return self.before - self.random

    def sentence(self) -> str:
        """The figure in words, with the random baseline that gives it meaning."""
        share = f"{self.fraction:.0%}"
        return (f"Removing the most salient {share} of pixels drops the class score by "
                f"{np.mean(self.drop_salient):.3f} on average; removing a random {share} drops it by "
                f"{np.mean(self.drop_random):.3f}.")


def _mean_imputer(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The image (C, S, S) with the pixels not kept set to its per-channel mean."""
    mean = image.mean(dim=(1, 2), keepdim=True)
    return torch.where(keep.bool().unsqueeze(0), image, mean)


def confidence_drop(model: nn.Module, inputs: torch.Tensor, cams: np.ndarray, targets: list[int] | None = None,
                    fraction: float = 0.2, seed: int = 0) -> Faithfulness:
    """How much the target-class score falls when the top `fraction` of CAM pixels are hidden.

    pytorch-grad-cam's perturbation metric (RemoveMostRelevantFirst) does the hiding, with each
    image's mean colour as the filler. A random set of the same size is hidden too, through the
    same metric fed uniform noise as the map: a map is only informative when its pixels hurt the
    score clearly more than random ones (hiding anything at all usually costs a little).
    targets: class per image, or None for each image's predicted class.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, not {fraction}.")
    inputs = inputs.detach().cpu()
    n = len(inputs)
    if cams.shape != (n,) + tuple(inputs.shape[-2:]):
        raise ValueError(f"Expected {n} maps of {tuple(inputs.shape[-2:])}, got {cams.shape}.")
    before = predict_proba(model, inputs)
    classes = before.argmax(1) if targets is None else np.asarray(targets, dtype=int)
    rows = np.arange(n)
    if n == 0:
        return Faithfulness(fraction, before[rows, classes], before[rows, classes], before[rows, classes])
    metric = PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 * (1 - fraction), _mean_imputer))
    softmax_targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]
    noise = np.random.default_rng(seed).random(cams.shape, dtype=np.float32)
    with model_lock(model), _explaining(model):
        device = _device(model)
        scores = [metric(inputs.to(device), maps.astype(np.float32), softmax_targets, model, return_diff=False)
                  for maps in (cams, noise)]
    return Faithfulness(fraction, before[rows, classes], *(np.asarray(s, dtype=np.float32) for s in scores))


def mask_energy(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heatmap's energy (sum of its values) inside the mask; NaN for an empty map.

    Compare it with the mask's own area share (mask.mean()): a flat map scores exactly that.
    """
    if cam.shape != mask.shape:
        raise ValueError(f"The map {cam.shape} and the mask {mask.shape} differ in size; "
                         f"prepare the mask with mask_like_input/load_mask.")
    total = float(cam.sum())
    return float(cam[mask.astype(bool)].sum()) / total if total > 0 else float("nan")


def mask_like_input(arr: np.ndarray, preprocessor: Preprocessor) -> np.ndarray:
    """A mask (same size as its image) put through the image's geometry: a bool (S, S) array.

    The same Preprocessor pads, crops and resizes it; the margin is always "zero" (outside the
    mask) whatever the image's fill, which never changes the geometry. The mask is made binary at
    half its maximum first (0/1, 0/255 and soft masks alike) and again after the bilinear resize.
    """
    grey = arr.max(axis=2) if arr.ndim == 3 else arr
    binary = np.where(grey >= max(int(grey.max()), 1) / 2, 255, 0).astype(np.uint8)
    return replace(preprocessor, pad_mode="zero").image(binary) >= 128


def load_mask(path: str | Path, ckpt: dict[str, Any]) -> np.ndarray:
    """The mask file at `path` in the geometry of the run's model input."""
    return mask_like_input(load_array(path), preprocessor_of(ckpt))


# ---------------------------------------------------------------- pictures

def heatmap(cam: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """uint8 RGB colour image of a [0, 1] map; colormap is any OpenCV name (jet, turbo, inferno...)."""
    code: int | None = getattr(cv2, f"COLORMAP_{colormap.upper()}", None)
    if code is None:
        raise ValueError(f"Unknown colormap '{colormap}'.")
    levels: npt.NDArray[np.uint8] = np.rint(255 * np.clip(cam, 0, 1)).astype(np.uint8)
    bgr = cv2.applyColorMap(levels, code)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """The heatmap over the preprocessed image; alpha is the heatmap's opacity (0: image only)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}.")
    if image.shape[:2] != cam.shape:
        raise ValueError(f"The image {image.shape[:2]} and the map {cam.shape} differ in size.")
    mixed = (1 - alpha) * as_rgb(image).astype(np.float32) + alpha * heatmap(cam, colormap)
    return np.rint(mixed).astype(np.uint8)


def cam_png(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5, colormap: str = "jet",
            min_side: int = 128) -> bytes:
    """PNG bytes of [preprocessed | heatmap | overlay], enlarged (nearest) to at least `min_side`."""
    factor = max(1, -(-min_side // cam.shape[0]))
    panels = [as_rgb(image), heatmap(cam, colormap), overlay(image, cam, alpha, colormap)]
    panels = [p.repeat(factor, axis=0).repeat(factor, axis=1) for p in panels]
    gap = np.full((panels[0].shape[0], 4, 3), 255, dtype=np.uint8)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()
