"""Real checks that misbehave on purpose, registered for tests that need a check to fail."""

from __future__ import annotations

import time

from policies.checks.base import Check, CheckOptions, CheckResult


class RaisingCheck(Check[CheckOptions]):
    """Raises on every text containing 'boom' (a check with a bug)."""

    name = "test_raises"

    def scan(self, text: str) -> CheckResult:
        if "boom" in text:
            raise RuntimeError("detector crashed")
        return CheckResult.clean()


class SlowOptions(CheckOptions):
    seconds: float = 0.5


class SlowCheck(Check[SlowOptions]):
    """Sleeps on every text containing 'slow' (a check that hangs)."""

    name = "test_slow"

    def scan(self, text: str) -> CheckResult:
        if "slow" in text:
            time.sleep(self.options.seconds)
        return CheckResult.clean()


TEST_CHECKS = {"test_raises": "tests.faulty_checks:RaisingCheck", "test_slow": "tests.faulty_checks:SlowCheck"}
