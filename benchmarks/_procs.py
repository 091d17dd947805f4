"""The benchmark's servers as subprocesses on loopback: start, wait until ready, weigh, stop.

Every server is a separate process so that its start-up time and memory are its own, and so
that the load generator in the benchmark process does not share an event loop with it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.simulator.server import READY_PREFIX

LOOPBACK = "127.0.0.1"
POLL_S = 0.01
STOP_GRACE_S = 10.0


class StartError(RuntimeError):
    """A server that exited or never became ready; the message ends with its log's last lines."""


@dataclass
class Server:
    name: str
    url: str
    process: asyncio.subprocess.Process
    log: Path
    #: ``time.perf_counter()`` just before the process was spawned
    spawned_at: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


async def _spawn(
    argv: Sequence[str], log: Path, env: Mapping[str, str], *, stdout_pipe: bool = False
) -> tuple[asyncio.subprocess.Process, float]:
    with log.open("wb") as sink:
        spawned_at = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout_pipe else sink,
            stderr=sink,
            env={**os.environ, **env},
            cwd=log.parent,
        )
    return process, spawned_at


async def start_simulator(argv: Sequence[str], log: Path, timeout_s: float = 30.0) -> Server:
    """Start the simulator on a free port; it prints ``READY_PREFIX + url`` once listening."""
    process, spawned_at = await _spawn(argv, log, {}, stdout_pipe=True)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout_s)
    except TimeoutError:
        line = b""
    text = line.decode(errors="replace").strip()
    if not text.startswith(READY_PREFIX):
        await stop(process)
        raise StartError(f"simulator did not start (said {text!r}):\n{log_tail(log)}")
    return Server("simulator", text.removeprefix(READY_PREFIX), process, log, spawned_at)


async def start_http_server(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log: Path,
    env: Mapping[str, str],
    ready_path: str,
    timeout_s: float,
) -> tuple[Server, float]:
    """Start a server and wait for a 200 on ``ready_path``; returns it and the seconds that took."""
    process, spawned_at = await _spawn(argv, log, env)
    server = Server(name, f"http://{LOOPBACK}:{port}", process, log, spawned_at)
    deadline = spawned_at + timeout_s
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        while True:
            if process.returncode is not None:
                raise StartError(f"{name} exited with status {process.returncode}:\n{log_tail(log)}")
            try:
                response = await client.get(server.url + ready_path)
                if response.status_code == 200:
                    return server, time.perf_counter() - spawned_at
            except httpx.TransportError:
                pass
            if time.perf_counter() > deadline:
                await stop(process)
                raise StartError(f"{name} was not ready within {timeout_s:.0f} s:\n{log_tail(log)}")
            await asyncio.sleep(POLL_S)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.extend(int(p) for p in task.read_text().split())
        except OSError:
            continue
    return found


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mib(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` and all its descendants, in MiB (Linux /proc)."""
    current = peak = 0
    todo = [pid]
    while todo:
        one = todo.pop()
        current += _status_kib(one, "VmRSS")
        peak += _status_kib(one, "VmHWM")
        todo.extend(_children(one))
    return current / 1024, peak / 1024


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        process.kill()
        await process.wait()
