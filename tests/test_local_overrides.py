"""A user's conf/local names only freq and horizon; every other panel key still comes from conf/base."""
from __future__ import annotations

import shutil

from ts_kedro.config import _load_parameters
from ts_kedro.frequency import derive_profile


def test_local_parameters_override_key_by_key(project_root, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(project_root / "conf" / "base", conf / "base")
    (conf / "local").mkdir()
    (conf / "local" / "parameters.yml").write_text("panel:\n  freq: QS\n  horizon: 8\n")
    params = _load_parameters(str(conf), None)
    panel = params["panel"]
    assert panel["freq"] == "QS" and panel["horizon"] == 8
    assert panel["levels"] == [80, 95] and panel["season_length"] is None  # kept from conf/base
    assert params["backtest"]["n_windows"] is None  # kept from conf/base: derived
    profile = derive_profile(panel, lengths=[22, 60, 122], backtest_params=params["backtest"])
    assert profile.season_length == 4 and profile.backtest["step"] == 8 and profile.backtest["n_windows"] == 2
