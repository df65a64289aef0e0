"""The one small interface every model family implements (fit on a long panel, predict with intervals)."""
from __future__ import annotations

import abc
import copy
import functools
from collections.abc import Sequence

import logging

import numpy as np
import pandas as pd

from ts_kedro.forecasters.anomalies import (ANOMALY_TREATMENTS, IS_ANOMALY, impute_closed_anomalies,
                                           impute_new_closed_anomalies)

logger = logging.getLogger(__name__)

SERIES_ID, TIMESTAMP, VALUE = "series_id", "timestamp", "value"
#: data_processing's per-point flags (``is_imputed``, ``is_anomaly``): panel columns that are not covariates
FLAG_COLUMNS = ("is_imputed", "is_anomaly")
# (family, ignored covariates) already logged by this process: a backtest fits a family once per window
_IGNORED_LOGGED: set[tuple[str, tuple[str, ...]]] = set()


class ForecasterError(ValueError):
    """Misuse of a forecaster: predict before fit, a series too short, a bad horizon or level.

    ``series_ids``: where the error is about particular series (an update a family refuses for them), every one
    of them, so a caller can set those series aside and go on with the others (``update_refitting_refused``); a
    mapping gives each one's own reason (``reasons``).
    """

    def __init__(self, message: str = "", series_ids: Sequence | dict = ()):
        super().__init__(message)
        self.reasons = {sid: str(why) for sid, why in series_ids.items()} if isinstance(series_ids, dict) else {}
        self.series_ids = tuple(series_ids)

    def __reduce__(self):  # the series and reasons survive a trip through a worker process
        return type(self), (str(self), self.reasons or self.series_ids)

    @classmethod
    def refused_update(cls, family: str, refused: dict) -> "ForecasterError":
        """The error of a family's ``_update`` that refuses the new points of ``refused`` (series -> reason), all
        named at once so a caller can refit those and update the rest."""
        first = next(iter(refused))
        return cls(f"{family}: {len(refused)} series cannot be updated, e.g. series {first!r}: {refused[first]}; "
                   "refit them on the longer history", series_ids=refused)


#: fitted attributes that hold the interval calibration learnt on the family's backtest: a refit of the same
#: family keeps them (``inherit_calibration``), and so does a series refitted inside a fitted model
_CALIBRATION_ATTRIBUTES = ("interval_calibration_", "calibration_scales_", "nonnegative_series_")


class Forecaster(abc.ABC):
    """Base class: public ``fit``/``predict`` validate, subclasses implement ``_fit``/``_predict``.

    The constructor only stores hyperparameters; fitted state lives in trailing-underscore attributes.
    The panel is long: ``series_id, timestamp, value`` on a regular ``freq`` grid without NaNs
    (data_processing guarantees that). ``predict`` returns ``series_id, timestamp, mean`` plus
    ``lo-L``/``hi-L`` for every requested level L (percent, e.g. 80, 95).

    Short and awkward series never fail a fit: a series the family cannot take (``unfit_reason`` says why,
    by default fewer than ``min_length`` points) is served by the ``fallback`` family, fitted on those
    series only, recursively (e.g. arima -> ets -> seasonal_naive). ``served_by_`` records, per series, the
    family that really forecasts it and ``fallback_reasons_`` why; ``fitted_series_ids_`` are the series
    ``_fit``/``_predict`` handle themselves (subclasses iterate over those). Only a family without a fallback
    raises ``ForecasterError`` for a series it cannot take.

    Covariates: every panel column beyond ``series_id, timestamp, value`` and data_processing's flags is a
    covariate (``covariate_columns``). A family with ``supports_covariates`` reads the columns named in its
    ``known_covariates`` (and, where it takes them, ``observed_covariates``); every other covariate column, and all
    of them for a family without the capability, is ignored explicitly: ``ignored_covariates_`` maps each to the
    reason, and the first fit of a process that ignores it logs so.
    """

    name: str = "base"
    supports_intervals: bool = True
    #: whether the family uses covariates known in advance: their recorded values in the panel when fitting and
    #: updating, their planned values over the horizon (``set_future_covariates``) when forecasting. Families that
    #: set it take a ``known_covariates`` hyperparameter; None there means "the covariates declared
    #: ``known_in_advance`` in ``data_processing.source.covariates``" (the training pipeline fills them in).
    supports_covariates: bool = False
    #: the panel columns the family reads as covariates known in advance / observed (supporting families set them)
    known_covariates: Sequence[str] = ()
    observed_covariates: Sequence[str] = ()
    #: registered family that serves the series this one cannot fit; None raises instead
    fallback: str | None = "seasonal_naive"
    #: ``impute``: fit around data_processing's flagged anomalies where the series came back from them
    #: (``forecasters/anomalies.py``); ``keep``: fit on the observed values. A model block's ``anomalies`` sets it.
    anomaly_treatment: str = "impute"
    #: the ``anomalies`` settings this family accepts (a family whose model needs its outliers narrows it)
    anomaly_treatments: tuple[str, ...] = ANOMALY_TREATMENTS
    #: whether every fitted state of the family is per series, in dict attributes keyed by exactly
    #: ``fitted_series_ids_`` (the local families). Then one series can be refitted inside a fitted model
    #: (``merged_with``) while the others keep their fit; a global model (one network for all series) cannot.
    per_series_state: bool = False

    def __init__(self, freq: str, season_length: int | None = None, **hyperparameters):
        from ts_kedro.frequency import normalise_freq, season_length_for

        normalise_freq(freq)  # a clear error for a bad alias, at construction
        self.freq = freq
        self.season_length = season_length_for(freq) if season_length is None else int(season_length)
        if self.season_length < 1:
            raise ForecasterError(f"{self.name}: season_length must be >= 1, got {season_length!r}")
        self.hyperparameters = hyperparameters
        self.is_fitted_ = False

    # -- properties subclasses may override -------------------------------------------------
    @property
    def min_length(self) -> int:
        """Minimum number of observations per series that this model can fit."""
        return 2 * self.season_length

    def unfit_reason(self, values: np.ndarray, timestamps: np.ndarray | None = None) -> str | None:
        """Why this family cannot fit a series with these values (None: it can). Default: too few points, or a
        constant series (nothing to learn: a family with a fallback passes it down the chain, whose end, seasonal
        naive, forecasts the constant). ``timestamps`` (the values' datetime64 stamps, when the caller has them)
        let a family refuse by time as well (Prophet: a span its time arithmetic cannot hold)."""
        if len(values) < self.min_length:
            return f"{len(values)} observations, {self.name} needs at least {self.min_length}"
        if self.fallback is not None and len(values) and np.ptp(values) == 0:
            return f"constant series (every value {values[0]:g}): nothing for {self.name} to learn"
        return None

    def n_parameters(self) -> int:
        """Number of fitted parameters (model complexity used in model selection)."""
        return 0

    # -- public API ---------------------------------------------------------------------------
    def fit(self, panel: pd.DataFrame) -> "Forecaster":
        _check_panel(panel)
        self._check_covariate_columns(panel, "panel")
        self.imputed_anomalies_ = 0
        if self.anomaly_treatment == "impute":
            panel, self.imputed_anomalies_ = impute_closed_anomalies(panel, self.season_length)
            if self.imputed_anomalies_:
                logger.info("%s: fitting around %d flagged anomalous points (closed runs imputed; anomalies: "
                            "keep fits on them)", self.name, self.imputed_anomalies_)
        self.ignored_covariates_ = self._ignored_covariates(panel)
        ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
        rows = ordered.groupby(SERIES_ID, sort=False).indices  # positions only: no copy of the panel's columns
        all_values, all_stamps = ordered[VALUE].to_numpy(float), ordered[TIMESTAMP].to_numpy()
        values = {sid: all_values[rows[sid]] for sid in panel[SERIES_ID].unique()}  # first-appearance order
        reasons = {sid: reason for sid, v in values.items()
                   if (reason := self.unfit_reason(v, all_stamps[rows[sid]])) is not None}
        if reasons and self.fallback is None:
            first = next(iter(reasons))
            raise ForecasterError(
                f"{self.name}: series {first!r}: {reasons[first]} ({len(reasons)} series cannot be fitted and "
                "this family has no fallback); lengthen the history or quarantine them"
            )
        self.series_ids_ = list(values)
        self.last_timestamp_ = panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        self.fitted_series_ids_ = [sid for sid in self.series_ids_ if sid not in reasons]
        self.served_by_ = {sid: self.name for sid in self.fitted_series_ids_}
        self.fallback_reasons_ = dict(reasons)
        self.fallback_model_ = None
        if reasons:
            self.fallback_model_ = self._build_fallback()
            self.fallback_model_.fit(panel[panel[SERIES_ID].isin(list(reasons))].reset_index(drop=True))
            self.served_by_.update(self.fallback_model_.served_by_)
            for sid, deeper in self.fallback_model_.fallback_reasons_.items():
                self.fallback_reasons_[sid] = f"{reasons[sid]}; {deeper}"
            logger.info("%s: %d of %d series served by fallback %s (first: %r, %s)", self.name, len(reasons),
                        len(values), self.fallback, next(iter(reasons)), next(iter(reasons.values())))
        if self.fitted_series_ids_:
            own = panel if not reasons else panel[panel[SERIES_ID].isin(self.fitted_series_ids_)]
            self._fit(own.reset_index(drop=True))
        self.is_fitted_ = True
        return self

    @property
    def supports_update(self) -> bool:
        """Whether this family conditions on new observations without refitting (it implements ``_update``)."""
        return type(self)._update is not Forecaster._update

    def update(self, new_observations: pd.DataFrame, history: pd.DataFrame | None = None) -> "Forecaster":
        """Condition the fitted model on observations that arrived after its fit, without re-estimating it.

        ``new_observations`` is a long frame (``series_id, timestamp, value``) holding, for any subset of the
        fitted series, the steps right after each one's last timestamp: contiguous on the ``freq`` grid, no
        gaps, no duplicates, no NaN. The fitted parameters (orders, coefficients, smoothing weights, network
        weights, interval calibration) stay as they are; only the state a forecast starts from moves forward
        (a filter run over the new points, new last values or a new input window), so the next ``predict``
        starts after the newest observation. Series served by the fallback family are updated through it.
        A series absent from ``new_observations`` keeps its state and its forecast origin. A model that reads
        covariates (``known_covariates``, ``observed_covariates``) needs their columns, without gaps, for its own
        series; its next ``predict`` needs a plan of the new horizon (``set_future_covariates``).

        ``history`` (optional): the long panel up to and including the new observations, with data_processing's
        ``is_anomaly`` flags, as inference holds it. A model fitted around flagged anomalies (``anomalies:
        impute``) then takes the new observations as a fit on that history would: the points of a flagged run
        that closes inside them are imputed (``anomalies.impute_new_closed_anomalies``), and
        ``imputed_on_update_`` counts them. Without it (serving) they are taken as observed.

        Why: a Day-N cycle without drift needs forecasts from the newest data, not new parameters; updating
        costs a filter pass where a refit costs an estimation (``benchmarks/update_speed.py`` measures it).
        Families without ``_update`` refuse with a ``ForecasterError`` (refit them on the longer history).
        """
        if not getattr(self, "is_fitted_", False):
            raise ForecasterError(f"{self.name}: call fit() before update()")
        _check_panel(new_observations, allow_empty=True, what="new_observations")
        if new_observations.empty:
            return self
        if not self.supports_update:
            raise ForecasterError(f"{self.name}: this family does not implement update(); refit it on the "
                                  "longer history instead")
        ordered = new_observations.sort_values([SERIES_ID, TIMESTAMP], kind="stable").reset_index(drop=True)
        unknown = sorted(set(ordered[SERIES_ID]) - set(self.series_ids_), key=str)
        if unknown:
            raise ForecasterError(
                f"{self.name}: new_observations name series {unknown[:10]} that the model was not fitted on; "
                "a new series needs a refit (Day 0 or a retrain)")
        self._check_continuation(ordered)
        imputed = 0
        if history is not None and self.anomaly_treatment == "impute":
            ordered, imputed = self._impute_new(ordered, history)
        own_rows = ~ordered[SERIES_ID].isin(set(self.fallback_reasons_))  # the fallback reads no covariate of ours
        self._check_covariate_columns(ordered[own_rows], "new_observations")
        # all or nothing: the update runs on a copy, so a series refused half-way leaves this model as it was
        updated = copy.deepcopy(self)
        fallback_ids = set(self.fallback_reasons_)
        own = ordered[~ordered[SERIES_ID].isin(fallback_ids)].reset_index(drop=True)
        delegated = ordered[ordered[SERIES_ID].isin(fallback_ids)].reset_index(drop=True)
        if not delegated.empty:
            updated.fallback_model_.update(delegated)
        if not own.empty:
            updated._update(own)
        updated.last_timestamp_ = updated.last_timestamp_.copy()
        ends = ordered.groupby(SERIES_ID, sort=False)[TIMESTAMP].max()
        updated.last_timestamp_.loc[ends.index] = ends.to_numpy()
        updated.n_updated_observations_ = getattr(self, "n_updated_observations_", 0) + len(ordered)
        updated.imputed_on_update_ = getattr(self, "imputed_on_update_", 0) + imputed
        self.__dict__.update(updated.__dict__)
        return self

    def update_refitting_refused(self, new_observations: pd.DataFrame, history: pd.DataFrame) -> "Forecaster":
        """``update``, except that the series whose new points the family refuses are refitted on ``history``.

        A family refuses some points for some series (a value <= 0 where ARIMA models the log or ETS a
        multiplicative error or season): those series need a fit on the longer history, the others only a filter
        pass. With ``per_series_state`` the refused series (``ForecasterError.series_ids``) are fitted afresh, by a
        model of this family with the same hyperparameters on their rows of ``history`` (the panel up to and
        including the new observations, as for ``update``), and take that state in this model (``merged_with``);
        every other series is updated. Before, one refused series cost the refit of the whole family, every cycle
        it happened (NN5: one ATM's zero withdrawals refitted ARIMA's 36 series).

        Returns this model, updated; ``refitted_on_update_`` maps each refitted series to the reason. Raises the
        ``ForecasterError`` of ``update`` where it names no series, the family's state is not per series, or the
        refit does not fit those series by the family itself (then refit the family); the model is then left as it
        was.
        """
        refused: dict = {}
        remaining = new_observations
        work = copy.copy(self)  # all or nothing: this model changes only once every step has succeeded
        while True:
            try:
                if not remaining.empty:
                    own_history = history[~history[SERIES_ID].isin(set(refused))]
                    work.update(remaining.reset_index(drop=True), history=own_history.reset_index(drop=True))
                break
            except ForecasterError as exc:
                named = set(exc.series_ids) - set(refused)
                if not self.per_series_state or not named:
                    raise
                refused.update({series_id: exc.reasons.get(series_id, str(exc)) for series_id in exc.series_ids
                                if series_id in named})
                remaining = remaining[~remaining[SERIES_ID].isin(set(refused))]
        if refused:
            fresh = self.unfitted_copy()
            rows = history[history[SERIES_ID].isin(set(refused))].reset_index(drop=True)
            missing = sorted(set(refused) - set(rows[SERIES_ID]), key=str)
            if missing:
                raise ForecasterError(f"{self.name}: history lacks series {missing[:5]} whose update was refused: "
                                      "pass the history the new observations belong to")
            fresh.fit(rows)
            work = work.merged_with(fresh)
            logger.info("%s: %d series refitted on their history, %d updated (first refused: %r, %s)", self.name,
                        len(refused), len(set(new_observations[SERIES_ID]) - set(refused)), next(iter(refused)),
                        next(iter(refused.values())))
        work.refitted_on_update_ = refused
        self.__dict__.update(work.__dict__)
        return self

    def unfitted_copy(self) -> "Forecaster":
        """A new, unfitted model of this family with the same settings (hyperparameters, anomaly treatment)."""
        fresh = type(self)(freq=self.freq, season_length=self.season_length, **self.hyperparameters)
        fresh.anomaly_treatment = self.anomaly_treatment  # set per model block, not a hyperparameter
        return fresh

    def merged_with(self, other: "Forecaster") -> "Forecaster":
        """This fitted model with the series of ``other`` served by ``other``'s fit: the mirror of ``restricted_to``.

        ``other`` is this family, with the same hyperparameters, fitted (by the family itself, not its fallback)
        on some of this model's own fitted series, e.g. on a longer history. Every per-series state (each dict
        attribute keyed by exactly the fitted series) takes ``other``'s entries for those series, and their data
        end becomes ``other``'s; the others are shared as they are, in their order. The interval calibration stays
        this model's, as a refit keeps it (``inherit_calibration``). Needs ``per_series_state``.
        """
        if not self.per_series_state or type(other) is not type(self):
            raise ForecasterError(f"{self.name}: only a family with per-series state merges a fit of the same family "
                                  f"(got {type(other).__name__} into {type(self).__name__})")
        ids = list(other.series_ids_)
        own = set(self.fitted_series_ids_)
        if set(other.fitted_series_ids_) != set(ids) or not set(ids) <= own:
            raise ForecasterError(f"{self.name}: a merged fit must fit its series itself (no fallback), and they must "
                                  f"be this model's own fitted series; got {ids[:5]}")
        merged, replaced = copy.copy(self), set(ids)
        for attribute, value in vars(self).items():
            if not attribute.endswith("_") or attribute in _CALIBRATION_ATTRIBUTES or not isinstance(value, dict) \
                    or not value or set(value) != own:
                continue
            theirs = getattr(other, attribute, None)
            if not isinstance(theirs, dict) or not replaced <= set(theirs):
                raise ForecasterError(f"{self.name}: the merged fit lacks the per-series state {attribute!r}")
            setattr(merged, attribute, {sid: theirs[sid] if sid in replaced else state for sid, state in value.items()})
        merged.last_timestamp_ = self.last_timestamp_.copy()
        merged.last_timestamp_.loc[ids] = other.last_timestamp_.loc[ids].to_numpy()
        return merged.inherit_calibration(self)  # as a refit: kept, the fit level (cqr_fit_level) recorded anew

    def _impute_new(self, ordered: pd.DataFrame, history: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """``ordered`` (the sorted new observations) with the values a fit on ``history`` would impute, and how
        many; checked against ``history`` so a history that does not hold these observations cannot change them."""
        if IS_ANOMALY not in history.columns:
            return ordered, 0
        own = history[history[SERIES_ID].isin(set(ordered[SERIES_ID]))]
        filled = impute_new_closed_anomalies(own, self.last_timestamp_, self.season_length)
        if filled.empty:
            return ordered, 0
        keys = pd.MultiIndex.from_frame(ordered[[SERIES_ID, TIMESTAMP]])
        new_rows = own[own[TIMESTAMP] > own[SERIES_ID].map(self.last_timestamp_)]
        observed = new_rows.drop_duplicates([SERIES_ID, TIMESTAMP], keep="last").set_index([SERIES_ID, TIMESTAMP])
        held = observed[VALUE].reindex(keys).to_numpy(float)  # NaN where the history lacks the point
        differs = ~np.isclose(held, ordered[VALUE].to_numpy(float))
        if differs.any():
            row = ordered.iloc[int(np.flatnonzero(differs)[0])]
            raise ForecasterError(f"{self.name}: history does not hold new_observations as they are (first "
                                  f"difference: series {row[SERIES_ID]!r} at {row[TIMESTAMP]}); pass the history "
                                  "the new observations were taken from, or no history")
        replacement = filled.set_index([SERIES_ID, TIMESTAMP])[VALUE]
        at = keys.isin(replacement.index)
        ordered = ordered.assign(**{VALUE: ordered[VALUE].astype(float)})  # an integer column takes fills too
        ordered.loc[at, VALUE] = replacement.reindex(keys[at]).to_numpy(float)
        logger.info("%s: update takes %d flagged points of the new observations as a fit would (closed runs "
                    "imputed)", self.name, int(at.sum()))
        return ordered, int(at.sum())

    def restricted_to(self, series_ids) -> "Forecaster":
        """A view of this fitted model that predicts and updates only ``series_ids`` (a subset of ``series_ids_``).

        Nothing is refitted or copied in depth: per-series state (every dict attribute keyed by exactly the
        fitted series) is narrowed to the kept series, everything else is shared. Serving uses it to update and
        forecast the few series of a request without touching the rest of the panel.
        """
        wanted = set(series_ids)
        keep = [sid for sid in self.series_ids_ if sid in wanted]
        unknown = sorted(set(series_ids) - set(self.series_ids_), key=str)
        if unknown:
            raise ForecasterError(f"{self.name}: series {unknown[:10]} were not fitted by this model")
        view = copy.copy(self)
        kept = set(keep)
        own = set(self.fitted_series_ids_)
        for attribute, value in vars(self).items():
            if attribute.endswith("_") and isinstance(value, dict) and value and set(value) == own:
                setattr(view, attribute, {sid: state for sid, state in value.items() if sid in kept})
        view.series_ids_ = keep
        view.fitted_series_ids_ = [sid for sid in self.fitted_series_ids_ if sid in kept]
        view.served_by_ = {sid: family for sid, family in self.served_by_.items() if sid in kept}
        view.fallback_reasons_ = {sid: why for sid, why in self.fallback_reasons_.items() if sid in kept}
        view.last_timestamp_ = self.last_timestamp_[self.last_timestamp_.index.isin(keep)]
        delegated = [sid for sid in keep if sid in self.fallback_reasons_]
        view.fallback_model_ = self.fallback_model_.restricted_to(delegated) if delegated else None
        return view

    # -- covariates ---------------------------------------------------------------------------------------------
    def _check_covariate_columns(self, panel: pd.DataFrame, what: str) -> None:
        """The covariate columns this model reads are in ``panel`` and have a value in every row."""
        used = [*self.known_covariates, *self.observed_covariates]
        missing = [name for name in used if name not in panel.columns]
        if missing:
            raise ForecasterError(
                f"{self.name}: {what} lacks covariate column(s) {missing} that the model reads (known_covariates / "
                f"observed_covariates); it has {list(covariate_columns(panel))}: declare them in "
                "data_processing.source.covariates or drop them from the hyperparameters")
        for name in used:
            gaps = panel[name].isna().to_numpy()
            if gaps.any():
                row = panel.iloc[int(np.flatnonzero(gaps)[0])]
                raise ForecasterError(f"{self.name}: covariate {name!r} is missing for series {row[SERIES_ID]!r} at "
                                      f"{row[TIMESTAMP]} in {what}; impute it in data_processing first")

    def _ignored_covariates(self, panel: pd.DataFrame) -> dict[str, str]:
        """Covariate columns of ``panel`` this model does not read, each with the reason; logged once per process."""
        used = {*self.known_covariates, *self.observed_covariates}
        if self.supports_covariates and "observed_covariates" in self.hyperparameters:
            why = f"not among {self.name}'s known_covariates or observed_covariates"
        elif self.supports_covariates:
            why = (f"not among {self.name}'s known_covariates: it reads covariates known in advance only (an "
                   "observed covariate has no values over the horizon)")
        else:
            why = f"{self.name} cannot use covariates (supports_covariates is False)"
        ignored = {name: why for name in covariate_columns(panel) if name not in used}
        key = (self.name, tuple(ignored))
        if ignored and key not in _IGNORED_LOGGED:
            _IGNORED_LOGGED.add(key)
            logger.info("%s: ignores covariate(s) %s: %s", self.name, list(ignored), why)
        return ignored

    def set_future_covariates(self, future_covariates: pd.DataFrame) -> "Forecaster":
        """The planned values of ``known_covariates`` over the horizon (``series_id, timestamp, <covariates>``,
        e.g. data_processing's ``future_covariates_horizon``), read by the next ``predict``; returns the model.

        Only for a family with ``supports_covariates``. The plan must cover each series' horizon after its newest
        observation: after an ``update`` it needs the new horizon's values (``predict`` names the covariate, the
        series and the first timestamp it lacks).
        """
        if not self.supports_covariates:
            raise ForecasterError(f"{self.name}: this family cannot use covariates (supports_covariates is False)")
        missing = [c for c in (SERIES_ID, TIMESTAMP, *self.known_covariates) if c not in future_covariates.columns]
        if missing:
            raise ForecasterError(f"{self.name}: future_covariates lack column(s) {missing}; they need series_id, "
                                  f"timestamp and every known_covariates column {list(self.known_covariates)}")
        plan = future_covariates[[SERIES_ID, TIMESTAMP, *self.known_covariates]]
        self.future_covariates_ = plan.assign(**{TIMESTAMP: pd.DatetimeIndex(plan[TIMESTAMP]).as_unit("ns")})
        self._future_plan = None
        return self

    def future_covariate_values(self, series_id, timestamps: pd.DatetimeIndex) -> np.ndarray:
        """The planned values of ``known_covariates`` for ``series_id`` at ``timestamps`` (len x covariates).

        Raises ``ForecasterError`` naming the covariate, the series and the first timestamp the plan lacks.
        """
        plan = getattr(self, "future_covariates_", None)
        if getattr(self, "_future_plan", None) is None:  # indexed once per plan, not once per series
            self._future_plan = {} if plan is None else {
                sid: rows.set_index(TIMESTAMP)[list(self.known_covariates)]
                for sid, rows in plan.groupby(SERIES_ID, sort=False)}
        stamps = pd.DatetimeIndex(timestamps).as_unit("ns")
        rows = self._future_plan.get(series_id)
        values = (pd.DataFrame(np.nan, index=stamps, columns=list(self.known_covariates)) if rows is None
                  else rows.reindex(stamps))
        for name in self.known_covariates:
            gaps = values[name].isna().to_numpy()
            if gaps.any():
                raise ForecasterError(
                    f"{self.name}: future_covariates lack covariate {name!r} for series {series_id!r} at "
                    f"{stamps[int(np.flatnonzero(gaps)[0])]} (first missing timestamp of the horizon); provide "
                    "the planned values of the covariates known in advance (set_future_covariates)")
        return values.to_numpy(float)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_future_plan", None)  # a cache of future_covariates_, rebuilt on use
        return state

    def _check_continuation(self, ordered: pd.DataFrame) -> None:
        """Every series' new timestamps must be the next steps of the grid after its last fitted timestamp.

        Checked on panel-wide arrays first (one ``date_range`` per series took 9 s for 20,000 series); the
        series that fail it, or every series where the grid has no panel-wide form, are checked one by one,
        which also words the error.
        """
        suspects = _continuation_suspects(ordered, self.last_timestamp_, self.freq)
        if suspects is not None and not suspects:
            return
        rows = ordered if suspects is None else ordered[ordered[SERIES_ID].isin(suspects)]
        for series_id, group in rows.groupby(SERIES_ID, sort=False):
            stamps = pd.DatetimeIndex(group[TIMESTAMP])
            expected = pd.date_range(self.last_timestamp_[series_id], periods=len(stamps) + 1, freq=self.freq)[1:]
            if not np.array_equal(stamps.as_unit("ns").asi8, expected.as_unit("ns").asi8):  # any datetime unit
                wrong = int(np.argmax(stamps != expected)) if len(stamps) == len(expected) else 0
                raise ForecasterError(
                    f"{self.name}: new_observations of series {series_id!r} must continue the {self.freq!r} grid "
                    f"right after its last observation {self.last_timestamp_[series_id]}: expected "
                    f"{expected[wrong]} at row {wrong} of that series, got {stamps[wrong]} (no gaps, duplicates "
                    "or already seen timestamps; send only the steps after the model's data end)")

    def _update(self, new_observations: pd.DataFrame) -> None:
        """Move the fitted state of ``fitted_series_ids_`` forward over ``new_observations`` (validated, sorted)."""
        raise ForecasterError(f"{self.name}: this family does not implement update()")

    def _build_fallback(self) -> "Forecaster":
        from ts_kedro.forecasters import get_forecaster_class

        cls = get_forecaster_class(self.fallback)
        if cls is type(self):
            raise ForecasterError(f"{self.name}: fallback {self.fallback!r} is the family itself")
        fallback = cls(freq=self.freq, season_length=self.season_length)
        # it fits the panel as this family fitted it (anomalies already imputed, or kept on purpose): never again
        fallback.anomaly_treatment = "keep"
        return fallback

    def predict(self, horizon: int, levels: Sequence[int] = ()) -> pd.DataFrame:
        if not getattr(self, "is_fitted_", False):
            raise ForecasterError(f"{self.name}: call fit() before predict()")
        if int(horizon) != horizon or horizon < 1:
            raise ForecasterError(f"{self.name}: horizon must be a positive integer, got {horizon!r}")
        levels = [int(level) for level in levels]
        bad = [level for level in levels if not 0 < level < 100]
        if bad:
            raise ForecasterError(f"{self.name}: levels must lie strictly between 0 and 100, got {bad}")
        forecast = self._uncalibrated_forecast(int(horizon), levels)
        calibration = getattr(self, "interval_calibration_", None)
        if calibration and levels:
            from ts_kedro.evaluation.conformal import apply_calibration

            self.record_fit_level()  # with cqr_fit_level, once per fit: at its first forecast unless done before
            forecast = apply_calibration(forecast, calibration, self.calibration_scales_, self.nonnegative_series_)
        return _finalise_forecast(forecast, levels)

    def _uncalibrated_forecast(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        """The family's and its fallback's forecasts in the fitted order of series, before any calibration."""
        parts = []
        if self.fitted_series_ids_:
            parts.append(self._predict(horizon, sorted(levels)))
        if self.fallback_model_ is not None:
            parts.append(self.fallback_model_.predict(horizon, sorted(levels)))
        forecast = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        if len(parts) > 1:  # back to the fitted order of series
            order = {sid: i for i, sid in enumerate(self.series_ids_)}
            forecast = forecast.sort_values(SERIES_ID, key=lambda s: s.map(order), kind="stable")
        return forecast

    def inherit_calibration(self, source: "Forecaster") -> "Forecaster":
        """Use the interval calibration of ``source`` (the same family refitted on newer data keeps it); with
        ``cqr_fit_level`` this fit's own interval level is recorded in place of the source's."""
        for attribute in _CALIBRATION_ATTRIBUTES:
            if hasattr(source, attribute):
                setattr(self, attribute, copy.deepcopy(getattr(source, attribute)))
        calibration = getattr(self, "interval_calibration_", None)
        if calibration and "fit_level" in calibration:
            calibration["fit_level"].pop("served", None)  # this fit records its own level at its first forecast
        return self

    def calibrate_intervals(self, backtest: pd.DataFrame, panel: pd.DataFrame, method: str = "auto",
                            per_series: bool = True, exclude_anomalies: bool = True) -> "Forecaster":
        """Conformal calibration of this fitted model's intervals from its own backtest (see evaluation.conformal).

        ``backtest`` is this family's rolling-origin backtest on ``panel`` (the data the model was fitted on);
        afterwards ``predict`` widens or narrows every calibrated level by the learnt per-step adjustment times
        the interval's width, and keeps the lower bound of a never-negative series at zero or above. ``method``:
        ``backtest.calibration_method`` (``auto``, ``cqr``, ``cqr_fit_level``); with ``cqr_fit_level`` the fit's
        own interval level is recorded at the fit's first forecast, from its raw forecast of every series.
        ``per_series`` (``backtest.per_series_calibration``): series with enough backtest windows of their own also
        get their own shift. ``exclude_anomalies`` (``backtest.calibration_excludes_anomalies``): backtest points
        whose actual data_processing flagged (``is_anomaly`` in ``panel``) are left out of the calibration.
        """
        from ts_kedro.evaluation.conformal import conformal_adjustments, series_scales

        if not getattr(self, "is_fitted_", False):
            raise ForecasterError(f"{self.name}: call fit() before calibrate_intervals()")
        levels = sorted({int(c.split("-", 1)[1]) for c in backtest.columns if c.startswith("lo-")})
        self.interval_calibration_ = conformal_adjustments(backtest, panel, self.season_length, levels, method,
                                                           per_series=per_series, exclude_anomalies=exclude_anomalies)
        self.calibration_scales_ = series_scales(panel, self.season_length)
        self.nonnegative_series_ = (panel.groupby(SERIES_ID)[VALUE].min() >= 0).to_dict()
        return self

    def record_fit_level(self) -> None:
        """With ``cqr_fit_level``: this fit's mean raw interval width in series scales, per level (its ``g``), from
        its raw forecast of every series at the calibrated horizon (so any later forecast is rescaled alike).

        The first calibrated ``predict`` calls it; call it beforehand (with the future covariates set) so that
        forecast costs what every later one does (``fit_model`` times the first forecast). Recorded once per fit.
        """
        from ts_kedro.evaluation.conformal import served_fit_levels

        calibration = getattr(self, "interval_calibration_", None)
        if not calibration or "fit_level" not in calibration or not getattr(self, "is_fitted_", False) \
                or "served" in calibration["fit_level"]:
            return
        levels = [int(level) for level in calibration["levels"]]
        horizon = max((len(q) for q in calibration["levels"].values()), default=0)
        if not horizon:
            return
        # the raw intervals, without touching the model's attributes (a served model may answer other threads)
        raw = self._uncalibrated_forecast(horizon, levels)
        calibration["fit_level"]["served"] = served_fit_levels(raw, self.calibration_scales_, levels)

    def forecast(self, panel: pd.DataFrame, horizon: int, levels: Sequence[int] = ()) -> pd.DataFrame:
        return self.fit(panel).predict(horizon, levels)

    # -- helpers for subclasses ----------------------------------------------------------------
    def future_index(self, series_id, horizon: int) -> pd.DatetimeIndex:
        return _future_index(self.last_timestamp_[series_id], int(horizon), self.freq)

    @abc.abstractmethod
    def _fit(self, panel: pd.DataFrame) -> None: ...

    @abc.abstractmethod
    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame: ...

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}(freq={self.freq!r}, season_length={self.season_length}{', ' if params else ''}{params})"


def covariate_columns(panel: pd.DataFrame) -> list[str]:
    """The covariate columns of a long panel: every column but ``series_id, timestamp, value`` and the flags."""
    return [c for c in panel.columns if c not in (SERIES_ID, TIMESTAMP, VALUE, *FLAG_COLUMNS)]


def interval_columns(levels: Sequence[int]) -> list[str]:
    return [f"{side}-{level}" for level in levels for side in ("lo", "hi")]


def _check_panel(panel: pd.DataFrame, allow_empty: bool = False, what: str = "panel") -> None:
    missing = [c for c in (SERIES_ID, TIMESTAMP, VALUE) if c not in panel.columns]
    if missing:
        raise ForecasterError(f"{what} lacks columns {missing}; expected long format series_id, timestamp, value")
    if panel.empty and not allow_empty:
        raise ForecasterError(f"{what} is empty: nothing to fit")
    if panel[VALUE].isna().any():
        row = int(np.flatnonzero(panel[VALUE].isna().to_numpy())[0])
        raise ForecasterError(f"{what} has NaN values (first at row {row}, series "
                              f"{panel[SERIES_ID].iloc[row]!r}): impute them in data_processing first")


def _finalise_forecast(forecast: pd.DataFrame, levels: list[int]) -> pd.DataFrame:
    """Order columns and enforce lo <= mean <= hi (quantile crossing is repaired by sorting)."""
    forecast = forecast.reset_index(drop=True)
    for level in levels:
        lo, hi = forecast[f"lo-{level}"].to_numpy(float), forecast[f"hi-{level}"].to_numpy(float)
        mean = forecast["mean"].to_numpy(float)
        forecast[f"lo-{level}"] = np.minimum(lo, mean)
        forecast[f"hi-{level}"] = np.maximum(hi, mean)
    # nested levels: a wider level must contain the narrower one
    for narrow, wide in zip(sorted(levels), sorted(levels)[1:]):
        forecast[f"lo-{wide}"] = np.minimum(forecast[f"lo-{wide}"], forecast[f"lo-{narrow}"])
        forecast[f"hi-{wide}"] = np.maximum(forecast[f"hi-{wide}"], forecast[f"hi-{narrow}"])
    return forecast[[SERIES_ID, TIMESTAMP, "mean", *interval_columns(levels)]]


@functools.lru_cache(maxsize=4096)
def _future_index(last: pd.Timestamp, horizon: int, freq: str) -> pd.DatetimeIndex:
    """The ``horizon`` grid steps after ``last``; cached, as series of a panel mostly share their last timestamp
    (one ``date_range`` per series cost 4 s of a 20,000-series predict). A DatetimeIndex is immutable."""
    return pd.date_range(last, periods=horizon + 1, freq=freq)[1:]


def _continuation_suspects(ordered: pd.DataFrame, last_timestamp: pd.Series, freq: str) -> set | None:
    """Series of ``ordered`` (sorted by series and time) whose new timestamps do not all continue the grid
    right after their ``last_timestamp``, checked panel-wide; None when the grid has no panel-wide form."""
    from pandas.tseries.frequencies import to_offset

    from ts_kedro.frequency import series_bounds, unit_steps

    ids = ordered[SERIES_ID].to_numpy()
    firsts = series_bounds(ids)[:-1]
    # each series' rows preceded by its last fitted timestamp: one chain per series to check step by step
    chain_ids = np.insert(ids, firsts, ids[firsts])
    anchors = pd.DatetimeIndex(last_timestamp.reindex(ids[firsts]).to_numpy()).as_unit("ns").asi8
    stamps = pd.DatetimeIndex(ordered[TIMESTAMP]).as_unit("ns").asi8
    chain = np.insert(stamps, firsts, anchors)
    chain_start = np.zeros(len(chain), dtype=bool)
    chain_start[firsts + np.arange(len(firsts))] = True
    steps = unit_steps(chain_start, chain, to_offset(freq))
    if steps is None:
        return None
    return set(chain_ids[~steps & ~chain_start])
