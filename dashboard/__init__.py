"""The Warden compliance dashboard (Streamlit): ``launch`` starts it on a gateway config."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gateway.config import DEFAULT_CONFIG_ENV

APP = Path(__file__).with_name("app.py")
#: what ``streamlit run`` serves: ``APP`` in Streamlit's server, plus the session-cookie route
SERVER = Path(__file__).with_name("server.py")


def streamlit_command(port: int, host: str) -> list[str]:
    """``streamlit run dashboard/server.py`` (the app plus its cookie route), headless, with
    usage statistics off."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(SERVER),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def launch(config_path: str, port: int = 8501, host: str = "127.0.0.1") -> None:
    """Replace this process with the dashboard server for ``config_path`` (never returns).

    The config is checked first so a bad file fails here with its errors, not in the browser.
    The path reaches the app through ``WARDEN_CONFIG``; no credential is put on the command line.
    Exec (not a child process) so that whoever started us can stop the server with one signal.
    """
    from dashboard.settings import load_settings

    path = str(Path(config_path).expanduser().resolve())
    load_settings(path)
    env = {**os.environ, DEFAULT_CONFIG_ENV: path, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    command = streamlit_command(port, host)
    os.execve(sys.executable, command, env)  # noqa: S606 - our own interpreter and app
