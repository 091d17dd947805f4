"""Policies (admins): edit the YAML with validation and a diff, save a new version the gateway
hot-reloads, browse history and roll back, and replay an edit over stored requests."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from audit.models import Role
from dashboard import auth, data, policy_files, replay, ui
from dashboard.auth import Session
from policies.compiled import CompiledPolicy
from policies.yamlio import FieldError

REPLAY_KEY = "pe_replay_result"
#: (policy file, text) to put in the editor on the next run (a widget's value cannot change after it is drawn)
PENDING_KEY = "pe_pending_draft"
REPLAY_MAX = 2000


def _draft_key(path: Path) -> str:
    return f"pe_draft::{path}"


def _errors(errors: tuple[FieldError, ...] | list[FieldError]) -> None:
    lines = [
        f"- **line {e.line}**: `{e.field}`: {e.message}"
        if e.line and e.field
        else f"- **line {e.line}**: {e.message}"
        if e.line
        else f"- `{e.field}`: {e.message}"
        if e.field
        else f"- {e.message}"
        for e in errors
    ]
    st.error("The policy is not valid:\n\n" + "\n".join(lines))


def _pick_file(cfg_paths: tuple[Path, ...], base: Path) -> Path:
    def label(p: Path) -> str:
        try:
            return str(p.relative_to(base))
        except ValueError:
            return str(p)

    proposal = st.session_state.get(ui.PROPOSAL_KEY)
    if proposal and Path(proposal[0]) in cfg_paths:
        st.session_state["pe_file"] = Path(proposal[0])
    return Path(st.selectbox("Policy file", cfg_paths, format_func=label, key="pe_file"))


def _editor(path: Path, running: str) -> str:
    key = _draft_key(path)
    proposal = st.session_state.pop(ui.PROPOSAL_KEY, None)
    if proposal and Path(proposal[0]) == path:
        st.session_state[key] = proposal[1]
        st.info(f"Opened a proposed change: {proposal[2]}. Replay it below before saving.")
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending and Path(pending[0]) == path:
        st.session_state[key] = pending[1]
    if key not in st.session_state:
        st.session_state[key] = running
    text: str = st.text_area("Policy YAML", key=key, height=480)
    return text


def _save(session: Session, path: Path, text: str, running: str, checked: policy_files.Validation) -> None:
    cols = st.columns([3, 1, 1])
    note = cols[0].text_input("What changed (kept with the version)", key="pe_note")
    if cols[1].button("Save new version", type="primary", key="pe_save", disabled=text == running):
        if not checked.ok:
            st.error("Not saved: fix the errors first.")
            return
        try:
            with ui.db_errors():
                result = policy_files.save(ui.engine(), path, text, user=session.user, note=note)
        except policy_files.PolicyInvalid as exc:
            _errors(exc.errors)
            return
        except OSError as exc:
            st.error(f"Version stored, but the file could not be written: {exc.strerror}.")
            return
        st.success(
            f"Saved version `{result.version.version_hash}` of policy **{result.version.name}**; "
            "the gateway reloads it within seconds."
        )
        st.session_state.pop(REPLAY_KEY, None)
    if cols[2].button("Discard edits", key="pe_discard", disabled=text == running):
        st.session_state[PENDING_KEY] = (str(path), running)
        st.rerun()


def _history(session: Session, path: Path, running: str, running_policy: CompiledPolicy | None) -> None:
    st.subheader("History")
    if running_policy is None:
        st.caption("The running file does not validate, so its history cannot be looked up by name.")
        return
    with ui.db_errors():
        versions = data.policy_versions(ui.engine(), running_policy.name)
    if not versions:
        st.caption("No saved versions yet: the first save from here starts the history.")
        return
    st.dataframe(
        (
            [
                {
                    "saved": v.created_at,
                    "version": v.version_hash,
                    "by": v.created_by,
                    "note": v.note or "",
                    "running": "●" if v.version_hash == running_policy.version else "",
                }
                for v in versions
            ]
        ),
        hide_index=True,
        width="stretch",
    )
    chosen = st.selectbox(
        "Compare or roll back to",
        versions,
        format_func=lambda v: f"{v.version_hash} · {ui.fmt_time(v.created_at)} · {v.created_by}",
        key="pe_version",
    )
    if chosen is None:
        return
    if chosen.version_hash == running_policy.version:
        st.caption("This is the running version.")
        return
    st.code(policy_files.diff(running, chosen.yaml_text, path.name) or "(no difference)", language="diff")
    if st.button(f"Roll back to {chosen.version_hash}", key="pe_rollback"):
        try:
            with ui.db_errors():
                policy_files.rollback(ui.engine(), path, chosen, user=session.user)
        except policy_files.PolicyInvalid as exc:
            _errors(exc.errors)
            return
        st.session_state[PENDING_KEY] = (str(path), chosen.yaml_text)
        st.rerun()


def _replay(edited: CompiledPolicy | None, running_policy: CompiledPolicy | None) -> None:
    st.subheader("Replay")
    st.caption(
        "Runs the input and output checks of the running and the edited policy over the stored text of "
        "matching requests and lists the verdicts that would change. Redacted values are stored as "
        "placeholders and cannot fire again; stream and reasoning checks are not replayed."
    )
    eng = ui.engine()
    f = ui.filter_bar(eng, "rp")
    limit = int(st.number_input("Requests to replay (newest first)", 1, REPLAY_MAX, 200, step=50, key="rp_limit"))
    if st.button("Replay", key="rp_run", disabled=edited is None or running_policy is None):
        assert edited is not None and running_policy is not None
        with ui.db_errors():
            items = data.replay_inputs(eng, f, limit=limit)
        bar = st.progress(0.0, text=f"Replaying {len(items)} requests…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Replayed {done} of {total}")

        done = replay.replay(edited, running_policy, items, progress)
        bar.progress(1.0, text=f"Replayed {len(done)} requests")
        st.session_state[REPLAY_KEY] = done
    results: list[replay.ReplayResult] | None = st.session_state.get(REPLAY_KEY)
    if results is None:
        return
    changed = [r for r in results if r.changed]
    stricter = sum(r.stricter for r in changed)
    cols = st.columns(3)
    cols[0].metric("Replayed", len(results))
    cols[1].metric("Verdicts that change", len(changed))
    cols[2].metric("Stricter / looser", f"{stricter} / {len(changed) - stricter}")
    if not changed:
        st.success("No verdict would change on these requests.")
        return
    st.dataframe(
        (
            [
                {
                    "request id": r.request_id,
                    "recorded": r.stored_verdict,
                    "input": f"{r.before[0]} → {r.after[0]}",
                    "output": f"{r.before[1]} → {r.after[1]}",
                    "edited policy fires": "; ".join(r.fired),
                    "monitor would": "; ".join(r.monitor),
                }
                for r in changed
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    session = auth.require(Role.admin)
    st.title("Policies")
    cfg = ui.settings()
    path = _pick_file(cfg.policy_paths, cfg.config_dir)
    try:
        running = policy_files.read(path)
    except OSError as exc:
        ui.fatal(f"Cannot read {path}: {exc.strerror}.")
    running_check = policy_files.validate(running, str(path))
    if running_check.policy is not None:
        p = running_check.policy
        st.caption(f"Running: policy **{p.name}** version `{p.version}` · {len(p.checks)} checks · {path}")
    else:
        st.warning("The file on disk does not validate; the gateway keeps serving its last good version.")
    text = _editor(path, running)
    checked = policy_files.validate(text, str(path))
    if checked.policy is not None:
        if text != running:
            st.success(f"Valid: version `{checked.policy.version}`, {len(checked.policy.checks)} checks.")
    else:
        _errors(checked.errors)
    if text != running:
        with st.expander("Diff against the running version", expanded=True):
            st.code(policy_files.diff(running, text, path.name), language="diff")
    _save(session, path, text, running, checked)
    _history(session, path, running, running_check.policy)
    _replay(checked.policy, running_check.policy)


render()
