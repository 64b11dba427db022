"""What a test does when something it needs is not on this machine."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip the test here, fail it in CI (``CI`` set): ``make test`` installs everything
    the tests need, so there a missing part is a broken set-up, not a choice."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must provide it", pytrace=False)
    pytest.skip(reason)
