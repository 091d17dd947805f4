"""``dashboard.launch``: the command it execs and the config check before it."""

from __future__ import annotations

from pathlib import Path

import pytest

import dashboard
from policies.yamlio import YamlModelError


def test_command_is_headless_without_usage_statistics() -> None:
    cmd = dashboard.streamlit_command(8600, "127.0.0.1")
    assert cmd[1:4] == ["-m", "streamlit", "run"]
    assert Path(cmd[4]) == Path(dashboard.__file__).with_name("server.py")  # app.py plus the cookie route
    pairs = dict(zip(cmd[5::2], cmd[6::2], strict=True))
    assert pairs["--server.headless"] == "true"
    assert pairs["--browser.gatherUsageStats"] == "false"
    assert pairs["--server.port"] == "8600" and pairs["--server.address"] == "127.0.0.1"


def test_a_bad_config_fails_before_the_server_starts(tmp_path: Path) -> None:
    config = tmp_path / "warden.yaml"
    config.write_text("model_list: []\nkeys: []\nsurprise: 1\n")
    with pytest.raises(YamlModelError) as caught:
        dashboard.launch(str(config), 8600, "127.0.0.1")
    assert any(e.line == 3 for e in caught.value.errors)
