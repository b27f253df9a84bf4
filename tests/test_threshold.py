"""The Threshold page (AppTest) and `python -m core evaluate` on real tiny runs."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix
from streamlit.testing.v1 import AppTest

from core import evaluation, rundir
from core.registry import DEMO_DATASETS
from tests.conftest import ROOT, open_page, train_tiny_run
from tests.test_identity import AUTH, ROLES

GLOMERULI, BCCD = list(DEMO_DATASETS.values())[:2]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("threshold-home")
    train_tiny_run(home, "b-binary", GLOMERULI, epochs=2)
    train_tiny_run(home, "a-multiclass", BCCD, epochs=2)
    return home


@pytest.fixture
def at(home, monkeypatch):
    return open_page("pages/threshold.py", home, monkeypatch, "b-binary")


def _table(app) -> pd.DataFrame:
    return next(df.value for df in app.dataframe if "metric" in df.value.columns)


def _slider(app):
    return next(s for s in app.select_slider if s.key.startswith("thr_value_"))


def _move(app, value: float):
    """The slider to its position nearest `value` (its positions are where a matrix changes)."""
    slider = _slider(app)
    return slider.set_value(min((float(o) for o in slider.options), key=lambda o: abs(o - value))).run()


def test_slider_moves_the_numbers(at):
    before = _table(at)
    _move(at, 0.05)
    low = _table(at)
    _move(at, 0.95)
    high = _table(at)
    assert not at.exception
    sens = lambda t: float(t.set_index("metric").loc["sensitivity", "validation"].split()[0])  # noqa: E731
    assert sens(low) >= sens(before) >= sens(high)
    assert sens(low) > sens(high)


def test_every_slider_step_changes_a_matrix(at):
    """An arrow key moves to the next position, and each position calls at least one item differently."""
    from core import metrics

    preds = rundir.read_predictions(rundir.runs_root() / "b-binary")
    curves = [metrics.Curve.from_scores(*evaluation.binary_scores(preds, "GS", split)) for split in ("val", "test")]
    positions = np.array([float(o) for o in _slider(at).options])
    assert positions[-1] == 1 and (np.diff(positions) > 0).all()
    counts = np.stack([c.counts(positions)["tp"] + 1000 * c.counts(positions)["fp"] for c in curves])
    changed = (np.diff(counts, axis=1) != 0).any(axis=0)
    # Positions of their own: the slider's current value (0.5 here) and 1.0 (every item negative but
    # those scored exactly 1.0); the steps into and out of them may leave the matrices as they were.
    own = np.isin(positions, [_slider(at).value, 1.0])
    assert changed[~(own[:-1] | own[1:])].all()
    assert counts[:, 0].tolist() == [1000 * c.n_neg + c.n_pos for c in curves]  # Home: every item positive


def test_suggested_threshold_applies_in_one_click(at):
    button = next(b for b in at.button if b.key == "thr_btn_Youden")
    button.click().run()
    assert not at.exception
    preds = rundir.read_predictions(rundir.runs_root() / "b-binary")
    from core import metrics
    is_pos, scores = evaluation.binary_scores(preds, "GS", "val")
    expected = metrics.youden_threshold(metrics.Curve.from_scores(is_pos, scores))
    assert _slider(at).value == pytest.approx(np.floor(expected * 1e4) / 1e4)


@pytest.mark.parametrize("email", ["vera@lab.org", "ann@lab.org"])
def test_below_admin_the_operating_point_is_shown_but_cannot_be_saved(home, monkeypatch, email):
    """The point decides for every reader and export, so an annotator may tune it here, not save it."""
    monkeypatch.setenv("LUMEN_HOME", str(home))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.secrets = {"auth": AUTH, "lumen": {"roles": {**ROLES, "ann@lab.org": "annotator"}}}
    at.user = {"is_logged_in": True, "email": email}
    at.session_state["analysis_run"] = "b-binary"
    at.switch_page("pages/threshold.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert _table(at) is not None and _slider(at) is not None  # the page itself is there
    assert not [b for b in at.button if "Save this operating point" in b.label]
    assert any("operating point needs the admin role" in c.value for c in at.caption)


def test_tuning_on_test_warns(at):
    at.radio(key="thr_tune").set_value("test").run()
    assert any("optimistic" in w.value for w in at.warning)


def test_saved_threshold_survives_a_restart(at, home, monkeypatch):
    _move(at, 0.3)
    chosen = _slider(at).value
    next(b for b in at.button if "Save this operating point" in b.label).click().run()
    saved = evaluation.load_operating_point(home / "runs" / "b-binary")
    assert saved["threshold"] == pytest.approx(chosen) and saved["tuned_on"] == "val"
    fresh = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    fresh.session_state["analysis_run"] = "b-binary"
    fresh.switch_page("pages/threshold.py")
    fresh.run()
    assert _slider(fresh).value == pytest.approx(chosen)


def test_multiclass_run_one_vs_rest(at, home):
    at.selectbox(key="analysis_run").select("a-multiclass").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="thr_pos_a-multiclass").options == ["Platelets", "RBC", "WBC"]
    at.selectbox(key="thr_pos_a-multiclass").select("WBC").run()
    preds = pd.read_parquet(home / "runs" / "a-multiclass" / "predictions.parquet")
    val = preds[preds["split"] == "val"]
    prevalence = next(n for n in at.number_input if n.label == "Prevalence in practice").value
    assert prevalence == pytest.approx((val["label"] == "WBC").mean(), abs=1e-3)  # WBC's share, not the last run's
    _move(at, 0.2)
    assert not at.exception
    assert any("All 3 classes" in e.label for e in at.expander)
    val_labels = val["label"].to_numpy()
    val_predicted = np.array(["Platelets", "RBC", "WBC"])[val[["prob_Platelets", "prob_RBC", "prob_WBC"]].to_numpy()
                                                         .argmax(axis=1)]
    shown = {m.label: m.value for m in at.metric}
    assert shown["Accuracy (validation)"] == f"{(val_labels == val_predicted).mean():.3f}"
    assert shown["Balanced accuracy"] == f"{balanced_accuracy_score(val_labels, val_predicted):.3f}"
    table = next(d.value for d in at.dataframe if "support" in d.value.columns)
    assert table["support"].sum() == len(val) and list(table["class"]) == ["Platelets", "RBC", "WBC"]
    at.radio(key="thr_rule").set_value("per-class thresholds").run()
    at.number_input(key="thr_pc_WBC").set_value(0.99)
    at.selectbox(key="thr_fallback").select("RBC").run()
    assert not at.exception, [e.value for e in at.exception]


def test_per_class_thresholds_with_fallback():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.45, 0.35], [0.1, 0.2, 0.7]])
    decided = evaluation.decide(probs, np.array([0.5, 0.5, 0.8]), fallback=1)
    assert decided.tolist() == [0, 1, 1]  # row 2: nobody passes -> fallback; row 3: 0.7 < 0.8 -> fallback


def test_cli_evaluate_matches_sklearn(home, monkeypatch, cli):
    run_dir = home / "runs" / "b-binary"
    monkeypatch.setenv("LUMEN_HOME", str(home))
    result = cli("evaluate", run_dir, "--split", "test", "--threshold", "0.4", "--positive", "GS", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    preds = pd.read_parquet(run_dir / "predictions.parquet").query("split == 'test'")
    expected = confusion_matrix(preds["label"] == "GS", preds["prob_GS"] >= 0.4, labels=[False, True])
    assert report["confusion_matrix"] == expected.tolist()
    assert report["positive_class"] == "GS" and report["threshold"] == 0.4
    bad = cli("evaluate", run_dir, "--positive", "banana")
    assert bad.returncode == 2 and "Unknown class 'banana'" in bad.stderr


def test_calibration_helpers():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 3)) * 3
    labels = np.array([rng.choice(3, p=np.exp(row / 3) / np.exp(row / 3).sum()) for row in logits])
    over_confident = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t = evaluation.fit_temperature(over_confident, labels)
    assert 2 < t < 4.5  # the data were generated at temperature 3
    softened = evaluation.apply_temperature(over_confident, t)
    is_pos = labels == 0
    assert evaluation.brier(is_pos, softened[:, 0]) < evaluation.brier(is_pos, over_confident[:, 0])
    assert evaluation.expected_calibration_error(is_pos, softened[:, 0]) < \
        evaluation.expected_calibration_error(is_pos, over_confident[:, 0])


def test_a_threshold_saved_on_scaled_scores_decides_on_scaled_scores(home, monkeypatch):
    """Review, Grad-CAM and the command line must decide on the scores the threshold was chosen on."""
    from ui.review_queue import decisions

    run_dir = home / "runs" / "b-binary"
    preds = rundir.read_predictions(run_dir)
    classes = rundir.classes_of(preds)
    probs = preds[rundir.prob_columns(classes)].to_numpy()
    val = (preds["split"] == "val").to_numpy()
    temperature = evaluation.fit_temperature(probs[val], pd.Categorical(preds["label"][val], categories=classes).codes)
    raw, scaled = probs[:, 0], evaluation.apply_temperature(probs, temperature)[:, 0]
    widest = np.argmax(np.abs(raw - scaled))
    threshold = round((raw[widest] + scaled[widest]) / 2, 4)  # raw and scaled scores decide this item differently
    at = open_page("pages/threshold.py", home, monkeypatch, "b-binary")
    at.selectbox(key="thr_pos_b-binary").select(classes[0]).run()
    at.toggle(key="thr_temp_b-binary").set_value(True).run()
    _move(at, threshold)
    next(b for b in at.button if "Save this operating point" in b.label).click().run()
    saved = evaluation.load_operating_point(run_dir)
    assert saved["temperature"] != 1.0 and saved["method"] == "temperature-scaled"

    positive = saved["positive_class"]
    called = scaled >= saved["threshold"]
    assert (called != (raw >= saved["threshold"])).any()
    assert (decisions(preds, run_dir)["predicted"].to_numpy() == positive).tolist() == called.tolist()
    report = evaluation.evaluate_run(run_dir, "test")
    test = (preds["split"] == "test").to_numpy()
    expected = confusion_matrix(preds["label"][test] == positive, called[test], labels=[False, True])
    assert report["confusion_matrix"] == expected.tolist()

    fresh = open_page("pages/threshold.py", home, monkeypatch, "b-binary")
    assert fresh.toggle(key="thr_temp_b-binary").value  # reopened as it was saved
    evaluation.save_operating_point(run_dir, positive, 0.5, "val", "raw scores", who="admin")  # leave the run as found


def test_multiclass_report_is_scikit_learns(home, capsys):
    from core.__main__ import main

    run_dir = home / "runs" / "a-multiclass"
    preds = rundir.read_predictions(run_dir)
    test = preds[preds["split"] == "test"]
    classes = rundir.classes_of(preds)
    predicted = np.array(classes)[test[rundir.prob_columns(classes)].to_numpy().argmax(axis=1)]
    report = evaluation.multiclass_report(preds, "test")
    assert report["accuracy"] == pytest.approx(accuracy_score(test["label"], predicted))
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(test["label"], predicted))
    assert report["confusion_matrix"] == confusion_matrix(test["label"], predicted, labels=classes).tolist()
    recall = {c: ((test["label"] == c) & (predicted == c)).sum() / max((test["label"] == c).sum(), 1) for c in classes}
    assert all(report["per_class"][c]["recall"] == pytest.approx(recall[c]) for c in classes)
    assert main(["evaluate", str(run_dir), "--split", "test", "--positive", "WBC"]) == 0
    out = capsys.readouterr().out
    assert f"balanced accuracy {report['balanced_accuracy']:.3f}" in out and "Platelets" in out
