"""Who may do what: the roles, the action each needs, and the one check every door goes through.

Roles are ordered, viewer < annotator < admin, and each may do everything the one before it may.
The pages hide what a role may not do; `require` is the real check. It refuses by default: a role
or an action this table does not know is refused, never let through.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ROLES = ("viewer", "annotator", "admin")  # in order: each may do all that the one before it may
LEAST_ROLE = {  # the permission table: each action and the least role that may take it
    "browse": "viewer",
    "annotate": "annotator",
    "manage datasets": "admin",  # add or remove one
    "adjudicate": "admin",
    "launch runs": "admin",  # training runs and prediction jobs: they take the server's devices
    "export data": "admin",  # files out of Lumen: preprocessed copies, corrected labels, model bundles
    "download annotations": "annotator",  # the readers' labels and notes, per reader
    "delete runs": "admin",
    "save operating points": "admin",  # a run's threshold decides for every reader and every export
}
SIGNED_IN_ROLE = "viewer"  # a signed-in reader the lab's role table does not name: deny by default
TRUSTED_ROLE = "admin"  # neither login nor roles: one person on their own machine may do everything


@dataclass(frozen=True)
class Identity:
    """Who is acting: the name recorded with every change, and the role that decides what they may do."""

    name: str
    role: str


ANONYMOUS = Identity("", "viewer")  # login is configured but nobody has signed in: looking only


def operator() -> Identity:
    """The person at the server's shell (the command line, scripts): they can read and write the
    files Lumen would guard anyway, so they act as an admin under their login name."""
    import getpass

    return Identity(getpass.getuser(), TRUSTED_ROLE)


def role_of(who: Identity | str) -> str:
    """The role of an identity; a plain role is its own."""
    return who.role if isinstance(who, Identity) else who


def as_identity(who: Identity | str) -> Identity:
    """An identity; a plain role acts under no name."""
    return who if isinstance(who, Identity) else Identity("", who)


def to_record(who: Identity | str) -> dict[str, str]:
    """How a background job's file keeps who started it, so the job's own process checks them again."""
    who = as_identity(who)
    return {"name": who.name, "role": who.role}


def from_record(record: Mapping[str, str] | None) -> Identity:
    """The identity a job's file keeps; a missing or partial record has no role, so `require` refuses it."""
    record = record or {}
    return Identity(str(record.get("name", "")), str(record.get("role", "")))


def may(who: Identity | str, action: str) -> bool:
    """Whether ``who`` may take ``action``: False for an unknown role or action (deny by default)."""
    role = role_of(who)
    return role in ROLES and action in LEAST_ROLE and ROLES.index(role) >= ROLES.index(LEAST_ROLE[action])


def require(who: Identity | str, action: str) -> None:
    """Refuse, with a plain PermissionError, an action ``who`` may not take."""
    role = role_of(who)
    if role not in ROLES:
        raise PermissionError(f"Unknown role '{role}': roles are {', '.join(ROLES)}.")
    if action not in LEAST_ROLE:
        raise PermissionError(f"Unknown action '{action}': actions are {', '.join(LEAST_ROLE)}.")
    if not may(role, action):
        article = "An" if role[0] in "aeiou" else "A"
        raise PermissionError(f"{article} {role} cannot {action}; that needs the {LEAST_ROLE[action]} role.")


def assigned_role(email: str, assigned: Mapping[str, str]) -> str | None:
    """The role the lab's table (e-mail -> role) gives ``email``, whatever the case either is spelt in."""
    by_address = {address.casefold(): role for address, role in assigned.items()}
    return by_address.get(email.casefold()) if email else None


def signed_in(email: str, assigned: Mapping[str, str], verified: bool = True) -> Identity:
    """A signed-in reader: the role the lab's table assigns them, else SIGNED_IN_ROLE. An address the
    provider says it has not verified could be anyone's, so it only looks."""
    role = assigned_role(email, assigned) if verified else None
    return Identity(email, role or SIGNED_IN_ROLE)
