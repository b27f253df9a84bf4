"""Dataset page: what is in the data, what is wrong with it, and how it will be split."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core import registry, roles, verify_jobs
from core.groups import suggest_grouping
from core.sources import SourceError, SourceSpec
from core.splits import assign_splits, duplicate_groups, imbalance_ratio, leakage_report, split_table
from core.summary import summarize
from ui.dataset_form import add_dataset_form
from ui.gallery import image_grid
from ui.identity import current_reader
from ui.router import ensure_router
from ui.state import clear_manifest_cache, current_dataset, load_manifest
from ui.text import md
from ui.verify import ensure_verification, show_verification

ensure_router()

SAMPLES_PER_CLASS = 8
MAX_CLASSES_SHOWN = 12


def _header(name, spec) -> None:
    st.title(md(name))
    try:
        kind = f"{spec.resolved_kind()} source"
    except SourceError:
        kind = "source not found"  # explained just below, with a way out
    st.caption(f"{md(spec.path)} · {kind}")
    if roles.may(current_reader(), "manage datasets"):
        add_dataset_form()
    else:
        st.caption("Adding or removing a dataset needs the admin role.")


def _load_or_explain(name, spec):
    """The manifest (with the verification job's results once it has finished) and that job, started
    when files wait for it; or a clear error with a way out when the source cannot be read."""
    try:
        job = verify_jobs.status(spec)
        manifest = load_manifest(spec, facts_version=job.get("finished"))
        return manifest, ensure_verification(spec, manifest, job)
    except SourceError as exc:
        st.error(f"This dataset cannot be read: {md(exc)}")
        if (name not in registry.DEMO_DATASETS and roles.may(current_reader(), "manage datasets")
                and st.button("Remove it from the list")):
            registry.remove_dataset(name, who=current_reader())
            st.rerun()
        st.stop()


def _headline(manifest, summary, spec, job) -> None:
    cols = st.columns(6)
    cols[0].metric("Items", f"{summary['items']:,}")
    cols[1].metric("Usable for training", f"{summary['usable']:,}")
    cols[2].metric("Classes", len(summary["classes"]))
    ratio = summary["imbalance_ratio"]
    cols[3].metric("Imbalance", "n/a" if pd.isna(ratio) else f"{ratio:.1f} : 1",
                   help="Largest class count over smallest, usable items")
    cols[4].metric("Problems", len(summary["problems"]))
    cols[5].metric("Unlabelled", f"{summary['unlabelled']:,}")
    show_verification(spec, manifest, job)
    if summary["problems"]:
        st.warning(f"{len(summary['problems']):,} items have a problem and are left out of training "
                   "(see Problems below).")


def _table(frame: pd.DataFrame, **options) -> None:
    """A table whose missing values (no label, no group, no split) show as blank cells, not "None"."""
    blanks = {column: "" for column in frame.columns if frame[column].dtype == object}
    st.dataframe(frame.fillna(blanks), width="stretch", hide_index=True, **options)


def _suggest_groups(manifest: pd.DataFrame, name: str, spec: SourceSpec) -> None:
    """Names that share evident prefixes (slide ids) but no group set: say what grouping would make."""
    if manifest["group"].notna().any() or spec.resolved_kind() == "npz":
        return
    suggestion = _grouping_suggestion(manifest["id"], manifest["label"])
    if suggestion is None:
        return
    st.info(f"The file names look grouped: the {md(suggestion.preset)} would make {suggestion.groups:,} groups "
            f"(such as {', '.join(md(g) for g in suggestion.examples)}). Grouping keeps each slide or patient "
            "in one split, so none leaks.")
    if name not in registry.DEMO_DATASETS and st.button("Group by file names", key="group_by_names"):
        registry.add_dataset(name, replace(spec, group_pattern=suggestion.pattern), who=current_reader())
        st.session_state.pop(_grouped_key(name), None)  # the toggle starts on, now that there are groups
        st.rerun()


@st.cache_data(max_entries=16, show_spinner=False)
def _grouping_suggestion(ids: pd.Series, labels: pd.Series):
    """Cached: four patterns over every name take seconds at 100,000 items, and every rerun (a split
    ratio, a seed) would pay them again."""
    return suggest_grouping(ids, labels)


def _grouped_key(name: str) -> str:
    return f"split_grouped_{name}"  # per dataset: its default follows the dataset's groups


#: The split controls' keys and defaults: the widgets show them on the first tab, and every tab that
#: needs the split reads them, so the split is the same whichever tab is open.
SPLIT_DEFAULTS = {"split_train": 80, "split_val": 10, "split_test": 10, "split_seed": 0}


def _has_groups(manifest) -> bool:
    """Whether the dataset has groups: the grouping toggle's default, on and off its tab."""
    return bool(manifest["group"].notna().any())


def _split_controls(manifest, name: str, spec: SourceSpec) -> None:
    """The split's percentages, seed and grouping. They are kept while another tab or page is open
    (persist_state), and the Train page starts from them."""
    with st.container(border=True):
        st.subheader("Split")
        _suggest_groups(manifest, name, spec)
        predefined = manifest["split"].notna().sum()
        if predefined:
            st.caption(f"{predefined:,} items come with a predefined split, which is kept.")
        cols = st.columns([1, 1, 1, 1, 2])
        for col, (key, label) in zip(cols, (("split_train", "Train %"), ("split_val", "Val %"),
                                            ("split_test", "Test %"))):
            col.number_input(label, 0, 100, SPLIT_DEFAULTS[key], step=5, key=key, persist_state="session")
        cols[3].number_input("Seed", 0, 10**6, SPLIT_DEFAULTS["split_seed"], key="split_seed",
                             persist_state="session")
        has_groups = _has_groups(manifest)
        cols[4].toggle("Keep groups in one split", value=has_groups, disabled=not has_groups,
                       key=_grouped_key(name), persist_state="session",
                       help="Each group (slide, patient, smear) goes wholly to one split, so none leaks."
                       if has_groups else "This dataset has no group column.")


def _chosen_split(manifest, name: str):
    """The split the controls describe (their defaults before they were first shown), or None when
    its three shares add up to zero."""
    chosen = {key: int(st.session_state.get(key, default)) for key, default in SPLIT_DEFAULTS.items()}
    grouped = bool(st.session_state.get(_grouped_key(name), _has_groups(manifest)))
    ratios = (chosen["split_train"], chosen["split_val"], chosen["split_test"])
    if sum(ratios) == 0:
        return None
    return assign_splits(manifest, ratios=ratios, seed=chosen["split_seed"],
                         group_column="group" if grouped else None)


def _class_counts(manifest, split) -> None:
    table = split_table(manifest, split)
    cols = st.columns(2)
    counts = (manifest.assign(split=split.fillna("(none)"), label=manifest["label"].fillna("(unlabelled)"))
              .groupby(["label", "split"]).size().reset_index(name="items"))
    fig = px.bar(counts, x="label", y="items", color="split", barmode="group",
                 category_orders={"split": ["train", "val", "test", "(none)"]}, title="Items per class and split")
    fig.update_layout(height=360, margin={"t": 40, "b": 10}, xaxis_title=None)
    cols[0].plotly_chart(fig, width="stretch")
    # The class names as a real column, wide enough to read (the index column is sized to its header);
    # the counts narrow, so every split and the total fit beside the chart.
    longest = max(len(str(name)) for name in table.index)
    config = {c: st.column_config.NumberColumn(width=64) for c in table.columns}
    config["class"] = st.column_config.TextColumn(width=min(max(8 * longest + 30, 64), 180))
    cols[1].dataframe(table.rename_axis("class").reset_index(), width="stretch", hide_index=True, column_config=config)
    ratios = {s: imbalance_ratio(manifest.loc[split == s, "label"]) for s in ("train", "val", "test")}
    cols[1].caption("Imbalance per split: " + ", ".join(f"{s} {r:.1f}:1" for s, r in ratios.items() if pd.notna(r)))


def _leakage(manifest, split) -> None:
    report = leakage_report(manifest, split)
    images, groups = report["identical_images"], report["groups"]
    if images.empty and groups.empty:
        st.success("No leakage: no identical image and no group appears in two splits.")
    if not images.empty:
        st.error(f"{images['hash'].nunique():,} identical images sit in more than one split "
                 "(the test set has seen them in training).")
        _table(images)
    if not groups.empty:
        st.error(f"{len(groups):,} groups appear in more than one split: turn on grouping above.")
        _table(groups)


def _binned_histogram(frame: pd.DataFrame, field: str, title: str, bins: int = 40) -> go.Figure:
    """Per-class histograms on shared bins, counted here: the browser gets 40 bars per class, not
    every item's value (100,000 items made each figure megabytes and the page seconds slower)."""
    values = frame[field].to_numpy(dtype=float)
    if (values == np.round(values)).all():  # pixel counts: whole-number bins, each as wide, so none spikes
        step = max(1, int(np.ceil((values.max() - values.min() + 1) / bins)))
        edges = np.arange(values.min(), values.max() + step + 1, step) - 0.5
    else:
        edges = np.histogram_bin_edges(values, bins=bins)
    fig = go.Figure()
    for label in pd.unique(frame["label"]):
        counts, _ = np.histogram(frame.loc[frame["label"] == label, field].to_numpy(dtype=float), bins=edges)
        fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), name=str(label), opacity=0.6)
    fig.update_layout(title=title, barmode="overlay", height=300, margin={"t": 40, "b": 10}, legend_title=None,
                      yaxis_title="count", bargap=0)
    return fig


def _size_histograms(manifest) -> None:
    readable = manifest[manifest["width"] > 0].assign(
        aspect=lambda d: d["width"] / d["height"], label=lambda d: d["label"].fillna("(unlabelled)"))
    if readable.empty:
        st.info("No readable image to measure.")
        return
    cols = st.columns(3)
    for col, field, title in ((cols[0], "width", "Width (px)"), (cols[1], "height", "Height (px)"),
                              (cols[2], "aspect", "Aspect ratio (width / height)")):
        col.plotly_chart(_binned_histogram(readable, field, title), width="stretch")
    distinct = readable.groupby(["width", "height"]).ngroups
    st.caption(f"{distinct:,} distinct sizes; modes: "
               + ", ".join(f"{m} {n:,}" for m, n in readable["mode"].value_counts().items())
               + "; formats: " + ", ".join(f"{f} {n:,}" for f, n in readable["format"].value_counts().items()))


def _samples(manifest) -> None:
    seed = st.session_state.setdefault("sample_seed", 0)
    if st.button("Show other samples"):
        st.session_state["sample_seed"] = seed = seed + 1
    good = manifest[manifest["problem"].isna()]
    labels = good["label"].fillna("(unlabelled)")
    classes = labels.value_counts().index[:MAX_CLASSES_SHOWN]
    for cls in classes:
        rows = good[labels == cls]
        st.markdown(f"**{md(cls)}** · {len(rows):,} items")
        image_grid(rows.sample(min(SAMPLES_PER_CLASS, len(rows)), random_state=seed), SAMPLES_PER_CLASS)
    if labels.nunique() > MAX_CLASSES_SHOWN:
        st.caption(f"Showing the {MAX_CLASSES_SHOWN} largest of {labels.nunique()} classes.")


def _problems_and_duplicates(manifest, summary, split: pd.Series) -> None:
    """One above the other at full width: a reason is a sentence and must be readable whole. Each copy of
    a duplicate shows the split drawn above, so a copy on both sides of the line is plain to see."""
    st.subheader(f"Problems ({len(summary['problems']):,})")
    if summary["problems"]:
        _table(pd.DataFrame(summary["problems"])[["id", "reason"]],
               column_config={"id": st.column_config.TextColumn(width="medium"),
                              "reason": st.column_config.TextColumn(width="large")})
    else:
        st.success("Every item could be read.")
    dups = duplicate_groups(manifest, split)
    copied = dups["hash"].nunique()
    st.subheader(f"Duplicates ({copied:,} image{'' if copied == 1 else 's'} with copies)")
    if dups.empty:
        st.success("No two files have the same content.")
    else:
        _table(dups)


name, spec = current_dataset()
_header(name, spec)
manifest, job = _load_or_explain(name, spec)
summary = summarize(manifest)
_headline(manifest, summary, spec, job)
if st.sidebar.button("Rescan files", help="Read the folder again (new, changed or removed files)"):
    clear_manifest_cache()
    verify_jobs.forget(spec)
    st.rerun()

# Only the open tab runs (Streamlit's stateful tabs): a split change does not redraw the size
# histograms, the samples and the duplicates of 100,000 images.
overview, sizes, samples, problems = st.tabs(["Classes and splits", "Image sizes", "Samples",
                                              "Problems and duplicates"], key="ds_tab", on_change="rerun")
if overview.open:
    with overview:
        _split_controls(manifest, name, spec)
        split = _chosen_split(manifest, name)
        if split is None:
            st.error("The three percentages add up to zero: give at least one split a share.")
        else:
            _class_counts(manifest, split)
            _leakage(manifest, split)
if sizes.open:
    with sizes:
        _size_histograms(manifest)
if samples.open:
    with samples:
        _samples(manifest)
if problems.open:
    with problems:
        split = _chosen_split(manifest, name)
        _problems_and_duplicates(manifest, summary, manifest["split"] if split is None else split)
