"""Fast checks of the pyfunc request handling and of the code shipped with a logged model (no server)."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from ts_kedro.registry.pyfunc import _root_modules, copy_code_closure, forecast_request


def test_request_rows_map_to_per_series_horizons_and_levels(naive_panel_model):
    daily, weekly, _ = naive_panel_model.series_ids
    request = pd.DataFrame({"series_id": [weekly, daily], "horizon": [2, 5], "levels": [[95], [95]]})
    answer = forecast_request(naive_panel_model, request)
    expected = naive_panel_model.predict([weekly, daily], horizon={weekly: 2, daily: 5}, levels=[95])
    pd.testing.assert_frame_equal(answer, expected)


@pytest.mark.parametrize(
    "make_request, message",
    [
        (lambda ids: pd.DataFrame({"series_id": ids[:1]}), "request lacks column(s) ['horizon']"),
        (lambda ids: pd.DataFrame({"series_id": [], "horizon": []}), "request has no rows"),
        (lambda ids: pd.DataFrame({"series_id": [ids[0], ids[0]], "horizon": [1, 2]}), "more than once"),
        (lambda ids: pd.DataFrame({"series_id": ids[:2], "horizon": [1, 1], "levels": [[80], [95]]}),
         "levels differ between request rows"),
        (lambda ids: pd.DataFrame({"series_id": ["H_UNKNOWN"], "horizon": [3]}), "unknown series_id 'H_UNKNOWN'"),
        (lambda ids: pd.DataFrame({"series_id": ids[:1], "horizon": [-1]}), "got -1 for series_id"),
    ],
)
def test_bad_requests_become_invalid_parameter_value(naive_panel_model, make_request, message):
    with pytest.raises(MlflowException) as error:
        forecast_request(naive_panel_model, make_request(naive_panel_model.series_ids))
    assert error.value.error_code == "INVALID_PARAMETER_VALUE"  # -> HTTP 400 in `mlflow models serve`
    assert message in error.value.message


def test_shipped_code_is_the_import_closure_of_the_families_and_wrapper(naive_panel_model, tmp_path):
    package = copy_code_closure(_root_modules(naive_panel_model), tmp_path)
    shipped = sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))
    needed = {
        "__init__.py", "forecasters/__init__.py", "forecasters/_per_series.py", "forecasters/base.py",
        "forecasters/seasonal_naive.py", "registry/__init__.py", "registry/panel_model.py", "registry/pyfunc.py",
    }
    assert needed <= set(shipped)
    # nothing the served model does not import: no pipelines, no registry client, no unused families
    assert not [f for f in shipped if f.startswith("pipelines/") or f in {"registry/registry.py", "forecasters/lstm.py"}]
