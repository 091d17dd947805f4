"""The load benchmark's figures, as typed values: what the table prints and the JSON file holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from benchmarks._launch import Startup
from benchmarks._loadgen import LoadResult

Mode = Literal["streamed", "plain"]
MODES: tuple[Mode, ...] = ("streamed", "plain")


@dataclass(frozen=True)
class RunKey:
    """One measurement: streamed or not, at the run's concurrency or one request at a time."""

    mode: Mode
    concurrency: int

    @property
    def label(self) -> str:
        return f"{self.mode}@{self.concurrency}"


@dataclass(frozen=True)
class Settings:
    requests: int
    concurrency: int
    max_seconds: float
    probe_requests: int
    probe_max_seconds: float
    reply_tokens: int
    prompt_chars: int
    audit: bool
    cpus: int
    #: 1-minute load average when the run started: other work on the machine skews every figure
    load_average: float
    python: str
    litellm: str


@dataclass
class VariantResult:
    name: str
    label: str
    policy: str | None
    error: str | None = None
    startup: Startup | None = None
    rss_mib: float | None = None
    peak_rss_mib: float | None = None
    runs: dict[str, LoadResult] = field(default_factory=dict)


@dataclass
class BenchResult:
    settings: Settings
    variants: list[VariantResult]

    def run(self, variant: str, key: RunKey) -> LoadResult | None:
        for result in self.variants:
            if result.name == variant:
                return result.runs.get(key.label)
        return None

    def variant(self, name: str) -> VariantResult | None:
        return next((v for v in self.variants if v.name == name), None)
