"""The one servable object of a selection: fitted family models plus the per-series choice of family or ensemble."""
from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, Forecaster, _finalise_forecast, interval_columns

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
MODEL_COLUMN = "model"


@dataclass(frozen=True)
class _ServedTable:
    """Every served series' forecast in one frame: series in choice order, ``starts[i]`` the first row of the
    series at ``position[series_id] == i``, each ``max_horizon`` rows in time order."""

    frame: pd.DataFrame
    starts: np.ndarray
    position: dict


# guards the per-object forecast cache; one lock for all objects (a model object has no lock of its own to
# pickle, and older pickles have none)
_CACHE_LOCK = threading.Lock()


class PanelModelError(ValueError):
    """A SelectedPanelModel cannot be built from the given families, choice and settings."""


class InferenceInputError(ValueError):
    """A forecast request names unknown series, an out-of-range horizon or unsupported levels."""


class SelectedPanelModel:
    """Routes each series to the family chosen for it, or to the median of ``ensemble_members``.

    ``family_models`` are fitted on the full history; ``choice`` maps every servable ``series_id`` to a
    key of ``family_models`` or to ``"ensemble"``. A request may ask for any ``horizon`` from 1 to
    ``max_horizon`` (the horizon the selection was backtested on: longer forecasts were never validated)
    and any subset of ``levels`` (the families were fitted and scored for those levels only).
    Plain Python state only, so the object pickles with the fitted families.
    """

    def __init__(
        self,
        family_models: Mapping[str, Forecaster],
        choice: Mapping[str, str],
        ensemble_members: Sequence[str],
        levels: Sequence[int],
        max_horizon: int,
        metadata: Mapping[str, Any] | None = None,
        ensemble_calibration: Mapping[str, Any] | None = None,
    ):
        self.family_models = dict(family_models)
        self.choice = {str(series_id): family for series_id, family in choice.items()}
        self.ensemble_members = list(ensemble_members)
        self.levels = sorted(int(level) for level in levels)
        self.max_horizon = max_horizon
        self.metadata = dict(metadata or {})
        # conformal adjustments of the median ensemble's own intervals (evaluation.conformal.ensemble_adjustments)
        self.ensemble_calibration = dict(ensemble_calibration) if ensemble_calibration else None
        self._validate()

    def derived(self, **changes) -> "SelectedPanelModel":
        """A new panel model with the same attributes except ``changes`` (family_models, choice, ...)."""
        arguments = {"family_models": self.family_models, "choice": self.choice,
                     "ensemble_members": self.ensemble_members, "levels": self.levels,
                     "max_horizon": self.max_horizon, "metadata": self.metadata,
                     "ensemble_calibration": getattr(self, "ensemble_calibration", None)}  # older pickles lack it
        return SelectedPanelModel(**{**arguments, **changes})

    # -- construction checks ------------------------------------------------------------------
    def _validate(self) -> None:
        if not self.family_models:
            raise PanelModelError("family_models is empty: pass the fitted model of every selected family")
        if ENSEMBLE in self.family_models:
            raise PanelModelError(f"{ENSEMBLE!r} is reserved for the median ensemble and cannot name a family")
        for family, model in self.family_models.items():
            if not isinstance(model, Forecaster):
                raise PanelModelError(f"family {family!r} is a {type(model).__name__}, not a fitted Forecaster")
            if not getattr(model, "is_fitted_", False):
                raise PanelModelError(f"family {family!r} is not fitted: fit it on the full history first")
        if not self.choice:
            raise PanelModelError("choice is empty: no series would be servable")
        if isinstance(self.max_horizon, bool) or int(self.max_horizon) != self.max_horizon or self.max_horizon < 1:
            raise PanelModelError(f"max_horizon must be a positive integer, got {self.max_horizon!r}")
        self.max_horizon = int(self.max_horizon)
        bad_levels = [level for level in self.levels if not 0 < level < 100]
        if bad_levels or len(set(self.levels)) != len(self.levels):
            raise PanelModelError(f"levels must be distinct percentages strictly between 0 and 100, got {self.levels}")

        unknown = sorted({f for f in self.choice.values() if f != ENSEMBLE and f not in self.family_models})
        if unknown:
            raise PanelModelError(
                f"choice names families {unknown} that are not in family_models {sorted(self.family_models)}"
            )
        missing_members = [m for m in self.ensemble_members if m not in self.family_models]
        if missing_members:
            raise PanelModelError(f"ensemble_members {missing_members} are not in family_models {sorted(self.family_models)}")
        if ENSEMBLE in self.choice.values() and not self.ensemble_members:
            raise PanelModelError("some series chose 'ensemble' but ensemble_members is empty")

        fitted = {name: set(model.series_ids_) for name, model in self.family_models.items()}  # once, not per series
        for series_id, family in self.choice.items():
            needed = self.ensemble_members if family == ENSEMBLE else [family]
            for member in needed:
                if series_id not in fitted[member]:
                    raise PanelModelError(
                        f"series {series_id!r} is routed to {family!r} but family {member!r} was not fitted on it"
                    )

    # -- public API ---------------------------------------------------------------------------
    def refit(self, history: pd.DataFrame, note: str = "refit_on_history_end") -> "SelectedPanelModel":
        """Same families, hyperparameters and per-series choice, fitted afresh on ``history``.

        Used to forecast from newer data without a new selection (Day-N inference) and to score the
        champion's configuration on a window it has not seen (champion/challenger comparison).
        """
        present = set(history[SERIES_ID])
        families = {}
        for family, model in self.family_models.items():
            series = [s for s in model.series_ids_ if s in present]
            fresh = model.unfitted_copy()
            fresh.fit(history[history[SERIES_ID].isin(series)].reset_index(drop=True))
            families[family] = fresh.inherit_calibration(model)  # calibrated intervals survive a refit
        choice = {s: f for s, f in self.choice.items() if s in present}
        return self.derived(family_models=families, choice=choice,
                            metadata={**self.metadata, note: str(history[TIMESTAMP].max())})

    def restricted_to(self, series_ids: Sequence[str]) -> "SelectedPanelModel":
        """The same model for ``series_ids`` only (each family narrowed with ``Forecaster.restricted_to``)."""
        keep = set(series_ids)
        families = {}
        for family, model in self.family_models.items():
            mine = [s for s in model.series_ids_ if s in keep]
            if mine:
                families[family] = model.restricted_to(mine)
        choice = {s: f for s, f in self.choice.items() if s in keep}
        return self.derived(family_models=families, choice=choice,
                            ensemble_members=[m for m in self.ensemble_members if m in families])

    def update(self, history: pd.DataFrame, note: str = "updated_to_history_end",
               refit_on_failure: bool = True) -> "SelectedPanelModel":
        """Same fitted families and per-series choice, conditioned on the points of ``history`` after their data.

        For every family, each of its series gets the rows of ``history`` after that series' last fitted
        timestamp, and the family's ``Forecaster.update`` moves its state forward without re-estimating anything
        (a Day-N cycle that does not retrain fits nothing); with data_processing's ``is_anomaly`` in ``history``, a family
        fitted around flagged anomalies takes the new points as a fit on ``history`` would. Where a family with
        per-series state refuses the new points of some series (e.g. a value <= 0 on a log-scale ARIMA), only those
        series are refitted on ``history`` and the others updated (``Forecaster.update_refitting_refused``);
        ``metadata["refitted_series"]`` says which and why. A family that cannot take the new points otherwise (it
        implements no ``update``, its state is one model of all series, or the history does not continue the fitted
        grid) is refitted on ``history`` instead, as ``refit`` would, and ``metadata["refitted_families"]`` says
        which and why (with ``refit_on_failure=False``, as in serving, an ``InferenceInputError`` instead of either
        refit). Points the history revised at or before a model's data end are not re-read: a revision
        of old data is the retrain's business. The loaded object is left as it is (the update works on a copy).

        Returns:
            the updated model; ``metadata`` gains ``note`` (the history end), ``updated_families``,
            ``refitted_families`` (family -> reason) and ``refitted_series`` (family -> {series -> reason}).
        """
        import copy

        from ts_kedro.forecasters import ForecasterError

        present = set(history[SERIES_ID])
        families, updated, refitted, refitted_series = {}, [], {}, {}
        for family, model in self.family_models.items():
            series = [s for s in model.series_ids_ if s in present]
            rows = history[history[SERIES_ID].isin(series)]
            ends = rows[SERIES_ID].map(model.last_timestamp_)
            new = rows[rows[TIMESTAMP] > ends].reset_index(drop=True)
            if new.empty:  # already at the history's end
                families[family] = model
                continue
            if not model.supports_update:
                reason = f"{type(model).__name__} implements no update()"
                if not refit_on_failure:
                    raise InferenceInputError(f"family {family!r} cannot take new observations: {reason}")
            else:
                try:
                    # a shallow copy: update() works on its own deep copy and swaps state in only on success
                    if refit_on_failure:
                        families[family] = copy.copy(model).update_refitting_refused(new, history=rows)
                        if families[family].refitted_on_update_:
                            refitted_series[family] = dict(families[family].refitted_on_update_)
                    else:
                        families[family] = copy.copy(model).update(new, history=rows)
                    updated.append(family)
                    continue
                except ForecasterError as exc:
                    if not refit_on_failure:
                        raise InferenceInputError(f"family {family!r} cannot take the new observations: {exc}") from exc
                    reason = str(exc)
            logger.warning("panel model: family %r refitted on the history instead of updated: %s", family, reason)
            fresh = model.unfitted_copy()
            fresh.fit(rows.reset_index(drop=True))
            families[family] = fresh.inherit_calibration(model)
            refitted[family] = reason
        choice = {s: f for s, f in self.choice.items() if s in present}
        metadata = {**self.metadata, note: str(history[TIMESTAMP].max()), "updated_families": updated,
                    "refitted_families": refitted, "refitted_series": refitted_series}
        return self.derived(family_models=families, choice=choice, metadata=metadata)

    def with_future_covariates(self, future_covariates: pd.DataFrame) -> "SelectedPanelModel":
        """The same model whose families that forecast from covariates known in advance (``supports_covariates``
        with ``known_covariates``: arima, prophet, lightgbm as configured) read their horizon values from
        ``future_covariates`` (``series_id, timestamp, <covariate>``); the other families are shared as they are.
        Used by inference after ``update``: the plan of the new horizon replaces the one the model was trained
        with. Returns a new object (the loaded one is left as it is)."""
        import copy

        families = {}
        for family, model in self.family_models.items():
            if model.supports_covariates and model.known_covariates:
                model = copy.copy(model).set_future_covariates(future_covariates)
            families[family] = model
        return self.derived(family_models=families)

    @property
    def series_ids(self) -> list[str]:
        """Every series this model can forecast, in choice order."""
        return list(self.choice)

    def predict(
        self,
        series_ids: Sequence[str] | None = None,
        horizon: int | Mapping[str, int] | None = None,
        levels: Sequence[int] | None = None,
    ) -> pd.DataFrame:
        """Forecast ``series_ids`` (default: all) with each series' chosen family.

        Args:
            series_ids: series to forecast, each at most once; ``None`` means every series in ``choice``.
            horizon: steps ahead, one int for all series or a ``{series_id: horizon}`` mapping; default
                ``max_horizon``.
            levels: interval levels, a subset of ``self.levels``; default all of them.

        Returns:
            ``series_id, timestamp, mean, lo-L, hi-L..., model`` in request order then time order;
            ``model`` is the chosen family or ``"ensemble"``.
        """
        series_ids = self.series_ids if series_ids is None else [str(s) for s in series_ids]
        horizons = self._resolve_horizons(series_ids, horizon)
        levels = self._resolve_levels(levels)

        # The fitted state never changes, so every series' forecast is computed once, at max_horizon with
        # all levels, and a request takes its first `horizon` steps and its levels' columns (an h-step
        # forecast is the head of a longer one). A request then costs milliseconds instead of one predict
        # call over every series of every needed family; its rows are picked by position in one table, so
        # the cost follows the rows asked for, not one pandas slice per series (100,000 series took minutes).
        table = self._served_forecasts()
        index = np.fromiter((table.position[s] for s in series_ids), dtype=np.int64, count=len(series_ids))
        steps = np.fromiter((horizons[s] for s in series_ids), dtype=np.int64, count=len(series_ids))
        before = np.concatenate([[0], np.cumsum(steps)[:-1]])
        rows = np.repeat(table.starts[index] - before, steps) + np.arange(int(steps.sum()))
        result = table.frame.iloc[rows].reset_index(drop=True)
        return result[[SERIES_ID, TIMESTAMP, "mean", *interval_columns(levels), MODEL_COLUMN]]

    def _served_forecasts(self) -> "_ServedTable":
        """Every series' forecast at ``max_horizon`` with every level and the ``model`` column, cached."""
        cached = self.__dict__.get("_forecast_cache")
        if cached is not None:
            return cached
        with _CACHE_LOCK:
            cached = self.__dict__.get("_forecast_cache")
            if cached is None:
                cached = self._forecast_all()
                self.__dict__["_forecast_cache"] = cached
        return cached

    def _forecast_all(self) -> "_ServedTable":
        """One table of every series' forecast, series in choice order, each in time order.

        One predict call per family (families forecast all their series at once); the ensemble's series take
        the median of their members per timestamp in one group-by, then the ensemble's own calibration.
        """
        needed = sorted({m for s in self.choice for m in self._members(s)})
        forecasts = {family: self.family_models[family].predict(self.max_horizon, self.levels) for family in needed}
        chosen = pd.Series(self.choice, dtype=object)
        parts = []
        for family in sorted(set(chosen) - {ENSEMBLE}):
            frame = forecasts[family]
            mine = frame[frame[SERIES_ID].astype(str).isin(set(chosen.index[chosen == family]))]
            parts.append(mine.assign(**{SERIES_ID: mine[SERIES_ID].astype(str), MODEL_COLUMN: family}))
        ensemble_ids = set(chosen.index[chosen == ENSEMBLE])
        if ensemble_ids:
            parts.append(self._ensemble_forecasts(forecasts, ensemble_ids).assign(**{MODEL_COLUMN: ENSEMBLE}))
        columns = [SERIES_ID, TIMESTAMP, "mean", *interval_columns(self.levels), MODEL_COLUMN]
        frame = pd.concat([part[columns] for part in parts], ignore_index=True)
        position = {series_id: i for i, series_id in enumerate(self.choice)}
        frame["_order"] = frame[SERIES_ID].map(position)
        frame = frame.sort_values(["_order", TIMESTAMP], kind="stable").drop(columns="_order").reset_index(drop=True)
        lengths = frame.groupby(SERIES_ID, sort=False).size().reindex(list(self.choice)).fillna(0).to_numpy(np.int64)
        short = [s for s, n in zip(self.choice, lengths) if n < self.max_horizon]
        if short:
            raise PanelModelError(f"series {short[:5]} have fewer than max_horizon={self.max_horizon} forecast steps: "
                                  "refit their families")
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return _ServedTable(frame=frame, starts=starts, position=position)

    def _ensemble_forecasts(self, forecasts: dict[str, pd.DataFrame], series_ids: set[str]) -> pd.DataFrame:
        """The median of the members' mean and of each bound per series and timestamp (order statistics are
        monotone, so lo <= mean <= hi and nested levels survive), then the ensemble's own conformal adjustment.

        The median of calibrated members' intervals over-covers: the median forecast errs less than each
        member, but its interval is as wide as theirs (M3 monthly: 89 % and 99.5 % for 80 % and 95 %). The
        adjustments, learnt on the ensemble's backtest, bring it back to the nominal level.
        """
        members = self.ensemble_members
        value_columns = ["mean", *interval_columns(self.levels)]
        stacked = []
        for member in members:
            frame = forecasts[member]
            frame = frame[frame[SERIES_ID].astype(str).isin(series_ids)]
            stacked.append(frame.assign(**{SERIES_ID: frame[SERIES_ID].astype(str)})[[SERIES_ID, TIMESTAMP, *value_columns]])
        stacked = pd.concat(stacked, ignore_index=True)
        grouped = stacked.groupby([SERIES_ID, TIMESTAMP], sort=True)
        counts = grouped.size()
        incomplete = counts[counts != len(members)]
        if not incomplete.empty:
            series_id, stamp = incomplete.index[0]
            raise PanelModelError(
                f"ensemble members {members} disagree on the forecast timestamps of series {series_id!r} "
                f"(e.g. {stamp}): refit every member on the same history"
            )
        median = grouped[value_columns].median().reset_index()
        calibration = getattr(self, "ensemble_calibration", None)  # older pickles lack it
        if not calibration or not calibration.get("levels"):
            return median
        from ts_kedro.evaluation.conformal import apply_calibration

        models = [self.family_models[m] for m in members]
        scales: dict[str, float] = {}
        for model in reversed(models):  # the first member that has a series' scale gives it
            scales.update(getattr(model, "calibration_scales_", None) or {})
        # a series' lower bounds stay at zero or above when every member keeps them so
        nonnegative = {s: all((getattr(model, "nonnegative_series_", None) or {}).get(s, False) for model in models)
                       for s in series_ids}
        adjusted = apply_calibration(median, calibration, scales, nonnegative)
        # as every family's forecast: a narrowing never crosses the mean, and wider levels contain narrower ones
        return _finalise_forecast(adjusted, self.levels)

    def warm_up(self) -> "SelectedPanelModel":
        """Compute the cached forecasts now (serving does it at load, so no request pays for it)."""
        self._served_forecasts()
        return self

    def __getstate__(self) -> dict:
        # the cache is derived state: not pickled (it would double the artifact)
        return {key: value for key, value in self.__dict__.items() if key != "_forecast_cache"}

    def output_columns(self, levels: Sequence[int] | None = None) -> list[str]:
        return [SERIES_ID, TIMESTAMP, "mean", *interval_columns(self._resolve_levels(levels)), MODEL_COLUMN]

    # -- request checks -----------------------------------------------------------------------
    def _members(self, series_id: str) -> list[str]:
        family = self.choice[series_id]
        return self.ensemble_members if family == ENSEMBLE else [family]

    def _resolve_horizons(self, series_ids: list[str], horizon) -> dict[str, int]:
        if not series_ids:
            raise InferenceInputError("no series_id requested: name at least one series")
        duplicated = sorted(s for s, n in Counter(series_ids).items() if n > 1)  # linear: requests may be large
        if duplicated:
            shown = duplicated[:10] + (["..."] if len(duplicated) > 10 else [])
            raise InferenceInputError(f"series_id requested more than once: {shown}; ask for each series once")
        unknown = [s for s in series_ids if s not in self.choice]
        if unknown:
            shown = ", ".join(repr(s) for s in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise InferenceInputError(
                f"unknown series_id {shown} ({len(unknown)} of {len(series_ids)} requested): this model serves "
                f"{len(self.choice)} series, e.g. {self.series_ids[:5]}"
            )
        if horizon is None:
            horizon = self.max_horizon
        per_series = dict(horizon) if isinstance(horizon, Mapping) else {s: horizon for s in series_ids}
        missing = [s for s in series_ids if s not in per_series]
        if missing:
            raise InferenceInputError(f"no horizon given for series_id {missing}")
        bad = {s: per_series[s] for s in series_ids if not _valid_horizon(per_series[s], self.max_horizon)}
        if bad:
            raise InferenceInputError(
                f"horizon must be an integer from 1 to {self.max_horizon} (the backtested horizon); got "
                + ", ".join(f"{h!r} for series_id {s!r}" for s, h in list(bad.items())[:10])
            )
        return {s: int(per_series[s]) for s in series_ids}

    def _resolve_levels(self, levels) -> list[int]:
        if levels is None:
            return list(self.levels)
        # a lone scalar (JSON "levels": 80) means one level, not an iterable to unpack
        requested = [levels] if isinstance(levels, (str, bytes, int, float)) else list(levels)
        unsupported = [level for level in requested if isinstance(level, bool) or level not in self.levels]
        if unsupported or len(set(requested)) != len(requested):
            raise InferenceInputError(
                f"levels {requested} not supported: choose distinct levels among {self.levels} "
                "(the families were fitted and scored for these only)"
            )
        return sorted(int(level) for level in requested)

    def __repr__(self) -> str:
        counts = pd.Series(self.choice).value_counts().to_dict()
        return (
            f"SelectedPanelModel(series={len(self.choice)}, choice={counts}, ensemble_members={self.ensemble_members}, "
            f"levels={self.levels}, max_horizon={self.max_horizon})"
        )


def _valid_horizon(value, max_horizon: int) -> bool:
    # text ("3") and booleans (true) are not integers, even where Python could convert them
    if isinstance(value, (bool, str, bytes)) or type(value).__name__ == "bool_":
        return False
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(as_float) and as_float == int(as_float) and 1 <= as_float <= max_horizon


def panel_model_input_example(panel_model: SelectedPanelModel) -> pd.DataFrame:
    """A two-row request (or one row for a one-series model) used as the MLflow input example."""
    series = panel_model.series_ids[:2]
    return pd.DataFrame({SERIES_ID: series, "horizon": [panel_model.max_horizon] * len(series)})


def panel_model_signature(panel_model: SelectedPanelModel):
    """MLflow signature: ``series_id`` (str), ``horizon``, optional ``levels``, optional recent observations
    (``recent_timestamps``, ``recent_values``: lists) and optional covariates (``recent_covariates``,
    ``future_covariates``: mappings of covariate name to list) in; the long forecast frame out.

    ``horizon`` and ``levels`` are declared ``any``: MLflow would otherwise cast them before the model
    sees them (``long`` turns 2.5, 2.9, true and "3" into integers, and an array column fails on rows
    without levels), so the model's own checks (an integer horizon, levels among the model's) decide.
    ``any`` also passes a mapping (JSON object) through unchanged, which the covariate columns rely on.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType

    inputs = Schema(
        [
            ColSpec(DataType.string, SERIES_ID),
            ColSpec(AnyType(), "horizon"),
            ColSpec(AnyType(), "levels", required=False),
            ColSpec(AnyType(), "recent_timestamps", required=False),
            ColSpec(AnyType(), "recent_values", required=False),
            ColSpec(AnyType(), "recent_covariates", required=False),
            ColSpec(AnyType(), "future_covariates", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec(DataType.string, SERIES_ID),
            ColSpec(DataType.datetime, TIMESTAMP),
            *[ColSpec(DataType.double, column) for column in ["mean", *interval_columns(panel_model.levels)]],
            ColSpec(DataType.string, MODEL_COLUMN),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)
