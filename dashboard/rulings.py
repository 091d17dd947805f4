"""The ruling form (confirm / false positive / escalate, with a note) and how a ruling is saved.

A ruling is an audit record: it goes through the dashboard's ``AuditWriter`` into the reviews
hash chain (who, when, what, note), exactly like a request record; if the database is down it
waits in the writer's spool and is written when the database returns.
"""

from __future__ import annotations

import streamlit as st

from audit.models import Role
from audit.record import Ruling
from dashboard import ui
from dashboard.auth import Session

LABELS = {
    Ruling.confirm: "Confirm",
    Ruling.false_positive: "False positive",
    Ruling.escalate: "Escalate",
}
NOTE_MAX = 2000


def save(session: Session, request_id: str, ruling: Ruling, note: str) -> bool:
    """Hand the ruling to the writer and wait until it is durable; says how it went."""
    if not session.allows(Role.reviewer):  # the form is hidden from viewers; this is the real check
        st.error("Only reviewers and admins can rule on requests.")
        return False
    clean = "".join(ch for ch in note.strip() if ch.isprintable() or ch == "\n")[:NOTE_MAX]
    writer = ui.review_writer()
    writer.submit_review(request_id, session.user, ruling, clean)
    flushed = writer.flush(10)
    ui.clear_list_caches()
    if not flushed:
        st.error("The ruling could not be stored in time; it is queued and will be retried.")
        return False
    if not writer.stats.db_available:
        st.warning("The database is unavailable: the ruling is kept in the spool and written when it returns.")
    return True


def ruling_form(session: Session, request_id: str, *, key: str, submit_label: str = "Save ruling") -> bool:
    """The form; True when a ruling was saved in this run."""
    with st.form(key, clear_on_submit=True, border=True):
        ruling = st.radio(
            "Ruling",
            list(LABELS),
            format_func=lambda r: LABELS[r],
            horizontal=True,
            index=None,  # no answer is pre-selected: the reviewer picks one
            key=f"{key}_ruling",
        )
        note = st.text_input("Note (Enter saves)", key=f"{key}_note", max_chars=NOTE_MAX)
        submitted = st.form_submit_button(submit_label, type="primary", key=f"{key}_submit")
    if not submitted:
        return False
    if ruling is None:
        st.error("Pick a ruling (confirm, false positive or escalate) before saving.")
        return False
    return save(session, request_id, Ruling(ruling), note)
