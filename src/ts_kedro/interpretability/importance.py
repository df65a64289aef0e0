"""What drives each family's forecasts: LSTM permutation importance by input group, ARIMA coefficients with
p-values, Prophet component shares of variance. Each function takes the fitted ``{family}.model`` as trained.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from ts_kedro.interpretability.errors import InterpretabilityError, require_columns

logger = logging.getLogger(__name__)


def _require_fitted(model, class_name: str, family: str) -> None:
    if type(model).__name__ != class_name or not getattr(model, "is_fitted_", False):
        raise InterpretabilityError(
            f"expected a fitted {class_name} as '{family}.model', got {type(model).__name__}"
            f"{'' if getattr(model, 'is_fitted_', False) else ' (not fitted)'}; run the training pipeline first"
        )


# -- LSTM ---------------------------------------------------------------------------------------------------------
def _lstm_heldout_windows(model, panel: pd.DataFrame):
    """The last ``input_size + horizon`` points of every series the model knows: inputs, last season, targets.

    These targets are exactly the model's early-stopping validation targets: never used for a gradient step.
    The forecaster's own input preparation (``window_inputs``), so the permuted inputs are what the network saw.
    """
    require_columns(panel, ["series_id", "timestamp", "value"], "primary_panel")
    windows = model.window_inputs(panel, held_out=model.horizon)
    if len(windows["series_ids"]) < 2:
        raise InterpretabilityError(
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
    importance = pd.DataFrame(rows).sort_values("importance", ascending=False, ignore_index=True)
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
    rows = []
    for series_id, state in model.fitted_.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # approximate Hessians warn on near-boundary parameters; NaN is kept
            result = state.statsmodels_model().filter(state.params, cov_type="approx")
        for term, coef, std_err, z, p_value in zip(result.param_names, result.params, result.bse, result.zvalues,
                                                   result.pvalues):
            rows.append({"series_id": series_id, "order": str(tuple(state.order)), "term": term,
                         "coef": float(coef), "std_err": float(std_err), "z": float(z), "p_value": float(p_value),
                         "significant": bool(np.isfinite(p_value) and p_value < alpha)})
    coefficients = pd.DataFrame(rows)
    share = coefficients.groupby("term")["significant"].mean().round(2).to_dict()
    logger.info("arima coefficients of %d series; share significant at %.2f by term: %s",
                coefficients["series_id"].nunique(), alpha, share)
    return coefficients


# -- Prophet ------------------------------------------------------------------------------------------------------
def prophet_component_shares(model, max_series: int | None = None) -> pd.DataFrame:
    """Share of variance of each Prophet component of the in-sample fit, per series.

    Components come from ``predict`` on the training dates: ``trend`` and each seasonality (``daily``, ``weekly``,
    ``yearly``) and ``holidays`` when fitted. Multiplicative components are put on the scale of the target
    (component x trend) so that all shares are shares of the fitted values' variation.

    Returns:
        ``series_id, component, mode, variance, share`` (shares of one series sum to 1).
    """
    from prophet.serialize import model_from_json

    _require_fitted(model, "ProphetForecaster", "prophet")
    rows = []
    for series_id in list(model.models_)[: max_series or None]:
        fitted = model_from_json(model.models_[series_id])
        fitted.uncertainty_samples = 0  # components only: no sampling needed
        components = fitted.predict(fitted.history[["ds"]])
        names = [*fitted.seasonalities]
        if fitted.train_holiday_names is not None and "holidays" in components:
            names.append("holidays")
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
    shares = pd.DataFrame(rows)
    logger.info("prophet component shares (mean over %d series): %s", shares["series_id"].nunique(),
                shares.groupby("component")["share"].mean().round(3).to_dict())
    return shares
