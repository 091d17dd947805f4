"""Start the LLM simulator (`python -m gateway.simulator`) in a subprocess for tests.

with running_simulator() as sim:
    client = openai.OpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)
    sim.script(match="weather", content="Sunny.", chunking="char")
    ...
    assert sim.requests()[-1].body["model"] == "sim-chat"
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.simulator.server import READY_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class RecordedRequest:
    """One request the simulator received: its path, lower-cased headers and JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class SimStats:
    """Counters from `GET /_sim/stats`; `cancelled` means the client left before the response ended."""

    requests_started: int
    requests_completed: int
    requests_cancelled: int
    requests_failed: int
    streams_started: int
    streams_completed: int
    streams_cancelled: int
    streams_failed: int
    in_flight: int


class SimulatorHandle:
    """A running simulator: its URLs and its `/_sim` controls."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url
        self.base_url = f"{root_url}/v1"
        self._http = httpx.Client(base_url=root_url, timeout=10.0)

    def script(self, **fields: Any) -> None:
        """Add a scripted reply (fields as in `gateway.simulator.schema.Script`); newest wins."""
        response = self._http.post("/_sim/script", json=fields)
        if response.status_code != 200:
            raise ValueError(f"simulator rejected script {fields}: {response.text}")

    def clear(self) -> None:
        """Forget scripts, recorded requests and counters."""
        self._http.post("/_sim/reset").raise_for_status()

    def requests(self) -> list[RecordedRequest]:
        """Requests received, oldest first (the last `record_limit` of them)."""
        response = self._http.get("/_sim/requests")
        response.raise_for_status()
        return [RecordedRequest(**item) for item in response.json()["requests"]]

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests()]

    def stats(self) -> SimStats:
        response = self._http.get("/_sim/stats")
        response.raise_for_status()
        return SimStats(**response.json())

    def wait_for_stats(self, ready: Callable[[SimStats], bool], timeout_s: float = 10.0) -> SimStats:
        """Poll `/_sim/stats` until `ready` holds (e.g. a cancelled stream was noticed); raise if never."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            if ready(stats):
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulator stats never became ready: {dataclasses.asdict(stats)}")
            time.sleep(0.02)

    def close(self) -> None:
        self._http.close()


def _wait_healthy(root_url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited with {process.returncode}")
        try:
            if httpx.get(f"{root_url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("simulator did not answer /health in time")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_simulator(*, record_limit: int = 200, shape: str = "openai") -> Iterator[SimulatorHandle]:
    """Run the simulator on a free loopback port for the duration of the block."""
    command = [sys.executable, "-m", "gateway.simulator", "--host", "127.0.0.1", "--port", "0"]
    command += ["--record-limit", str(record_limit), "--shape", shape]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True)
    handle: SimulatorHandle | None = None
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(READY_PREFIX):
            raise RuntimeError(f"simulator did not start: {line!r}")
        root_url = line.removeprefix(READY_PREFIX).strip()
        _wait_healthy(root_url, process)
        handle = SimulatorHandle(root_url)
        yield handle
    finally:
        if handle is not None:
            handle.close()
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()
