"""The simulator's book of scripted replies: newest first, each used `times` times at most."""

from __future__ import annotations

from gateway.simulator.schema import Script


class ScriptBook:
    """Scripts added by tests; the newest matching one answers a request."""

    def __init__(self) -> None:
        self._scripts: list[Script] = []
        self._uses_left: list[int | None] = []

    def add(self, script: Script) -> int:
        self._scripts.append(script)
        self._uses_left.append(script.times)
        return len(self._scripts)

    def clear(self) -> None:
        self._scripts.clear()
        self._uses_left.clear()

    def active(self) -> list[Script]:
        return list(reversed(self._scripts))

    def take(self, text: str, model: str) -> Script | None:
        """The newest script matching `text` and `model`, consuming one of its uses."""
        for index in range(len(self._scripts) - 1, -1, -1):
            script = self._scripts[index]
            if not script.matches(text, model):
                continue
            left = self._uses_left[index]
            if left is not None:
                if left <= 1:
                    del self._scripts[index], self._uses_left[index]
                else:
                    self._uses_left[index] = left - 1
            return script
        return None
