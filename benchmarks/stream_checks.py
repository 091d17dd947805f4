"""What do the token-level stream checks cost per token?

Feeds realistic model output through the stream stage's ``ChannelScanner`` (the code the
gateway runs for every channel of a streamed reply) with the shipped
``policies/default.yaml`` (its ``stream`` section: secrets + pii redact, hold-back 64), and
with the same policy stripped of its stream checks as the baseline. Texts:

* ``prose``      the simulator's 200-token reply and an ordinary assistant answer (lists,
                 numbers, a little code): nothing any check acts on;
* ``sensitive``  answers carrying e-mail addresses, a phone number, a card number, API keys
                 and a connection-string password (built at run time from a seeded generator);
* ``mixed``      prose with one sensitive paragraph in six: the figure the target is about.

Each is cut into word tokens with a leading space (as model tokenizers emit them) and into
single characters. The table gives microseconds per token for the whole stream stage, for
each check's matcher alone (timed inside the same run) and for the scanner around them, and
checks that every released stream equals the whole-text redaction and leaks no 3-character
piece of a redacted value.

Pseudonymization: the same answers as the model writes them when the request's e-mail addresses
and phone number were pseudonymized (``<EMAIL_ADDRESS_7f3a>`` in their place), streamed through
the restorer in front of the same checks (restored values exempt, as the gateway runs it). The
second table gives µs per token with it on, the cost it adds over the plain stream stage (the
median of paired differences, the two runs interleaved) and the restorer's own share;
``prose`` carries no placeholder (the request had values, the answer none). Each row checks that
the stream restores every placeholder, equals the whole-text result and leaks no other value.

    python -m benchmarks.stream_checks [--seconds S] [--policy FILE]

Figures go to stdout and to ``benchmarks/results/stream_checks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import string
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from gateway.pipeline.pseudonyms import Pseudonyms, Restorer
from gateway.pipeline.stream import ChannelScanner
from gateway.simulator.content import filler
from policies.checks.base import StreamMatcher, StreamScan
from policies.compiled import CompiledPolicy
from policies.loader import load_policy, load_policy_text

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO / "policies" / "default.yaml"
RESULTS = REPO / "benchmarks" / "results" / "stream_checks.json"
TARGET_US = 20.0
TARGET_ROW = ("mixed", "word")
_TOKEN = re.compile(r"\s*\S+|\s+")

PROSE = (
    "Sure! Here is a short plan for your first vegetable garden.\n\n"
    "1. **Pick easy crops.** Lettuce, radishes, bush beans and zucchini forgive most mistakes; "
    "tomatoes need a stake and about 2-3 litres of water a week once they fruit.\n"
    "2. **Improve the clay.** Dig in 5-8 cm of compost over 10 square metres before planting, "
    "and avoid working the soil while it is wet (it compacts).\n"
    "3. **Water deeply, not often.** In the dry weeks of July, water twice a week at dawn; a "
    "drip line on a timer costs around 40 EUR and saves hours.\n\n"
    "If you like, a tiny script can log the soil moisture:\n\n"
    "```python\nimport time\n\ndef log(sensor, every=600):\n    while True:\n"
    "        print(time.strftime('%H:%M'), sensor.read())\n        time.sleep(every)\n```\n\n"
    "Raised beds are worth it on heavy clay: they drain better and warm up earlier in spring. "
    "Keep slugs down with beer traps and by watering in the morning, and mulch to smother weeds. "
    "Let me know how it goes, and good luck with the harvest!\n\n"
)


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def sensitive_text(rng: random.Random) -> tuple[str, list[str]]:
    """An answer with values the default policy redacts, and those values."""
    values = {
        "mail": "maria.gonzalez@example.com",
        "mail2": "ops-team@acme-corp.io",
        "phone": "+1 415 555 0132",
        "card": "4111 1111 1111 1111",
        "openai": "sk-" + "proj-" + _rand(rng, 40) + "9",
        "github": "gh" + "p_" + _rand(rng, 36),
        "aws": "AK" + "IA" + _rand(rng, 16, string.ascii_uppercase + string.digits),
        "password": "S3cretPass",
    }
    text = (
        f"You can reach the support team at {values['mail']} or by phone on {values['phone']}; "
        f"for incidents, write to {values['mail2']}. The card on file is {values['card']}.\n\n"
        f"To configure the client, set OPENAI_API_KEY={values['openai']} in your shell, and use "
        f"{values['github']} as the token for git. The AWS access key id is {values['aws']}.\n"
        f"The app reads DATABASE_URL=postgres://app:{values['password']}@db.internal.example.com/app "
        "at start-up.\n\n"
    )
    return text, list(values.values())


@dataclass(frozen=True)
class Workload:
    name: str
    text: str
    values: tuple[str, ...] = ()


#: values of ``sensitive_text`` the request carried and the input stage pseudonymized
PSEUDONYMIZED = {
    "maria.gonzalez@example.com": "EMAIL_ADDRESS",
    "ops-team@acme-corp.io": "EMAIL_ADDRESS",
    "+1 415 555 0132": "PHONE_NUMBER",
}


def pseudonym_table() -> Pseudonyms:
    return Pseudonyms.assign("bench", ((entity, value) for value, entity in PSEUDONYMIZED.items()))


def as_model_writes(text: str, table: Pseudonyms) -> str:
    """``text`` with the pseudonymized values as the model saw them: placeholders."""
    for p in table.items:
        text = text.replace(p.value, p.placeholder)
    return text


def workloads() -> list[Workload]:
    rng = random.Random(7)
    prose = filler(200) + ".\n\n" + PROSE
    sensitive, values = sensitive_text(rng)
    mixed = prose * 2 + sensitive + PROSE * 2
    return [
        Workload("prose", prose),
        Workload("sensitive", sensitive * 2, tuple(values)),
        Workload("mixed", mixed, tuple(values)),
    ]


def chunks(text: str, chunking: str) -> list[str]:
    return list(text) if chunking == "char" else _TOKEN.findall(text)


class TimedMatcher(StreamMatcher):
    """Adds up the time one check's matcher spends, inside a real scanner run."""

    def __init__(self, inner: StreamMatcher) -> None:
        self.inner = inner
        self.seconds = 0.0

    def scan(self, buffer: str, start: int, final: bool) -> StreamScan:
        began = time.perf_counter()
        try:
            return self.inner.scan(buffer, start, final)
        finally:
            self.seconds += time.perf_counter() - began


def stream_once(policy: CompiledPolicy, pieces: Sequence[str], table: Pseudonyms | None = None) -> tuple[str, float]:
    restorer = Restorer(table, "content") if table else None
    exempt = table.covers if table else None
    scanner = ChannelScanner(policy.stream, policy.holdback_chars, restorer=restorer, exempt=exempt)
    out: list[str] = []
    began = time.perf_counter()
    for piece in pieces:
        out.append(scanner.feed(piece).text)
    out.append(scanner.feed("", final=True).text)
    return "".join(out), time.perf_counter() - began


def per_check_once(policy: CompiledPolicy, pieces: Sequence[str]) -> dict[str, float]:
    scanner = ChannelScanner(policy.stream, policy.holdback_chars)
    timed = [(bound.name, TimedMatcher(m)) for bound, m in scanner.matchers]
    scanner.matchers = [(bound, t) for (bound, _), (_, t) in zip(scanner.matchers, timed, strict=True)]
    for piece in pieces:
        scanner.feed(piece)
    scanner.feed("", final=True)
    return {name: t.seconds for name, t in timed}


def measure(
    policy: CompiledPolicy, pieces: Sequence[str], seconds: float, table: Pseudonyms | None = None
) -> tuple[str, float, int]:
    """Released text and the median µs per token over repeated streams."""
    out, _ = stream_once(policy, pieces, table)  # warm: compiled patterns, lazy presidio load
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 2000):
        _, took = stream_once(policy, pieces, table)
        samples.append(took / len(pieces) * 1e6)
    return out, statistics.median(samples), len(samples)


def fragments(value: str, size: int = 3) -> set[str]:
    return {value[i : i + size] for i in range(len(value) - size + 1)}


def leaks(released: str, work: Workload) -> int:
    """3-character pieces of redacted values that reached the client (and are not ordinary text)."""
    clean = work.text
    for value in work.values:
        clean = clean.replace(value, "")
    return sum(1 for v in work.values for f in fragments(v) if f in released and f not in clean)


@dataclass
class Row:
    workload: str
    chunking: str
    tokens: int
    streams: int
    baseline_us: float
    stage_us: float
    checks_us: dict[str, float] = field(default_factory=dict)
    scanner_us: float = 0.0
    matches_whole_text: bool = True
    leaked_fragments: int = 0
    #: the stream stage with pseudonymization on (restorer + exemption), µs per token
    pseudonymized_us: float = 0.0
    #: what it adds over the plain stage: median of paired, interleaved runs
    pseudonymized_added_us: float = 0.0
    #: the restorer alone
    restorer_us: float = 0.0
    #: restored every placeholder, equals the whole-text result, leaked no other value
    pseudonymized_ok: bool = True


def restorer_once(table: Pseudonyms, pieces: Sequence[str]) -> float:
    restorer = Restorer(table, "content")
    began = time.perf_counter()
    for piece in pieces:
        restorer.feed(piece)
    restorer.feed("", final=True)
    return time.perf_counter() - began


def pseudonymized_row(
    policy: CompiledPolicy, work: Workload, chunking: str, seconds: float
) -> tuple[float, float, float, bool]:
    """The stage with pseudonymization on, its added cost (median of paired differences with
    the plain stage, runs interleaved so the machine's drift hits both alike), the restorer
    alone (µs per token each), and whether the result is right."""
    table = pseudonym_table()
    plain = chunks(work.text, chunking)
    pieces = chunks(as_model_writes(work.text, table), chunking)
    released, _ = stream_once(policy, pieces, table)
    stream_once(policy, plain)
    on: list[float] = []
    added: list[float] = []
    alone: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(on) < 5 or (time.perf_counter() < deadline and len(on) < 2000):
        _, off_s = stream_once(policy, plain)
        _, on_s = stream_once(policy, pieces, table)
        on.append(on_s / len(pieces) * 1e6)
        added.append(on[-1] - off_s / len(plain) * 1e6)
        alone.append(restorer_once(table, pieces) / len(pieces) * 1e6)
    whole, _ = stream_once(policy, ["".join(pieces)], table)
    others = Workload(work.name, work.text, tuple(v for v in work.values if v not in PSEUDONYMIZED))
    restored = all(released.count(v) == work.text.count(v) for v in PSEUDONYMIZED)
    ok = restored and released == whole and not leaks(released, others) and "<EMAIL_ADDRESS_" not in released
    return statistics.median(on), statistics.median(added), statistics.median(alone), ok


def run_row(policy: CompiledPolicy, bare: CompiledPolicy, work: Workload, chunking: str, seconds: float) -> Row:
    pieces = chunks(work.text, chunking)
    pseudo = pseudonymized_row(policy, work, chunking, seconds)
    released, stage_us, streams = measure(policy, pieces, seconds)
    _, baseline_us, _ = measure(bare, pieces, seconds / 4)
    split = [per_check_once(policy, pieces) for _ in range(max(3, streams // 4))]
    checks_us = {name: statistics.median(s[name] for s in split) / len(pieces) * 1e6 for name in split[0]}
    whole, _ = stream_once(policy, [work.text])
    return Row(
        work.name,
        chunking,
        len(pieces),
        streams,
        baseline_us,
        stage_us,
        checks_us,
        max(stage_us - sum(checks_us.values()), 0.0),
        released == whole,
        leaks(released, work),
        pseudo[0],
        pseudo[1],
        pseudo[2],
        pseudo[3],
    )


def print_table(rows: Sequence[Row], policy: CompiledPolicy, out: TextIO = sys.stdout) -> None:
    names = list(rows[0].checks_us) if rows else []
    head = f"{'text':<10} {'chunks':<6} {'tokens':>6} {'no checks':>10} " + " ".join(f"{n:>9}" for n in names)
    head += f" {'scanner':>9} {'stream stage':>12} {'vs target':>9}  ok"
    print(
        f"Stream-stage checks, {policy.source} (hold-back {policy.holdback_chars}): µs per token, median of "
        f"streams; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n",
        file=out,
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        cols = " ".join(f"{r.checks_us[n]:>9.1f}" for n in names)
        ok = "yes" if r.matches_whole_text and not r.leaked_fragments else f"NO ({r.leaked_fragments} leaks)"
        print(
            f"{r.workload:<10} {r.chunking:<6} {r.tokens:>6} {r.baseline_us:>10.2f} {cols} {r.scanner_us:>9.1f} "
            f"{r.stage_us:>12.1f} {r.stage_us / TARGET_US:>8.2f}x  {ok}",
            file=out,
        )
    head = f"{'text':<10} {'chunks':<6} {'tokens':>6} {'stream stage':>12} {'pseudonymize on':>15} "
    head += f"{'added':>7} {'restorer':>9}  ok"
    print("\nWith pseudonymization on (placeholders restored before the checks): µs per token\n", file=out)
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        print(
            f"{r.workload:<10} {r.chunking:<6} {r.tokens:>6} {r.stage_us:>12.1f} {r.pseudonymized_us:>15.1f} "
            f"{r.pseudonymized_added_us:>+7.1f} {r.restorer_us:>9.2f}  {'yes' if r.pseudonymized_ok else 'NO'}",
            file=out,
        )
    goal = next((r for r in rows if (r.workload, r.chunking) == TARGET_ROW), None)
    if goal is not None:
        state = "met" if goal.stage_us <= TARGET_US else "MISSED"
        print(
            f"\n[{state}] stream-stage checks at most {TARGET_US:.0f} µs per token "
            f"({TARGET_ROW[0]} text, {TARGET_ROW[1]} tokens): {goal.stage_us:.1f} µs",
            file=out,
        )


def without_stream_checks(path: Path) -> CompiledPolicy:
    text = path.read_text(encoding="utf-8")
    head = text.split("\nstream:", 1)[0]
    return load_policy_text(head + "\n", f"{path} without stream checks")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time spent per row on the full stage")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    bare = without_stream_checks(args.policy)
    rows = [run_row(policy, bare, w, c, args.seconds) for w in workloads() for c in ("word", "char")]
    print_table(rows, policy)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "policy": str(args.policy),
        "holdback_chars": policy.holdback_chars,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "target_us_per_token": TARGET_US,
        "rows": [asdict(r) for r in rows],
    }
    args.output.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r.matches_whole_text and not r.leaked_fragments and r.pseudonymized_ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
