"""What the simulator remembers between requests: recent bodies, stream counters, scripts."""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway.simulator.scripts import ScriptBook


class Outcome(enum.Enum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Counters:
    """How requests ended; `cancelled` means the client went away before the response ended."""

    requests_started: int = 0
    requests_completed: int = 0
    requests_cancelled: int = 0
    requests_failed: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_cancelled: int = 0
    streams_failed: int = 0
    in_flight: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Ticket:
    """One started request, handed back to `Stats.end` when the request ends."""

    stream: bool


class Stats:
    def __init__(self) -> None:
        self.counters = Counters()

    def begin(self, *, stream: bool) -> Ticket:
        c = self.counters
        c.requests_started += 1
        c.streams_started += stream
        c.in_flight += 1
        return Ticket(stream=stream)

    def end(self, ticket: Ticket, outcome: Outcome) -> None:
        c = self.counters
        c.in_flight -= 1
        name = outcome.value
        setattr(c, f"requests_{name}", getattr(c, f"requests_{name}") + 1)
        if ticket.stream:
            setattr(c, f"streams_{name}", getattr(c, f"streams_{name}") + 1)

    def reset(self) -> None:
        # Requests still open keep counting as in flight, so `end` never goes negative.
        self.counters = Counters(in_flight=self.counters.in_flight)


@dataclass
class SimState:
    record_limit: int = 200
    scripts: ScriptBook = field(default_factory=ScriptBook)
    stats: Stats = field(default_factory=Stats)
    requests: deque[RecordedRequest] = field(init=False)

    def __post_init__(self) -> None:
        self.requests = deque(maxlen=self.record_limit)

    def record(self, request: RecordedRequest) -> None:
        self.requests.append(request)

    def reset(self) -> None:
        self.scripts.clear()
        self.requests.clear()
        self.stats.reset()
