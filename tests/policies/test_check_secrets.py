"""The secrets check: rule samples, false positives, the noseyparker corpus, streams.

Test secrets are built at run time from a seeded generator, so no credential-shaped
literal sits in the repository (and secret scanners on the repo stay quiet).
"""

from __future__ import annotations

import json
import random
import re
import string
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from policies.checks.pii import PiiCheck, PiiOptions
from policies.checks.secrets import (
    RULES_FILE,
    SecretsCheck,
    SecretsOptions,
    load_rules,
    rule_spec,
    shannon_entropy,
)
from policies.engines.patterns import PatternSet, PatternStreamMatcher
from policies.engines.prefilter import Prefilter
from policies.engines.regex_shape import shape_of
from policies.registry import check_class
from policies.yamlio import YamlModelError
from tests.stream_driver import assert_never_leaks, chunked, drive, drive_many, redact

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "noseyparker_secrets" / "data.jsonl"
PROSE_CORPORA = ("alpaca_eval", "self_instruct", "wildguardtest_benign", "coconot_contrast", "notinject")

_rng = random.Random(20240601)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def rand(n: int, alphabet: str = ALNUM) -> str:
    """A random token; mixed-alphabet tokens get both cases and a few digits, like real ones."""
    mixed = any(c.islower() for c in alphabet) and any(c.isupper() for c in alphabet)
    while True:
        value = "".join(_rng.choice(alphabet) for _ in range(n))
        if not mixed or (value.lower() != value != value.upper() and sum(c.isdigit() for c in value) >= 3):
            return value


HEX = string.hexdigits[:16]
PEM_BODY = "\n".join(rand(64, B64) for _ in range(5)) + "\n" + rand(24, B64) + "=="
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"

# rule -> (text, the value that must be redacted)
SAMPLES: dict[str, tuple[str, str]] = {}


def sample(rule: str, template: str, value: str) -> None:
    SAMPLES[rule] = (template.format(value), value)


sample("private_key", "Here is the key:\n{}\nKeep it safe.", PEM)
sample("private_key_truncated", "Key follows\n{}\n```\nThat was all of it.", PEM.split("\n-----END")[0])
sample("openai", "export OPENAI_API_KEY={}", "sk-" + "proj-" + rand(48))
sample("anthropic", "client = Anthropic(api_key={!r})", "sk-" + "ant-api03-" + rand(90))
sample("aws_access_key_id", "id: {}", "AK" + "IA" + rand(16, string.ascii_uppercase + string.digits))
sample("aws_secret_access_key", "aws_secret_access_key = {}", rand(40, B64))
sample("github_token", "git clone https://x:{}@github.com/o/r", "gh" + "p_" + rand(36))
sample("github_fine_grained_token", "GH={}", "github" + "_pat_" + rand(22) + "_" + rand(59))
sample("gitlab_token", "token {}", "gl" + "pat-" + rand(20))
sample("slack_token", "slack: {}", "xo" + "xb-" + rand(12, string.digits) + "-" + rand(24))
sample("slack_app_token", "app token {}", "xa" + "pp-1-" + rand(11) + "-" + rand(13, string.digits))
sample(
    "slack_webhook",
    "post to {}",
    "https://hooks.slack.com/services/T" + rand(8).upper() + "/B" + rand(8).upper() + "/" + rand(24),
)
sample("stripe_key", "stripe.api_key = {}", "sk_" + "live_" + rand(24))
sample("stripe_webhook_secret", "signing {}", "wh" + "sec_" + rand(32))
sample("google_api_key", "maps key {}", "AI" + "za" + rand(35))
sample("huggingface_token", "HF {}", "h" + "f_" + rand(34))
sample("jwt", "Authorization: {}", "eyJhbGciOiJIUzI1NiJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0." + rand(43))
sample("prefixed_api_token", "npm config set //registry/:_authToken {}", "np" + "m_" + rand(36))
sample("password_hash", "admin:{}:19000:0:99999", "$6$" + rand(8) + "$" + rand(86, ALNUM + "./"))
sample("bearer_token", "curl -H 'Authorization: Bearer {}'", rand(40, ALNUM + "-_"))
sample("url_query_token", "GET https://api.example.org/v1?access_token={}&page=2", rand(32))
sample("netrc_password", "machine api.example.org login me password {}", "Tr0ub4dor&3x")
sample("cli_password_flag", "Connect-VIServer -Server vc01 -User admin -Password {}", "VMware1!x9")
sample("azure_connection_key", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={};", rand(86, B64) + "==")
sample("connection_string_password", "DATABASE_URL=postgres://app:{}@db.internal:5432/app", "s3cr3t-Pa55")
sample("password_assignment", 'db_password = "{}"', "correct horse 42")
sample("password_env_assignment", "DB_PASSWORD={}", "hunter2hunter2")
sample("password_config_assignment", "smtp_password: {}", "Sup3r!Hidden")
sample("connection_string_pwd", "Server=db;Database=app;User Id=sa;Password={};", "Passw0rd!x")
sample("keyed_token", "sonar.login={}", rand(40, HEX))
sample("password_in_prose", "The wifi password is '{}' for guests.", "blue-otter-77")
sample("high_entropy_token", "use {} as the session id", rand(40, B64))
sample("suffixed_api_token", "mailchimp api key {} for the newsletter", rand(32, HEX) + "-us6")


@pytest.fixture(scope="module")
def check() -> SecretsCheck:
    return SecretsCheck(SecretsOptions())


def test_registry_names_this_class() -> None:
    assert check_class("secrets") is SecretsCheck
    assert SecretsCheck.supports_stream()


def test_every_rule_has_a_sample() -> None:
    assert {r.name for r in load_rules()} == set(SAMPLES)


@pytest.mark.parametrize("rule", sorted(SAMPLES))
def test_each_rule_redacts_its_sample(rule: str) -> None:
    text, value = SAMPLES[rule]
    only_this = SecretsCheck(SecretsOptions(rules=(rule,)))
    result = only_this.scan(text)
    assert result.fired, f"{rule} missed its sample"
    assert [text[s.start : s.end] for s in result.spans] == [value]
    assert {s.entity_type for s in result.spans} == {"SECRET"}
    assert result.detail["rules"] == [rule]
    assert value not in repr(result)  # results carry positions, never the value


def test_all_rules_together_still_redact_each_value(check: SecretsCheck) -> None:
    for rule, (text, value) in SAMPLES.items():
        redacted = redact(text, check.scan(text).spans)
        assert value not in redacted, rule


@pytest.mark.parametrize(
    "text",
    [
        "The tokenizer splits text into tokens; each token has an id.",
        "password = getpass.getpass()",
        "token_type = 'word'",
        "if token == 'lambda':",
        'api_key = os.environ["OPENAI_API_KEY"]',
        "OPENAI_API_KEY=${OPENAI_API_KEY}",
        'client = OpenAI(api_key="<YOUR_API_KEY>")',
        "export STRIPE_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
        "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "request id 123e4567-e89b-12d3-a456-426614174000",
        "class AbstractSingletonProxyFactoryBean2(Base64DecoderFactory):",
        "see /usr/lib/x86_64-linux-gnu/libGLESv2.so.2 for details",
        "max_tokens: 4096",
        "passwords: 3",
        "secretary: Jane Doe",
        "Set PATH=/usr/local/bin:$PATH",
        "redis://[[username]:[password]]@localhost:6379/0",
        "My password is strong and I never share it.",
        "img src='data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAA"
        "DUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='",
    ],
)
def test_ordinary_code_and_prose_do_not_fire(check: SecretsCheck, text: str) -> None:
    result = check.scan(text)
    assert not result.fired, (result.detail, [text[s.start : s.end] for s in result.spans])


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == 2.0


def test_options_select_and_exclude_rules() -> None:
    text, _ = SAMPLES["openai"]
    assert SecretsCheck(SecretsOptions(rules=("openai",))).scan(text).fired
    assert not SecretsCheck(SecretsOptions(rules=("jwt",))).scan(text).fired
    everything = tuple(r.name for r in load_rules())
    assert not SecretsCheck(SecretsOptions(exclude=everything)).scan(text).fired
    with pytest.raises(ValidationError, match="unknown secret rule"):
        SecretsOptions.model_validate({"exclude": ["no_such_rule"]})


def test_a_broken_rules_file_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "secrets.yaml"
    bad.write_text("rules:\n  - name: ok\n    regex: 'a'\n  - name: broken\n    regex: 'a(b'\n")
    with pytest.raises(YamlModelError) as exc:
        load_rules(bad)
    assert f"{bad}:4" in str(exc.value) and "invalid regex" in str(exc.value)
    assert RULES_FILE.exists()


def test_noseyparker_corpus_recall(check: SecretsCheck) -> None:
    rows = [json.loads(line) for line in CORPUS.read_text().splitlines()]
    positives = [r for r in rows if r["label"] == 1]
    negatives = [r for r in rows if r["label"] == 0]
    found = sum(check.scan(r["text"]).fired for r in positives)
    flagged = sum(check.scan(r["text"]).fired for r in negatives)
    recall = found / len(positives)
    print(f"\nnoseyparker: recall {recall:.3f} ({found}/{len(positives)}); ", end="")
    print(f"near-miss negatives flagged {flagged}/{len(negatives)}")
    # Measured 0.779 (303/389). Many misses are not credentials at all (ARNs, bucket
    # URLs, user names, OAuth client ids) or are placeholders (`xoxb-000…-xxxx`).
    assert recall >= 0.74
    core = ("anthropic", "github", "gitlab", "huggingface", "mongodb", "openai", "pem", "postgres", "stripe")
    core_rows = [r for r in positives if r["category"].split(".")[1] in core]
    missed = [r["text"][:60] for r in core_rows if not check.scan(r["text"]).fired]
    assert missed == []


def test_few_false_positives_on_ordinary_code_and_prose(check: SecretsCheck) -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    code_files = sorted(stdlib.glob("*.py"))[:80]
    code_hits = sum(len(check.scan(f.read_text(errors="replace")).spans) for f in code_files)
    corpora = CORPUS.parents[1]
    prompts = [
        json.loads(line)["text"]
        for name in PROSE_CORPORA
        for line in (corpora / name / "data.jsonl").read_text().splitlines()
    ]
    prose_hits = sum(check.scan(p).fired for p in prompts)
    print(
        f"\nfalse positives: {code_hits} spans in {len(code_files)} stdlib modules; {prose_hits}/{len(prompts)} prompts"
    )
    assert code_hits <= 2
    assert prose_hits <= len(prompts) // 1000


def test_stream_holds_a_private_key_from_begin_until_end(check: SecretsCheck) -> None:
    text, _ = SAMPLES["private_key"]
    feed = drive(check.stream_matcher(), list(text))
    assert feed.text == "Here is the key:\n<SECRET>\nKeep it safe."
    begin = text.index("-----BEGIN")
    end = text.index("-----END") + len("-----END RSA PRIVATE KEY-----")
    # From the moment `-----BEGIN` is complete until END is, the whole block waits.
    for k in range(begin + len("-----BEGIN") - 1, end):
        assert feed.held[k].startswith("-----BEGIN"), k
    assert_never_leaks(feed, PEM_BODY, "Here is the key:\n\nKeep it safe.")


@pytest.mark.parametrize(
    "rule", ["openai", "aws_access_key_id", "jwt", "connection_string_password", "password_env_assignment"]
)
def test_stream_one_character_at_a_time(check: SecretsCheck, rule: str) -> None:
    text, value = SAMPLES[rule]
    text = f"Sure, here it is.\n{text}\nAnything else?"
    feed = drive(check.stream_matcher(), list(text))
    assert feed.text == redact(text, check.scan(text).spans)
    assert "Sure, here it is.\n" in feed.text and "\nAnything else?" in feed.text
    assert_never_leaks(feed, value, text.replace(value, ""))


STREAM_TEXT = (
    f"Config:\n{SAMPLES['openai'][0]}\nThen call the API with the token and see the docs. "
    f"Use {SAMPLES['github_token'][1]} for git, and {SAMPLES['connection_string_password'][0]} for the database.\n"
    f"{SAMPLES['private_key'][0]}\nDone."
)
STREAM_VALUES = [SAMPLES[r][1] for r in ("openai", "github_token", "connection_string_password", "private_key")]


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(STREAM_TEXT) - 1), max_size=60))
def test_stream_any_chunking_equals_whole_text_and_never_leaks(cuts: list[int]) -> None:
    check = SecretsCheck(SecretsOptions())
    feed = drive(check.stream_matcher(), chunked(STREAM_TEXT, cuts))
    assert feed.text == redact(STREAM_TEXT, check.scan(STREAM_TEXT).spans)
    for value in STREAM_VALUES:
        assert_never_leaks(feed, value, STREAM_TEXT.replace(value, ""))
    assert "Then call the API with the token and see the docs." in feed.text


def test_stream_alongside_pii_as_in_the_default_policy(check: SecretsCheck) -> None:
    # The e-mail pattern holds "s3cr3t-Pa55@db…" after the password is complete, so the
    # password is put off while "postgres://app:" goes out; it must still be redacted.
    pii = PiiCheck(PiiOptions(entities=("EMAIL_ADDRESS", "CREDIT_CARD", "PHONE_NUMBER")))
    text, value = SAMPLES["connection_string_password"]
    text = f"Use\n{text}\nand mail ops@example.com."
    rng = random.Random(7)
    for _ in range(10):
        cuts = rng.sample(range(1, len(text)), rng.randint(0, 30))
        out = drive_many([check.stream_matcher(), pii.stream_matcher()], chunked(text, cuts))
        assert out == "Use\nDATABASE_URL=postgres://app:<SECRET>@db.internal:5432/app\nand mail <EMAIL_ADDRESS>."
    assert value not in out


PROSE = (
    "Sure! Here is a short plan for your garden. Water deeply twice a week, mulch the beds, "
    "and keep slugs away with beer traps. Let me know how it goes, and good luck!\n"
)


def test_whole_text_scan_through_the_prefilter_finds_what_every_rule_finds() -> None:
    # ``find`` runs a rule only where its shape allows a match: the same hits as every rule
    # searched over the whole text, on the noseyparker corpus, the samples and prose.
    specs = [rule_spec(r) for r in load_rules()]
    fast, every = PatternSet(specs), PatternSet(specs, prefilter=False)
    rows = [json.loads(line)["text"] for line in CORPUS.read_text().splitlines()]
    prose = [
        json.loads(line)["text"]
        for name in PROSE_CORPORA
        for line in (CORPUS.parents[1] / name / "data.jsonl").read_text().splitlines()[:300]
    ]
    for text in [*rows, *(text for text, _ in SAMPLES.values()), *prose]:
        assert fast.find(text) == every.find(text), text[:80]


@pytest.mark.parametrize("rule", sorted(SAMPLES))
def test_stream_prefilter_changes_nothing_but_the_work(rule: str) -> None:
    # Every rule, run only where its shape allows a match, streams exactly like every
    # rule run on every call (and like the whole-text scan), chunked either way.
    text = PROSE + SAMPLES[rule][0] + "\n" + PROSE
    specs = [rule_spec(r) for r in load_rules()]
    fast, every = PatternSet(specs), PatternSet(specs, prefilter=False)
    expected = redact(text, [h.span for h in every.find(text)])
    words = chunked(text, [m.start() for m in re.finditer(r"\s", text)])
    for chunks in (list(text), words):
        assert drive(PatternStreamMatcher(every), chunks).text == expected
        assert drive(PatternStreamMatcher(fast), chunks).text == expected


def test_stream_prefilter_runs_no_prefixed_rule_on_ordinary_prose() -> None:
    specs = [rule_spec(r) for r in load_rules()]
    pre = Prefilter([shape_of(s.regex, s.flags) for s in specs])
    names = [s.name for s in specs]
    assert {names[i] for i in pre.ungated} == {"connection_string_password", "high_entropy_token", "suffixed_api_token"}
    for sentence in PROSE.split(". "):
        data, base = pre.lookup(sentence + " ", 0)
        assert pre.candidates(data, base, 0, final=False) == ({}, len(sentence) + 1), sentence
    text = "export OPENAI_API_KEY=sk-"
    data, base = pre.lookup(text, 0)
    found, _ = pre.candidates(data, base, 0, final=False)
    assert {"openai", "anthropic"} <= {names[i] for i in found}
