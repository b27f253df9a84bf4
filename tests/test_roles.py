"""The role model, called in core directly (no page to hide a button): viewers and annotators refused."""
from __future__ import annotations

import pytest

from core import roles, rundir, runs
from core.annotations import open_store
from core.roles import ANONYMOUS, Identity, may, require, signed_in

CLASSES = ["GS", "nonGS"]


@pytest.mark.parametrize("role, allowed", [
    ("viewer", {"browse"}),
    ("annotator", {"browse", "annotate", "download annotations"}),
    ("admin", {"browse", "annotate", "download annotations", "manage datasets", "adjudicate", "launch runs",
               "delete runs", "export data", "save operating points"}),
])
def test_each_role_may_do_what_the_one_below_may_and_no_more(role, allowed):
    assert {action for action in roles.LEAST_ROLE if may(role, action)} == allowed
    assert {action for action in roles.LEAST_ROLE if may(Identity("someone", role), action)} == allowed


@pytest.mark.parametrize("who, action, message", [
    ("viewer", "annotate", "A viewer cannot annotate; that needs the annotator role."),
    (Identity("ann", "annotator"), "adjudicate", "An annotator cannot adjudicate; that needs the admin role."),
    ("annotator", "delete runs", "An annotator cannot delete runs; that needs the admin role."),
    ("owner", "browse", "Unknown role 'owner': roles are viewer, annotator, admin."),
    ("", "browse", "Unknown role ''"),
    ("admin", "drop tables", "Unknown action 'drop tables': actions are browse, annotate"),
])
def test_refused_by_default_with_a_plain_message(who, action, message):
    assert not may(who, action)
    with pytest.raises(PermissionError) as refused:
        require(who, action)
    assert str(refused.value).startswith(message)


def test_admin_may_do_everything_it_names():
    for action in roles.LEAST_ROLE:
        require(Identity("ada", "admin"), action)


def test_who_a_reader_is():
    table = {"vera@lab.org": "viewer", "Boss@Lab.org": "admin"}
    assert signed_in("vera@lab.org", table) == Identity("vera@lab.org", "viewer")
    assert signed_in("boss@lab.ORG", table) == Identity("boss@lab.ORG", "admin")  # providers spell case freely
    assert not may(ANONYMOUS, "annotate") and may(ANONYMOUS, "browse")


@pytest.mark.parametrize("email, verified", [("new@lab.org", True), ("boss@lab.org", False), ("", True)])
def test_an_address_the_table_does_not_name_or_the_provider_did_not_verify_only_looks(email, verified):
    """Deny by default: an unknown address is a viewer, never an annotator."""
    assert signed_in(email, {"boss@lab.org": "admin"}, verified=verified).role == roles.SIGNED_IN_ROLE == "viewer"


def test_core_refuses_a_viewer_and_an_annotator_without_any_page(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'notes.db'}")
    with pytest.raises(PermissionError, match="A viewer cannot annotate"):
        store.annotate("ds", "a", "vera", label="GS", classes=CLASSES, role="viewer")
    with pytest.raises(PermissionError, match="A viewer cannot annotate"):
        store.clear("ds", "a", "vera", role="viewer")
    with pytest.raises(PermissionError, match="An annotator cannot adjudicate"):
        store.adjudicate("ds", "a", "ann", "GS", classes=CLASSES, role="annotator")
    assert store.count() == 0
    run_dir = rundir.runs_root() / "finished"
    run_dir.mkdir(parents=True)
    rundir.write_status(run_dir, state="finished")
    for role in ("viewer", "annotator"):
        with pytest.raises(PermissionError, match="cannot delete runs; that needs the admin role"):
            runs.delete(run_dir, who=role)
    assert run_dir.exists()
    runs.delete(run_dir, who="admin")
    assert not run_dir.exists()
