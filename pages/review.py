"""Review page: pathologists browse predictions, correct labels, and see how far they agree."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core import annotations, registry, roles, rundir, workspace
from core.export import safe_name
from core.sources import SourceError, SourceSpec
from ui.cam_view import cam_for_item, readable_pixels
from ui.gallery import image_grid
from ui.hotkeys import CLEAR_KEY, NEXT_KEY, PREVIOUS_KEY, label_shortcut
from ui.identity import current_reader
from ui.review_items import pick_items
from ui.review_queue import decisions, sort_queue, sorts, with_out_of_fold_rank
from ui.router import ensure_router
from ui.run_features import run_neighbours
from ui.runs_picker import pick_run
from ui.state import select_dataset_next_run
from ui.text import md

ensure_router()

PAGE_SIZE = 24
POSITION_KEY = "review_position"
TAB_KEY = "rv_tab"


@st.cache_resource
def _store(url: str) -> annotations.Store:
    return annotations.open_store(url)


def _ids(manifest: pd.DataFrame) -> set[str]:
    """The manifest's ids as a set, through objects: a set of pandas' string dtype takes 10 times as long."""
    return set(manifest["id"].to_numpy(dtype=object))


def _filters(queue: pd.DataFrame, mine: pd.DataFrame, reader: str, tagged: set[str], blind: bool) -> pd.DataFrame:
    """The queue as filtered and sorted; in blind mode nothing that reveals the dataset label or the
    model (its filters, its confidence, an error-first order) shapes the queue, which runs in id order."""
    with st.expander("Filter and sort", expanded=True):
        if blind:
            st.caption("Blind mode: the label, prediction, outcome and confidence filters are off, and items "
                       "come in id order, so the queue itself does not hint at the answer.")
        c = st.columns(6)
        split = c[0].multiselect("Split", sorted(queue["split"].unique()), default=["test"] if (
            queue["split"] == "test").any() else None, key="rv_split")
        truth = c[1].multiselect("True label", sorted(queue["label"].unique()), key="rv_truth", disabled=blind)
        predicted = c[2].multiselect("Predicted", sorted(queue["predicted"].unique()), key="rv_pred",
                                     disabled=blind)
        outcome = c[3].multiselect("Outcome", sorted(queue["outcome"].unique()), key="rv_outcome", disabled=blind)
        groups = sorted(queue["group"].dropna().unique())
        group = c[4].multiselect("Group", groups, key="rv_group", disabled=not groups)
        status = c[5].selectbox("Review status", ["all", "not yet labelled by me", "labelled by me",
                                                  "tagged to review"], key="rv_status")
        c = st.columns([2, 2, 2])
        low, high = c[0].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="rv_conf", disabled=blind)
        offered = sorts(queue)
        how = c[1].selectbox("Sort", list(offered), format_func=lambda s: f"{s}: {offered[s]}", key="rv_sort",
                             disabled=blind)
    if blind:
        truth, predicted, outcome, (low, high), how = [], [], [], (0.0, 1.0), "item"
    keep = queue["confidence"].between(low, high)
    for column, chosen in (("split", split), ("label", truth), ("predicted", predicted), ("outcome", outcome),
                           ("group", group)):
        if chosen:
            keep &= queue[column].isin(chosen)
    labelled = set(mine.loc[mine["label"].notna(), "item_id"]) if reader else set()
    if status == "tagged to review":
        keep &= queue["item_id"].isin(tagged)
    elif status != "all":
        keep &= queue["item_id"].isin(labelled) == (status == "labelled by me")
    return sort_queue(queue[keep], how).reset_index(drop=True)


def _move(step: int, total: int) -> None:
    st.session_state[POSITION_KEY] = min(max(st.session_state.get(POSITION_KEY, 0) + step, 0), total - 1)


def _label_buttons(store, key, item_id, reader, role, classes, known, total, current: dict) -> None:
    options = [*classes, *annotations.SPECIAL_LABELS]
    cols = st.columns(2)
    for i, label in enumerate(options, start=1):
        if cols[(i - 1) % 2].button(md(label), key=f"rv_label_{label}", width="stretch", shortcut=label_shortcut(i),
                                    disabled=not roles.may(role, "annotate") or not reader):
            try:
                store.annotate(key, item_id, reader, label=label, status="reviewed", classes=classes,
                               known_items=known, role=role, expected=current)
            except (annotations.AnnotationError, PermissionError) as exc:
                st.error(str(exc))
                return
            _move(1, total)
            st.rerun()


def _clear_button(store, key, item_id, reader, role, known, current: dict) -> None:
    """Undo for a mis-click: the item goes back to "not yet labelled by me"; the trail keeps the old label."""
    if st.button("Clear my label", icon=":material/backspace:", key="rv_clear", width="stretch", shortcut=CLEAR_KEY,
                 disabled=not roles.may(role, "annotate") or not reader or not current.get("label"),
                 help="Withdraws your label, confidence and review status for this item (key: Backspace). "
                      "The audit trail keeps what was there."):
        try:
            store.clear(key, item_id, reader, known_items=known, role=role, expected=current)
        except (annotations.AnnotationError, PermissionError) as exc:
            st.error(str(exc))
            return
        st.rerun()


def _details_form(store, key, item_id, reader, role, classes, known, current: dict) -> None:
    with st.form(f"rv_details_{item_id}", border=False):
        c = st.columns([1, 2])
        confidence = c[0].select_slider("Your confidence", [1, 2, 3, 4, 5], value=current.get("confidence") or 3)
        flags = c[1].multiselect("Flags", annotations.FLAGS, default=current.get("flags") or [])
        note = st.text_area("Note", value=current.get("note") or "", height=80)
        if st.form_submit_button("Save details", disabled=not roles.may(role, "annotate") or not reader):
            try:
                store.annotate(key, item_id, reader, confidence=int(confidence), flags=flags, note=note,
                               classes=classes, known_items=known, role=role, expected=current)
                st.toast("Saved.")
            except (annotations.AnnotationError, PermissionError) as exc:
                st.error(str(exc))


def _item_view(run_dir, store, key, rows, manifest, classes, reader, role, blind) -> None:
    total = len(rows)
    position = min(st.session_state.get(POSITION_KEY, 0), total - 1)
    item = rows.iloc[position]
    record = manifest.set_index("id").loc[item["item_id"]]
    mine = store.current(key, reader) if reader else pd.DataFrame()
    current = mine[mine["item_id"] == item["item_id"]].iloc[0].to_dict() if not mine.empty and (
        mine["item_id"] == item["item_id"]).any() else {}
    nav = st.columns([1, 4, 1])
    nav[0].button("Previous", icon=":material/arrow_back:", on_click=_move, args=(-1, total), key="rv_prev",
                  width="stretch", shortcut=PREVIOUS_KEY)
    shown_id = item["item_id"].rsplit("/", 1)[-1] if blind else item["item_id"]  # class folders name the label
    nav[1].markdown(f"**{position + 1} of {total:,}** · {md(shown_id)} · {item['split']}"
                    + ("" if blind else f" · dataset label **{md(item['label'])}** · model **{md(item['predicted'])}** "
                       f"({item['confidence']:.2f}, {item['outcome']})")
                    + (f" · your label: **{md(current['label'])}**" if current.get("label") else ""))
    nav[2].button("Next", icon=":material/arrow_forward:", on_click=_move, args=(1, total), key="rv_next",
                  width="stretch", shortcut=NEXT_KEY)
    left, right = st.columns([3, 2])
    with left:
        zoom = st.slider("Zoom", 1.0, 4.0, 1.0, 0.5, key="rv_zoom")
        pixels = readable_pixels(record)
        if pixels is not None:
            st.image(pixels, width=int(min(900, max(pixels.shape[:2]) * zoom * 2)))
        if not blind and st.toggle("Show Grad-CAM", key="rv_cam"):
            cam_for_item(run_dir, record, item, classes, key="review")
        own = item["split"] in rundir.RUN_SPLITS  # neighbours are searched among the run's own items
        if st.toggle("Show nearest neighbours in the model's feature space", key="rv_near", disabled=not own,
                     help=None if own else "Neighbours are searched among the run's own items only.") and own:
            near = run_neighbours(run_dir).nearest(item["item_id"], k=8)
            shown = manifest.set_index("id").loc[near["item_id"]].reset_index().assign(
                caption=[f"{lab} · d={d:.3f}" if not blind else f"d={d:.3f}"
                         for lab, d in zip(near["label"], near["distance"])])
            image_grid(shown, columns=8, caption="caption")
    with right:
        if not reader:
            st.warning("Type your name in the sidebar before labelling: every change is recorded under it.")
        st.markdown("**Label** (keys 1–9 and 0; ← → move; Backspace clears)")
        known = _ids(manifest)  # the manifest holds every predicted item (core.review.with_predicted_items)
        _label_buttons(store, key, item["item_id"], reader, role, classes, known, total, current)
        _clear_button(store, key, item["item_id"], reader, role, known, current)
        _details_form(store, key, item["item_id"], reader, role, classes, known, current)
        if not blind:
            probs = {c: float(item[rundir.prob_column(c)]) for c in classes}
            st.dataframe(pd.DataFrame({"class": list(probs), "probability": list(probs.values())}),
                         hide_index=True, width="stretch")
            others = store.current(key)
            others = others[(others["item_id"] == item["item_id"]) & (others["reader"] != reader)]
            if not others.empty:
                st.markdown("**Other readers**")
                st.dataframe(others[["reader", "label", "confidence", "flags", "note"]], hide_index=True)
        history = store.history(key, item["item_id"])
        if blind:  # other readers' labels stay hidden, in the trail too
            history = history[history["reader"] == reader]
        if not history.empty:
            with st.expander(f"Audit trail of this item ({len(history)})"):
                st.dataframe(history[["at", "reader", "field", "old_value", "new_value"]], hide_index=True)


def _agreement(store, key, queue, reader, role, classes) -> None:
    dataset_labels = queue.drop_duplicates("item_id").set_index("item_id")["label"]
    model_labels = queue.drop_duplicates("item_id").set_index("item_id")["predicted"]
    table = annotations.agreement(store, key, dataset_labels, model_labels)
    if table.empty:
        st.info("No labels yet.")
        return
    st.markdown("**Cohen's kappa** (uncertain and excluded items left out)")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"kappa": st.column_config.NumberColumn(format="%.3f"),
                                "agreement": st.column_config.NumberColumn(format="%.1%")})
    queue_table = annotations.disagreements(store, key)
    st.markdown(f"**Disagreements to adjudicate** ({len(queue_table)})")
    st.dataframe(queue_table, hide_index=True, width="stretch")
    if roles.may(role, "adjudicate") and not queue_table.empty:
        c = st.columns([3, 2, 1])
        item = c[0].selectbox("Item", queue_table["item_id"], key="rv_adj_item")
        final = c[1].selectbox("Final label", [*classes, *annotations.SPECIAL_LABELS], key="rv_adj_label")
        if c[2].button("Adjudicate", key="rv_adj_go", disabled=not reader,
                       help=None if reader else "Type your name in the sidebar first: it is recorded."):
            store.adjudicate(key, item, reader, final, classes=classes, role=role)
            st.rerun()


def _export(store, key, manifest, dataset_name) -> None:
    if roles.may(current_reader(), "download annotations"):
        c = st.columns(2)
        for col, fmt in zip(c, ("csv", "json")):
            def data(fmt: str = fmt) -> bytes:  # written on the click, not on every rerun (next, label)
                return annotations.annotations_bytes(store, key, fmt, who=current_reader())[0]
            col.download_button(f"Annotations ({fmt.upper()})", data,
                                file_name=f"annotations-{safe_name(dataset_name)}.{fmt}", key=f"rv_dl_{fmt}")
    else:
        st.info("Downloading the readers' annotations needs the annotator role.")
    st.markdown("**Corrected labels** (adjudicated, else the readers' majority, else the dataset label)")
    may_add = roles.may(current_reader(), "manage datasets") and roles.may(current_reader(), "export data")
    if st.button("Write the corrected-labels CSV and add it as a dataset", key="rv_corrected", disabled=not may_add,
                 help=None if may_add else "Adding a dataset needs the admin role."):
        # named after the dataset: two datasets in one folder must not overwrite each other's file
        out = workspace.home() / "exports" / f"corrected-{safe_name(dataset_name)}.csv"
        try:
            counts = annotations.corrected_labels_csv(store, key, manifest, out, who=current_reader())
        except annotations.AnnotationError as exc:
            st.error(str(exc))
            return
        name = f"{dataset_name} (corrected)"
        try:
            registry.add_dataset(name, SourceSpec(str(out), kind="csv", label_column="label", group_column="group",
                                                   split_column="split", mask_column="mask_path"),
                                 who=current_reader())
        except SourceError as exc:  # every item excluded or uncertain, say
            st.error(f"Wrote {md(out)}, but it cannot be added as a dataset: {md(exc)}")
            return
        st.success(f"Wrote {counts['written']:,} items ({counts['changed']:,} relabelled, {counts['excluded']:,} "
                   f"excluded, {counts['uncertain']:,} uncertain left out) to {out}; added as '{name}'.")
        select_dataset_next_run(name)


st.title("Review")
me = current_reader()
reader, role = me.name, me.role
run_dir = pick_run()
if run_dir is None:
    st.stop()
config = rundir.read_config(run_dir)
items = pick_items(run_dir, config)  # the run's splits, or one of its prediction sets (new cases)
# annotations belong to the dataset (or the set's source), whichever run is being reviewed
key, preds, manifest = items.key, items.preds, items.manifest
store = _store(annotations.default_url())
classes = rundir.classes_of(preds)
queue = with_out_of_fold_rank(decisions(preds, run_dir), key)
blind = st.sidebar.toggle("Blind mode", key="rv_blind", help="Hide the model's prediction and other readers' labels.")

# Only the open tab runs (Streamlit's stateful tabs): Next and a label rerun the item, not kappa,
# the whole audit trail and the exports too.
browse, agree, audit, export = st.tabs(["Browse and label", "Agreement", "Audit trail", "Export"], key=TAB_KEY,
                                       on_change="rerun")
if browse.open:
    with browse:
        mine = store.current(key, reader) if reader else pd.DataFrame(columns=["item_id", "label"])
        everyone = store.current(key)
        tagged = set(everyone.loc[everyone["status"] == "to review", "item_id"])
        rows = _filters(queue, mine, reader, tagged, blind)
        if rows.empty:
            st.info("No item matches these filters.")
        else:
            _item_view(run_dir, store, key, rows, manifest, classes, reader, role, blind)
            with st.expander(f"Gallery of the filtered items ({len(rows):,})"):
                page = st.number_input("Page", 1, max(1, -(-len(rows) // PAGE_SIZE)), 1, key="rv_page")
                chunk = rows.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
                shown = manifest.set_index("id").loc[chunk["item_id"]].reset_index().assign(
                    caption=[f"{o} {c:.2f}" if not blind else i.rsplit("/", 1)[-1]
                             for o, c, i in zip(chunk["outcome"], chunk["confidence"], chunk["item_id"])])
                image_grid(shown, columns=8, caption="caption")
if agree.open:
    with agree:
        if blind:
            st.info("Blind mode hides the other readers' labels; turn it off to see agreement.")
        else:
            _agreement(store, key, queue, reader, role, classes)
if audit.open:
    with audit:
        trail = store.history(key)
        if blind:
            trail = trail[trail["reader"] == reader]
            st.info("Blind mode: only your own changes are listed.")
        st.caption(f"{len(trail):,} changes recorded; newest first. Notes are shown as plain text.")
        st.dataframe(trail, hide_index=True, width="stretch", column_config={
            "id": st.column_config.NumberColumn(width="small"),
            "at": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss", width="medium"),
            "item_id": st.column_config.TextColumn(width="large")})
if export.open:
    with export:
        _export(store, key, manifest, items.name)
