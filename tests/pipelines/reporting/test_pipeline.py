"""Reporting nodes and a whole reporting run on a small real Day-0 run (feature_engineering run in the test)."""
from __future__ import annotations

import json

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from kedro_datasets.matplotlib import MatplotlibDataset
from matplotlib.figure import Figure

from ts_kedro import settings
from ts_kedro.interpretability import InterpretabilityError
from ts_kedro.pipelines.feature_engineering import create_pipeline as feature_pipeline
from ts_kedro.pipelines.reporting import create_pipeline
from ts_kedro.pipelines.reporting import lightgbm_importance as nodes_lightgbm
from ts_kedro.pipelines.reporting import nodes
from ts_kedro.pipelines.reporting.datasets import DriftSummaryHistoryDataset

PANEL_PARAMS = {"freq": "h", "season_length": 24, "horizon": 48, "levels": [80, 95],
                "seasonal_periods": [24, 168]}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _loader(project_root) -> OmegaConfigLoader:
    """The project's own config loader settings (custom resolvers such as ``${env:...}`` included)."""
    return OmegaConfigLoader(conf_source=str(project_root / "conf"), **settings.CONFIG_LOADER_ARGS)


@pytest.fixture(scope="module")
def parameters(project_root) -> dict:
    return dict(_loader(project_root)["parameters"])


@pytest.fixture()
def reporting(parameters) -> dict:
    return json.loads(json.dumps(parameters["reporting"]))


@pytest.fixture(scope="module")
def features(request, parameters) -> dict:
    """feature_engineering's real outputs for the small Day-0 panel."""
    from tests.interpretability.day0_data import build_day0

    panel = build_day0(request.getfixturevalue("project_root") / "data" / "01_raw" / "m4_hourly_sample.csv")["panel"]
    catalog = DataCatalog({"primary_panel": MemoryDataset(panel), "params:panel": MemoryDataset(PANEL_PARAMS),
                           "params:feature_engineering": MemoryDataset(parameters["feature_engineering"])})
    for name in ("feature_panel", "series_decomposition", "feature_manifest"):
        catalog[name] = MemoryDataset()
    # the stage's own features (the lightgbm rows it also builds for a shipped run are the training tests' business)
    SequentialRunner().run(feature_pipeline(families=["seasonal_naive"]), catalog)
    return {name: catalog.load(name) for name in ("feature_panel", "series_decomposition", "feature_manifest")}


def _saved_png(figure: Figure, tmp_path, name: str) -> bytes:
    MatplotlibDataset(filepath=str(tmp_path / name)).save(figure)
    return (tmp_path / name).read_bytes()


def test_report_series_default_to_the_first_n_and_reject_unknown_ids(day0, reporting):
    reporting["n_series"] = 2
    assert nodes.select_report_series(day0["panel"], reporting) == ["H1", "H103"]
    reporting["series"] = ["H120"]
    assert nodes.select_report_series(day0["panel"], reporting) == ["H120"]
    reporting["series"] = ["H999"]
    with pytest.raises(InterpretabilityError, match=r"reporting.series .* names \['H999'\]"):
        nodes.select_report_series(day0["panel"], reporting)


def test_anomaly_report_holds_history_flags_and_unexpected_actuals(day0, reporting):
    panel = day0["panel"]
    panel.loc[10, "is_anomaly"] = True  # synthetic flag on a real row
    report, summary = nodes.build_anomaly_report(panel, day0["candidate_backtests"], day0["selection"], reporting,
                                                 PANEL_PARAMS)
    assert summary["n_history_anomalies"] == 1 and summary["n_actuals_scored"] == 3 * 96
    assert (report["source"] == "actuals").sum() == summary["n_actuals_anomalies"]
    assert summary["n_actuals_anomalies"] >= summary["n_outside_interval"] > 0
    assert set(report["source"]) == {"history", "actuals"}
    flagged_row = panel.loc[10, "series_id"]
    assert summary["per_series"][flagged_row]["history"] == 1
    assert summary["per_series"] == {  # the counts, by their definition
        sid: {source: int(((report["series_id"] == sid) & (report["source"] == source)).sum())
              for source in ("history", "actuals")} for sid in sorted(report["series_id"].unique())}
    assert list(summary["per_series"]) == sorted(summary["per_series"])


def test_the_anomaly_level_follows_panel_levels_and_a_level_the_models_lack_is_refused(day0, reporting):
    """``reporting.anomalies.level: null`` (shipped) takes the widest of ``panel.levels``, so a run forecasting
    other levels than 80 and 95 still gets its report (a Day 0 with ``panel.levels: [90]`` used to stop in this node
    after training, on the missing ``lo-95``); a set level the models do not forecast is refused with the
    parameter's name, by the node and by the check run before the first node."""
    assert reporting["anomalies"]["level"] is None
    _, summary = nodes.build_anomaly_report(day0["panel"], day0["candidate_backtests"], day0["selection"], reporting,
                                            PANEL_PARAMS)
    assert summary["level"] == 95
    only_80 = day0["candidate_backtests"].drop(columns=["lo-95", "hi-95"])
    panel_80 = {**PANEL_PARAMS, "levels": [80]}
    report, summary = nodes.build_anomaly_report(day0["panel"], only_80, day0["selection"], reporting, panel_80)
    assert summary["level"] == 80 and {"lo-80", "hi-80"} <= set(report.columns)
    assert summary["n_outside_interval"] > 0
    for level in (95, 90.5, "95", True):
        wrong = {**reporting, "anomalies": {**reporting["anomalies"], "level": level}}
        with pytest.raises(InterpretabilityError, match=r"reporting.anomalies.level is .* panel.levels \[80\]"):
            nodes.build_anomaly_report(day0["panel"], only_80, day0["selection"], wrong, panel_80)
        with pytest.raises(InterpretabilityError, match=r"reporting.anomalies.level"):
            nodes.check_reporting_params(wrong, panel_80)
    nodes.check_reporting_params({**reporting, "anomalies": {**reporting["anomalies"], "level": 80}}, panel_80)


def test_prediction_plot_draws_every_series_with_anomalies(day0, reporting, tmp_path):
    report, _ = nodes.build_anomaly_report(day0["panel"], day0["candidate_backtests"], day0["selection"], reporting,
                                           PANEL_PARAMS)
    series = ["H1", "H103"]
    figure = nodes.plot_prediction_vs_actual(day0["panel"], day0["candidate_backtests"], day0["selection"],
                                             day0["forecasts"].assign(timestamp=lambda f: f["timestamp"].astype(str)),
                                             report, series, reporting, PANEL_PARAMS)
    assert [ax.get_title(loc="left") for ax in figure.axes] == ["H1: champion ensemble", "H103: champion ensemble"]
    h103 = figure.axes[1]
    drawn_anomalies = sum(len(c.get_offsets()) for c in h103.collections if c.get_offsets().size and
                          type(c).__name__ == "PathCollection")
    assert drawn_anomalies == (report["series_id"] == "H103").sum()
    assert _saved_png(figure, tmp_path, "pva.png").startswith(PNG_MAGIC)


def test_error_analysis_and_model_comparison_cover_every_candidate(day0, reporting, tmp_path):
    figure = nodes.plot_error_analysis(day0["candidate_backtests"], day0["selection"], reporting)
    assert len(figure.axes) == 4
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert labels == ["ensemble", "seasonal_naive", "weekly_naive"]
    comparison = nodes.plot_model_comparison(day0["candidate_scores"], PANEL_PARAMS)
    assert [ax.get_title() for ax in comparison.axes] == ["smape", "mase", "coverage-80", "coverage-95"]
    assert _saved_png(comparison, tmp_path, "cmp.png").startswith(PNG_MAGIC)


def test_decomposition_and_correlation_plots_use_feature_engineering_outputs(day0, features, reporting):
    figure = nodes.plot_seasonal_decomposition(features["series_decomposition"], day0["panel"], ["H1", "H120"])
    rows = ["observed", "trend", "seasonal_24", "seasonal_168", "resid"]
    assert len(figure.axes) == 2 * len(rows)
    assert [figure.axes[2 * i].get_ylabel() for i in range(len(rows))] == rows
    heatmap = nodes.plot_feature_correlation(features["feature_panel"], features["feature_manifest"], reporting)
    labels = [t.get_text() for t in heatmap.axes[0].get_xticklabels()]
    assert labels[0] == "value" and set(features["feature_manifest"]["features"]) <= set(labels)


def test_drift_history_reads_every_version_oldest_first(tmp_path):
    path = tmp_path / "drift_summary.json"
    assert DriftSummaryHistoryDataset(str(path)).load() == []
    assert "No Day-N monitoring run yet" in nodes.plot_drift_history([]).axes[0].texts[0].get_text()
    for version, share, drift in (("2026-01-02T00.00.00.000Z", 0.5, True), ("2026-01-01T00.00.00.000Z", 0.1, False)):
        (path / version).mkdir(parents=True)
        (path / version / "drift_summary.json").write_text(json.dumps(
            {"drift": drift, "drift_share": share, "performance_ratio": 1.1, "checked_at": version[:10],
             "thresholds": {"drift_share": 0.3, "performance_ratio": 1.5}}))
    history = DriftSummaryHistoryDataset(str(path)).load()
    assert [h["drift_share"] for h in history] == [0.1, 0.5]
    figure = nodes.plot_drift_history(history)
    assert len(figure.axes) == 2 and figure.axes[0].lines[0].get_ydata().tolist() == [0.1, 0.5]


def test_reporting_pipeline_runs_end_to_end_on_a_day0_run(day0, features, parameters, tmp_path):
    pipeline = create_pipeline(families=["seasonal_naive"])
    inputs = {
        "primary_panel": day0["panel"], "candidate_backtests": day0["candidate_backtests"],
        "candidate_scores": day0["candidate_scores"], "model_selection": day0["selection"],
        "forecasts": day0["forecasts"], "drift_summary_history": [], "params:panel": PANEL_PARAMS,
        "params:reporting": parameters["reporting"], **features,
    }
    assert pipeline.inputs() == set(inputs)
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in inputs.items()})
    plots = sorted(name for name in pipeline.outputs() if name.endswith("_plot"))
    for name in plots:
        catalog[name] = MatplotlibDataset(filepath=str(tmp_path / f"{name}.png"))
    for name in pipeline.outputs() - set(plots):
        catalog[name] = MemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    assert plots == ["confidence_plot", "drift_history_plot", "error_analysis_plot", "feature_correlation_plot",
                     "model_comparison_plot", "prediction_vs_actual_plot", "seasonal_decomposition_plot"]
    assert all((tmp_path / f"{name}.png").read_bytes().startswith(PNG_MAGIC) for name in plots)
    with_confidence = catalog.load("forecasts_with_confidence")
    assert with_confidence["confidence"].between(0, 1).all() and len(with_confidence) == len(day0["forecasts"])


def test_importance_nodes_follow_the_enabled_families():
    names = set(create_pipeline(families=["seasonal_naive", "arima", "lstm"]).outputs())
    assert {"arima_coefficients_plot", "lstm_feature_importance_plot"} <= names
    assert "prophet_components_plot" not in names


LIGHTGBM_NODES = {"lightgbm_feature_importance_node", "lightgbm_feature_importance_plot_node"}


def test_lightgbm_importance_nodes_exist_exactly_when_lightgbm_is_enabled():
    with_lightgbm = create_pipeline(families=["seasonal_naive", "lightgbm"])
    nodes_by_name = {node.name: node for node in with_lightgbm.nodes}
    assert LIGHTGBM_NODES <= set(nodes_by_name)
    assert nodes_by_name["lightgbm_feature_importance_node"].inputs == ["lightgbm.model", "lightgbm.model_stats",
                                                                        "params:reporting"]
    assert nodes_by_name["lightgbm_feature_importance_plot_node"].inputs == ["lightgbm_feature_importance",
                                                                             "params:reporting"]
    assert "lightgbm_feature_importance_plot" in with_lightgbm.outputs()
    for families in (["seasonal_naive"], ["seasonal_naive", "arima", "lstm", "prophet"]):
        assert not LIGHTGBM_NODES & {node.name for node in create_pipeline(families=families).nodes}


@pytest.fixture(scope="module")
def lightgbm_model(request):
    """A real lightgbm fit on three M4 Hourly series (30 trees: about 3 s)."""
    from ts_kedro.forecasters.gradient_boosting import LightGBMForecaster

    return LightGBMForecaster(freq="h", season_length=24, horizon=24, n_estimators=30, n_jobs=1).fit(
        request.getfixturevalue("small_panel"))


def _model_stats(model) -> dict:
    """The part of lightgbm.model_stats the importance node reads, as the training node writes it (JSON)."""
    return json.loads(json.dumps({"feature_importance": model.feature_importance().to_dict(orient="records")}))


def test_lightgbm_importance_nodes_write_the_table_and_a_readable_plot(lightgbm_model, reporting, tmp_path):
    """Slice run of the two nodes on a real fit, saved as CSV and PNG like the catalog does."""
    from kedro_datasets.pandas import CSVDataset

    reporting["importance"]["lightgbm"].update(n_buckets=3, top_features=10)
    pipeline = create_pipeline(families=["lightgbm"]).only_nodes(*LIGHTGBM_NODES)
    catalog = DataCatalog({
        "lightgbm.model": MemoryDataset(lightgbm_model), "lightgbm.model_stats": MemoryDataset(_model_stats(lightgbm_model)),
        "params:reporting": MemoryDataset(reporting),
        "lightgbm_feature_importance": CSVDataset(filepath=str(tmp_path / "lightgbm_feature_importance.csv")),
        "lightgbm_feature_importance_plot": MatplotlibDataset(filepath=str(tmp_path / "lightgbm.png")),
    })
    SequentialRunner().run(pipeline, catalog)
    table = catalog.load("lightgbm_feature_importance")
    overall = table[table["horizon_bucket"] == "all"]
    assert list(overall["feature"]) == list(overall.sort_values("mean_abs_shap", ascending=False)["feature"])
    assert set(overall["feature"]) == set(lightgbm_model.feature_names_)
    assert overall["gain_share"].sum() == pytest.approx(1.0) and (overall["mean_abs_shap"] >= 0).all()
    assert sorted(set(table["horizon_bucket"]) - {"all"}) == ["1-8", "17-24", "9-16"]
    assert (tmp_path / "lightgbm.png").read_bytes().startswith(PNG_MAGIC)

    figure = nodes_lightgbm.plot_lightgbm_importance(table, reporting)
    shap_axis, gain_axis, bucket_axis = figure.axes
    top = overall.head(10)
    # largest on top, with the readable labels, and the gain share of the same feature beside each SHAP bar
    assert [t.get_text() for t in shap_axis.get_yticklabels()] == list(top["label"][::-1])
    assert [bar.get_width() for bar in shap_axis.patches] == pytest.approx(list(top["mean_abs_shap"][::-1]))
    assert [bar.get_width() for bar in gain_axis.patches] == pytest.approx(list(100 * top["gain_share"][::-1]))
    assert [t.get_text() for t in bucket_axis.get_xticklabels()] == ["h 1-8", "h 9-16", "h 17-24"]
    assert f"top 10 of {len(overall)} features" in figure.get_suptitle()
    with pytest.raises(InterpretabilityError, match="no feature_importance records"):
        nodes_lightgbm.lightgbm_importance(lightgbm_model, {"family": "lightgbm"}, reporting)


def test_project_catalog_writes_every_plot_under_plots_and_logs_it_to_mlflow(project_root, parameters):
    catalog = _loader(project_root)["catalog"]
    plots = [name for name in create_pipeline(families=["arima", "lstm", "prophet", "lightgbm"]).outputs()
             if name.endswith("_plot")]
    assert "lightgbm_feature_importance_plot" in plots
    for name in plots:
        entry = catalog[name]
        assert entry["type"] == "kedro_mlflow.io.artifacts.MlflowArtifactDataset"
        assert entry["dataset"]["type"] == "matplotlib.MatplotlibDataset"
        assert entry["dataset"]["filepath"].startswith("data/08_reporting/plots/")
    assert catalog["forecasts_with_confidence"]["dataset"]["filepath"].startswith("data/07_model_output/")


def test_project_catalog_logs_the_lightgbm_importance_to_the_mlflow_run(project_root, lightgbm_model, reporting,
                                                                         tmp_path, monkeypatch):
    """The catalog entries resolve to MlflowArtifactDatasets that save under data/08_reporting and log the files
    to the active run (a local tracking store in tmp_path)."""
    import copy

    import mlflow
    from mlflow.tracking import MlflowClient

    names = ("lightgbm_feature_importance", "lightgbm_feature_importance_plot")
    config = {name: copy.deepcopy(_loader(project_root)["catalog"][name]) for name in names}
    assert config["lightgbm_feature_importance"]["dataset"]["filepath"] == \
        "data/08_reporting/importance/lightgbm_feature_importance.csv"
    assert config["lightgbm_feature_importance_plot"]["dataset"]["filepath"] == \
        "data/08_reporting/plots/lightgbm_feature_importance.png"
    for entry in config.values():
        entry["dataset"]["filepath"] = str(tmp_path / entry["dataset"]["filepath"])
    catalog = DataCatalog.from_config(config)
    table = nodes_lightgbm.lightgbm_importance(lightgbm_model, _model_stats(lightgbm_model), reporting)
    # a file store: what is checked is kedro-mlflow's logging into the active run, not the store; a new sqlite
    # store spends about 15 s on its schema migrations on a busy machine
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        # an explicit experiment: mlflow keeps the active experiment id of an earlier test in this process
        # (kedro-mlflow sets one), and that id does not exist in this new store
        experiment_id = MlflowClient(uri).create_experiment("lightgbm_importance")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            catalog.save(names[0], table)
            catalog.save(names[1], nodes_lightgbm.plot_lightgbm_importance(table, reporting))
    finally:
        mlflow.set_tracking_uri(previous)
    client = MlflowClient(uri)
    logged = {a.path for folder in ("importance", "plots") for a in client.list_artifacts(run.info.run_id, folder)}
    assert logged == {"importance/lightgbm_feature_importance.csv", "plots/lightgbm_feature_importance.png"}
    assert (tmp_path / "data/08_reporting/plots/lightgbm_feature_importance.png").read_bytes().startswith(PNG_MAGIC)


def test_per_series_charts_draw_only_the_worst_series_when_asked(day0, reporting, tmp_path):
    """At 100,000 series one bar and label per series does not render: the charts keep the worst
    ``max_series_shown`` (the error chart by sMAPE, the confidence chart by confidence), all when null."""
    backtests, selection = day0["candidate_backtests"], day0["selection"]
    n_series = backtests["series_id"].nunique()
    assert n_series > 2
    everything = nodes.plot_error_analysis(backtests, selection, {**reporting, "max_series_shown": None})
    assert len(everything.axes[1].patches) == n_series and "every series" in everything.axes[1].get_title()
    two = nodes.plot_error_analysis(backtests, selection, {**reporting, "max_series_shown": 2})
    drawn = [tick.get_text() for tick in two.axes[1].get_xticklabels()]
    heights = {tick.get_text(): patch.get_height() for tick, patch in zip(everything.axes[1].get_xticklabels(),
                                                                          everything.axes[1].patches)}
    assert drawn == sorted(heights, key=heights.get, reverse=True)[:2]  # the two worst
    assert f"the 2 worst of {n_series} series" in two.axes[1].get_title()
    assert _saved_png(two, tmp_path, "errors.png").startswith(PNG_MAGIC)

    confidence = nodes.compute_confidence(backtests, selection, day0["panel"], PANEL_PARAMS)
    figure = nodes.plot_confidence(confidence, {**reporting, "max_series_shown": 2})
    lowest = confidence.sort_values("confidence")["series_id"].head(2).tolist()
    assert [tick.get_text() for tick in figure.axes[0].get_xticklabels()] == lowest
    assert f"the 2 least confident of {len(confidence)} series" in figure.axes[0].get_title()
    assert figure.get_size_inches()[0] < 20  # sized for what it draws, not for the whole panel
