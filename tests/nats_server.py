"""A real ``nats-server -js`` of the test's own, on a free loopback port (Debian's package).

Missing binary: the test is skipped, except under ``CI=true``, where that fails the run
(``.ci/run`` installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from audit.settings import BrokerSettings
from audit.write.broker import connect
from tests.gateway_harness import free_port


def nats_server_binary() -> str:
    exe = shutil.which("nats-server") or ("/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
    if exe is None:
        message = "nats-server is not installed (Debian package nats-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a missing nats-server fails the run)")
        pytest.skip(message)
    return exe


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def nats_server(store: Path, port: int | None = None) -> Iterator[str]:
    """Start JetStream on ``port`` (default: a free one) with its files in ``store``; its URL."""
    exe = nats_server_binary()
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"nats-server did not start: {err}")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stream_messages(settings: BrokerSettings) -> int:
    """How many messages the stream holds (with work-queue retention: not yet acknowledged)."""

    async def count() -> int:
        nc, js = await connect(settings)
        try:
            info = await js.stream_info(settings.stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(count())
