"""The domain error of the monitoring pipeline."""


class MonitoringConfigError(ValueError):
    """A ``monitoring`` parameter (window, threshold, alert rule) has a value the pipeline cannot use."""
