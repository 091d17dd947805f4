"""Policies (admins): edit the YAML with validation and a diff, prove the edit on the labelled
regression set before it is saved, save a new version the gateway hot-reloads (and see every
replica pick it up), browse history and roll back, and replay an edit over stored requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import streamlit as st

from audit.models import Role
from dashboard import data, evaluation, page_auth, policy_files, replay, ui
from dashboard.auth import Session
from gateway.heartbeat import INTERVAL_S
from policies.compiled import CompiledPolicy
from policies.yamlio import FieldError

REPLAY_KEY = "pe_replay_result"
#: (policy file, text) to put in the editor on the next run (a widget's value cannot change after it is drawn)
PENDING_KEY = "pe_pending_draft"
#: what the last save or rollback did, shown after the rerun that follows it
FLASH_KEY = "pe_flash"
REPLAY_MAX = 2000
#: a replica whose heartbeat is older than this is counted as gone
REPLICA_STALE_S = 3 * INTERVAL_S


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


def _saved(result: policy_files.SaveResult, what: str) -> None:
    """After a save or rollback: rerun so the page reads the new running version from the file."""
    st.session_state[FLASH_KEY] = (
        f"{what} version `{result.version.version_hash}` of policy **{result.version.name}**; "
        "the gateway reloads it within a second (replicas below)."
    )
    st.session_state.pop(REPLAY_KEY, None)
    st.session_state.pop("pe_note", None)
    st.session_state.pop("pe_reason", None)
    st.rerun()


def _override(ev: evaluation.Evaluation | None, key: str) -> str | None:
    """The admin's written reason for a change that lets known attacks through (None: not given)."""
    if ev is None or not ev.weakens:
        return ""
    st.error(
        f"**This change lets through {len(ev.weakened)} known attack(s) that the running version catches.** "
        "It is refused unless an admin confirms it with a written reason, which is kept with the version "
        "and in the audit trail."
    )
    reason = st.text_area("Reason for letting these attacks through (required)", key=f"{key}_reason", height=80)
    confirmed = st.checkbox("I confirm this weakening change", key=f"{key}_confirm")
    text = reason.strip()
    return text if confirmed and len(text) >= policy_files.REASON_MIN else None


def _save(
    session: Session, path: Path, text: str, running: str, checked: policy_files.Validation,
    ev: evaluation.Evaluation | None,
) -> None:  # fmt: skip
    if text == running:
        return
    reason = _override(ev, "pe")
    cols = st.columns([3, 1, 1])
    note = cols[0].text_input("What changed (kept with the version)", key="pe_note")
    blocked = reason is None
    label = "Save anyway (admin override)" if ev is not None and ev.weakens else "Save new version"
    if cols[1].button(label, type="primary", key="pe_save", disabled=blocked or not checked.ok):
        try:
            with ui.db_errors():
                result = policy_files.save(
                    ui.engine(), path, text, user=session.user, note=note, evaluation=ev,
                    weakening_reason=reason or None, writer=ui.review_writer(),
                )  # fmt: skip
        except policy_files.PolicyInvalid as exc:
            _errors(exc.errors)
            return
        except policy_files.WeakeningRefused as exc:
            st.error(f"Not saved: {exc}.")
            return
        except OSError as exc:
            st.error(f"Version stored, but the file could not be written: {exc.strerror}.")
            return
        _saved(result, "Saved")
    if blocked:
        cols[1].caption("Give a reason and confirm to save.")
    if cols[2].button("Discard edits", key="pe_discard"):
        st.session_state[PENDING_KEY] = (str(path), running)
        st.rerun()


def _evaluate(edited: CompiledPolicy, running_policy: CompiledPolicy) -> evaluation.Evaluation:
    prompts = ui.regression_prompts()
    with st.spinner(f"Evaluating the edit on {len(prompts)} labelled prompts…"):
        return evaluation.evaluate(edited, running_policy, prompts)


def show_evaluation(ev: evaluation.Evaluation, key: str = "pe") -> None:
    """Known attacks blocked and known benign passed, before and after, per category and per check."""
    st.subheader("Regression evaluation")
    st.caption(
        "The input stage of the running and the edited policy on the shipped red-team sets, the "
        "deployment's sets and every request a reviewer ruled on (confirmed = attack, false positive = benign)."
    )
    total = ev.by_category()[-1]
    cols = st.columns(4)
    cols[0].metric("Attacks blocked", f"{total.blocked_after} / {total.attacks}",
                   delta=total.blocked_after - total.blocked_before)  # fmt: skip
    cols[1].metric("Attacks caught (block or flag)", f"{total.caught_after} / {total.attacks}",
                   delta=total.caught_after - total.caught_before)  # fmt: skip
    cols[2].metric("Benign passed", f"{total.passed_after} / {total.benign}",
                   delta=total.passed_after - total.passed_before)  # fmt: skip
    cols[3].metric("Known attacks let through", len(ev.weakened), delta=-len(ev.weakened) or None)
    if not ev.weakens:
        st.success("No known attack that the running version catches gets through with this change.")
    else:
        st.dataframe(
            [
                {"prompt": c.prompt.text[:160], "category": c.prompt.category, "source": c.prompt.source,
                 "running": evaluation.LEVEL_NAMES[c.before], "edited": evaluation.LEVEL_NAMES[c.after],
                 "id": c.prompt.id}
                for c in ev.weakened
            ],
            hide_index=True, width="stretch", key=f"{key}_weakened",
        )  # fmt: skip
    left, right = st.columns(2)
    left.markdown("**Per category**")
    left.dataframe(
        [
            {"category": r.group, "attacks blocked": f"{r.blocked_before} → {r.blocked_after} / {r.attacks}",
             "attacks caught": f"{r.caught_before} → {r.caught_after} / {r.attacks}",
             "benign passed": f"{r.passed_before} → {r.passed_after} / {r.benign}"}
            for r in ev.by_category()
        ],
        hide_index=True, width="stretch", key=f"{key}_by_category",
    )  # fmt: skip
    right.markdown("**Per check** (prompts it acted on)")
    right.dataframe(
        [
            {"check": r.check, "on attacks": f"{r.on_attacks_before} → {r.on_attacks_after}",
             "on benign": f"{r.on_benign_before} → {r.on_benign_after}"}
            for r in ev.by_check()
        ],
        hide_index=True, width="stretch", key=f"{key}_by_check",
    )  # fmt: skip


@st.fragment(run_every=1.0)
def _replicas(policy_name: str, version: str) -> None:
    """Which gateway replicas run which version of this policy, from their heartbeats."""
    with ui.db_errors():
        found = data.replicas(ui.engine(), seen_since=datetime.now(UTC) - timedelta(seconds=REPLICA_STALE_S))
    running = [r for r in found if r.runs(policy_name) is not None]
    if not running:
        st.caption("No gateway replica has reported a heartbeat for this policy in the last few seconds.")
        return
    current = sum(r.runs(policy_name) == version for r in running)
    message = f"{current} of {len(running)} gateway replica(s) run version `{version}`"
    (st.success if current == len(running) else st.info)(
        message + ("." if current == len(running) else "; waiting for the others to reload…")
    )
    st.dataframe(
        [
            {"replica": r.replica_id, "host": r.host, "pid": r.pid, "version": r.runs(policy_name),
             "current": "●" if r.runs(policy_name) == version else "", "last heartbeat": r.last_seen}
            for r in running
        ],
        hide_index=True, width="stretch",
    )  # fmt: skip


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
                    "weakening reason": v.weakening_reason or "",
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
    target = policy_files.validate(chosen.yaml_text, str(path))
    if target.policy is None:
        _errors(target.errors)
        return
    with st.expander("Regression evaluation of this version", expanded=False):
        ev = _evaluate(target.policy, running_policy)
        show_evaluation(ev, key="rb")
    reason = _override(ev, "rb")
    if st.button(f"Roll back to {chosen.version_hash}", key="pe_rollback", disabled=reason is None):
        try:
            with ui.db_errors():
                result = policy_files.rollback(
                    ui.engine(), path, chosen, user=session.user, evaluation=ev,
                    weakening_reason=reason or None, writer=ui.review_writer(),
                )  # fmt: skip
        except policy_files.PolicyInvalid as exc:
            _errors(exc.errors)
            return
        except policy_files.WeakeningRefused as exc:
            st.error(f"Not rolled back: {exc}.")
            return
        st.session_state[PENDING_KEY] = (str(path), chosen.yaml_text)
        _saved(result, "Rolled back to")


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
                    "prompt (as stored)": ui.snippet(r.snippet),
                    "decided by": r.decided_by or "",
                    "score ≥ threshold": ui.fmt_score(r.score, r.threshold),
                    "recorded": r.stored_verdict,
                    "input": f"{r.before[0]} → {r.after[0]}",
                    "output": f"{r.before[1]} → {r.after[1]}",
                    "edited policy fires": "; ".join(r.fired),
                    "monitor would": "; ".join(r.monitor),
                    "request id": r.request_id,
                }
                for r in changed
            ]
        ),
        hide_index=True,
        width="stretch",
    )


def render() -> None:
    session = page_auth.require(Role.admin)
    st.title("Policies")
    cfg = ui.settings()
    path = _pick_file(cfg.policy_paths, cfg.config_dir)
    try:
        running = policy_files.read(path)
    except OSError as exc:
        ui.fatal(f"Cannot read {path}: {exc.strerror}.")
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash)
    running_check = policy_files.validate(running, str(path))
    if running_check.policy is not None:
        p = running_check.policy
        st.caption(f"Running: policy **{p.name}** version `{p.version}` · {len(p.checks)} checks · {path}")
        _replicas(p.name, p.version)
    else:
        st.warning("The file on disk does not validate; the gateway keeps serving its last good version.")
    text = _editor(path, running)
    checked = policy_files.validate(text, str(path))
    if checked.policy is not None:
        if text != running:
            st.success(f"Valid: version `{checked.policy.version}`, {len(checked.policy.checks)} checks.")
    else:
        _errors(checked.errors)
    ev = None
    if text != running:
        with st.expander("Diff against the running version", expanded=True):
            st.code(policy_files.diff(running, text, path.name), language="diff")
        if checked.policy is not None and running_check.policy is not None:
            ev = _evaluate(checked.policy, running_check.policy)
            show_evaluation(ev)
    _save(session, path, text, running, checked, ev)
    _history(session, path, running, running_check.policy)
    _replay(checked.policy, running_check.policy)


render()
