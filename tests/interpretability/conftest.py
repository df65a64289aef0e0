"""Fixtures: a small real Day-0 run (see day0_data.py)."""
from __future__ import annotations

import pytest

from tests.interpretability.day0_data import build_day0


@pytest.fixture()
def day0(project_root) -> dict:
    built = build_day0(project_root / "data" / "01_raw" / "m4_hourly_sample.csv")
    return {key: value.copy() if hasattr(value, "copy") else value for key, value in built.items()}
