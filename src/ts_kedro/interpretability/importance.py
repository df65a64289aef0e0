"""What drives each family's forecasts: LSTM permutation importance by input group, ARIMA coefficients with
p-values, Prophet component shares of variance, LightGBM gain and SHAP per feature. Each function takes the fitted
``{family}.model`` as trained.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from ts_kedro.interpretability.errors import InterpretabilityError, TooFewWindowsError, require_columns

logger = logging.getLogger(__name__)


def _require_fitted(model, class_name: str, family: str) -> None:
    if type(model).__name__ != class_name or not getattr(model, "is_fitted_", False):
        raise InterpretabilityError(
            f"expected a fitted {class_name} as '{family}.model', got {type(model).__name__}"
            f"{'' if getattr(model, 'is_fitted_', False) else ' (not fitted)'}; run the training pipeline first"
        )


ARIMA_COEFFICIENT_COLUMNS = ["series_id", "order", "term", "coef", "std_err", "z", "p_value", "significant"]
PROPHET_COMPONENT_COLUMNS = ["series_id", "component", "mode", "variance", "share"]
LIGHTGBM_IMPORTANCE_COLUMNS = ["feature", "label", "group", "horizon_bucket", "horizon_from", "horizon_to",
                               "gain_share", "mean_abs_shap", "shap_share", "n_rows", "n_series"]


def _fitted_nothing(model, family: str) -> bool:
    """True (and said in the log) when every series went to the family's fallback: nothing of its own to explain.
    A panel the family cannot take at all (too short, or a span Prophet cannot hold) must not stop the run in
    reporting; the tables come back empty with their columns and the plots say why."""
    if getattr(model, "fitted_series_ids_", None):
        return False
    logger.warning("%s importance not computed: the family fitted no series (every one is served by its fallback, "
                   "see the data-quality report's families)", family)
    return True


# -- LSTM ---------------------------------------------------------------------------------------------------------
LSTM_IMPORTANCE_COLUMNS = ["group", "n_inputs", "baseline_error", "permuted_error", "permuted_error_std", "importance",
                           "importance_ratio", "n_windows", "n_repeats"]


def _lstm_heldout_windows(model, panel: pd.DataFrame):
    """The last ``input_size + horizon`` points of every series the model knows: inputs, last season, targets.

    These targets are exactly the model's early-stopping validation targets: never used for a gradient step.
    The forecaster's own input preparation (``window_inputs``), so the permuted inputs are what the network saw.
    """
    require_columns(panel, ["series_id", "timestamp", "value"], "primary_panel")
    windows = model.window_inputs(panel, held_out=model.horizon)
    if len(windows["series_ids"]) < 2:
        raise TooFewWindowsError(
            f"lstm permutation importance needs at least 2 series with {model.input_size + model.horizon} points that "
            f"the model was fitted on; the panel has {len(windows['series_ids'])}"
        )
    return windows["tokens"], windows["last_season"], windows["targets"]


def lstm_permutation_importance(model, panel: pd.DataFrame, n_repeats: int = 10, seed: int = 0) -> pd.DataFrame:
    """Permutation importance of the LSTM's input groups on held-out windows (one per series).

    A group's inputs are shuffled across windows (so they no longer belong to their target) and the increase of the
    scaled MAE of the median forecast is measured, ``n_repeats`` times. Groups (see ``forecasters/lstm.py``):
    ``last_season`` (the most recent season of the lookback, which also sets the seasonal-naive baseline the network
    corrects), ``earlier_seasons`` (the older seasons of the lookback) and ``calendar`` (sin/cos of the calendar
    terms that vary at the panel's frequency, e.g. hour-of-day and day-of-week for hourly data, if the model uses
    any).

    Returns:
        One row per group: ``group, n_inputs, baseline_error, permuted_error, permuted_error_std, importance
        (increase), importance_ratio (permuted / baseline), n_windows, n_repeats``; sorted by importance.
    """
    _require_fitted(model, "LSTMForecaster", "lstm")
    if _fitted_nothing(model, "lstm"):
        return pd.DataFrame(columns=LSTM_IMPORTANCE_COLUMNS)
    if int(n_repeats) < 1:
        raise InterpretabilityError(f"n_repeats must be >= 1, got {n_repeats} (reporting.importance.lstm)")
    tokens, last_season, targets = _lstm_heldout_windows(model, panel)
    m = model.season_length
    median = int(np.argmin(np.abs(model.quantiles - 0.5)))
    # n_inputs counts distinct values: the last season enters twice (last token and the baseline input)
    groups = {"last_season": (m,)}
    if tokens.shape[1] > 1:
        groups["earlier_seasons"] = (m * (tokens.shape[1] - 1),)
    if model.calendar_features and tokens.shape[2] > m:  # none vary at a yearly frequency, for instance
        groups["calendar"] = (tokens.shape[1] * (tokens.shape[2] - m),)

    def error(tok: np.ndarray, last: np.ndarray) -> float:
        # the forecaster's own ensemble prediction (members' quantiles averaged, sorted), in scaled units
        return float(np.mean(np.abs(model.predict_scaled(tok, last)[:, :, median] - targets)))

    baseline = error(tokens, last_season)
    rng = np.random.default_rng(seed)
    rows = []
    for group, (n_inputs,) in groups.items():
        permuted = []
        for _ in range(int(n_repeats)):
            order = rng.permutation(len(tokens))
            tok, last = tokens.copy(), last_season.copy()
            if group == "last_season":
                tok[:, -1, :m], last = tokens[order, -1, :m], last_season[order]
            elif group == "earlier_seasons":
                tok[:, :-1, :m] = tokens[order, :-1, :m]
            else:
                tok[:, :, m:] = tokens[order, :, m:]
            permuted.append(error(tok, last))
        rows.append({"group": group, "n_inputs": int(n_inputs), "baseline_error": baseline,
                     "permuted_error": float(np.mean(permuted)), "permuted_error_std": float(np.std(permuted)),
                     "importance": float(np.mean(permuted) - baseline),
                     "importance_ratio": float(np.mean(permuted) / baseline) if baseline > 0 else np.inf,
                     "n_windows": len(tokens), "n_repeats": int(n_repeats)})
    importance = pd.DataFrame(rows, columns=LSTM_IMPORTANCE_COLUMNS).sort_values("importance", ascending=False,
                                                                   ignore_index=True)
    logger.info("lstm permutation importance (scaled MAE %.4f): %s", baseline,
                dict(zip(importance["group"], importance["importance"].round(4))))
    return importance


# -- ARIMA --------------------------------------------------------------------------------------------------------
def arima_coefficients(model, alpha: float = 0.05) -> pd.DataFrame:
    """Every series' ARIMA coefficients with standard errors and p-values.

    The forecaster keeps each series' order, trend, parameters and adjusted history (``fitted_``), not the
    statsmodels results; the results are rebuilt by filtering at the stored parameters (no re-estimation) with
    ``cov_type="approx"`` (numerical Hessian of the likelihood at those parameters).

    Returns:
        ``series_id, order, term, coef, std_err, z, p_value, significant`` (p < ``alpha``), one row per term.
    """

    _require_fitted(model, "ArimaForecaster", "arima")
    if not 0 < alpha < 1:
        raise InterpretabilityError(f"alpha must lie in (0, 1), got {alpha} (reporting.importance.arima.alpha)")
    if _fitted_nothing(model, "arima"):
        return pd.DataFrame(columns=ARIMA_COEFFICIENT_COLUMNS)
    rows = []
    for series_id, state in model.fitted_.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # approximate Hessians warn on near-boundary parameters; NaN is kept
            result = state.statsmodels_model().filter(state.params, cov_type="approx")
        # statsmodels calls the exog terms x1..xk: name them by the covariates this series' regression used
        used = getattr(model, "covariates_used_", {}).get(series_id, [])
        covariates = {f"x{j + 1}": name for j, name in enumerate(used)}
        for term, coef, std_err, z, p_value in zip(result.param_names, result.params, result.bse, result.zvalues,
                                                   result.pvalues):
            term = covariates.get(term, term)
            rows.append({"series_id": series_id, "order": str(tuple(state.order)), "term": term,
                         "coef": float(coef), "std_err": float(std_err), "z": float(z), "p_value": float(p_value),
                         "significant": bool(np.isfinite(p_value) and p_value < alpha)})
    coefficients = pd.DataFrame(rows, columns=ARIMA_COEFFICIENT_COLUMNS)
    share = coefficients.groupby("term")["significant"].mean().round(2).to_dict()
    logger.info("arima coefficients of %d series; share significant at %.2f by term: %s",
                coefficients["series_id"].nunique(), alpha, share)
    return coefficients


# -- Prophet ------------------------------------------------------------------------------------------------------
def prophet_component_shares(model, max_series: int | None = None) -> pd.DataFrame:
    """Share of variance of each Prophet component of the in-sample fit, per series.

    Components come from ``predict`` on the training dates: ``trend`` and each seasonality (``daily``, ``weekly``,
    ``yearly``), ``holidays`` when fitted, and each regressor (a covariate known in advance) under its own name.
    Multiplicative components are put on the scale of the target (component x trend) so that all shares are shares
    of the fitted values' variation.

    Returns:
        ``series_id, component, mode, variance, share`` (shares of one series sum to 1).
    """
    from prophet.serialize import model_from_json

    _require_fitted(model, "ProphetForecaster", "prophet")
    if _fitted_nothing(model, "prophet"):
        return pd.DataFrame(columns=PROPHET_COMPONENT_COLUMNS)
    rows = []
    for series_id in list(model.models_)[: max_series or None]:
        fitted = model_from_json(model.models_[series_id])
        fitted.uncertainty_samples = 0  # components only: no sampling needed
        # Prophet keeps its history's regressors standardised and standardises what predict gets: give them back raw
        frame = fitted.history[["ds", *fitted.extra_regressors]].copy()
        for name, spec in fitted.extra_regressors.items():
            frame[name] = frame[name] * spec["std"] + spec["mu"]
        components = fitted.predict(frame)
        names = [*fitted.seasonalities]
        if fitted.train_holiday_names is not None and "holidays" in components:
            names.append("holidays")
        names += [name for name in fitted.extra_regressors if name in components]
        multiplicative = set(fitted.component_modes["multiplicative"])
        contributions = {"trend": ("additive", components["trend"].to_numpy())}
        for name in names:
            mode = "multiplicative" if name in multiplicative else "additive"
            values = components[name].to_numpy()
            contributions[name] = (mode, values * components["trend"].to_numpy() if mode == "multiplicative" else values)
        variances = {name: float(np.var(values)) for name, (_, values) in contributions.items()}
        total = sum(variances.values())
        for name, (mode, _) in contributions.items():
            rows.append({"series_id": series_id, "component": name, "mode": mode, "variance": variances[name],
                         "share": variances[name] / total if total > 0 else np.nan})
    shares = pd.DataFrame(rows, columns=PROPHET_COMPONENT_COLUMNS)
    logger.info("prophet component shares (mean over %d series): %s", shares["series_id"].nunique(),
                shares.groupby("component")["share"].mean().round(3).to_dict())
    return shares


# -- LightGBM -----------------------------------------------------------------------------------------------------
def lightgbm_feature_importance(model, gain: pd.DataFrame, n_buckets: int = 3, max_rows: int = 5000,
                                seed: int = 0) -> pd.DataFrame:
    """Gain share and mean |SHAP| of every feature of the LightGBM point model, overall and per horizon bucket.

    Args:
        model: the fitted ``LightGBMForecaster`` (``lightgbm.model``).
        gain: the model's own summary, ``LightGBMForecaster.feature_importance()`` (``feature, gain, group``), as the
            training pipeline stores it in ``lightgbm.model_stats``: each feature's share of the point booster's total
            split gain, a property of the trees learnt on the training rows, so it has no horizon bucket. Taken as
            stored rather than recomputed: the summary also runs TreeSHAP, which would double this function's cost.
        n_buckets: steps 1..horizon split into this many contiguous, near-equal buckets (1: overall only).
        max_rows: above this many forecast rows a seeded random set of whole series is explained (each bucket keeps
            the same series): TreeSHAP's cost grows with rows x trees x leaves (docs/interpretability.md).
        seed: the seed of that choice.

    SHAP values are LightGBM's TreeSHAP (``pred_contrib=True``, path-dependent: the trees' own training cover is the
    background, no reference sample needed) of the point booster, in the scaled target units the trees predict
    (``(y - level) / scale`` at the origin), so one unit is one "typical recent magnitude" of any series.

    Which rows are explained: the model's forecast rows (``forecast_rows``: every fitted series' origin at the end
    of its history, steps 1..horizon), not training rows. They are the held-out sample the final model offers: no
    training row has that origin (their targets lie beyond the history), so the attributions describe how the trees
    generalise rather than how they fit rows they were grown on (the in-sample view is the gain), and they explain
    exactly the forecast that ships. The price: the origin-level features (lags, rolling statistics, scale) take one
    value per series, so their ranking rests on ``n_series`` origins; read it with that number in mind.

    The model is direct with the horizon as a feature (one booster for every step), so the horizon buckets are a view
    of the rows, not separate models.

    Returns:
        One row per feature and bucket: ``feature, label, group, horizon_bucket`` (``all`` or ``<from>-<to>``),
        ``horizon_from, horizon_to, gain_share`` (``all`` rows only; NaN in the buckets), ``mean_abs_shap,
        shap_share`` (share of the bucket's summed mean |SHAP|), ``n_rows, n_series``; the ``all`` rows first,
        each bucket ordered by mean |SHAP|.
    """
    _require_fitted(model, "LightGBMForecaster", "lightgbm")
    if _fitted_nothing(model, "lightgbm"):
        return pd.DataFrame(columns=LIGHTGBM_IMPORTANCE_COLUMNS)
    if int(n_buckets) < 1 or int(max_rows) < 1:
        raise InterpretabilityError(f"n_buckets and max_rows must be >= 1, got {n_buckets} and {max_rows} "
                                    "(reporting.importance.lightgbm)")
    require_columns(gain, ["feature", "gain", "group"], "lightgbm.model_stats feature_importance")
    if sorted(gain["feature"]) != sorted(model.feature_names_):
        raise InterpretabilityError(
            f"lightgbm.model_stats names features {sorted(gain['feature'])[:5]}... but lightgbm.model was fitted on "
            f"{sorted(model.feature_names_)[:5]}...: the two come from different training runs; rerun training"
        )
    horizon = int(model.horizon)
    x, series = model.explained_forecast_rows(int(max_rows), seed)
    threads = model.n_jobs if model.n_jobs > 0 else 0  # the family's thread setting (0: LightGBM's default, all cores)
    shap = model.boosters_["mean"].predict(x, pred_contrib=True, num_threads=threads)
    contributions = np.abs(shap[:, :-1])  # the last column is the expected value, not a feature
    steps = x[:, model.feature_names_.index("horizon")].astype(int)
    per_feature = gain.set_index("feature").reindex(model.feature_names_)
    buckets = [("all", 1, horizon)]
    if int(n_buckets) > 1:
        buckets += [(f"{part[0]}-{part[-1]}", int(part[0]), int(part[-1]))
                    for part in np.array_split(np.arange(1, horizon + 1), min(int(n_buckets), horizon))]
    frames = []
    for name, first, last in buckets:
        rows = (steps >= first) & (steps <= last)
        mean_abs = contributions[rows].mean(axis=0)
        frame = pd.DataFrame({
            "feature": model.feature_names_, "label": [feature_label(f) for f in model.feature_names_],
            "group": per_feature["group"].to_numpy(), "horizon_bucket": name, "horizon_from": first,
            "horizon_to": last, "gain_share": per_feature["gain"].to_numpy(float) if name == "all" else np.nan,
            "mean_abs_shap": mean_abs, "shap_share": mean_abs / max(float(mean_abs.sum()), 1e-12),
            "n_rows": int(rows.sum()), "n_series": len(set(series[rows])),
        })
        frames.append(frame.sort_values("mean_abs_shap", ascending=False, kind="stable"))
    importance = pd.concat(frames, ignore_index=True)
    top = importance[importance["horizon_bucket"] == "all"].head(5)
    logger.info("lightgbm importance on %d forecast rows of %d series; top mean |SHAP|: %s", len(x),
                len(set(series)), dict(zip(top["feature"], top["mean_abs_shap"].round(4))))
    return importance


def feature_label(feature: str) -> str:
    """A plot label for a column of ``OriginFeatureSpec.feature_names`` (``lag_1`` -> ``lag 1 (value at origin)``)."""
    kind, _, rest = feature.partition("_")
    if feature == "horizon":
        return "horizon (steps ahead)"
    if feature == "log_scale":
        return "series scale (log)"
    if feature == "lag_1":
        return "lag 1 (value at origin)"
    if kind == "lag" and rest.isdigit():
        return f"lag {rest}"
    if kind == "seasonal" and rest.isdigit():
        return f"seasonal naive, period {rest}"
    if feature.startswith(("roll_mean_", "roll_std_")):
        statistic, window = feature.split("_")[1:]
        return f"{statistic} of last {window} values"
    if kind == "cov":
        return f"covariate {rest}"
    if feature.endswith(("_sin", "_cos")):  # cyclic calendar terms of the target time
        return f"{feature[:-4].replace('_', ' ')} ({feature[-3:]})"
    return feature.replace("_", " ")
