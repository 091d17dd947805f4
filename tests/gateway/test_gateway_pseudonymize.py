"""Reversible redaction end to end: the upstream (the built-in simulator, which records what it
received) never sees the value, the client gets it back in content, streams, tool-call
arguments and reasoning, and the audit record keeps placeholders only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from audit.db import make_engine
from audit.rows import load_record
from dashboard import highlight, record_view
from dashboard.auth import add_user
from gateway.config import DEFAULT_CONFIG_ENV
from gateway.pipeline.pseudonyms import placeholder_for
from tests.gateway_harness import REPO, REVIEWER_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

EMAIL = "jane.roe@example.org"
PHONE = "+1 415 555 0132"
NEW_EMAIL = "bob.new@example.net"
OTHER_KEY = "sk-test-globex-0001"
PROMPT = f"Draft a reply to {EMAIL} telling her the invoice is paid"

POLICY = """
name: pseudo
input:
  - {check: pii, entities: [EMAIL_ADDRESS, PHONE_NUMBER], action: pseudonymize}
stream:
  holdback_chars: 64
  checks:
    - {check: pii, entities: [EMAIL_ADDRESS, PHONE_NUMBER], action: redact}
reasoning:
  - {check: pii, entities: [EMAIL_ADDRESS], action: flag}
audit:
  store_text: full
"""


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("pseudo")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, database_url=f"sqlite:///{folder}/pseudo.db")
    text = config.read_text().replace("keys:\n", f"keys:\n  - {{key: {OTHER_KEY}, tenant: globex, id: globex-1}}\n")
    config.write_text(text)
    with running_gateway(config) as running:
        yield running


def ph(value: str = EMAIL, entity: str = "EMAIL_ADDRESS", tenant: str = "acme") -> str:
    return placeholder_for(tenant, entity, value)


def record(gw: RunningGateway, request_id: str) -> dict[str, Any]:
    gw.flush_audit()
    r = httpx.get(f"{gw.base_url}/audit/requests/{request_id}", headers={"authorization": f"Bearer {REVIEWER_KEY}"})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def upstream_saw(sim: SimulatorHandle) -> str:
    return json.dumps(sim.bodies()[-1])


def chat(
    gw: RunningGateway, messages: list[dict[str, Any]], *, stream: bool, model: str = "gpt-4o-mini", **kw: Any
) -> tuple[str, dict[str, Any]]:
    """Content, the other fields the client got (reasoning, tool calls) and the request id."""
    client = gw.client(key=kw.pop("key")) if "key" in kw else gw.client()
    if not stream:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)  # type: ignore[call-overload]
        message = raw.parse().choices[0].message
        extra = message.model_dump()
        return message.content or "", {**extra, "request_id": raw.headers["x-warden-request-id"]}
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, stream=True, **kw)  # type: ignore[call-overload]
    content, reasoning, args = [], [], []
    for chunk in raw.parse():
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content.append(delta.content or "")
        reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
        for call in delta.tool_calls or []:
            args.append(call.function.arguments or "" if call.function else "")
    extra = {"reasoning_content": "".join(reasoning), "arguments": "".join(args)}
    return "".join(content), {**extra, "request_id": raw.headers["x-warden-request-id"]}


@pytest.mark.parametrize("stream", [False, True])
def test_the_model_sees_a_placeholder_and_the_client_the_value(
    gw: RunningGateway, sim: SimulatorHandle, stream: bool
) -> None:
    sim.script(
        match="invoice",
        content=f"Dear {ph()},\nyour invoice is paid. I copied {NEW_EMAIL}.",
        chunking="char",
    )
    text, extra = chat(gw, [{"role": "user", "content": PROMPT}], stream=stream)
    seen = upstream_saw(sim)
    assert EMAIL not in seen and ph() in seen
    # the user's own value comes back; the model's own new address is still redacted
    assert text == f"Dear {EMAIL},\nyour invoice is paid. I copied <EMAIL_ADDRESS>."
    rec = record(gw, extra["request_id"])
    dumped = json.dumps(rec)
    assert EMAIL not in dumped and NEW_EMAIL not in dumped  # store_text: full, and still no value
    assert rec["input_text"] == PROMPT.replace(EMAIL, ph())
    assert rec["output_text"] == f"Dear {ph()},\nyour invoice is paid. I copied <EMAIL_ADDRESS>."
    steps = {s["name"]: s for s in rec["inference_steps"]}
    assert steps["pseudonymize"]["detail"]["placeholders"] == [ph()]
    (restored,) = steps["restore"]["detail"]["restored"]
    assert restored["placeholder"] == ph() and restored["channels"] == ["content"] and restored["count"] == 1
    stream_pii = [s for s in rec["inference_steps"] if s["stage"] == "stream" and s["name"] == "pii"]
    assert [sp["entity_type"] for s in stream_pii for sp in s["spans"]] == ["EMAIL_ADDRESS"]  # the new one only


def test_same_value_same_placeholder_across_turns_and_other_tenants_differ(
    gw: RunningGateway, sim: SimulatorHandle
) -> None:
    first, _ = chat(gw, [{"role": "user", "content": f"Write to {EMAIL} or call {PHONE}"}], stream=False)
    turn1 = sim.bodies()[-1]["messages"][-1]["content"]
    assert turn1 == f"Write to {ph()} or call {ph(PHONE, 'PHONE_NUMBER')}"
    # the client sends back the restored answer: the same values get the same placeholders
    assert EMAIL in first
    history = [
        {"role": "user", "content": f"Write to {EMAIL} or call {PHONE}"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": f"And cc {EMAIL} again"},
    ]
    chat(gw, history, stream=True)
    turn2 = sim.bodies()[-1]["messages"]
    assert EMAIL not in json.dumps(turn2) and PHONE not in json.dumps(turn2)
    assert turn2[0]["content"] == turn1 and ph() in turn2[1]["content"]
    assert turn2[2]["content"] == f"And cc {ph()} again"
    chat(gw, [{"role": "user", "content": f"Write to {EMAIL}"}], stream=False, key=OTHER_KEY)
    globex = sim.bodies()[-1]["messages"][-1]["content"]
    assert globex == f"Write to {ph(tenant='globex')}" and ph(tenant="globex") != ph()


@pytest.mark.parametrize("stream", [False, True])
def test_placeholders_of_other_requests_and_tenants_are_not_restored(
    gw: RunningGateway, sim: SimulatorHandle, stream: bool
) -> None:
    foreign = f"Known: {ph(PHONE, 'PHONE_NUMBER')}, {ph(tenant='globex')}, {ph()}."
    sim.script(match="nothing", content=foreign, chunking="char")
    # this request carries no value: nothing of another request's may come back
    text, _ = chat(gw, [{"role": "user", "content": "nothing personal here"}], stream=stream)
    assert text == foreign
    # a request of another tenant with the same value does not restore acme's placeholder
    sim.script(match="globex", content=f"A {ph()} B {ph(tenant='globex')}", chunking="char")
    text, _ = chat(gw, [{"role": "user", "content": f"globex: {EMAIL}"}], stream=stream, key=OTHER_KEY)
    assert text == f"A {ph()} B {EMAIL}"


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_arguments_are_restored(gw: RunningGateway, sim: SimulatorHandle, stream: bool) -> None:
    sim.script(match="send", tool_call={"name": "send_email", "arguments": {"to": ph(), "body": "Paid."}}, chunking=3)
    tools = [{"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}]
    _, extra = chat(gw, [{"role": "user", "content": f"send it to {EMAIL}"}], stream=stream, tools=tools)
    assert EMAIL not in upstream_saw(sim)
    args = extra["arguments"] if stream else extra["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"to": EMAIL, "body": "Paid."}
    rec = record(gw, extra["request_id"])
    assert EMAIL not in json.dumps(rec)
    (restored,) = next(s for s in rec["inference_steps"] if s["name"] == "restore")["detail"]["restored"]
    assert restored["channels"] == ["tool_call"]


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_is_restored_and_stored_with_placeholders(
    gw: RunningGateway, sim: SimulatorHandle, stream: bool
) -> None:
    sim.script(
        match="reply",
        reasoning=f"Step 1: the recipient is {ph()}.\nStep 2: say it is paid.\n",
        content=f"Done, {ph()}.",
        chunking="char",
    )
    text, extra = chat(gw, [{"role": "user", "content": PROMPT + " reply"}], stream=stream, model="sim-reasoner")
    assert text == f"Done, {EMAIL}."
    assert f"the recipient is {EMAIL}." in extra["reasoning_content"]
    rec = record(gw, extra["request_id"])
    assert EMAIL not in json.dumps(rec)
    step1 = next(s for s in rec["inference_steps"] if s["name"] == "step 1")
    assert step1["text"] == f"Step 1: the recipient is {ph()}."
    # the reasoning pii check leaves the user's own, restored value alone
    assert rec["verdict"] == "redact"
    flagged = [s for s in rec["inference_steps"] if s["stage"] == "reasoning" and s["result"] == "flag"]
    assert not flagged


@pytest.mark.parametrize("stream", [False, True])
def test_request_detail_highlights_the_placeholders_and_names_the_restored(
    gw: RunningGateway, sim: SimulatorHandle, stream: bool
) -> None:
    value = "jane.roe@finance.example.org"  # not as long as its placeholder: offsets shift
    sim.script(match="invoice", content=f"Dear {ph(value)}, paid. Copy {NEW_EMAIL}.", chunking="char")
    _, extra = chat(
        gw, [{"role": "user", "content": PROMPT.replace(EMAIL, value) + f" or call {PHONE}"}], stream=stream
    )
    gw.flush_audit()
    engine = make_engine(gw.gateway.config.resolved_database_url())
    try:
        with engine.connect() as conn:
            rec = load_record(conn, extra["request_id"])
    finally:
        engine.dispose()
    assert rec is not None and rec.input_text is not None and rec.output_text is not None
    prompt = highlight.locate(rec.input_text, record_view.input_layers(rec))
    assert prompt.exact
    assert {rec.input_text[m.start : m.end] for m in prompt.marks} == {ph(value), ph(PHONE, "PHONE_NUMBER")}
    answer = highlight.locate(rec.output_text, record_view.output_layers(rec))
    assert answer.exact
    assert {rec.output_text[m.start : m.end] for m in answer.marks} == {ph(value), "<EMAIL_ADDRESS>"}
    assert record_view.restored_placeholders(rec) == [f"`{ph(value)}` ×1 (content)"]


@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions_are_restored_and_embeddings_see_placeholders(
    gw: RunningGateway, sim: SimulatorHandle, stream: bool
) -> None:
    sim.script(match="ledger", content=f"Ledger owner: {ph()}.", chunking="char")
    client = gw.client()
    prompt = f"ledger of {EMAIL}"
    if stream:
        text = "".join(
            c.choices[0].text
            for c in client.completions.create(model="gpt-4o-mini", prompt=prompt, stream=True)
            if c.choices
        )
    else:
        text = client.completions.create(model="gpt-4o-mini", prompt=prompt).choices[0].text
    assert text == f"Ledger owner: {EMAIL}."
    assert sim.bodies()[-1]["prompt"] == f"ledger of {ph()}"
    client.embeddings.create(model="text-embedding-3-small", input=[prompt, "plain"])
    assert sim.bodies()[-1]["input"] == [f"ledger of {ph()}", "plain"]


def test_an_earlier_placeholder_sent_back_as_text_stays_consistent(gw: RunningGateway, sim: SimulatorHandle) -> None:
    # a transcript kept from the audit (placeholders) next to the value itself: one placeholder
    sim.script(match="again", content=f"Sure: {ph()}.", chunking="char")
    history = [
        {"role": "assistant", "content": f"I wrote to {ph()} yesterday."},
        {"role": "user", "content": f"Write to {EMAIL} again"},
    ]
    text, _ = chat(gw, history, stream=True)
    sent = sim.bodies()[-1]["messages"]
    assert sent[0]["content"] == f"I wrote to {ph()} yesterday." and sent[1]["content"] == f"Write to {ph()} again"
    assert text == f"Sure: {EMAIL}."


def test_every_choice_is_restored(gw: RunningGateway, sim: SimulatorHandle) -> None:
    sim.script(match="twice", content=f"To {ph()}.", chunking="char")
    reply = gw.client().chat.completions.create(
        model="gpt-4o-mini", n=2, messages=[{"role": "user", "content": f"twice to {EMAIL}"}]
    )
    assert [c.message.content for c in reply.choices] == [f"To {EMAIL}."] * 2


def test_the_request_detail_page_shows_placeholders_and_which_were_restored(
    gw: RunningGateway, sim: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.script(match="page", content=f"Dear {ph()}, paid.", chunking="char")
    _, extra = chat(gw, [{"role": "user", "content": f"page for {EMAIL}"}], stream=True)
    gw.flush_audit()
    add_user(gw.gateway.config.resolved_database_url(), "vic", "viewer", "viewer-pass-1")
    monkeypatch.setenv(DEFAULT_CONFIG_ENV, str(gw.gateway.config.source))
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=60).run()
    at.text_input(key="login_name").input("vic")
    at.text_input(key="login_password").input("viewer-pass-1")
    at.button(key="login_submit").click().run()
    at.switch_page("views/request.py").run()
    at.text_input(key="rd_id").input(extra["request_id"]).run()
    assert not at.exception, at.exception
    shown = "\n".join(str(e.value) for kind in ("markdown", "caption") for e in getattr(at, kind))
    assert f"&lt;{ph()[1:-1]}&gt;<sub" in shown  # the stored placeholder, highlighted, in prompt and answer
    assert f"Restored for the client (stored as placeholders): `{ph()}` ×1 (content)" in shown
    assert EMAIL not in shown
