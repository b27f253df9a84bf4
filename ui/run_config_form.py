"""The new-run form: every field of core.runconfig, grouped the way a researcher thinks of them."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.models import list_models
from core.preprocess import FIT_MODES, PAD_MODES
from core.runconfig import DEFAULTS, IMBALANCE, OPTIMISERS, SCHEDULERS, STOP_METRICS
from core.sources import SourceSpec

SIZES = (28, 32, 64, 96, 128, 224, 256)


def _model_section() -> dict:
    models = {m["name"]: m for m in list_models()}
    cols = st.columns([2, 1, 1])
    name = cols[0].selectbox("Model", list(models), index=list(models).index(DEFAULTS["model"]["name"]),
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
            cols[2].success(f"Starts from the weights in {weights}.")
        else:
            cols[2].error(f"No file at {weights}: correct the path or clear it.")
    elif info["weights_present"]:
        cols[2].success(f"ImageNet weights found: {info['weights_path']}")
    else:
        cols[2].warning(f"No ImageNet weights on this machine: starts from random weights. "
                        f"Put the file at {info['weights_path']} to use them.")
    return {"name": name, "freeze": bool(freeze and info["pretrainable"]), "pretrained": weights or "auto",
            "options": {}}


def _data_section() -> tuple[dict, dict, dict]:
    cols = st.columns(6)
    size = cols[0].selectbox("Image size (px)", SIZES, index=SIZES.index(64), key="train_size")
    pad_mode = cols[1].selectbox("Pad mode", PAD_MODES, key="train_pad")
    fit = cols[2].selectbox("Fit", FIT_MODES, key="train_fit")
    train = cols[3].number_input("Train %", 1, 100, max(1, st.session_state.get("split_train", 80)),
                                 key="train_split_train")  # the Dataset page allows 0; training needs some
    val = cols[4].number_input("Val %", 0, 100, st.session_state.get("split_val", 10), key="train_split_val")
    test = cols[5].number_input("Test %", 0, 100, st.session_state.get("split_test", 10), key="train_split_test")
    cols = st.columns(6)
    split_seed = cols[0].number_input("Split seed", 0, 10**6, st.session_state.get("split_seed", 0), key="train_split_seed")
    grouped = cols[1].toggle("Grouped", True, key="train_grouped",
                             help="Each group (slide, patient) goes wholly to one split, so none leaks.")
    hflip = cols[2].checkbox("Horizontal flips", True, key="train_hflip")
    vflip = cols[3].checkbox("Vertical flips", True, key="train_vflip")
    rotate90 = cols[4].checkbox("Quarter turns", True, key="train_rot90")
    rotation = cols[5].slider("Rotation (±°)", 0, 180, 0, key="train_rotation")
    cols = st.columns(6)
    shift = cols[0].slider("Shift (share of size)", 0.0, 0.3, 0.0, 0.05, key="train_shift")
    jitter = cols[1].slider("Colour jitter", 0.0, 0.5, 0.0, 0.05, key="train_jitter")
    split = {"ratios": [train / 100, val / 100, test / 100], "seed": int(split_seed), "grouped": grouped}
    augment = {"hflip": hflip, "vflip": vflip, "rotate90": rotate90, "rotation": float(rotation),
               "shift": float(shift), "color_jitter": float(jitter)}
    return split, {"size": int(size), "pad_mode": pad_mode, "fit": fit}, augment


def _optimisation_section() -> dict:
    cols = st.columns(6)
    optimiser = cols[0].selectbox("Optimiser", OPTIMISERS, index=OPTIMISERS.index("adamw"), key="train_opt")
    lr = cols[1].select_slider("Learning rate", [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
                               value=1e-3, key="train_lr")
    decay = cols[2].select_slider("Weight decay", [0.0, 1e-5, 1e-4, 1e-3, 1e-2, 5e-2], value=1e-4, key="train_wd")
    scheduler = cols[3].selectbox("LR schedule", SCHEDULERS, index=SCHEDULERS.index("cosine"), key="train_sched")
    epochs = cols[4].number_input("Epochs", 1, 1000, 20, key="train_epochs")
    batch = cols[5].number_input("Batch size", 1, 4096, 32, key="train_batch")
    cols = st.columns(6)
    patience = cols[0].number_input("Early stop patience", 1, 1000, 8, key="train_patience")
    metric = cols[1].selectbox("Early stop on", STOP_METRICS, key="train_stop_metric")
    imbalance = cols[2].selectbox("Class imbalance", IMBALANCE, index=IMBALANCE.index("class_weights"),
                                  key="train_imbalance")
    seed = cols[3].number_input("Seed", 0, 10**6, 0, key="train_seed")
    repeats = cols[4].number_input("Repeat over N seeds", 1, 20, 1, key="train_repeats")
    device = cols[5].selectbox("Device", ("auto", "cpu", "cuda", "mps"), key="train_device")
    return {"optimiser": {"name": optimiser, "lr": lr, "weight_decay": decay, "momentum": 0.9},
            "scheduler": {"name": scheduler, "step_size": max(1, int(epochs) // 3), "gamma": 0.1, "patience": 3},
            "epochs": int(epochs), "batch_size": int(batch),
            "early_stopping": {"patience": int(patience), "metric": metric},
            "imbalance": imbalance, "seed": int(seed), "repeats": int(repeats), "device": device, "amp": True}


def run_config_form(dataset_name: str, spec: SourceSpec, blocked: str | None = None) -> dict | None:
    """Draw the fields (plain widgets, so the model's notes follow the choice at once); return the
    config overrides when the user presses Launch. `blocked` says why this dataset cannot train:
    it is shown and Launch is disabled, rather than a run failing at once."""
    with st.container(border=True):
        st.markdown(f"**Dataset:** {dataset_name} (change it in the sidebar)")
        if blocked:
            st.warning(blocked)
        model = _model_section()
        split, preprocess, augment = _data_section()
        rest = _optimisation_section()
        launched = st.button("Launch run", type="primary", icon=":material/play_arrow:", key="train_launch",
                             disabled=blocked is not None)
    if not launched:
        return None
    if model["pretrained"] != "auto" and not Path(model["pretrained"]).expanduser().is_file():
        st.error("The weights file does not exist: the run was not launched.")
        return None
    return {"name": "", "dataset": {"name": dataset_name, "source": spec.to_dict()}, "split": split,
            "preprocess": preprocess, "augment": augment, "model": model, **rest}
