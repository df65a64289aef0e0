"""A global LightGBM forecaster: one set of gradient-boosted trees learnt from every series' rows at once.

What (the design of the M5 winners and of Nixtla's mlforecast, in its direct form):

- Rows: (series, forecast origin o, horizon h) pairs from ``feature_engineering.model_input`` (its docstring
  lists the features): lags of the last season and of every longer period, the seasonal-naive value of each
  period for the target, rolling means and spreads, the calendar terms of the target time, the origin's scale,
  and declared covariates. All windows and periods come from the frequency profile (``seasonal_periods``), so
  yearly (m = 1: lag 1, no seasonal term), monthly, daily and hourly panels get their own features.
- Multi-horizon strategy: direct with the horizon as a feature. One model serves every step; it never feeds a
  forecast back (no recursion), and each step's quantiles are learnt on the same rows as its point forecast.
- Point forecast: the conditional median (``objective: l1``, the default): the project scores and selects on
  absolute errors (MASE, sMAPE), which the median minimises; on M4 Hourly the family's OWA went from 0.530
  (``l2``, the conditional mean) to 0.473, and it was better on M3 monthly, quarterly and yearly too
  (docs/benchmarks.md, "The point objective").
- Per-series scaling: each row is centred on the mean of the last season before its origin and divided by
  a scale taken at the origin, so one tree serves series of any size and level; the forecast is mapped back
  with the same two numbers. ``scaling: level`` divides by the mean absolute value of that season;
  ``seasonal_diff`` by the mean absolute seasonal difference of the last max(m, horizon) steps (MASE's scale,
  taken locally), so a smooth series with small seasonal changes is not forecast on a coarse axis.
- Row budget: a panel with more than ``max_training_rows`` pairs keeps a random, seeded share of them.
- Intervals: one quantile booster per bound of every level in ``interval_levels``; a requested level between
  or outside the trained ones is read off a normal approximation of the nearest trained level. The training
  pipeline then calibrates them conformally on the backtest (``Forecaster.calibrate_intervals``).
- Interpretability: ``feature_importance()`` gives LightGBM's gain per feature and the mean absolute SHAP value
  (``pred_contrib=True``) on the forecast rows of the fitted series.
- Parallelism: LightGBM's own OpenMP threads (``n_jobs``, default 1: on a machine whose cores are already busy
  two threads trained 12 times slower than one, docs/benchmarks.md; raise it on dedicated cores); ``device: gpu`` hands ``device_type`` to LightGBM (it needs a
  GPU-enabled LightGBM build).

Short series: a series shorter than ``min_length`` (two of its seasons, at least one horizon plus the level
window) gives too few rows to matter and a noisy scale; it is served by the ``theta`` fallback (then seasonal
naive). Constant series go to the fallback as in every family.

Why: a global model learns shared seasonal shapes across a panel, which local models fitted one series at a
time cannot; on many short or noisy series that usually wins.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ts_kedro.forecasters._per_series import SeriesForecast, concat_forecasts, normal_quantile
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, Forecaster, ForecasterError

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_LEVELS = (80, 95)
_SHAP_ROWS = 5000  # forecast rows the SHAP summary is computed on (a cost bound, not a period)


class LightGBMForecaster(Forecaster):
    """Global direct LightGBM on origin-horizon rows of every series (see the module docstring).

    Hyperparameters: ``horizon`` (trained steps; predict may ask up to it; the training node passes the panel
    horizon), ``seasonal_periods`` (null: the profile's), ``interval_levels`` (trained quantile levels),
    ``objective`` (``l1``, default: the median, which minimises the absolute error MASE and sMAPE score; ``l2``:
    the mean), ``n_estimators``, ``quantile_n_estimators`` (trees of each interval bound's booster; null:
    ``n_estimators``), ``learning_rate``,
    ``num_leaves``, ``min_data_in_leaf``, ``feature_fraction``, ``max_training_rows``, ``calendar_features``,
    ``known_covariates`` / ``observed_covariates`` (panel column names, see docs/data_contract.md; null: the
    covariates ``data_processing.source.covariates`` declares of that kind, filled in by the training pipeline),
    ``scaling`` (``level`` | ``seasonal_diff``, see the module docstring), ``n_jobs`` (LightGBM threads, default 1, -1 = all cores), ``device`` (cpu|gpu), ``seed``.
    """

    name = "lightgbm"
    fallback = "theta"
    supports_covariates = True

    def __init__(self, freq: str = "h", season_length: int | None = None, horizon: int | None = None,
                 seasonal_periods: list[float] | None = None, interval_levels: list[int] | None = None,
                 objective: str = "l1", n_estimators: int = 300, quantile_n_estimators: int | None = None,
                 learning_rate: float = 0.05, num_leaves: int = 63,
                 min_data_in_leaf: int = 50, feature_fraction: float = 0.9, max_training_rows: int = 300_000,
                 calendar_features: bool = True, known_covariates: list[str] | None = None,
                 observed_covariates: list[str] | None = None, scaling: str = "seasonal_diff", n_jobs: int = 1,
                 device: str = "cpu", seed: int = 0):
        interval_levels = list(DEFAULT_INTERVAL_LEVELS) if interval_levels is None else [int(v) for v in interval_levels]
        super().__init__(freq, season_length, horizon=horizon, seasonal_periods=seasonal_periods,
                         interval_levels=interval_levels, objective=objective, n_estimators=n_estimators,
                         quantile_n_estimators=quantile_n_estimators,
                         learning_rate=learning_rate, num_leaves=num_leaves, min_data_in_leaf=min_data_in_leaf,
                         feature_fraction=feature_fraction, max_training_rows=max_training_rows,
                         calendar_features=calendar_features, known_covariates=known_covariates,
                         observed_covariates=observed_covariates, scaling=scaling, n_jobs=n_jobs, device=device,
                         seed=seed)
        if horizon is None:
            raise ForecasterError("lightgbm: horizon (the trained number of steps) is required; build_forecaster "
                                  "passes the panel horizon")
        if isinstance(horizon, bool) or int(horizon) != horizon or int(horizon) < 1:
            raise ForecasterError(f"lightgbm: horizon must be a positive integer, got {horizon!r}")
        if any(not 0 < v < 100 for v in interval_levels):
            raise ForecasterError(f"lightgbm: interval_levels must lie strictly between 0 and 100, got {interval_levels}")
        if objective not in ("l2", "l1"):
            raise ForecasterError(f"lightgbm: objective must be l2 (mean) or l1 (median), got {objective!r}")
        from ts_kedro.pipelines.feature_engineering.model_input import SCALINGS  # as _spec: not at import time

        if scaling not in SCALINGS:
            raise ForecasterError(f"lightgbm: scaling must be {' or '.join(SCALINGS)}, got {scaling!r}")
        if device not in ("cpu", "gpu", "cuda"):
            raise ForecasterError(f"lightgbm: device must be cpu, gpu or cuda, got {device!r}")
        quantile_trees = n_estimators if quantile_n_estimators is None else quantile_n_estimators
        for key, value in (("n_estimators", n_estimators), ("quantile_n_estimators", quantile_trees),
                           ("num_leaves", num_leaves), ("min_data_in_leaf", min_data_in_leaf),
                           ("max_training_rows", max_training_rows)):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ForecasterError(f"lightgbm: {key} must be a positive integer, got {value!r}")
        if not 0 < float(learning_rate) <= 1 or not 0 < float(feature_fraction) <= 1:
            raise ForecasterError("lightgbm: learning_rate and feature_fraction must lie in (0, 1]")
        if isinstance(n_jobs, bool) or int(n_jobs) != n_jobs or n_jobs == 0:
            raise ForecasterError(f"lightgbm: n_jobs must be a non-zero integer (-1 = all cores), got {n_jobs!r}")
        self.horizon = int(horizon)
        self.seasonal_periods = None if seasonal_periods is None else [float(p) for p in seasonal_periods]
        self.interval_levels = sorted(set(interval_levels))
        self.objective = objective
        self.n_estimators, self.learning_rate = int(n_estimators), float(learning_rate)
        self.quantile_n_estimators = int(quantile_trees)
        self.num_leaves, self.min_data_in_leaf = int(num_leaves), int(min_data_in_leaf)
        self.feature_fraction, self.max_training_rows = float(feature_fraction), int(max_training_rows)
        self.calendar_features = bool(calendar_features)
        self.known_covariates = list(known_covariates or [])
        self.observed_covariates = list(observed_covariates or [])
        clash = sorted(set(self.known_covariates) & set(self.observed_covariates))
        if clash:
            raise ForecasterError(f"lightgbm: covariates {clash} are declared both known_in_advance and observed")
        self.scaling = scaling
        self.n_jobs, self.device, self.seed = int(n_jobs), device, int(seed)

    # -- sizes -------------------------------------------------------------------------------------------------
    @property
    def min_length(self) -> int:
        m = max(self.season_length, 1)
        return max(2 * m, self.horizon + m, 4)

    def n_parameters(self) -> int:
        """Leaves of every tree of every booster (the model's size, used as complexity in model selection)."""
        boosters = getattr(self, "boosters_", {})
        return int(sum(booster.num_trees() * self.num_leaves for booster in boosters.values()))

    # -- fit ---------------------------------------------------------------------------------------------------
    def _spec(self, panel: pd.DataFrame):
        from ts_kedro.frequency import MIN_CYCLES, derive_profile
        from ts_kedro.pipelines.feature_engineering.calendar import capped_span, select_features, step_length
        from ts_kedro.pipelines.feature_engineering.model_input import OriginFeatureSpec

        periods = self.seasonal_periods
        if periods is None:
            lengths = panel.groupby(SERIES_ID, sort=False)[VALUE].count()
            periods = derive_profile({"freq": self.freq, "horizon": self.horizon,
                                      "season_length": self.season_length}, lengths).seasonal_periods
        integer_periods = tuple(sorted({int(round(p)) for p in periods if round(p) >= 2}))
        names: list[str] = []
        if self.calendar_features:
            stamps = panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].agg(["min", "max"])
            span = capped_span(stamps["min"], stamps["max"]) + step_length(self.freq)
            names = select_features(self.freq, span, MIN_CYCLES)
        return OriginFeatureSpec(freq=self.freq, horizon=self.horizon, season_length=self.season_length,
                                 periods=integer_periods, calendar_features=tuple(names),
                                 known_covariates=tuple(self.known_covariates),
                                 observed_covariates=tuple(self.observed_covariates),
                                 scaling=getattr(self, "scaling", "level"))

    def _check_covariates(self, panel: pd.DataFrame) -> None:
        missing = [c for c in (*self.known_covariates, *self.observed_covariates) if c not in panel.columns]
        if missing:
            raise ForecasterError(f"lightgbm: covariate column(s) {missing} declared in the hyperparameters are not in "
                                  f"the panel (columns {list(panel.columns)}); declare them in the data contract")
        for name in (*self.known_covariates, *self.observed_covariates):
            if panel[name].isna().any():
                row = panel.loc[panel[name].isna()].iloc[0]
                raise ForecasterError(f"lightgbm: covariate {name!r} is missing for series {row[SERIES_ID]!r} at "
                                      f"{row[TIMESTAMP]}; data_processing must fill or reject it")

    def fit(self, panel: pd.DataFrame, model_input: pd.DataFrame | None = None) -> "LightGBMForecaster":
        """Fit on ``panel``; with ``model_input`` (``training_table`` of a longer or equal history, as the
        feature_engineering pipeline writes it) the rows whose target lies inside ``panel`` are used instead of
        being rebuilt: per-origin scaling makes them identical to rows built from ``panel`` itself."""
        if model_input is None:
            model_input = getattr(self, "pending_model_input_", None)
        self.model_input_ = model_input
        try:
            return super().fit(panel)
        finally:  # the table is an input, not fitted state: a pickled model does not carry it
            self.model_input_ = None
            self.pending_model_input_ = None

    def use_model_input(self, model_input: pd.DataFrame | None) -> "LightGBMForecaster":
        """Make the next ``fit`` learn from ``model_input`` (the training pipeline's backtest calls plain ``fit``)."""
        self.pending_model_input_ = model_input
        return self

    def training_table(self, panel: pd.DataFrame) -> pd.DataFrame:
        """The origin-horizon training rows of every series this family fits (``series_id, origin, target_time,
        level, scale, target`` and the features), the row budget applied; what ``_fit`` learns from."""
        ids = [sid for sid, group in panel.groupby(SERIES_ID, sort=False)
               if self.unfit_reason(group[VALUE].to_numpy(float)) is None]
        self._check_covariates(panel)
        return self._build_table(panel[panel[SERIES_ID].isin(ids)], self._spec(panel))

    def _build_table(self, panel: pd.DataFrame, spec) -> pd.DataFrame:
        from ts_kedro.pipelines.feature_engineering.model_input import origin_rows, training_pairs

        ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
        groups = dict(tuple(ordered.groupby(SERIES_ID, sort=False)))
        total_pairs = sum(max(len(g) - spec.level_window - h + 1, 0) for g in groups.values()
                          for h in range(1, spec.horizon + 1))
        keep = min(1.0, self.max_training_rows / max(total_pairs, 1))
        rng = np.random.default_rng(self.seed)
        parts = []
        for sid, group in groups.items():
            values = group[VALUE].to_numpy(float)
            stamps = pd.DatetimeIndex(group[TIMESTAMP])
            covariates = {c: group[c].to_numpy(float) for c in (*spec.known_covariates, *spec.observed_covariates)}
            origins, horizons = training_pairs(values.size, spec, keep, rng)
            if not origins.size:
                continue
            x, level, scale, targets = origin_rows(values, stamps, origins, horizons, spec, covariates)
            part = pd.DataFrame(x, columns=spec.feature_names())
            part.insert(0, SERIES_ID, sid)
            part.insert(1, "origin", stamps[origins])
            part.insert(2, "target_time", stamps[targets])
            part.insert(3, "level", level)
            part.insert(4, "scale", scale)
            part.insert(5, "target", (values[targets] - level) / scale)
            parts.append(part)
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=[SERIES_ID, "origin", "target_time", "level", "scale", "target", *spec.feature_names()])
        table.attrs["sampled_share"] = keep
        return table

    def _rows_from_model_input(self, model_input: pd.DataFrame) -> pd.DataFrame:
        expected = self.spec_.feature_names()
        missing = [c for c in (SERIES_ID, "target_time", "target", *expected) if c not in model_input.columns]
        if missing:
            raise ForecasterError(f"lightgbm: model_input lacks columns {missing[:10]}: it was built with another "
                                  "feature specification; rerun the feature_engineering pipeline with these parameters")
        ends = model_input[SERIES_ID].map(self.last_timestamp_)
        inside = model_input[SERIES_ID].isin(self.fitted_series_ids_) & (model_input["target_time"] <= ends)
        return model_input[inside]

    def _fit(self, panel: pd.DataFrame) -> None:
        import lightgbm as lgb

        started = time.perf_counter()
        self._check_covariates(panel)
        self.spec_ = self._spec(panel)
        model_input = getattr(self, "model_input_", None)
        table = self._rows_from_model_input(model_input) if model_input is not None else self._build_table(
            panel, self.spec_)
        self.rows_from_model_input_ = model_input is not None
        if table.empty:
            raise ForecasterError("lightgbm: no series has a target within its history; lengthen the history")
        ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
        tail = self.spec_.history_needed
        self.history_: dict[str, np.ndarray] = {}
        self.covariate_history_: dict[str, dict[str, np.ndarray]] = {}
        for sid, group in ordered.groupby(SERIES_ID, sort=False):
            self.history_[sid] = group[VALUE].to_numpy(float)[-tail:].copy()
            self.covariate_history_[sid] = {c: group[c].to_numpy(float)[-tail:].copy()
                                            for c in (*self.known_covariates, *self.observed_covariates)}
        self.feature_names_ = self.spec_.feature_names()
        x = table[self.feature_names_].to_numpy(float)
        y = table["target"].to_numpy(float)
        self.n_training_rows_ = int(y.size)
        dataset = lgb.Dataset(x, label=y, feature_name=self.feature_names_, free_raw_data=False,
                              params={"verbose": -1, "seed": self.seed})
        self.boosters_ = {"mean": self._train(lgb, dataset, self.objective, None)}
        for alpha in self._quantiles():
            self.boosters_[_quantile_key(alpha)] = self._train(lgb, dataset, "quantile", alpha)
        self.gain_ = pd.Series(self.boosters_["mean"].feature_importance("gain"), index=self.feature_names_)
        self.fit_seconds_ = time.perf_counter() - started
        logger.info("lightgbm: %d boosters on %d rows (%s) of %d series, %d features, in %.1f s",
                    len(self.boosters_), y.size, "from model_input" if self.rows_from_model_input_ else
                    f"{100 * table.attrs.get('sampled_share', 1.0):.0f}% of the origin-horizon pairs",
                    len(self.fitted_series_ids_), len(self.feature_names_), self.fit_seconds_)

    def _quantiles(self) -> list[float]:
        alphas = []
        for level in self.interval_levels:
            alphas += [round(0.5 - level / 200, 6), round(0.5 + level / 200, 6)]
        return sorted(set(alphas))

    def _train(self, lgb, dataset, objective: str, alpha: float | None):
        params = {
            "objective": objective, "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf, "feature_fraction": self.feature_fraction,
            "bagging_fraction": 1.0, "num_threads": _threads(self.n_jobs), "seed": self.seed,
            "deterministic": True, "force_row_wise": True, "verbose": -1, "device_type": self.device,
        }
        if alpha is not None:
            params["alpha"] = alpha
        rounds = self.n_estimators if alpha is None else self.quantile_n_estimators
        return lgb.train(params, dataset, num_boost_round=rounds)

    # -- update ------------------------------------------------------------------------------------------------
    def _update(self, new_observations: pd.DataFrame) -> None:
        """The boosters stay; the stored recent history moves forward, so the next origin is the newest point."""
        tail = self.spec_.history_needed
        for sid, group in new_observations.groupby(SERIES_ID, sort=False):
            self.history_[sid] = np.r_[self.history_[sid], group[VALUE].to_numpy(float)][-tail:]
            for name in self.covariate_history_.get(sid, {}):
                if name not in group:
                    raise ForecasterError(f"lightgbm: new_observations of series {sid!r} lack covariate {name!r}")
                self.covariate_history_[sid][name] = np.r_[self.covariate_history_[sid][name],
                                                           group[name].to_numpy(float)][-tail:]

    # -- predict -----------------------------------------------------------------------------------------------
    def forecast_rows(self, horizon: int, future_covariates: pd.DataFrame | None = None):
        """The feature rows of the next ``horizon`` steps of every fitted series: (features, level, scale, ids)."""
        from ts_kedro.pipelines.feature_engineering.model_input import origin_rows

        if horizon > self.horizon:
            raise ForecasterError(f"lightgbm: trained for horizon {self.horizon}, asked for {horizon}; refit with "
                                  f"hyperparameter horizon >= {horizon}")
        if self.known_covariates and future_covariates is None:
            future_covariates = getattr(self, "future_covariates_", None)
        plans = ({} if future_covariates is None or not self.known_covariates else
                 {sid: rows.set_index(TIMESTAMP) for sid, rows in future_covariates.groupby(SERIES_ID, sort=False)})
        rows, levels, scales, ids = [], [], [], []
        for sid in self.fitted_series_ids_:
            values = self.history_[sid]
            future = self.future_index(sid, horizon)
            past = pd.date_range(end=self.last_timestamp_[sid], periods=values.size, freq=self.freq)
            stamps = past.append(future)
            covariates = {name: np.r_[v, np.full(horizon, np.nan)] for name, v in self.covariate_history_[sid].items()}
            for name in self.known_covariates:
                covariates[name][values.size:] = _future_values(plans.get(sid), sid, name, future)
            origins = np.full(horizon, values.size - 1)
            x, level, scale, _ = origin_rows(values, stamps, origins, np.arange(1, horizon + 1), self.spec_, covariates)
            rows.append(x)
            levels.append(level)
            scales.append(scale)
            ids += [sid] * horizon
        return np.vstack(rows), np.concatenate(levels), np.concatenate(scales), ids

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        x, level, scale, _ = self.forecast_rows(horizon)
        unscale = lambda booster: level + scale * booster.predict(x, num_threads=_threads(self.n_jobs))  # noqa: E731
        mean = unscale(self.boosters_["mean"])
        quantiles = {key: unscale(booster) for key, booster in self.boosters_.items() if key != "mean"}
        frames = []
        for index, sid in enumerate(self.fitted_series_ids_):
            rows = slice(index * horizon, (index + 1) * horizon)
            bounds = {level_: tuple(b[rows] for b in self._bounds(level_, mean, quantiles)) for level_ in levels}
            frames.append(SeriesForecast(sid, self.future_index(sid, horizon), mean[rows], bounds))
        return concat_forecasts(frames)

    def _bounds(self, level: int, mean: np.ndarray, quantiles: Mapping[str, np.ndarray]):
        """Trained quantiles of ``level``; otherwise a normal interval whose spread matches the nearest trained level."""
        lo_key, hi_key = _quantile_key(round(0.5 - level / 200, 6)), _quantile_key(round(0.5 + level / 200, 6))
        if lo_key in quantiles and hi_key in quantiles:
            return quantiles[lo_key], quantiles[hi_key]
        nearest = min(self.interval_levels, key=lambda trained: abs(trained - level))
        lo = quantiles[_quantile_key(round(0.5 - nearest / 200, 6))]
        hi = quantiles[_quantile_key(round(0.5 + nearest / 200, 6))]
        ratio = normal_quantile(level) / normal_quantile(nearest)
        return mean - ratio * np.maximum(mean - lo, 0.0), mean + ratio * np.maximum(hi - mean, 0.0)

    # -- interpretability --------------------------------------------------------------------------------------
    def explained_forecast_rows(self, max_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The forecast rows (``forecast_rows``) SHAP explains, and each row's series id.

        Above ``max_rows`` rows a seeded random set of whole series is kept, so every horizon step keeps the same
        series and the sample does not lean on the first series in panel order (TreeSHAP costs rows x trees x leaves).
        """
        x, _, _, ids = self.forecast_rows(self.horizon)
        series = np.asarray(ids, dtype=object)
        if len(x) > int(max_rows):
            fitted = list(self.fitted_series_ids_)
            keep = min(len(fitted), max(1, int(max_rows) // int(self.horizon)))
            chosen = np.random.default_rng(seed).choice(len(fitted), size=keep, replace=False)
            inside = np.isin(series, [fitted[i] for i in sorted(chosen)])
            x, series = x[inside], series[inside]
        return x, series

    def feature_importance(self) -> pd.DataFrame:
        """Gain (share of the point model's total split gain) and mean |SHAP| on the forecast rows, per feature.

        SHAP values are LightGBM's own TreeSHAP (``pred_contrib=True``) of the point model on the next-horizon
        rows of the fitted series (whole series, at most ``_SHAP_ROWS`` rows: ``explained_forecast_rows``), in the
        scaled target units the trees predict.
        """
        if not getattr(self, "is_fitted_", False) or not getattr(self, "fitted_series_ids_", None):
            raise ForecasterError("lightgbm: call fit() (with at least one series the family fits) first")
        x, _ = self.explained_forecast_rows(_SHAP_ROWS)
        contributions = self.boosters_["mean"].predict(x, pred_contrib=True)[:, :-1]  # last column: expected value
        gain = self.gain_ / max(float(self.gain_.sum()), 1e-12)
        frame = pd.DataFrame({"feature": self.feature_names_, "gain": gain.to_numpy(),
                              "mean_abs_shap": np.abs(contributions).mean(axis=0)})
        frame["group"] = frame["feature"].map(_feature_group)
        return frame.sort_values("gain", ascending=False, ignore_index=True)


def _feature_group(name: str) -> str:
    for prefix, group in (("lag_", "lag"), ("seasonal_", "seasonal"), ("roll_", "rolling"), ("cov_", "covariate")):
        if name.startswith(prefix):
            return group
    return {"horizon": "horizon", "log_scale": "scale"}.get(name, "calendar")


def _quantile_key(alpha: float) -> str:
    return f"q{alpha:.6f}"


def _threads(n_jobs: int) -> int:
    import os

    cores = os.cpu_count() or 1
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def _future_values(plan: pd.DataFrame | None, series_id, name: str, future: pd.DatetimeIndex) -> np.ndarray:
    """``name`` of ``series_id`` at every ``future`` timestamp from that series' plan (indexed by timestamp; grouped
    once per call of ``forecast_rows``, not filtered per series); a clear error at the first one missing."""
    if plan is None or name not in plan:
        raise ForecasterError(f"lightgbm: known-in-advance covariate {name!r} has no future values for series "
                              f"{series_id!r} (first missing timestamp {future[0]}); provide future_covariates "
                              "covering the horizon")
    values = plan[name].reindex(future)
    if values.isna().any():
        first = future[int(np.flatnonzero(values.isna().to_numpy())[0])]
        raise ForecasterError(f"lightgbm: future_covariates lack covariate {name!r} for series {series_id!r} at "
                              f"{first} (first missing timestamp of the horizon); extend the future_covariates input")
    return values.to_numpy(float)


__all__ = ["LightGBMForecaster"]
