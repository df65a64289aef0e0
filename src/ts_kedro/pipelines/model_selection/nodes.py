"""Model selection nodes: score every family and an ensemble on the same backtest, choose per series and overall."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ts_kedro.evaluation.backtest import _training_scales, evaluate_backtest, step_smape
from ts_kedro.forecasters import Forecaster, interval_columns
from ts_kedro.frequency import profile_for_panel

logger = logging.getLogger(__name__)

SERIES_DATA_END = "series_data_end"  # panel model metadata: each series' last training timestamp

METRICS = ("rmse", "mae", "mape", "smape", "mase", "owa")
ENSEMBLE = "ensemble"
KEYS = ["series_id", "timestamp", "cutoff", "window"]


#: secondary criteria a tie can be broken by (model_selection.secondary_weights): forecast time per series, parameter
#: count, the memory the family's fit added (peak RSS during the fit minus RSS at its start) and the process's peak
#: RSS during the fit (which also counts whatever ran before the family in the same process)
COSTS = ("inference_seconds", "n_parameters", "fit_memory_mb", "peak_rss_mb")


class SelectionError(ValueError):
    """Model selection cannot proceed as configured (unknown metric, no candidate, bad ensemble members)."""


def ensemble_members(families: list[str], ensemble_params: dict[str, Any]) -> list[str]:
    members = ensemble_params.get("members") or [f for f in families if f not in ensemble_params.get("exclude", [])]
    missing = [m for m in members if m not in families]
    if missing:
        raise SelectionError(
            f"model_selection.ensemble.members names {missing}, which were not trained; trained: {families}"
        )
    return list(members)


def relative_mae(backtests: pd.DataFrame, reference: str) -> pd.Series:
    """Per candidate: the mean over series of its backtest MAE divided by ``reference``'s (scale-free ranking)."""
    mae = (backtests.assign(abs_error=(backtests["actual"] - backtests["mean"]).abs())
           .groupby(["model", "series_id"])["abs_error"].mean().unstack("model"))
    ratio = mae.div(mae[reference].where(mae[reference] > 0), axis=0)
    return ratio.mean().sort_values()


MEMBER_RULES = ("forward", "beat_reference")
# How the ensemble combines its members. Only the median is served (registry.panel_model); the mean was measured
# against it on thirteen real runs and not kept (docs/benchmarks.md, "Median or mean").
COMBINATION_METHODS = ("median",)


def check_ensemble_params(ensemble_params: dict[str, Any]) -> None:
    """Refuse an ``ensemble.member_rule`` or ``ensemble.method`` this code cannot apply, naming the key.

    Called by ``_ensemble_members_for_run`` and, before any family trains, by the project's ``ParameterChecksHook``
    (a typo must not cost a whole Day 0). ``method`` names the served combination: another name would otherwise be
    ignored and the median served.
    """
    rule = ensemble_params.get("member_rule") or "beat_reference"
    if rule not in MEMBER_RULES:
        raise SelectionError(f"model_selection.ensemble.member_rule must be one of {MEMBER_RULES}, got {rule!r}")
    method = ensemble_params.get("method") or "median"
    if method not in COMBINATION_METHODS:
        raise SelectionError(f"model_selection.ensemble.method must be one of {COMBINATION_METHODS}, got {method!r}: "
                             "the served ensemble is the median of its members (set method: median, or leave it out)")


def check_selection_params(selection_params: dict[str, Any]) -> None:
    """Refuse ``model_selection`` parameters ``select_models`` cannot apply (primary metric, secondary weights and
    floors, the ensemble block), naming the key; run by ``select_models`` and, before any family trains, by the
    project's ``ParameterChecksHook``."""
    metric = selection_params.get("primary_metric")
    if metric not in METRICS:
        raise SelectionError(f"model_selection.primary_metric must be one of {METRICS}, got {metric!r}")
    unknown = set(selection_params.get("secondary_weights") or {}) - set(COSTS)
    if unknown:
        raise SelectionError(f"model_selection.secondary_weights has unknown keys {sorted(unknown)}")
    floors = selection_params.get("secondary_floors") or {}
    if set(floors) - {"inference_seconds"} or any(float(v) < 0 for v in floors.values()):
        raise SelectionError("model_selection.secondary_floors takes inference_seconds (whole-panel forecast seconds, "
                             f">= 0) only, got {floors}")
    check_ensemble_params(selection_params.get("ensemble") or {})


def _ensemble_members_for_run(families: list[str], ensemble_params: dict[str, Any], stacked: pd.DataFrame,
                              panel: pd.DataFrame | None = None, panel_params: dict[str, Any] | None = None) -> list[str]:
    """The ensemble's members for this run, by ``ensemble.member_rule``.

    ``beat_reference`` (the default when the key is absent): the configured members; with
    ``drop_worse_than_reference`` (default true) without those whose backtest MAE relative to the reference is not
    below 1 (a family that loses to seasonal naive on the backtest joins no ensemble, as long as two members
    remain); with ``top_k`` the k best of them by relative backtest MAE.

    ``forward`` (shipped): ``forward_members``, chosen by the backtest OWA of the median itself; needs the panel
    (MASE scales) and the reference's backtest, else the ``beat_reference`` rule applies (logged).
    """
    check_ensemble_params(ensemble_params)
    rule = ensemble_params.get("member_rule") or "beat_reference"
    members = ensemble_members(families, ensemble_params)
    reference = ensemble_params.get("reference") or "seasonal_naive"
    if reference not in set(stacked["model"]):
        reference = None
    if rule == "forward":
        if reference is not None and panel is not None and panel_params is not None and len(members) >= 2:
            return forward_members(stacked, members, reference, panel, panel_params)
        logger.info("ensemble.member_rule forward needs the panel and the %s backtest: every configured member "
                    "that beats it joins instead", ensemble_params.get("reference") or "seasonal_naive")
    ranking = relative_mae(stacked, reference or members[0])
    if reference and ensemble_params.get("drop_worse_than_reference", True):
        better = [m for m in members if ranking.get(m, np.inf) < 1.0]
        if len(better) >= 2:
            dropped = sorted(set(members) - set(better))
            if dropped:
                logger.info("ensemble: %s left out (backtest MAE not below %s's)", dropped, reference)
            members = better
    top_k = ensemble_params.get("top_k")
    if top_k is None or len(members) <= int(top_k):
        return members
    return [m for m in ranking.index if m in members][: int(top_k)]


def forward_members(stacked: pd.DataFrame, members: list[str], reference: str, panel: pd.DataFrame,
                    panel_params: dict[str, Any]) -> list[str]:
    """Ensemble selection on the backtest: the members whose median scores the lowest backtest OWA on a forward path.

    The path and its scores are ``forward_path``; this keeps its best set and logs the path.
    """
    path = forward_path(stacked, members, reference, panel, panel_params)
    best, score = min(path, key=lambda step: step[1])
    chosen = [m for m in members if m in best]
    logger.info("ensemble (member_rule forward): %s, backtest OWA %.4f; on the path %s", chosen, score,
                ", ".join(f"{'+'.join(sorted(s))} {owa:.4f}" for s, owa in path))
    return chosen


def forward_path(stacked: pd.DataFrame, members: list[str], reference: str, panel: pd.DataFrame,
                 panel_params: dict[str, Any], combine=np.median) -> list[tuple[frozenset, float]]:
    """The forward path of ensemble selection, each set with the backtest OWA of its median (of its one family).

    The path starts from the family with the lowest backtest OWA and adds, one at a time, the member whose addition
    gives the median the lowest backtest OWA, until every member is in; the set with the lowest OWA on the path wins
    (a single family when no median beats it: then no ensemble is built). This is ensemble selection (Caruana et
    al., 2004) for a median: which families help the combination is what the backtest says, not whether each beats
    seasonal naive alone (a family that loses alone can still pull a median toward the actuals, and one that wins
    alone can add only noise to it). OWA contributions as ``select_models`` computes them (``_primary_scores``,
    against ``reference``), so with the shipped ``primary_metric: owa`` the ensemble is chosen by the score it then
    competes on; with another primary metric the members are still chosen by OWA (both scale-free M4 measures). At
    most n(n+1)/2 medians for n members, each scored by array arithmetic on the stacked backtest (the per-step sMAPE
    and the MASE scales of ``evaluation.backtest``, computed once). ``combine(values, axis=1)`` is the combination
    scored (the served median; ``benchmarks/ensemble_members.py --combine mean`` scores the mean instead).
    """
    pool = stacked[stacked["model"].isin(members)]
    means = pool.pivot_table(index=KEYS, columns="model", values="mean", aggfunc="first", observed=True)
    if means.isna().any().any() or len(means.columns) != len(members):
        raise SelectionError("ensemble members' backtests are not aligned on the same series, windows and steps")
    means = means[members]
    actual = pool.groupby(KEYS, sort=True, observed=True)["actual"].first().reindex(means.index).to_numpy(float)
    keys = means.index.to_frame(index=False)
    windows = pd.MultiIndex.from_frame(keys[["series_id", "window"]])
    window_codes, window_index = pd.factorize(windows, sort=True)
    cutoffs = keys.groupby(["series_id", "window"], sort=True)["cutoff"].first().reset_index()
    season_length = profile_for_panel(panel, panel_params).season_length
    scale = _training_scales(panel, cutoffs, int(season_length)).reindex(window_index).to_numpy(float)
    window_series = window_index.get_level_values(0)
    n_windows = len(window_index)
    counts = np.bincount(window_codes, minlength=n_windows)
    zero_actuals = pd.Series(actual == 0).groupby(keys["series_id"].to_numpy()).mean()
    values = means.to_numpy(float)

    def per_series(forecast: np.ndarray) -> pd.DataFrame:
        window_smape = np.bincount(window_codes, step_smape(actual, forecast), n_windows) / counts
        window_mase = np.bincount(window_codes, np.abs(actual - forecast), n_windows) / counts / scale
        frame = pd.DataFrame({"smape": window_smape, "mase": window_mase}).groupby(window_series).mean()
        return frame.rename_axis("series_id").reset_index()

    reference_scores = score_candidates(stacked[stacked["model"] == reference], panel, panel_params)
    reference_scores = reference_scores[["model", "series_id", "smape", "mase", "zero_actuals"]]
    cache: dict[frozenset, float] = {}

    def owa(subset: frozenset) -> float:
        if subset not in cache:
            columns = [members.index(m) for m in subset]
            forecast = values[:, columns[0]] if len(columns) == 1 else combine(values[:, columns], axis=1)
            scores = per_series(forecast).assign(model="candidate")
            scores["zero_actuals"] = scores["series_id"].map(zero_actuals)
            table = _primary_scores(pd.concat([reference_scores, scores], ignore_index=True), "owa", reference)
            cache[subset] = float(table["candidate"].mean())
        return cache[subset]

    current = frozenset([min(members, key=lambda m: owa(frozenset([m])))])
    path = [current]
    while len(current) < len(members):
        current = min((current | {m} for m in members if m not in current), key=owa)
        path.append(current)
    return [(subset, owa(subset)) for subset in path]


def build_candidate_backtests(
    ensemble_params: dict[str, Any], panel_params: dict[str, Any], primary_panel: pd.DataFrame | None = None,
    **family_backtests: pd.DataFrame
) -> pd.DataFrame:
    """Stack the families' backtests and add the ensemble (median of members) scored on the same windows.

    ``served_by`` tells, per row, who really forecast it (a family's fallback where the family could not fit
    the series in that window). Ensemble rows are ``ensemble`` where every member served itself, else
    ``ensemble_partial``. Members: ``_ensemble_members_for_run`` by ``ensemble.member_rule`` (``forward`` needs
    ``primary_panel``, the panel the backtests ran on, for the MASE scales).

    Returns:
        Long frame of all candidates' backtest forecasts with ``model`` and ``served_by`` columns.
    """
    value_columns = ["mean", *interval_columns(panel_params["levels"])]
    columns = [*KEYS, *value_columns, "actual"]
    frames = []
    for family, frame in family_backtests.items():
        served = frame["served_by"] if "served_by" in frame else family
        fallback = frame["fallback"].astype(bool) if "fallback" in frame else False
        frames.append(frame[columns].assign(model=family, served_by=served, fallback=fallback))
    stacked = pd.concat(frames, ignore_index=True)
    if stacked.empty:  # no series afforded a backtest window: nothing to combine (select_models serves unvalidated)
        return stacked
    if ensemble_params.get("enabled", True):
        members = _ensemble_members_for_run(list(family_backtests), ensemble_params, stacked, primary_panel,
                                            panel_params)
        if len(members) >= 2:
            pool = stacked[stacked["model"].isin(members)]
            ensemble = pool.groupby(KEYS, sort=False).agg(
                {**{c: "median" for c in value_columns}, "actual": "first", "model": "size", "fallback": "any"})
            if (ensemble["model"] != len(members)).any():
                raise SelectionError("ensemble members' backtests are not aligned on the same series, windows and steps")
            ensemble = ensemble.reset_index().assign(
                model=ENSEMBLE, served_by=lambda f: f["fallback"].map({False: ENSEMBLE, True: f"{ENSEMBLE}_partial"}))
            ensemble["members"] = ",".join(members)
            stacked = pd.concat([stacked, ensemble], ignore_index=True)
    return stacked


def score_candidates(candidate_backtests: pd.DataFrame, panel: pd.DataFrame, panel_params: dict[str, Any]) -> pd.DataFrame:
    """Per-series scores (mean over backtest windows) of every candidate, with identical windows for all.

    Returns:
        Frame ``model, series_id, rmse, mae, mape, smape, mase, coverage-L, msis-L, n_windows, genuine``;
        ``genuine`` is False where the candidate did not forecast that series itself in every window (its
        fallback did, or for the ensemble some member's fallback did): such a candidate is missing for that
        series in the per-series choice.
    """
    season_length = profile_for_panel(panel, panel_params).season_length
    if candidate_backtests.empty:  # no series afforded a backtest window
        metrics = ["rmse", "mae", "mape", "smape", "mase", *(f"{kind}-{level}" for level in panel_params["levels"]
                                                             for kind in ("coverage", "msis"))]
        return pd.DataFrame(columns=["model", "series_id", *metrics, "n_windows", "genuine", "zero_actuals"])
    scores = []
    for model, frame in candidate_backtests.groupby("model", sort=True):
        per_window, _ = evaluate_backtest(frame, panel, season_length, panel_params["levels"])
        per_series = per_window.drop(columns=["window", "cutoff"]).groupby("series_id").mean()
        fallback = frame["fallback"].astype(bool) if "fallback" in frame else pd.Series(False, index=frame.index)
        per_series["n_windows"] = per_window.groupby("series_id")["window"].nunique()
        per_series["genuine"] = ~fallback.groupby(frame["series_id"]).any()
        per_series["zero_actuals"] = (frame["actual"] == 0).groupby(frame["series_id"]).mean()
        if "members" in frame and frame["members"].notna().any():
            per_series["members"] = frame["members"].dropna().iloc[0]
        scores.append(per_series.reset_index().assign(model=model))
    scores = pd.concat(scores, ignore_index=True)
    return scores[["model", *[c for c in scores.columns if c != "model"]]]


def candidate_costs(family_stats: dict[str, dict], members: list[str],
                    floors: dict[str, float] | None = None) -> pd.DataFrame:
    """Secondary criteria per candidate: inference seconds per series, parameter count, the memory its fit added
    (``fit_memory_mb``: what a tie reads by default) and the process's peak memory during the fit.

    ``floors["inference_seconds"]`` (``model_selection.secondary_floors``) is a whole-panel forecast time below which
    a family counts as taking that time: predicting a panel in a few milliseconds or in a tenth of a second is the
    same cost to any schedule, and timings that small are mostly noise of the moment. Without a floor the ratio of
    two such timings decided accuracy ties, so two identical runs on a loaded machine chose different families
    (docs/benchmarks.md, "A tie decided by timing noise"). Above the floor the measured times compare as before.
    """
    floors = floors or {}
    n_series = max((int(stats.get("n_series") or 1) for stats in family_stats.values()), default=1)
    inference_floor = float(floors.get("inference_seconds") or 0.0) / n_series  # per series
    rows = {
        family: {
            "inference_seconds": max(float(stats["predict_seconds_per_series"]), inference_floor),
            "n_parameters": stats["n_parameters"],
            # statistics from before fit_memory_mb was recorded: the process's peak stands in
            "fit_memory_mb": float(stats.get("fit_memory_mb", stats["peak_rss_mb"])),
            "peak_rss_mb": stats["peak_rss_mb"],
        }
        for family, stats in family_stats.items()
    }
    if members:
        # the ensemble runs and holds all its members: time, parameters and fit memory add up; the process's
        # peak is the largest member's
        rows[ENSEMBLE] = {
            "inference_seconds": sum(rows[m]["inference_seconds"] for m in members),
            "n_parameters": sum(rows[m]["n_parameters"] for m in members),
            "fit_memory_mb": sum(rows[m]["fit_memory_mb"] for m in members),
            "peak_rss_mb": max(rows[m]["peak_rss_mb"] for m in members),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _choose(scores: pd.Series, costs: pd.DataFrame, tolerance: float, weights: dict[str, float], metric: str) -> tuple[str, str]:
    """Pick the best primary score; among candidates within ``tolerance`` of it, the cheapest by weighted costs."""
    scores = scores.dropna()
    if scores.empty:
        raise SelectionError(f"no candidate has a defined {metric}")
    best_model, best = scores.idxmin(), scores.min()
    tied = scores[scores <= best + abs(best) * tolerance].index.tolist()
    if len(tied) == 1:
        runner_up = scores.drop(best_model).nsmallest(1)
        versus = f"; next {runner_up.index[0]} {runner_up.iloc[0]:.4g}" if not runner_up.empty else ""
        return best_model, f"lowest {metric} {best:.4g}{versus}"
    tied_costs = costs.loc[tied, list(weights)].astype(float)
    # rank-free normalisation: each cost divided by the largest among the tied candidates
    normalised = tied_costs / tied_costs.max().replace(0, 1)
    composite = sum(normalised[key] * weight for key, weight in weights.items())
    chosen = composite.idxmin()
    return chosen, (
        f"{metric} within {tolerance:.0%} of the best ({best_model} {best:.4g}; {chosen} {scores[chosen]:.4g}) among "
        f"{sorted(tied)}; chosen by lowest weighted cost "
        + ", ".join(f"{key} {tied_costs.loc[chosen, key]:.4g}" for key in weights)
    )


PREFERENCES = ("ties", "always", "none")


def _prefer_ensemble(overall: str, reason: str, scores: pd.Series, tolerance: float, metric: str,
                     preference: str) -> tuple[str, str]:
    """The overall choice after ``ensemble.preference``.

    ``ties`` (default): the ensemble is chosen when its score is within ``tie_tolerance`` of the best, so a
    tie goes to the combination rather than to the cheaper single family; a single family is kept only where
    the backtest shows it clearly better. ``always``: the ensemble whenever there is one. ``none``: ties go
    to the lowest cost like any other candidate. Why: a few backtest windows pick single families noisily,
    and the median ensemble is the more robust forecast. Measured (with the beat_reference members) against
    ``none`` on the eight real panels of the benchmark matrix (docs/benchmarks.md, "Any frequency"): ``ties``
    lowers the selected model's MASE on three (M3 yearly, M3 monthly, car parts) and raises it on one (NN5,
    0.844 -> 0.851); ``always`` lowers it on four and raises it on two (ILINet by 12 %).
    """
    if preference not in PREFERENCES:
        raise SelectionError(f"model_selection.ensemble.preference must be one of {PREFERENCES}, got {preference!r}")
    if overall == ENSEMBLE or ENSEMBLE not in scores or not np.isfinite(scores[ENSEMBLE]) or preference == "none":
        return overall, reason
    best = scores.dropna().min()
    if preference == "always":
        return ENSEMBLE, f"ensemble.preference always ({metric} {scores[ENSEMBLE]:.4g}; best single {best:.4g})"
    if scores[ENSEMBLE] <= best + abs(best) * tolerance:
        if scores.idxmin() == ENSEMBLE:  # the cost rule had taken a cheaper tied family
            return ENSEMBLE, (f"lowest {metric} {best:.4g}; the tie with {overall} ({scores[overall]:.4g}, within "
                              f"{tolerance:.0%}) goes to the ensemble, not to the cheaper family (ensemble.preference ties)")
        return ENSEMBLE, (f"{metric} {scores[ENSEMBLE]:.4g} within {tolerance:.0%} of the best ({scores.idxmin()} "
                          f"{best:.4g}): a tie goes to the ensemble (ensemble.preference ties)")
    return overall, reason


def _primary_scores(candidate_scores: pd.DataFrame, metric: str, reference: str | None) -> pd.DataFrame:
    """Series x candidate table of the primary score (lower is better).

    ``owa``: each series' contribution to the panel's OWA against ``reference`` (M4's rule with the reference in
    place of Naive2): ``0.5 * (smape / mean reference smape + mase / mean reference mase)``; its mean over the
    series is the panel's OWA, so choosing per series by it minimises the panel's OWA.

    A series with zero actuals in its backtest windows (intermittent demand, closures) contributes by MASE alone:
    sMAPE charges its maximum (200) for any non-zero forecast of a zero, so there it rewards forecasting zero
    rather than accuracy (M4's OWA assumes positive data).
    """
    if metric != "owa":
        return candidate_scores.pivot(index="series_id", columns="model", values=metric)
    if reference is not None and reference in set(candidate_scores["model"]):
        ref = candidate_scores[candidate_scores["model"] == reference]
    else:  # any positive constants give the same per-series ranking; the candidates' means keep the two in scale
        logger.info("owa: reference %r not trained; sMAPE and MASE are scaled by the candidates' means", reference)
        ref = candidate_scores
    zeros = candidate_scores.get("zero_actuals", pd.Series(0.0, index=candidate_scores.index)).fillna(0) > 0
    with_zeros = set(candidate_scores.loc[zeros, "series_id"])
    table = {}
    for column in ("smape", "mase"):
        usable = ref if column == "mase" else ref[~ref["series_id"].isin(with_zeros)]
        ref_mean = usable[column].mean() if len(usable) else 1.0
        if not (np.isfinite(ref_mean) and ref_mean > 0):
            # the reference is perfect (every series constant: seasonal naive repeats it exactly) or the measure
            # is undefined everywhere (MASE of series without in-sample variation): scale by the candidates'
            # mean, or by 1; any positive constant keeps the ranking within the column
            candidates_mean = candidate_scores[column].mean()
            logger.info("owa: the reference's mean %s is %s; scaled by %s", column, ref_mean,
                        "the candidates' mean" if np.isfinite(candidates_mean) and candidates_mean > 0 else "1")
            ref_mean = candidates_mean if np.isfinite(candidates_mean) and candidates_mean > 0 else 1.0
        table[column] = candidate_scores.pivot(index="series_id", columns="model", values=column) / ref_mean
    zero_rows = table["smape"].index.isin(with_zeros)
    table["smape"].loc[zero_rows] = table["mase"].loc[zero_rows]
    # a series without in-sample variation has no MASE (its scale is 0): it contributes by sMAPE alone
    table["mase"] = table["mase"].fillna(table["smape"])
    return 0.5 * (table["smape"] + table["mase"])


def select_models(
    candidate_scores: pd.DataFrame, selection_params: dict[str, Any], panel: pd.DataFrame | None = None,
    **family_stats: dict,
) -> tuple[dict, pd.DataFrame]:
    """Choose the model per series and overall: accuracy first, then inference speed, complexity and memory.

    The overall choice compares what each candidate delivers on every scored series (its fallback's forecasts
    included). Per series, a candidate that did not forecast the series itself (``genuine`` False) is missing;
    with ``per_series_margin`` m the per-series winner replaces the overall choice only when it beats it there
    by more than m (relative): backtests of a few windows are noisy, and a global choice generalises better
    unless a series clearly prefers another model. Series of ``panel`` too short for any backtest window get
    the overall choice, marked ``validated: false``.

    Returns:
        The selection (overall model, per-series choice with reasons, ensemble members, unvalidated series) and
        a readable report table.
    """
    check_selection_params(selection_params)
    metric = selection_params["primary_metric"]
    tolerance = float(selection_params.get("tie_tolerance", 0.0))
    margin = float(selection_params.get("per_series_margin") or 0.0)
    weights = {k: float(v) for k, v in (selection_params.get("secondary_weights") or {}).items()}
    floors = selection_params.get("secondary_floors") or {}
    families = sorted(family_stats)
    has_ensemble = ENSEMBLE in set(candidate_scores["model"])
    members = []
    if has_ensemble:
        rows = candidate_scores[candidate_scores["model"] == ENSEMBLE]
        members = (str(rows["members"].iloc[0]).split(",") if "members" in rows and rows["members"].notna().any()
                   else ensemble_members(families, selection_params.get("ensemble") or {}))
    if candidate_scores.empty:
        if panel is None:
            raise SelectionError("no candidate has a backtest score and no panel was given to serve unvalidated")
        return _selection_without_backtest(selection_params, panel, families, family_stats, floors)
    costs = candidate_costs(family_stats, members, floors)

    table = _primary_scores(candidate_scores, metric, selection_params.get("reference", "seasonal_naive"))
    genuine = (candidate_scores.pivot(index="series_id", columns="model", values="genuine")
               .reindex_like(table).fillna(False).astype(bool) if "genuine" in candidate_scores
               else pd.DataFrame(True, index=table.index, columns=table.columns))
    overall_scores = table.mean()
    overall, overall_reason = _choose(overall_scores, costs, tolerance, weights, metric)
    overall, overall_reason = _prefer_ensemble(overall, overall_reason, overall_scores, tolerance, metric,
                                               (selection_params.get("ensemble") or {}).get("preference", "ties"))

    rows = []
    for series_id, scores in table.iterrows():
        available = scores.where(genuine.loc[series_id])
        if not selection_params.get("per_series", True):
            chosen, reason = overall, f"per_series selection is off: overall choice ({overall_reason})"
        else:
            chosen, reason = _choose(available, costs, tolerance, weights, metric) if available.notna().any() \
                else (overall, "no candidate forecast this series itself in every window: overall choice")
            if margin and chosen != overall and pd.notna(scores[overall]) and \
                    not scores[chosen] < scores[overall] * (1 - margin):
                chosen, reason = overall, (f"overall choice {overall} kept: {reason.split(';')[0]} is not "
                                           f"{margin:.0%} better than its {scores[overall]:.4g}")
        rows.append({"series_id": series_id, "model": chosen, metric: scores[chosen], "reason": reason,
                     "validated": True, **{f"{metric}_{m}": scores[m] for m in table.columns}})
    unvalidated = []
    if panel is not None:
        scored = set(table.index)
        unvalidated = sorted(set(panel["series_id"].astype(str).unique()) - scored)
        for series_id in unvalidated:
            rows.append({"series_id": series_id, "model": overall, metric: np.nan, "validated": False,
                         "reason": "too short for one backtest window: overall choice, not validated"})
    report = pd.DataFrame(rows)
    counts = report["model"].value_counts().to_dict()
    validated = report[report["validated"]]
    selected_score = float(validated[metric].mean())
    selection = {
        "primary_metric": metric,
        "overall_model": overall,
        "overall_reason": overall_reason,
        "overall_scores": {m: float(v) for m, v in overall_scores.items()},
        "selected_score": selected_score,
        "choice": dict(zip(report["series_id"], report["model"])),
        "choice_counts": {m: int(c) for m, c in counts.items()},
        "ensemble_members": members,
        "unvalidated_series": unvalidated,
        "costs": costs.to_dict(orient="index"),
    }
    logger.info(
        "selection by %s: overall %s (%s); per-series mix %s; selected %s %.4g; %d series unvalidated",
        metric, overall, overall_reason, counts, metric, selected_score, len(unvalidated),
    )
    return selection, report


def _selection_without_backtest(selection_params: dict[str, Any], panel: pd.DataFrame, families: list[str],
                                family_stats: dict[str, dict], floors: dict) -> tuple[dict, pd.DataFrame]:
    """No series afforded one backtest window: every series gets the same unvalidated choice.

    With no evidence to choose by, the choice is the median of the configured ensemble members (every trained
    family, less ``ensemble.exclude``; each serves a series it cannot fit by its fallback chain). On the six
    panels of the ``preference`` table in docs/benchmarks.md the median of all six families beat the best single
    family on the test part (known only afterwards) on four and trailed it by 12 % (ILINet) and 28 % (car parts)
    on the other two: no single family is safer without a backtest. With the ensemble disabled or fewer than
    two members, the reference family (seasonal naive), else the first family.
    Every series is marked ``validated: false`` and the selected score is undefined (NaN).
    """
    metric = selection_params["primary_metric"]
    ensemble_params = selection_params.get("ensemble") or {}
    members = ensemble_members(families, ensemble_params) if ensemble_params.get("enabled", True) else []
    reference = selection_params.get("reference", "seasonal_naive")
    if len(members) >= 2:
        overall = ENSEMBLE
        reason = f"no series affords one backtest window: the median of {members}, not validated"
    else:
        members = []
        overall = reference if reference in families else families[0]
        reason = f"no series affords one backtest window: {overall}, not validated (the ensemble is disabled)"
    series_ids = sorted(panel["series_id"].astype(str).unique())
    report = pd.DataFrame({"series_id": series_ids, "model": overall, metric: np.nan, "validated": False,
                           "reason": reason})
    selection = {
        "primary_metric": metric,
        "overall_model": overall,
        "overall_reason": reason,
        "overall_scores": {},
        "selected_score": float("nan"),
        "choice": {sid: overall for sid in series_ids},
        "choice_counts": {overall: len(series_ids)},
        "ensemble_members": members,
        "unvalidated_series": series_ids,
        "costs": candidate_costs(family_stats, members, floors).to_dict(orient="index"),
    }
    logger.warning("selection: %s; %d series unvalidated", reason, len(series_ids))
    return selection, report


def selection_metrics(selection: dict) -> dict:
    """The selected panel's backtest score and each candidate's overall score, for MLflow."""
    metric = selection["primary_metric"]
    metrics = {f"selected_{metric}": {"value": selection["selected_score"], "step": 0}}
    metrics.update({f"candidate_{m}_{metric}": {"value": v, "step": 0} for m, v in selection["overall_scores"].items()})
    return metrics


def selection_report_markdown(selection: dict, report: pd.DataFrame) -> str:
    """A readable selection report: overall choice, per-series choices and reasons."""
    metric = selection["primary_metric"]
    lines = [
        "# Model selection report",
        "",
        f"Primary metric: **{metric}** (mean over backtest windows; lower is better). "
        f"Overall best single model: **{selection['overall_model']}** — {selection['overall_reason']}.",
        "",
        f"Per-series selection: {selection['choice_counts']}; selected panel {metric} "
        f"{selection['selected_score']:.4g}.",
        "",
        "| candidate | " + f"{metric} | inference s/series | parameters | fit memory MB | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for model, score in sorted(selection["overall_scores"].items(), key=lambda kv: kv[1]):
        cost = selection["costs"].get(model, {})
        lines.append(
            f"| {model} | {score:.4g} | {cost.get('inference_seconds', float('nan')):.4g} | "
            f"{cost.get('n_parameters', 0):.0f} | {cost.get('fit_memory_mb', float('nan')):.0f} | "
            f"{cost.get('peak_rss_mb', float('nan')):.0f} |"
        )
    lines += ["", "| series | chosen | " + f"{metric} | reason |", "|---|---|---|---|"]
    for row in report.itertuples(index=False):
        lines.append(f"| {row.series_id} | {row.model} | {getattr(row, metric):.4g} | {row.reason} |")
    return "\n".join(lines) + "\n"


def build_panel_model(selection: dict, panel_params: dict[str, Any], panel: pd.DataFrame,
                      candidate_backtests: pd.DataFrame | None = None, backtest_params: dict[str, Any] | None = None,
                      **family_models: Forecaster):
    """Bundle the fitted families the selection needs into one servable panel model.

    With ``backtest.calibrate_intervals`` (default on) and a served ensemble, the ensemble's intervals get their
    own conformal adjustment, learnt on its backtest over its members' calibrated intervals
    (``evaluation.conformal.ensemble_adjustments``).
    """
    from ts_kedro.evaluation.conformal import ensemble_adjustments, excludes_anomalies, per_series_calibration
    from ts_kedro.registry.panel_model import SelectedPanelModel

    needed = set(selection["choice"].values()) - {ENSEMBLE}
    uses_ensemble = ENSEMBLE in selection["choice"].values()
    members = selection["ensemble_members"] if uses_ensemble else []  # only families the model serves ship
    needed |= set(members)
    metadata = {
        "primary_metric": selection["primary_metric"],
        "selected_score": selection["selected_score"],
        "overall_model": selection["overall_model"],
        "data_window_start": str(panel["timestamp"].min()),
        "data_window_end": str(panel["timestamp"].max()),
        # each series' own end: a panel's series may end at different times (compare_with_champion needs them)
        SERIES_DATA_END: {str(sid): str(end) for sid, end in panel.groupby("series_id")["timestamp"].max().items()},
        "n_series": int(panel["series_id"].nunique()),
        # what the fit saw per series: orchestration's retrain.after_growth measures the history's growth against it
        "median_series_steps": float(panel.groupby("series_id").size().median()),
        "unvalidated_series": list(selection.get("unvalidated_series", [])),
    }
    calibration = None
    calibrate = (backtest_params or {}).get("calibrate_intervals", True)
    if uses_ensemble and calibrate and candidate_backtests is not None and list(panel_params["levels"]):
        models = {m: family_models[m] for m in members}
        if any(getattr(model, "interval_calibration_", None) for model in models.values()):
            calibration = ensemble_adjustments(
                {m: candidate_backtests[candidate_backtests["model"] == m] for m in members},
                {m: getattr(model, "interval_calibration_", None) for m, model in models.items()},
                panel, int(models[members[0]].season_length), list(panel_params["levels"]),
                per_series=per_series_calibration(backtest_params),
                exclude_anomalies=excludes_anomalies(backtest_params))
            metadata["ensemble_interval_calibration"] = {
                str(level): [round(q, 4) for q in per_step] for level, per_step in calibration["levels"].items()}
    return SelectedPanelModel(
        family_models={name: family_models[name] for name in sorted(needed)},
        choice=selection["choice"],
        ensemble_members=members,
        levels=list(panel_params["levels"]),
        max_horizon=int(panel_params["horizon"]),
        metadata=metadata,
        ensemble_calibration=calibration,
    )


def forecast_panel(panel_model, panel_params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected model's forecasts of the next horizon for every series (kept, and sent to MLflow).

    Besides the served model's columns, ``served_by`` names who really forecast each series (the chosen
    family, or its fallback where the family could not fit the series; ``ensemble_partial`` when a member's
    fallback did) and ``validated`` is false for series too short for any backtest window.
    """
    forecasts = panel_model.predict(horizon=int(panel_params["horizon"]), levels=panel_params["levels"])
    served_by = {}
    for series_id in panel_model.series_ids:
        family = panel_model.choice[series_id]
        members = panel_model.ensemble_members if family == ENSEMBLE else [family]
        models = [panel_model.family_models[m] for m in members]
        actual = [getattr(model, "served_by_", {}).get(series_id, model.name) for model in models]
        fell_back = any(by != model.name for by, model in zip(actual, models))
        if family == ENSEMBLE:
            served_by[series_id] = f"{ENSEMBLE}_partial" if fell_back else ENSEMBLE
        else:
            served_by[series_id] = family if not fell_back else f"{family}>{actual[0]}"
    unvalidated = set(panel_model.metadata.get("unvalidated_series", []))
    forecasts = forecasts.assign(served_by=forecasts["series_id"].map(served_by),
                                 validated=~forecasts["series_id"].isin(unvalidated))
    return forecasts, forecasts




def _selected_backtest(candidate_backtests: pd.DataFrame, choice: dict[str, str]) -> pd.DataFrame:
    chosen = pd.Series(choice, name="chosen").rename_axis("series_id").reset_index()
    merged = candidate_backtests.merge(chosen, on="series_id")
    return merged[merged["model"] == merged["chosen"]].drop(columns="chosen")


def compare_with_champion(
    candidate_backtests: pd.DataFrame,
    selection: dict,
    panel: pd.DataFrame,
    champion,
    panel_params: dict[str, Any],
) -> dict:
    """Score the challenger (this selection) and the current champion on the same recent window.

    The recent window is the last backtest window: the challenger's forecasts there come from fits that
    stop at the window's cutoff. The champion is scored as it serves on Day N: its fitted families are
    conditioned on the same data up to the same cutoffs (``SelectedPanelModel.update``: state moved forward, no
    parameter re-estimated) and forecast the same window, so both are out of sample and scored on exactly the
    same (series, timestamp) pairs, and a retrain that keeps the configuration but re-estimates its parameters
    can win. A series whose window the champion's own data reaches into (not enough new data since it was
    registered) is left out; with none left, the two are not comparable.

    Returns:
        A comparison record: scores, the number of common points, and whether a champion exists.
    """
    metric = selection["primary_metric"]
    record = {"primary_metric": metric, "challenger_backtest_score": selection["selected_score"]}
    if champion is None:
        return {**record, "champion_exists": False, "comparable": False, "reason": "no champion registered yet"}
    if candidate_backtests.empty:
        return {**record, "champion_exists": True, "comparable": False,
                "reason": "no series afforded one backtest window: the challenger has no out-of-sample forecast "
                          "to compare with the champion's"}
    last_window = candidate_backtests["window"].max()
    challenger = _selected_backtest(candidate_backtests[candidate_backtests["window"] == last_window], selection["choice"])
    champion_end = pd.Timestamp(champion.metadata.get("data_window_end"))
    window = challenger[challenger["series_id"].isin(champion.series_ids)]
    if window.empty:
        return {
            **record, "champion_exists": True, "comparable": False, "champion_data_end": str(champion_end),
            "reason": "none of the series in the recent window is served by the champion: nothing to compare",
        }
    # Per series: its window is out of sample for the champion when it starts after that series' data ended
    # at the champion's training (series of one panel may end at different times).
    series_end = window["series_id"].map(champion_series_data_end(champion, window["series_id"].unique()))
    unseen = window["cutoff"] >= series_end
    if not unseen.any():
        # say what is missing: how much of the window the champion has not seen, and how much more is needed
        newer = window["timestamp"] > series_end
        steps = int(window.groupby("series_id").size().max())
        new_steps = int(newer.groupby(window["series_id"]).sum().min())
        return {
            **record, "champion_exists": True, "comparable": False, "champion_data_end": str(champion_end),
            "new_points": int(newer.sum()), "window_points": int(len(window)),
            "reason": f"only {new_steps} of the recent window's {steps} steps per series are newer than the "
                      f"champion's data (which ends {champion_end}): the champion saw the rest, so the two cannot "
                      f"be compared out of sample until {steps - new_steps} more step(s) of new data arrive",
        }
    comparable = window[unseen]
    overlapping = sorted(set(window["series_id"]) - set(comparable["series_id"]))
    # The champion as it serves on Day N: its fitted families conditioned (``update``, no re-estimation) on each
    # series' data up to the same cutoff the challenger's last window used, so both forecast the window unseen and
    # a challenger with the same configuration wins when its re-estimated parameters forecast better.
    cutoffs = comparable.groupby("series_id")["cutoff"].first()
    train = panel[panel["series_id"].isin(cutoffs.index)]
    train = train[train["timestamp"] <= train["series_id"].map(cutoffs)]
    served = champion.update(train, note="comparison_cutoff")
    if any(m.supports_covariates and m.known_covariates for m in served.family_models.values()):
        after = panel[panel["series_id"].isin(cutoffs.index)]
        served = served.with_future_covariates(after[after["timestamp"] > after["series_id"].map(cutoffs)])
    horizon = min(int(comparable.groupby("series_id").size().max()), served.max_horizon)
    champion_forecast = served.predict(
        series_ids=sorted(cutoffs.index), horizon=horizon, levels=panel_params["levels"]
    )
    value_columns = ["mean", *interval_columns(panel_params["levels"])]
    joined = comparable.merge(
        champion_forecast[["series_id", "timestamp", *value_columns]], on=["series_id", "timestamp"], suffixes=("", "_champion")
    )
    if joined.empty:
        return {**record, "champion_exists": True, "comparable": False, "champion_data_end": str(champion_end),
                "reason": f"the champion's {horizon}-step forecasts do not reach the recent window"}
    champion_frame = joined[[*KEYS, "actual"]].assign(**{c: joined[f"{c}_champion"] for c in value_columns})
    season_length = profile_for_panel(panel, panel_params).season_length
    _, challenger_scores = evaluate_backtest(joined, panel, season_length, panel_params["levels"])
    _, champion_scores = evaluate_backtest(champion_frame, panel, season_length, panel_params["levels"])
    return {
        **record,
        "champion_exists": True,
        "comparable": True,
        "champion_data_end": str(champion_end),
        "n_points": int(len(joined)),
        "n_series": int(joined["series_id"].nunique()),
        **_comparison_scores(challenger_scores, champion_scores, metric),
        "n_series_not_comparable": len(overlapping),
        "reason": f"scored on the same {len(joined)} recent points of {joined['series_id'].nunique()} series"
                  + (f"; {len(overlapping)} series left out: their window overlaps the champion's data"
                     if overlapping else ""),
    }


def champion_series_data_end(champion, series_ids) -> dict[str, pd.Timestamp]:
    """Where each series' data ended when the champion was trained (its metadata ``series_data_end``).

    A champion registered before the per-series ends were recorded has only the panel's ``data_window_end``, the
    latest end of any series: used for every series (conservative: no window it may have seen counts as unseen).
    """
    panel_end = pd.Timestamp(champion.metadata.get("data_window_end"))
    ends = champion.metadata.get(SERIES_DATA_END) or {}
    return {sid: pd.Timestamp(ends[sid]) if sid in ends else panel_end for sid in series_ids}


def _interval_score(scores: dict) -> float | None:
    """Mean MSIS over the interval levels scored (None without intervals or where MSIS is undefined)."""
    values = [float(v) for k, v in scores.items() if k.startswith("msis-") and v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _comparison_scores(challenger: dict, champion: dict, metric: str) -> dict:
    """Both scores on the same window; for ``owa`` the champion is the reference (score 1.0). Also each one's
    interval score (mean MSIS over the levels), the promotion's tie-break."""
    intervals = {"challenger_interval_score": _interval_score(challenger),
                 "champion_interval_score": _interval_score(champion)}
    if metric != "owa":
        return {"challenger_score": float(challenger[metric]), "champion_score": float(champion[metric]), **intervals}
    ratio = 0.5 * (challenger["smape"] / champion["smape"] + challenger["mase"] / champion["mase"])
    return {"challenger_score": float(ratio), "champion_score": 1.0,
            "challenger_smape": float(challenger["smape"]), "champion_smape": float(champion["smape"]),
            "challenger_mase": float(challenger["mase"]), "champion_mase": float(champion["mase"]), **intervals}


def _finite_or_none(score: float | None) -> float | None:
    """The score, or None where it is undefined (a selection without any backtest window has NaN)."""
    return float(score) if score is not None and np.isfinite(score) else None


def register_and_promote(panel_model, comparison: dict, registry_params: dict[str, Any]) -> dict:
    """Log the panel model to the active MLflow run, register it as challenger, promote it when it wins.

    The first model ever registered becomes champion. Later ones are promoted only when they beat the
    champion by ``promotion_margin`` on the same recent window, or, with ``registry.promote_after: next_batch``,
    wait for the next batch of actuals (``live_promotion``); every decision is appended to the history.

    Returns:
        The decision record (version, aliases, scores, reason).
    """
    from ts_kedro.pipelines.model_selection.live_promotion import defer_promotion, promote_after
    from ts_kedro.registry import registry

    name = registry_params["registered_model_name"]
    mode = promote_after(registry_params)  # a bad setting stops before anything is registered
    version = registry.log_and_register(panel_model, name, tags={"primary_metric": comparison["primary_metric"]})
    registry.set_alias(name, "challenger", version)
    if not comparison["champion_exists"]:
        decision = registry.promote_if_better(
            name, version, champion_score=None, challenger_score=_finite_or_none(comparison["challenger_backtest_score"]),
            margin=float(registry_params["promotion_margin"]), history_path=registry_params["history_path"],
        )
    elif mode == "next_batch":
        decision = defer_promotion(name, version, comparison, registry_params)
    elif comparison["comparable"]:
        decision = registry.promote_if_better(
            name, version, champion_score=comparison["champion_score"], challenger_score=comparison["challenger_score"],
            margin=float(registry_params["promotion_margin"]), history_path=registry_params["history_path"],
            champion_interval_score=comparison.get("champion_interval_score"),
            challenger_interval_score=comparison.get("challenger_interval_score"),
        )
    else:
        decision = registry.record_decision(
            name, version, promoted=False, reason=comparison["reason"], history_path=registry_params["history_path"],
        )
    logger.info("registry %s v%s: %s", name, version, decision.get("reason"))
    return {**decision, "comparison": comparison}
