"""The new-run form: every field of core.runconfig, grouped the way a researcher thinks of them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core.models import list_models
from core.runconfig import bounds, choices, defaults
from core.sources import SourceSpec
from ui.text import md

SIZES = (28, 32, 64, 96, 128, 224, 256)
NORMALISATION = {"train": "training split", "imagenet": "ImageNet", "none": "none (0-1)"}
DEFAULT = defaults()  # the run config's own defaults: the form keeps no copy of its own


def _default(field: str) -> Any:
    """A field's default, e.g. _default("optimiser.lr")."""
    group, _, name = field.rpartition(".")
    return (DEFAULT[group] if group else DEFAULT)[name]


def _choice(cols, label: str, field: str, key: str, **kwargs) -> str:
    """A selectbox over a config field's choices, starting at its default."""
    options = choices(field)
    return cols.selectbox(label, options, index=options.index(_default(field)), key=key, **kwargs)


def _whole(cols, label: str, field: str, key: str, value: int | None = None) -> int:
    """A number input within a whole-number field's bounds, starting at `value` or the default."""
    low, high = bounds(field)
    return int(cols.number_input(label, low, high, _default(field) if value is None else value, key=key))


def _model_section() -> dict:
    models = {m["name"]: m for m in list_models()}
    cols = st.columns([2, 1, 1])
    name = cols[0].selectbox("Model", list(models), index=list(models).index(DEFAULT["model"]["name"]),
                             format_func=lambda n: models[n]["title"], key="train_model",
                             help=" · ".join(f"{m['title']}: {m['description']}" for m in models.values()))
    info = models[name]
    cols[0].caption(info["description"])
    freeze = cols[1].toggle("Freeze backbone", key="train_freeze", disabled=not info["pretrainable"],
                            help="Train only the new classification head on top of fixed backbone features.")
    weights = ""
    if info["pretrainable"]:
        weights = cols[1].text_input(
            "Weights file (optional)", key="train_weights", placeholder="/models/resnet18_histology.pth",
            help="A .pth state dict of this architecture, for example weights pretrained on histology. "
                 "Blank: ImageNet weights from the torch cache when they are there.").strip()
    if not info["pretrainable"]:
        cols[2].caption("Trained from scratch (no ImageNet weights exist for this model).")
    elif weights:
        if Path(weights).expanduser().is_file():
            cols[2].success(f"Starts from the weights in {md(weights)}.")
        else:
            cols[2].error(f"No file at {md(weights)}: correct the path or clear it.")
    elif info["weights_present"]:
        cols[2].success(f"ImageNet weights found: {info['weights_path']}")
    else:
        cols[2].warning(f"No ImageNet weights on this machine: starts from random weights. "
                        f"Put the file at {info['weights_path']} to use them.")
    return {"name": name, "freeze": bool(freeze and info["pretrainable"]), "pretrained": weights or "auto"}


def _data_section() -> tuple[dict, dict, dict]:
    percent = [round(share * 100) for share in DEFAULT["split"]["ratios"]]
    initial = DEFAULT["augment"]
    cols = st.columns(6)
    size = cols[0].selectbox("Image size (px)", SIZES, index=SIZES.index(DEFAULT["preprocess"]["size"]),
                             key="train_size")
    pad_mode = _choice(cols[1], "Pad mode", "preprocess.pad_mode", "train_pad")
    fit = _choice(cols[2], "Fit", "preprocess.fit", "train_fit")
    train = cols[3].number_input("Train %", 1, 100, max(1, st.session_state.get("split_train", percent[0])),
                                 key="train_split_train")  # the Dataset page allows 0; training needs some
    val = cols[4].number_input("Val %", 0, 100, st.session_state.get("split_val", percent[1]), key="train_split_val")
    test = cols[5].number_input("Test %", 0, 100, st.session_state.get("split_test", percent[2]),
                                key="train_split_test")
    cols = st.columns(6)
    split_seed = _whole(cols[0], "Split seed", "split.seed", "train_split_seed", st.session_state.get("split_seed"))
    grouped = cols[1].toggle("Grouped", DEFAULT["split"]["grouped"], key="train_grouped",
                             help="Each group (slide, patient) goes wholly to one split, so none leaks.")
    hflip = cols[2].checkbox("Horizontal flips", initial["hflip"], key="train_hflip")
    vflip = cols[3].checkbox("Vertical flips", initial["vflip"], key="train_vflip")
    rotate90 = cols[4].checkbox("Quarter turns", initial["rotate90"], key="train_rot90")
    low, high = bounds("augment.rotation")
    rotation = cols[5].slider("Rotation (±°)", int(low), int(high), int(initial["rotation"]),
                              key="train_rotation")
    cols = st.columns(6)
    # the sliders offer the useful part of each range; the config allows up to 0.5 and 1 (exclusive)
    shift = cols[0].slider("Shift (share of size)", 0.0, 0.3, initial["shift"], 0.05, key="train_shift")
    jitter = cols[1].slider("Contrast jitter", 0.0, 0.5, initial["color_jitter"], 0.05, key="train_jitter",
                            help="Each image's brightness and its contrast, each by up to this share.")
    saturation = cols[2].slider("Saturation jitter", 0.0, 0.5, initial["saturation"], 0.05, key="train_saturation",
                                help="Each colour image's saturation, by up to this share (grey images: none).")
    _, most_hue = bounds("augment.hue")
    hue = cols[3].slider("Hue jitter", 0.0, float(most_hue), initial["hue"], 0.05,
                         key="train_hue", help="Shifts each colour image's hue by up to this share of the "
                                               "colour circle: stain colour varies between labs.")
    normalize = _choice(cols[4], "Normalisation", "preprocess.normalize", "train_normalize",
                        format_func=NORMALISATION.__getitem__,
                        help="What the pixel values are scaled by before the model sees them: the mean and "
                             "spread of the training split, ImageNet's (for ImageNet-pretrained weights), or none.")
    split = {"ratios": [train / 100, val / 100, test / 100], "seed": split_seed, "grouped": grouped}
    augment = {"hflip": hflip, "vflip": vflip, "rotate90": rotate90, "rotation": float(rotation),
               "shift": float(shift), "color_jitter": float(jitter), "saturation": float(saturation),
               "hue": float(hue)}
    return split, {"size": int(size), "pad_mode": pad_mode, "fit": fit, "normalize": normalize}, augment


def _subset_section() -> dict:
    """Train on part of the data: per class, a share, a cap, or both (blank: all of it)."""
    cols = st.columns(6)
    _, most = bounds("subset.fraction")
    fraction = cols[0].number_input("Subset: share of each class", 0.01, float(most), _default("subset.fraction"),
                                    0.05, key="train_subset_fraction", placeholder="all",  # the config's 0 is exclusive
                                    help="Take part of every class, for a quick try or a learning curve.")
    fewest, _ = bounds("subset.per_class")
    per_class = cols[1].number_input("Subset: at most per class", fewest, None, _default("subset.per_class"), 1,
                                     key="train_subset_cap", placeholder="no cap")
    seed = _whole(cols[2], "Subset seed", "subset.seed", "train_subset_seed")
    cols[3].caption("Drawn before the split, evenly across slides or patients when the dataset has groups.")
    return {"fraction": fraction, "per_class": None if per_class is None else int(per_class), "seed": seed}


def _optimisation_section() -> dict:
    optimiser = DEFAULT["optimiser"]
    cols = st.columns(6)
    name = _choice(cols[0], "Optimiser", "optimiser.name", "train_opt")
    nesterov = cols[0].toggle("Nesterov", optimiser["nesterov"], key="train_nesterov",
                              disabled=name != "sgd", help="SGD only: Nesterov momentum (look-ahead), or plain "
                                                           "(heavy-ball) momentum when off.")
    lr = cols[1].select_slider("Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
                               value=optimiser["lr"], key="train_lr")
    decay = cols[2].select_slider("Weight decay", [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2],
                                  value=optimiser["weight_decay"], key="train_wd")
    scheduler = _choice(cols[3], "LR schedule", "scheduler.name", "train_sched")
    epochs = _whole(cols[4], "Epochs", "epochs", "train_epochs")
    batch = _whole(cols[5], "Batch size", "batch_size", "train_batch")
    cols = st.columns(6)
    patience = _whole(cols[0], "Early stop patience", "early_stopping.patience", "train_patience")
    metric = _choice(cols[1], "Early stop on", "early_stopping.metric", "train_stop_metric")
    imbalance = _choice(cols[2], "Class imbalance", "imbalance", "train_imbalance")
    seed = _whole(cols[3], "Seed", "seed", "train_seed")
    repeats = _whole(cols[4], "Repeat over N seeds", "repeats", "train_repeats")
    device = _choice(cols[5], "Device", "device", "train_device")
    return {"optimiser": {"name": name, "lr": lr, "weight_decay": decay, "nesterov": bool(nesterov)},
            "scheduler": {"name": scheduler},
            "epochs": epochs, "batch_size": batch, "early_stopping": {"patience": patience, "metric": metric},
            "imbalance": imbalance, "seed": seed, "repeats": repeats, "device": device}


def run_config_fields(dataset_name: str, spec: SourceSpec, blocked: str | None = None) -> dict:
    """Draw the fields (plain widgets, so the model's notes follow the choice at once) and return the
    config overrides they make; one run and a study's base config come from the same fields.
    `blocked` says why this dataset cannot train, shown above them."""
    st.markdown(f"**Dataset:** {md(dataset_name)} (change it in the sidebar)")
    if blocked:
        st.warning(blocked)
    model = _model_section()
    split, preprocess, augment = _data_section()
    subset = _subset_section()
    rest = _optimisation_section()
    return {"name": "", "dataset": {"name": dataset_name, "source": spec.to_dict()}, "split": split,
            "subset": subset, "preprocess": preprocess, "augment": augment, "model": model, **rest}


def weights_file_missing(overrides: dict) -> bool:
    """A weights file was named that is not there: said at launch, and nothing is launched."""
    weights = overrides["model"]["pretrained"]
    missing = weights != "auto" and not Path(weights).expanduser().is_file()
    if missing:
        st.error("The weights file does not exist: the run was not launched.")
    return missing


def run_config_form(dataset_name: str, spec: SourceSpec, blocked: str | None = None) -> dict | None:
    """The fields and Launch; return the config overrides when the user presses Launch. When
    `blocked`, Launch is disabled, rather than a run failing at once."""
    with st.container(border=True):
        overrides = run_config_fields(dataset_name, spec, blocked)
        launched = st.button("Launch run", type="primary", icon=":material/play_arrow:", key="train_launch",
                             disabled=blocked is not None)
    if not launched or weights_file_missing(overrides):
        return None
    return overrides
