"""MLflow pyfunc wrapper of SelectedPanelModel: request frame in, long forecast frame out, bad input as HTTP 400.

Request columns (one row per series):

- ``series_id`` (str, required): a series the model was selected for; each series at most once.
- ``horizon`` (int, required): steps ahead for that row's series, 1..``max_horizon``; rows may differ.
- ``levels`` (list of int, optional): interval levels, a subset of the model's levels. When given it must
  be the same list on every row that has it (one column layout per response); absent or null means all.

- ``recent_timestamps`` and ``recent_values`` (lists, optional, together): observations of that row's series
  that arrived after the model was trained (timestamps as ISO text on the model's grid, without a time zone;
  finite numbers). The model is conditioned on them without refitting (``Forecaster.update``: the fitted
  parameters, the newest state) and the forecast starts after the last one, as the inference pipeline's does
  on the same history. Points at or before the model's data end for that series are skipped (the model has
  them); the rest must continue its grid without gaps. At most ``TS_KEDRO_SERVE_MAX_RECENT_OBSERVATIONS``
  (default 10000) observations per request. Rows without them are answered from the trained data end.

- ``recent_covariates`` and ``future_covariates`` (mappings, optional), for a model whose families read covariates
  (``covariates_read``: the union of the families' ``known_covariates`` and ``observed_covariates``):

  - ``recent_covariates``: ``{covariate: list of values aligned with recent_values}``, every covariate the model
    reads (known in advance and observed), on every row with recent observations.
  - ``future_covariates``: ``{known-in-advance covariate: list of planned values}`` for the steps right after the
    forecast origin (the last recent observation, or the model's data end for that series), at least ``horizon``
    values each (the rest is ignored), every known-in-advance covariate. Required on a row with recent
    observations (the stored plan no longer covers the new horizon); on a row without them it replaces the
    stored plan for that series.

  Sent as JSON objects (``dataframe_records``/``dataframe_split``) or as dicts in a DataFrame's cells: the
  signature declares both columns ``any``, which MLflow passes through unchanged. A model that reads no
  covariates refuses them (400). The row is answered as the inference pipeline answers the same history and plan
  (``SelectedPanelModel.update`` on the observations with their covariates, ``with_future_covariates`` on the
  plan, ``predict``)::

    {"dataframe_records": [{"series_id": "Agency_01/SKU_01", "horizon": 2,
      "recent_timestamps": ["2017-01-01", "2017-02-01"], "recent_values": [40.93, 45.58],
      "recent_covariates": {"price_actual": [1402.35, 1407.88], "discount_in_percent": [12.36, 13.14]},
      "future_covariates": {"price_actual": [1400.58, 1271.65], "discount_in_percent": [12.74, 20.28]}}]}
    -> {"predictions": [
         {"series_id": "Agency_01/SKU_01", "timestamp": "2017-03-01T00:00:00", "mean": 54.0, ..., "model": "arima"},
         {"series_id": "Agency_01/SKU_01", "timestamp": "2017-04-01T00:00:00", "mean": 53.3, ..., "model": "arima"}]}

The response has one row per series and step: ``series_id, timestamp, mean, lo-L, hi-L..., model``.
A request has at most one row per series the model serves; a longer one is refused at once (400).

Following an alias while serving: with ``TS_KEDRO_SERVE_FOLLOW=models:/<name>@<alias>`` (and
``MLFLOW_TRACKING_URI``) in the server's environment, a background thread asks the registry every
``TS_KEDRO_SERVE_RELOAD_SECONDS`` (default 30) which version the alias names and, when it names another
model than the one loaded, loads that version and swaps it in. A request is answered by one model
from start to end; a failed reload is logged and the loaded model keeps serving.
"""
from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import logging
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

import ts_kedro
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, ForecasterError
from ts_kedro.registry.panel_model import (
    InferenceInputError,
    SelectedPanelModel,
    _valid_horizon,
    panel_model_input_example,
    panel_model_signature,
)

logger = logging.getLogger(__name__)

ARTIFACT_KEY = "panel_model"
ARTIFACT_FILE = "panel_model.pkl"
MODEL_NAME_IN_RUN = "panel_model"
_PACKAGE = "ts_kedro"
REQUEST_COLUMNS = (SERIES_ID, "horizon")
FOLLOW_ENV = "TS_KEDRO_SERVE_FOLLOW"
RELOAD_SECONDS_ENV = "TS_KEDRO_SERVE_RELOAD_SECONDS"
DEFAULT_RELOAD_SECONDS = 30.0
RECENT_COLUMNS = ("recent_timestamps", "recent_values")
RECENT_COVARIATES = "recent_covariates"
FUTURE_COVARIATES = "future_covariates"
MAX_RECENT_ENV = "TS_KEDRO_SERVE_MAX_RECENT_OBSERVATIONS"
DEFAULT_MAX_RECENT = 10_000  # not a period: a request-size bound (each point is one filter step per family)
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^@/]+)$")
# Distributions the families may need at load time; pinned at their installed versions so a
# virtualenv/conda env manager rebuilds a compatible environment (`--env-manager local` ignores them).
_RUNTIME_DISTRIBUTIONS = ("mlflow", "pandas", "numpy", "scipy", "joblib", "tqdm", "statsmodels", "prophet", "torch")


def _invalid(message: str) -> MlflowException:
    # `mlflow models serve` answers an MlflowException with its own message and the code's HTTP status
    # (INVALID_PARAMETER_VALUE -> 400); any other exception becomes a generic "unexpected error" text
    # that hides what is wrong with the request
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class PanelForecastModel(mlflow.pyfunc.PythonModel):
    """Loads the pickled SelectedPanelModel artifact and answers forecast requests."""

    def load_context(self, context) -> None:
        artifact = Path(context.artifacts[ARTIFACT_KEY])
        with open(artifact, "rb") as handle:
            # warm_up: every forecast is computed once here, so requests only slice them
            self.panel_model: SelectedPanelModel = pickle.load(handle).warm_up()
        logger.info("loaded %r", self.panel_model)
        self.follower = AliasFollower.from_env(self, _logged_model_id(artifact))

    # pd.DataFrame is a hint MLflow does not infer a schema from: the explicit signature stays in charge
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return forecast_request(self.panel_model, model_input)  # one attribute read: one model per request

    def __getstate__(self) -> dict:
        # only the class is pickled at log time (the model itself is the artifact); never a thread
        return {}


def _logged_model_id(artifact: Path) -> str | None:
    """The MLflow model id in the MLmodel file next to the loaded artifact (``<model>/artifacts/<file>``)."""
    try:
        import yaml

        with open(artifact.parent.parent / "MLmodel", encoding="utf-8") as handle:
            return yaml.safe_load(handle).get("model_id")
    except (OSError, ValueError, AttributeError):
        return None


class AliasFollower:
    """Polls ``models:/<name>@<alias>`` and swaps a newly aliased version into the serving model."""

    def __init__(self, target: PanelForecastModel, name: str, alias: str, loaded_model_id: str | None,
                 interval: float, tracking_uri: str | None = None):
        self.target, self.name, self.alias, self.interval = target, name, alias, interval
        self.loaded_model_id = loaded_model_id
        self.loaded_version: int | None = None
        self.tracking_uri = tracking_uri
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"follow-{name}@{alias}", daemon=True)

    @classmethod
    def from_env(cls, target: PanelForecastModel, loaded_model_id: str | None) -> "AliasFollower | None":
        uri = os.environ.get(FOLLOW_ENV, "").strip()
        if not uri:
            return None
        match = _ALIAS_URI.match(uri)
        if match is None:
            raise _invalid(f"{FOLLOW_ENV}={uri!r} must look like models:/<name>@<alias>")
        raw = os.environ.get(RELOAD_SECONDS_ENV, str(DEFAULT_RELOAD_SECONDS))
        try:
            interval = float(raw)
        except ValueError:
            interval = -1.0
        if not interval > 0:
            raise _invalid(f"{RELOAD_SECONDS_ENV}={raw!r} must be a number of seconds > 0")
        follower = cls(target, match["name"], match["alias"], loaded_model_id, interval)
        follower.thread.start()
        logger.info("following %s: checking every %.0f s", uri, interval)
        return follower

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as exc:  # registry down, version deleted: keep serving what is loaded
                logger.warning("could not reload %s@%s (still serving the loaded model): %s", self.name, self.alias, exc)
            self._stop.wait(self.interval)

    def check(self) -> bool:
        """Reload when the alias names another model than the loaded one; True when a new model was swapped in."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        version = client.get_model_version_by_alias(self.name, self.alias)
        model_id = getattr(version, "model_id", None)
        same = (model_id is not None and model_id == self.loaded_model_id) or (
            self.loaded_version is not None and int(version.version) == self.loaded_version
        )
        if same:
            self.loaded_version = int(version.version)
            return False
        started = time.monotonic()
        model = load_registered_panel_model(client, self.name, int(version.version)).warm_up()
        self.target.panel_model = model  # atomic swap: requests in flight keep the object they read
        self.loaded_model_id, self.loaded_version = model_id, int(version.version)
        logger.info("%s@%s now serves version %s (%r), loaded in %.1f s",
                    self.name, self.alias, version.version, model, time.monotonic() - started)
        return True


def load_registered_panel_model(client, name: str, version: int) -> SelectedPanelModel:
    """The pickled SelectedPanelModel of ``name`` version ``version``: only the pickle is downloaded."""
    model_root = client.get_model_version_download_uri(name, str(version)).rstrip("/")
    with tempfile.TemporaryDirectory(prefix="panel_model_") as scratch:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{model_root}/artifacts/{ARTIFACT_FILE}", dst_path=scratch, tracking_uri=client.tracking_uri
        )
        with open(local, "rb") as handle:
            return pickle.load(handle)


def forecast_request(panel_model: SelectedPanelModel, request) -> pd.DataFrame:
    """Answer one request frame (see module docstring); every input fault raises an MlflowException (400)."""
    if isinstance(request, Mapping):
        request = pd.DataFrame(request)
    if not isinstance(request, pd.DataFrame):
        raise _invalid(f"request must be a table with columns {list(REQUEST_COLUMNS)}, got {type(request).__name__}")
    missing = [column for column in REQUEST_COLUMNS if column not in request.columns]
    if missing:
        raise _invalid(f"request lacks column(s) {missing}; send columns series_id (str), horizon (int), optional levels")
    if request.empty:
        raise _invalid("request has no rows: send one row per series to forecast")
    if len(request) > len(panel_model.choice):  # checked first: an oversized request must fail fast
        raise _invalid(
            f"request has {len(request)} rows but this model serves {len(panel_model.choice)} series: "
            "send at most one row per series"
        )
    if request[SERIES_ID].isna().any():
        rows = request.index[request[SERIES_ID].isna()].tolist()[:10]
        raise _invalid(f"series_id is missing on request row(s) {rows}")

    series_ids = request[SERIES_ID].astype(str).tolist()
    horizons = dict(zip(series_ids, request["horizon"].tolist()))
    try:
        levels = _request_levels(request)
        if len(horizons) != len(series_ids):
            duplicated = sorted(s for s, n in Counter(series_ids).items() if n > 1)[:10]
            raise InferenceInputError(f"series_id requested more than once: {duplicated}; ask for each series once")
        known, observed = covariates_read(panel_model)
        _refuse_covariates_to_a_model_without(request, known, observed)
        recent = _recent_observations(request, series_ids, [*known, *(c for c in observed if c not in known)])
        plans = _future_plans(request, series_ids, known, panel_model.max_horizon)
        fresh_ids = list(dict.fromkeys(recent[SERIES_ID]))
        if known:
            _require_plans(request, series_ids, fresh_ids, plans, known)
        fresh = set(fresh_ids)
        conditioned = [s for s in series_ids if s in fresh or s in plans]
        if not conditioned:
            return panel_model.predict(series_ids, horizon=horizons, levels=levels)
        unknown = [s for s in conditioned if s not in panel_model.choice]
        if unknown:
            raise InferenceInputError(f"unknown series_id {unknown[:10]} with recent observations or covariates: this "
                                      f"model serves {len(panel_model.choice)} series, e.g. {panel_model.series_ids[:5]}")
        # only the request's series are conditioned; the loaded model is never changed
        updated = panel_model.restricted_to(conditioned)
        if not recent.empty:
            updated = updated.update(recent, refit_on_failure=False)
        parts = _conditioned_forecasts(updated, conditioned, horizons, plans, known, levels)
        conditioned_set = set(conditioned)
        stale_ids = [s for s in series_ids if s not in conditioned_set]
        if stale_ids:
            parts.append(panel_model.predict(stale_ids, horizon={s: horizons[s] for s in stale_ids}, levels=levels))
        order = {s: i for i, s in enumerate(series_ids)}
        result = pd.concat(parts, ignore_index=True)
        return result.sort_values(SERIES_ID, key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
    except (InferenceInputError, ForecasterError) as exc:
        # a ForecasterError here comes from the request's own data (e.g. a plan a family cannot read): a 400
        raise _invalid(str(exc)) from exc


def covariates_read(panel_model: SelectedPanelModel) -> tuple[list[str], list[str]]:
    """The covariates the model's families read: (known in advance, observed), each a union over the families."""
    known, observed = {}, {}
    for model in panel_model.family_models.values():
        if model.supports_covariates:
            known.update(dict.fromkeys(model.known_covariates))
            observed.update(dict.fromkeys(model.observed_covariates))
    return list(known), [name for name in observed if name not in known]


def _conditioned_forecasts(updated: SelectedPanelModel, conditioned: list[str], horizons: dict, plans: dict,
                           known: list[str], levels) -> list[pd.DataFrame]:
    """Forecasts of the conditioned series; with a plan, one group per horizon, each forecasting that far only.

    A family forecasts all its series at the model's ``max_horizon`` (the h-step forecast is the head of it), so
    a plan of ``horizon`` values must meet a model whose ``max_horizon`` is that horizon.
    """
    if not known:
        return [updated.predict(conditioned, horizon={s: horizons[s] for s in conditioned}, levels=levels)]
    checked = updated._resolve_horizons(conditioned, {s: horizons[s] for s in conditioned})  # 400 on a bad one
    frame = _plan_frame(updated, plans)
    groups: dict[int, list[str]] = {}
    for series_id in conditioned:
        groups.setdefault(checked[series_id], []).append(series_id)
    parts = []
    for horizon, ids in groups.items():
        view = updated.restricted_to(ids).with_future_covariates(frame[frame[SERIES_ID].isin(ids)])
        view = view.derived(max_horizon=horizon)
        parts.append(view.predict(ids, horizon=horizon, levels=levels))
    return parts


def _plan_frame(updated: SelectedPanelModel, plans: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """The plans as ``series_id, timestamp, <known covariates>`` on the model's grid, from each series' origin."""
    frames = []
    fitted = [(m, set(m.series_ids_)) for m in updated.family_models.values()]
    for series_id, values in plans.items():
        families = [m for m, ids in fitted if series_id in ids]
        origin = max(m.last_timestamp_[series_id] for m in families)
        steps = len(next(iter(values.values())))
        stamps = pd.date_range(origin, periods=steps + 1, freq=families[0].freq)[1:]
        frames.append(pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: stamps, **values}))
    return pd.concat(frames, ignore_index=True)


def _sent(value) -> bool:
    """A covariate cell that carries something (null and an empty mapping carry nothing)."""
    return not _is_null(value) and not (isinstance(value, Mapping) and not value)


def _refuse_covariates_to_a_model_without(request: pd.DataFrame, known: list[str], observed: list[str]) -> None:
    if known or observed:
        return
    for column in (RECENT_COVARIATES, FUTURE_COVARIATES):
        if column in request.columns:
            rows = [row for row, value in enumerate(request[column].tolist()) if _sent(value)]
            if rows:
                raise InferenceInputError(
                    f"request row {rows[0]} (series_id {str(request[SERIES_ID].iloc[rows[0]])!r}) sends {column} but "
                    "this model reads no covariates (none of its families uses any): leave recent_covariates and "
                    "future_covariates out")


def _covariate_mapping(value, row: int, series_id: str, column: str, names: list[str], unknown_note: str,
                       lacking_note: str) -> Mapping:
    """One row's ``column`` cell checked: a mapping naming exactly the covariates ``names``."""
    where = f"request row {row} (series_id {series_id!r})"
    if not isinstance(value, Mapping):
        raise InferenceInputError(f"{where}: {column} must be a mapping {{covariate name: list of numbers}}, got "
                                  f"{type(value).__name__}")
    unknown = [name for name in value if name not in names]
    if unknown:
        raise InferenceInputError(f"{where}: {column} name {unknown} that this model does not read{unknown_note}")
    lacking = [name for name in names if name not in value]
    if lacking:
        raise InferenceInputError(f"{where}: {column} lack covariate(s) {lacking}: {lacking_note}")
    return value


def _covariate_values(values, row: int, series_id: str, column: str, name, length: int, exact: bool) -> np.ndarray:
    """One covariate's list, checked: a list of finite numbers of ``length`` values (at least, unless ``exact``)."""
    where = f"request row {row} (series_id {series_id!r}): {column}[{name!r}]"
    as_list = _as_list(values)
    if as_list is None:
        raise InferenceInputError(f"{where} must be a list of numbers, got {type(values).__name__}")
    if (len(as_list) != length) if exact else (len(as_list) < length):
        wanted = (f"exactly {length} values, one per recent_values entry" if exact
                  else f"at least {length} values (the row's horizon), one per step after the forecast origin")
        raise InferenceInputError(f"{where} has {len(as_list)} values: send {wanted}")
    as_list = as_list[:length]
    bad = [v for v in as_list if isinstance(v, (bool, str, bytes)) or not _finite_number(v)]
    if bad:
        raise InferenceInputError(f"{where} must hold finite numbers, got {bad[:3]}")
    return np.asarray(as_list, float)


def _row_recent_covariates(raw, row: int, series_id: str, names: list[str], length: int) -> dict[str, np.ndarray]:
    """The checked ``recent_covariates`` of one row that has recent observations (``names``: what the model reads)."""
    if not names:
        return {}
    if not _sent(raw):
        raise InferenceInputError(
            f"request row {row} (series_id {series_id!r}): this model reads covariates {names}: with recent "
            f"observations send recent_covariates, a mapping {{covariate: list of values aligned with recent_values}}")
    mapping = _covariate_mapping(raw, row, series_id, RECENT_COVARIATES, names, f"; it reads {names}",
                                 f"send every covariate the model reads ({names}), one value per recent_values entry")
    return {name: _covariate_values(mapping[name], row, series_id, RECENT_COVARIATES, name, length, exact=True)
            for name in names}


def _future_plans(request: pd.DataFrame, series_ids: list[str], known: list[str],
                  max_horizon: int) -> dict[str, dict[str, np.ndarray]]:
    """``{series_id: {covariate: planned values}}`` of the rows that send ``future_covariates``, checked; each plan
    holds the row's ``horizon`` first values (the steps right after the forecast origin)."""
    if FUTURE_COVARIATES not in request.columns:
        return {}
    plans = {}
    for row, (series_id, raw, horizon) in enumerate(zip(series_ids, request[FUTURE_COVARIATES].tolist(),
                                                        request["horizon"].tolist())):
        if not _sent(raw):
            continue
        if not known:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): future_covariates sent, but this "
                                      "model reads no covariates known in advance (only observed ones, used lagged): "
                                      "send them in recent_covariates only")
        mapping = _covariate_mapping(raw, row, series_id, FUTURE_COVARIATES, known,
                                     f" as known in advance; it plans {known}",
                                     f"send the plan of every covariate known in advance ({known}), at least horizon "
                                     "values each")
        if not _valid_horizon(horizon, max_horizon):
            continue  # the horizon check names it
        plans[series_id] = {name: _covariate_values(mapping[name], row, series_id, FUTURE_COVARIATES, name,
                                                    int(horizon), exact=False) for name in known}
    return plans


def _require_plans(request: pd.DataFrame, series_ids: list[str], fresh_ids: list[str], plans: dict,
                   known: list[str]) -> None:
    """A row with recent observations moves the forecast origin past the stored plan: it must send a new one."""
    sent = set()
    if FUTURE_COVARIATES in request.columns:
        sent = {s for s, raw in zip(series_ids, request[FUTURE_COVARIATES].tolist()) if _sent(raw)}
    for series_id in fresh_ids:
        if series_id not in plans and series_id not in sent:
            row = series_ids.index(series_id)
            raise InferenceInputError(
                f"request row {row} (series_id {series_id!r}): this model reads covariates known in advance {known}: "
                "with recent observations send future_covariates, a mapping {covariate: list of at least horizon "
                "planned values for the steps after the last recent observation}")


def _recent_observations(request: pd.DataFrame, series_ids: list[str], covariates: list[str] = ()) -> pd.DataFrame:
    """The request's recent observations as a long frame (``series_id, timestamp, value, <covariates>``), validated.

    ``covariates``: the covariates the model reads; every row with recent observations sends them
    (``recent_covariates``), aligned with its ``recent_values``.
    """
    covariates = list(covariates)
    empty = pd.DataFrame(columns=[SERIES_ID, TIMESTAMP, VALUE, *covariates])
    present = [column for column in RECENT_COLUMNS if column in request.columns]
    raw_covariates = (request[RECENT_COVARIATES].tolist() if RECENT_COVARIATES in request.columns
                      else [None] * len(request))
    if not present:
        _refuse_orphan_covariates(raw_covariates, series_ids, [None] * len(request))
        return empty
    if len(present) == 1:
        raise InferenceInputError(f"request has {present[0]} without {set(RECENT_COLUMNS).difference(present).pop()}: "
                                  "send both lists, the same length, or neither")
    limit = _max_recent()
    frames, total = [], 0
    all_stamps = request[RECENT_COLUMNS[0]].tolist()
    _refuse_orphan_covariates(raw_covariates, series_ids, all_stamps)
    for row, (series_id, stamps, values, raw) in enumerate(zip(series_ids, all_stamps,
                                                               request[RECENT_COLUMNS[1]].tolist(), raw_covariates)):
        if _is_null(stamps) and _is_null(values):
            continue
        if _is_null(stamps) or _is_null(values):
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_timestamps and "
                                      "recent_values go together; send both or neither")
        stamps, values = _as_list(stamps), _as_list(values)
        if stamps is None or values is None or len(stamps) != len(values) or not stamps:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_timestamps and "
                                      "recent_values must be non-empty lists of the same length")
        total += len(stamps)
        if total > limit:
            raise InferenceInputError(f"request carries more than {limit} recent observations ({MAX_RECENT_ENV}); "
                                      "send fewer, or only those after the model's data end")
        try:
            parsed = pd.DatetimeIndex(pd.to_datetime(stamps))
        except (ValueError, TypeError) as exc:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_timestamps must be ISO "
                                      f"date-times: {exc}") from exc
        if parsed.tz is not None:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_timestamps carry a time "
                                      "zone; send them as the training data does, without one")
        if not parsed.is_monotonic_increasing or parsed.has_duplicates:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_timestamps must be "
                                      "strictly increasing")
        bad = [v for v in values if isinstance(v, (bool, str, bytes)) or not _finite_number(v)]
        if bad:
            raise InferenceInputError(f"request row {row} (series_id {series_id!r}): recent_values must be finite "
                                      f"numbers, got {bad[:3]}")
        covariate_values = _row_recent_covariates(raw, row, series_id, covariates, len(values))
        frames.append(pd.DataFrame({SERIES_ID: series_id, TIMESTAMP: parsed, VALUE: np.asarray(values, float),
                                    **covariate_values}))
    if not frames:
        return empty
    return pd.concat(frames, ignore_index=True)


def _refuse_orphan_covariates(raw_covariates: list, series_ids: list[str], stamps: list) -> None:
    for row, (raw, row_stamps) in enumerate(zip(raw_covariates, stamps)):
        if _sent(raw) and _is_null(row_stamps):
            raise InferenceInputError(f"request row {row} (series_id {series_ids[row]!r}): recent_covariates without "
                                      "recent observations; send them with recent_timestamps and recent_values, "
                                      "aligned with the values")


def _as_list(value) -> list | None:
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return list(value)
    return None


def _finite_number(value) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def _max_recent() -> int:
    raw = os.environ.get(MAX_RECENT_ENV, str(DEFAULT_MAX_RECENT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise _invalid(f"{MAX_RECENT_ENV}={raw!r} must be a positive integer")
    return limit


def _request_levels(request: pd.DataFrame) -> list[int] | None:
    if "levels" not in request.columns:
        return None
    given = [value for value in request["levels"].tolist() if not _is_null(value)]
    if not given:
        return None
    as_lists = [[value] if np.isscalar(value) else list(value) for value in given]
    first = as_lists[0]
    if any(sorted(levels) != sorted(first) for levels in as_lists[1:]):
        raise InferenceInputError(
            f"levels differ between request rows ({as_lists[:3]}...): send the same levels on every row"
        )
    return first


def _is_null(value) -> bool:
    return value is None or (np.isscalar(value) and pd.isna(value))


def _pip_requirements() -> list[str]:
    requirements = []
    for distribution in _RUNTIME_DISTRIBUTIONS:
        try:
            requirements.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return requirements


def log_panel_model(
    panel_model: SelectedPanelModel,
    registered_model_name: str | None = None,
    name: str = MODEL_NAME_IN_RUN,
) -> mlflow.models.model.ModelInfo:
    """Log ``panel_model`` as a pyfunc model in the active run (and register it when a name is given).

    The ts_kedro modules the model needs (this wrapper, the family classes and what they import) are
    shipped with it (``code_paths``), so a fresh serving process runs the code the model was selected
    with and loads whether or not (and whichever version of) ts_kedro is installed there. In a process
    that already imported ts_kedro, the imported package wins (Python resolves submodules through the
    package's own path). A family outside ts_kedro (custom model by dotted path) must be importable
    where the model is served.
    """
    if not isinstance(panel_model, SelectedPanelModel):
        raise TypeError(f"expected a SelectedPanelModel, got {type(panel_model).__name__}")
    with tempfile.TemporaryDirectory(prefix="panel_model_") as scratch:
        package_dir = copy_code_closure(_root_modules(panel_model), Path(scratch) / "code")
        artifact = Path(scratch) / ARTIFACT_FILE
        with open(artifact, "wb") as handle:
            pickle.dump(panel_model, handle, protocol=pickle.HIGHEST_PROTOCOL)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=PanelForecastModel(),
            artifacts={ARTIFACT_KEY: str(artifact)},
            code_paths=[str(package_dir)],
            signature=panel_model_signature(panel_model),
            input_example=panel_model_input_example(panel_model),
            pip_requirements=_pip_requirements(),
            registered_model_name=registered_model_name,
            metadata=_jsonable(panel_model.metadata),
        )


def _root_modules(panel_model: SelectedPanelModel) -> set[str]:
    roots = {__name__}
    for model in panel_model.family_models.values():
        roots.update(cls.__module__ for cls in type(model).__mro__)
    return {module for module in roots if module == _PACKAGE or module.startswith(_PACKAGE + ".")}


def copy_code_closure(root_modules: set[str], destination: Path) -> Path:
    """Copy ``root_modules`` and every ts_kedro module they import (transitively, with the packages'
    ``__init__``) under ``destination/ts_kedro``; return that package folder.

    Shipping only this closure rather than the whole package keeps pipelines and notebooks-sized code
    out of each model version (every file is one artifact upload to a tracking server).
    """
    package_root = Path(ts_kedro.__file__).resolve().parent
    pending, seen = sorted(root_modules), set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        source = _module_file(module)
        if source is None:
            continue
        parts = module.split(".")
        pending.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages' __init__
        pending.extend(_imported_package_modules(source, module))
        target = destination / source.relative_to(package_root.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination / _PACKAGE


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin).resolve()


def _imported_package_modules(source: Path, module: str) -> list[str]:
    """ts_kedro modules named by the import statements of ``source`` (``from a import b`` may name a module b)."""
    is_package = source.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    candidates = [name for name in found if name == _PACKAGE or name.startswith(_PACKAGE + ".")]
    return [name for name in candidates if _is_module(name)]


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _jsonable(value):
    """Metadata for the MLmodel file: JSON-safe copy (numpy scalars, timestamps and the like as text)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
