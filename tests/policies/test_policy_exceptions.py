"""Exceptions scoped to a tenant, an API key or message roles (``exceptions:`` on a check entry):
the schema, every stage of the real gateway, the input stage by role, and the audit detail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import openai
import pytest

from gateway.redteam import Prompt, run_in_process
from policies.loader import load_policy_text
from policies.yamlio import YamlModelError
from tests.gateway_harness import CLIENT_KEY, REVIEWER_KEY, RunningGateway, running_gateway, write_config
from tests.upstream import SimulatorHandle

GLOBEX_KEY = "sk-test-globex-0002"

POLICY = """
name: scoped
input:
  - check: regex
    name: banned
    patterns: ["forbidden-word"]
    action: block
    exceptions:
      - {key: client-1, allow: ["forbidden-word in a quote"], reason: "ruled false positives"}
stream:
  holdback_chars: 32
  checks:
    - check: regex
      patterns: ["ACME-\\\\d{4}"]
      entity: TICKET
      action: redact
      exceptions:
        - {tenant: globex}
audit:
  store_text: full
"""


def errors(text: str) -> str:
    with pytest.raises(YamlModelError) as info:
        load_policy_text(text, "p.yaml")
    return "\n".join(str(e) for e in info.value.errors)


def test_an_exception_loads_with_its_scope_and_allow_list() -> None:
    policy = load_policy_text(POLICY, "p.yaml")
    (exc,) = policy.input[0].exceptions
    assert (exc.scope, exc.tenant, exc.key, exc.roles) == ("key=client-1", None, "client-1", None)
    assert exc.allow.allows_text("a forbidden-word in a quote") and not exc.allow.allows_text("forbidden-word")
    assert policy.stream[0].exceptions[0].matches("globex", "any-key", None)
    assert not policy.stream[0].exceptions[0].matches("acme", "any-key", None)


def test_an_exception_without_a_scope_is_an_error() -> None:
    err = errors("name: p\ninput:\n  - check: regex\n    patterns: [x]\n    exceptions:\n      - {allow: [x]}\n")
    assert ":6:" in err and "needs a scope" in err and "'allow'" in err


def test_an_exceptions_bad_pattern_and_unknown_key_are_errors() -> None:
    err = errors(
        "name: p\ninput:\n  - check: regex\n    patterns: [x]\n    exceptions:\n      - {tenant: a, allow: ['re:[']}\n"
    )
    assert "not a valid regex" in err
    err = errors(
        "name: p\ninput:\n  - check: regex\n    patterns: [x]\n    exceptions:\n      - {tenant: a, user: b}\n"
    )
    assert "user" in err


def test_an_exception_by_role_is_for_input_checks_only() -> None:
    err = errors("name: p\noutput:\n  - check: regex\n    patterns: [x]\n    exceptions:\n      - {roles: [tool]}\n")
    assert "input checks only" in err and "tenant or key" in err


def test_the_input_stage_honours_tenant_key_and_role() -> None:
    policy = load_policy_text(
        """
name: roles
input:
  - check: deny_terms
    terms: ["merger"]
    roles: [user, tool]
    action: block
    exceptions:
      - {roles: [tool]}
      - {tenant: globex, key: k-9, allow: ["merger talks"]}
""",
        "p.yaml",
    )

    def blocked(text: str, role: str = "user", tenant: str = "acme", key: str = "k-1") -> bool:
        prompt = Prompt(text, 0, "t", "t", "t", role, tenant=tenant, key=key)
        return asyncio.run(run_in_process(policy, [prompt]))[0].blocked

    assert blocked("the merger is secret")
    assert not blocked("the merger is secret", role="tool")  # a tool result: excepted by role
    assert not blocked("the merger talks start", tenant="globex", key="k-9")  # scope and allow entry hold
    assert blocked("the merger talks start", tenant="globex", key="k-1")  # every condition must hold
    assert blocked("the merger is secret", tenant="globex", key="k-9")  # the allow entry does not match


@pytest.fixture(scope="module")
def gw(simulator: SimulatorHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    folder = tmp_path_factory.mktemp("scoped")
    config = write_config(folder, simulator.base_url, policy_text=POLICY, database_url=f"sqlite:///{folder}/s.db")
    text = config.read_text().replace("keys:\n", f"keys:\n  - {{key: {GLOBEX_KEY}, tenant: globex, id: globex-1}}\n")
    config.write_text(text)
    with running_gateway(config) as running:
        yield running


def chat(gw: RunningGateway, content: str, key: str, stream: bool = False) -> str:
    client = gw.client(key=key)
    messages = [{"role": "user", "content": content}]
    if stream:
        chunks = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=messages)  # type: ignore[arg-type]
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    return reply.choices[0].message.content or ""


def test_an_input_exception_holds_for_its_key_only(gw: RunningGateway) -> None:
    assert chat(gw, "he wrote forbidden-word in a quote", CLIENT_KEY)
    with pytest.raises(openai.BadRequestError):
        chat(gw, "he wrote forbidden-word in a quote", REVIEWER_KEY)  # same tenant, another key
    with pytest.raises(openai.BadRequestError):
        chat(gw, "say forbidden-word", CLIENT_KEY)  # the key, but not the allowed wording


@pytest.mark.parametrize("stream", [True, False])
def test_a_stream_exception_holds_for_its_tenant_only(gw: RunningGateway, sim: SimulatorHandle, stream: bool) -> None:
    sim.script(match="ticket", content="Your ticket is ACME-1234 and it is open.", chunking="char")
    assert chat(gw, "which ticket?", CLIENT_KEY, stream) == "Your ticket is <TICKET> and it is open."
    assert chat(gw, "which ticket?", GLOBEX_KEY, stream) == "Your ticket is ACME-1234 and it is open."


def test_the_audit_record_names_the_exception(gw: RunningGateway) -> None:
    client = gw.client(key=CLIENT_KEY)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "he wrote forbidden-word in a quote"}]
    )
    gw.flush_audit()
    r = httpx.get(
        f"{gw.base_url}/audit/requests/{raw.headers['x-warden-request-id']}",
        headers={"authorization": f"Bearer {REVIEWER_KEY}"},
    )
    assert r.status_code == 200, r.text
    step = next(s for s in r.json()["inference_steps"] if s["name"] == "banned")
    assert step["result"] == "pass" and step["detail"]["exceptions"] == ["key=client-1"]
