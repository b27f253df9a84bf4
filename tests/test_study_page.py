"""AppTest of the Train page's studies: the grid's run count before launch, a refusal that creates
nothing, and a real 2-configuration x 2-seed study whose table fills in."""
import pytest

from core import rundir, study
from core.runconfig import MAX_RUNS
from tests.test_train_page import open_train_page, set_tiny
from ui.text import md


def study_mode(at):
    at.radio(key="train_launch_kind").set_value("a study").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def vary_pad_mode(at, seeds: int):
    at.multiselect(key="study_fields").set_value(["preprocess.pad_mode"]).run()
    at.multiselect(key="study_values_preprocess.pad_mode").set_value(["zero", "reflect"]).run()
    at.number_input(key="study_seeds").set_value(seeds).run()
    assert not at.exception, [e.value for e in at.exception]


def test_the_form_says_how_many_runs_the_grid_makes_and_refuses_too_many():
    at = study_mode(open_train_page())
    vary_pad_mode(at, seeds=2)
    assert any("2 configurations × 2 runs = **4 runs**" in i.value for i in at.info)
    assert not at.button(key="study_launch").disabled

    at.multiselect(key="study_fields").set_value(["preprocess.pad_mode", "preprocess.size"]).run()
    assert any("no values" in e.value for e in at.error)  # a field chosen without its values
    assert at.button(key="study_launch").disabled

    at.multiselect(key="study_values_preprocess.size").set_value([32, 64]).run()
    at.number_input(key="study_seeds").set_value(MAX_RUNS // 4 + 1).run()
    assert any(f"at most {MAX_RUNS}" in e.value for e in at.error)
    assert at.button(key="study_launch").disabled
    assert study.list_studies() == [] and not any(rundir.runs_root().iterdir())


@pytest.mark.slow
def test_launch_a_two_by_two_study_and_see_its_table_fill_in():
    at = study_mode(open_train_page())
    set_tiny(at, epochs=1)
    vary_pad_mode(at, seeds=2)
    at.text_input(key="study_name").input("pads").run()
    at.button(key="study_launch").click().run()
    assert not at.exception, [e.value for e in at.exception]
    (study_dir,) = study.list_studies()
    assert len(study.read_record(study_dir)["runs"]) == 4
    assert (study.wait(study_dir, timeout=900) == "finished").all()
    at.run()
    shown = next(df.value for df in at.dataframe if "test AUC (mean ± sd)" in df.value.columns)
    expected = study.formatted(study.summary(study_dir))
    assert shown["preprocess.pad_mode"].tolist() == ["zero", "reflect"]
    assert shown["runs"].tolist() == ["2/2", "2/2"]
    assert shown["test AUC (mean ± sd)"].tolist() == expected["test AUC (mean ± sd)"].tolist()
    assert all(" ± " in value for value in shown["test AUC (mean ± sd)"])
    assert any("4 finished" in c.value and md("from the test split; 2 seed(s)") in c.value for c in at.caption)
