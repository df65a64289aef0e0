"""End to end against a real `mlflow server` (SQLite backend, proxied artifacts): register, promote, roll back."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from mlflow import MlflowClient

from .mlflow_servers import tracking_server as running_tracking_server
from ts_kedro.console import main as cli_main
from ts_kedro.registry import registry

MODEL = "ts_kedro_panel_test"


@pytest.fixture
def tracking_server(tmp_path):
    with running_tracking_server(tmp_path) as url:
        yield url


@pytest.mark.slow
def test_register_promote_by_margin_and_roll_back_on_a_real_server(tracking_server, naive_panel_model, tmp_path, capsys):
    history_path = tmp_path / "reporting" / "promotion_history.jsonl"
    client = MlflowClient(tracking_server)
    experiment_id = client.create_experiment("registry_test")

    def register(tag: str) -> int:
        run = client.create_run(experiment_id)
        return registry.log_and_register(
            naive_panel_model, MODEL, run_id=run.info.run_id, tags={"candidate": tag}, tracking_uri=tracking_server
        )

    def promote(version, champion_score, challenger_score):
        return registry.promote_if_better(
            MODEL, version, champion_score, challenger_score, margin=0.02, metric="smape",
            history_path=history_path, tracking_uri=tracking_server,
        )

    assert not registry.champion_exists(MODEL, tracking_server)  # not even registered yet
    first = register("first")
    assert not registry.champion_exists(MODEL, tracking_server)

    # the scores are inputs of the decision (the caller computes them on the same recent windows);
    # fixed numbers here make each branch of the rule explicit
    decision = promote(first, None, 12.0)
    assert decision["promoted"] and "first champion" in decision["reason"]
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == first

    second = register("second")
    not_enough = promote(second, 12.0, 11.9)  # 0.83 % better: below the 2 % margin
    assert not not_enough["promoted"]
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == first
    assert registry.get_alias_version(MODEL, "challenger", tracking_server) == second

    by_margin = promote(second, 12.0, 11.5)  # 4.2 % better
    assert by_margin["promoted"] and by_margin["champion_version_before"] == first
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == second
    assert registry.get_alias_version(MODEL, "challenger", tracking_server) is None

    third = register("third")
    assert cli_main(["registry", "promote", "--name", MODEL, "--version", str(third), "--champion-score", "11.5",
                     "--challenger-score", "13.0", "--metric", "smape", "--history-path", str(history_path),
                     "--tracking-uri", tracking_server]) == 0  # a worse candidate is a decision, not a failure
    assert "stays challenger" in capsys.readouterr().out
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == second

    rolled = registry.rollback(MODEL, history_path=history_path, tracking_uri=tracking_server)
    assert (rolled["champion_version_before"], rolled["champion_version_after"]) == (second, first)
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == first
    assert registry.get_alias_version(MODEL, "challenger", tracking_server) == third

    # a second rollback would go before the first champion: a clear error, the alias stays
    assert cli_main(["registry", "rollback", "--name", MODEL, "--tracking-uri", tracking_server,
                     "--history-path", str(history_path)]) == 1
    assert "nothing earlier to roll back to" in capsys.readouterr().err
    assert registry.get_alias_version(MODEL, "champion", tracking_server) == first

    # the history file is append-only and agrees with the registry tags
    lines = [json.loads(line) for line in history_path.read_text().splitlines()]
    assert [(r["event"], r["promoted"], r["challenger_version"]) for r in lines] == [
        ("promotion", True, first), ("promotion", False, second), ("promotion", True, second),
        ("promotion", False, third), ("rollback", False, None),
    ]
    assert [r["sequence"] for r in lines] == [1, 2, 3, 4, 5]
    assert lines[3]["relative_improvement"] < 0 and lines[3]["champion_version_after"] == second
    assert lines[2]["champion_score"] == 12.0 and lines[2]["challenger_score"] == 11.5 and lines[2]["margin"] == 0.02
    assert registry.read_history(MODEL, tracking_server) == lines
    demoted_tags = client.get_model_version(MODEL, str(second)).tags
    assert demoted_tags["candidate"] == "second"  # the demoted version keeps its tags
    assert {k for k in demoted_tags if k.startswith("promotion_history.")} == {
        "promotion_history.000002", "promotion_history.000003", "promotion_history.000004", "promotion_history.000005"
    }

    # the champion loads back as the same model
    champion = registry.load_champion(MODEL, tracking_server)
    pd.testing.assert_frame_equal(champion.predict(horizon=12), naive_panel_model.predict(horizon=12))

    assert cli_main(["registry", "status", "--name", MODEL, "--tracking-uri", tracking_server]) == 0
    status = capsys.readouterr().out
    assert f"champion: version {first}" in status and f"challenger: version {third}" in status
    assert cli_main(["registry", "history", "--name", MODEL, "--tracking-uri", tracking_server]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    assert cli_main(["registry", "status", "--name", "no_such_model", "--tracking-uri", tracking_server]) == 1
    assert "does not exist" in capsys.readouterr().err
