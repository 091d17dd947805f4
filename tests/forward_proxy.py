"""A real HTTP forward proxy for tests: Debian's tinyproxy, started on a free loopback port.

tinyproxy is what many corporate networks run (small, HTTP/1.1, CONNECT tunnels, Basic
auth). ``.ci/run`` installs it when it is missing; outside CI a test that needs it is skipped
when it is not installed, under CI it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ForwardProxy:
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def tinyproxy(folder: Path, *, basic_auth: tuple[str, str] | None = None) -> Iterator[ForwardProxy]:
    binary = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None)
    if binary is None:
        message = "tinyproxy is not installed (apt-get install tinyproxy; .ci/run does this)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 600",
        "MaxClients 512",
        "Allow 127.0.0.1",
        "LogLevel Connect",
    ]
    if basic_auth:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    config = folder / f"tinyproxy-{port}.conf"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log = folder / f"tinyproxy-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {process.returncode}: {log.read_text(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("tinyproxy did not listen in time") from None
                time.sleep(0.05)
        yield ForwardProxy(f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
