"""Training nodes shared by every model family: backtest, score, fit on the full history, forecast."""
from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from ts_kedro.evaluation.backtest import PeakMemorySampler, evaluate_backtest, rolling_origin_backtest
from ts_kedro.evaluation.conformal import excludes_anomalies, per_series_calibration
from ts_kedro.forecasters import Forecaster, build_forecaster
from ts_kedro.forecasters.base import covariate_columns
from ts_kedro.frequency import FrequencyProfile, profile_for_panel

logger = logging.getLogger(__name__)

MLFLOW_METRICS = ("rmse", "mae", "mape", "smape", "mase")


def declared_covariates(panel: pd.DataFrame, data_processing_params: dict[str, Any] | None) -> dict[str, list[str]]:
    """``known_covariates`` / ``observed_covariates`` as the data contract declares them
    (``data_processing.source.covariates``): the covariates of ``panel`` declared ``known_in_advance``, and the
    rest of its covariate columns. What a family with ``supports_covariates`` reads when its hyperparameters leave
    them null; empty without ``data_processing_params``."""
    if data_processing_params is None:
        return {}
    from ts_kedro.pipelines.data_processing.schema import SourceSpec

    present = covariate_columns(panel)
    known = [name for name in SourceSpec.from_params(data_processing_params.get("source") or {}).known_in_advance()
             if name in present]
    return {"known_covariates": known, "observed_covariates": [name for name in present if name not in known]}


def _factory(model_spec: dict[str, Any], profile: FrequencyProfile, model_input: pd.DataFrame | None = None,
             covariates: dict[str, list[str]] | None = None):
    """New, unfitted forecasters of the family; a family that learns from feature_engineering's ``model_input``
    (``use_model_input``: the lightgbm family) gets it for its next fit. ``covariates`` (``declared_covariates``)
    fill the family's ``known_covariates`` / ``observed_covariates`` where its hyperparameters leave them null."""
    def build() -> Forecaster:
        model = build_forecaster(model_spec, freq=profile.freq, season_length=profile.season_length,
                                 profile_defaults={**profile.forecaster_defaults(), **(covariates or {})})
        if model_input is not None:
            if not hasattr(model, "use_model_input"):
                raise TypeError(f"{model_spec['class']}: this family does not learn from model_input; give it the "
                                "plain training template (pipelines/training/pipeline.py FEATURE_FAMILIES)")
            model.use_model_input(model_input)
        return model

    return build


def build_model_input(panel: pd.DataFrame, model_spec: dict[str, Any], panel_params: dict[str, Any],
                      backtest_params: dict[str, Any]) -> pd.DataFrame:
    """The origin-horizon rows a feature-based family learns from (``training_table``), from the whole panel.

    Built once in feature_engineering with the family's own specification and the panel's frequency profile; the
    backtest windows and the final fit each take the rows whose target lies inside their history, which are the
    rows they would have built themselves (per-origin scaling, see feature_engineering/model_input.py).
    """
    profile = profile_for_panel(panel, panel_params, backtest_params)
    model = _factory(model_spec, profile)()
    table = model.training_table(panel)
    logger.info("%s model_input: %d rows, %d columns", model_spec["class"], len(table), table.shape[1])
    return table


def describe_frequency_profile(
    panel: pd.DataFrame, panel_params: dict[str, Any], backtest_params: dict[str, Any],
    monitoring_params: dict[str, Any] | None = None,
) -> dict:
    """The frequency profile every family, backtest and monitoring default of this panel derives from.

    Returns:
        The profile as a dict (kept as a report: what season, periods, windows and lookback were used and why).
    """
    profile = profile_for_panel(panel, panel_params, backtest_params, monitoring_params)
    logger.info("frequency profile: freq %s, season %d, periods %s, backtest %s, lstm lookback %d",
                profile.freq, profile.season_length, profile.seasonal_periods, profile.backtest,
                profile.lstm_input_size)
    return profile.as_panel_params()


def backtest_model(
    panel: pd.DataFrame, model_spec: dict[str, Any], panel_params: dict[str, Any], backtest_params: dict[str, Any],
    model_input: pd.DataFrame | None = None, data_processing_params: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Rolling-origin backtest of one family on the panel.

    Each series gets as many of the ``n_windows`` origins as its length allows (at least one when it holds
    ``min_train + horizon`` points; see ``ts_kedro.frequency``); inside a window a series the family cannot
    fit is forecast by its fallback and marked in ``served_by``. A family with ``supports_covariates`` reads the
    covariates ``data_processing_params`` declares (``declared_covariates``); a window's plan of the known ones is
    the panel's recorded values (``rolling_origin_backtest``).

    Args:
        panel: canonical long panel.
        model_spec: ``{class, hyperparameters}`` of the family.
        model_input: feature_engineering's rows for a feature-based family (None: the family builds its inputs).
        data_processing_params: ``params:data_processing`` (its ``source.covariates``); None: no declaration.
        panel_params: ``params:panel`` (freq, horizon, levels; season and periods null = derived).
        backtest_params: ``params:backtest`` (n_windows, step, min_train, refit_every; null = derived).

    Returns:
        Backtest forecasts with actuals, and the timings of fitting and predicting.
    """
    profile = profile_for_panel(panel, panel_params, backtest_params)
    forecasts, timings = rolling_origin_backtest(
        _factory(model_spec, profile, model_input, declared_covariates(panel, data_processing_params)),
        panel,
        horizon=profile.horizon,
        n_windows=profile.backtest["n_windows"],
        step=profile.backtest["step"],
        levels=profile.levels,
        min_train=profile.backtest["min_train"],
        refit_every=profile.backtest["refit_every"],
    )
    logger.info(
        "%s backtest: up to %d windows (fitted: %s, updated: %d), fit %.1fs, predict %.2fs", model_spec["class"],
        profile.backtest["n_windows"], timings["refit_windows"], len(timings["updated_windows"]),
        timings["fit_seconds_total"], timings["predict_seconds_total"],
    )
    return forecasts, timings


def evaluate_model(
    backtest_forecasts: pd.DataFrame,
    backtest_timings: dict,
    model_stats: dict,
    panel: pd.DataFrame,
    panel_params: dict[str, Any],
) -> tuple[dict, dict]:
    """Score the backtest per series and overall.

    Returns:
        The metrics report (aggregate, per-series rows, timings, model stats) and the same aggregate metrics in
        kedro-mlflow's ``{name: {value, step}}`` form.
    """
    profile = profile_for_panel(panel, panel_params)
    per_series, aggregate = evaluate_backtest(backtest_forecasts, panel, profile.season_length, profile.levels)
    family = model_stats["family"]
    fell_back = backtest_forecasts[backtest_forecasts["fallback"]] if "fallback" in backtest_forecasts \
        else backtest_forecasts.iloc[:0]
    report = {
        "family": family,
        "aggregate": aggregate,
        # series some window of which the family could not fit itself (their scores are the fallback's)
        "backtest_fallback_series": {sid: sorted(set(rows["served_by"])) for sid, rows in fell_back.groupby("series_id")},
        "timings": {k: v for k, v in backtest_timings.items() if not isinstance(v, list)},
        "model": model_stats,
        "per_series": per_series.assign(cutoff=per_series["cutoff"].astype(str)).to_dict(orient="records"),
    }
    keys = [*MLFLOW_METRICS, *(f"coverage-{level}" for level in panel_params["levels"]),
            *(f"msis-{level}" for level in panel_params["levels"])]
    mlflow_metrics = {
        f"backtest_{key.replace('-', '_')}": {"value": float(aggregate[key]), "step": 0}
        for key in keys if key in aggregate and pd.notna(aggregate[key])
    }
    mlflow_metrics.update(
        {
            "fit_seconds": {"value": float(model_stats["fit_seconds"]), "step": 0},
            "predict_seconds_per_series": {"value": float(model_stats["predict_seconds_per_series"]), "step": 0},
            "n_parameters": {"value": float(model_stats["n_parameters"]), "step": 0},
            "peak_rss_mb": {"value": float(model_stats["peak_rss_mb"]), "step": 0},
        }
    )
    logger.info(
        "%s backtest: sMAPE %.3f MASE %.3f %s",
        model_stats["family"], aggregate["smape"], aggregate["mase"],
        " ".join(f"coverage-{lv} {aggregate.get(f'coverage-{lv}', float('nan')):.3f}" for lv in panel_params["levels"]),
    )
    return report, mlflow_metrics


def fit_model(
    panel: pd.DataFrame, model_spec: dict[str, Any], panel_params: dict[str, Any],
    backtest_params: dict[str, Any] | None = None, backtest_forecasts: pd.DataFrame | None = None,
    model_input: pd.DataFrame | None = None, future_covariates: pd.DataFrame | None = None,
    data_processing_params: dict[str, Any] | None = None,
) -> tuple[Forecaster, pd.DataFrame, dict]:
    """Fit the family on the whole history and forecast the next horizon.

    Covariates: a family with ``supports_covariates`` reads those ``data_processing_params`` declares
    (``declared_covariates``, where its hyperparameters leave them null) and keeps ``future_covariates``, the
    horizon's values of the known-in-advance ones (``future_covariates_horizon`` of data_processing), for its
    forecasts; without them its forecast names the first covariate, series and timestamp it lacks. A family
    without the capability ignores the covariates; the statistics' ``covariates`` block says which it read and
    which it ignored.

    The model is built from the same frequency profile as the backtest (same lengths, same parameters), so
    the shipped model is the one that was validated. With ``backtest.calibrate_intervals`` (default on) and the
    family's backtest, its intervals are conformally calibrated on the backtest residuals. Series it cannot fit are served by its fallback chain:
    ``served_by`` in the forecasts and the statistics say which.

    Returns:
        The fitted model, its future forecasts, and its statistics (fit and predict time, parameter count, peak
        memory) that model selection uses as secondary criteria.
    """
    profile = profile_for_panel(panel, panel_params, backtest_params)
    model = _factory(model_spec, profile, model_input, declared_covariates(panel, data_processing_params))()
    calibrate = (backtest_params or {}).get("calibrate_intervals", True) and backtest_forecasts is not None
    with PeakMemorySampler() as memory:
        started = time.perf_counter()
        model.fit(panel)
        if calibrate and profile.levels:
            # intervals conformalised on this family's own out-of-sample backtest (evaluation.conformal)
            model.calibrate_intervals(backtest_forecasts, panel,
                                      (backtest_params or {}).get("calibration_method") or "auto",
                                      per_series=per_series_calibration(backtest_params),
                                      exclude_anomalies=excludes_anomalies(backtest_params))
        fit_seconds = time.perf_counter() - started
        if model.supports_covariates and model.known_covariates and future_covariates is not None \
                and len(future_covariates):
            model.set_future_covariates(future_covariates)
        model.record_fit_level()  # once per fit (cqr_fit_level), kept out of the timed forecast below
        started = time.perf_counter()
        forecasts = model.predict(profile.horizon, profile.levels)
        predict_seconds = time.perf_counter() - started
    forecasts["served_by"] = forecasts["series_id"].map(model.served_by_)
    n_series = max(len(model.series_ids_), 1)
    stats = {
        "family": model_spec.get("name") or model.name,
        "class": model_spec["class"],
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "predict_seconds_per_series": predict_seconds / n_series,
        "n_parameters": int(model.n_parameters()),
        "peak_rss_mb": memory.peak_mb,
        "fit_memory_mb": memory.delta_mb,  # what this family's fit and forecast added to the process
        "n_series": n_series,
        "served_by": {k: int(v) for k, v in pd.Series(model.served_by_).value_counts().items()},
        "fallback_reasons": dict(model.fallback_reasons_),
        "covariates": {"supported": bool(model.supports_covariates), "known": list(model.known_covariates),
                       "observed": list(model.observed_covariates), "ignored": dict(model.ignored_covariates_)},
    }
    if hasattr(model, "feature_importance") and model.fitted_series_ids_:
        # gain and mean |SHAP| per feature: in model_stats.json (reporting) and the MLflow run's artifacts
        stats["feature_importance"] = model.feature_importance().to_dict(orient="records")
    logger.info("%s fitted on %d series in %.1fs (predict %.2fs)", stats["family"], n_series, fit_seconds, predict_seconds)
    return model, forecasts, stats
