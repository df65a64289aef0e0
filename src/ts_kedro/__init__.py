"""ts_kedro: a Kedro time-series forecasting system (ARIMA, Prophet, LSTM) with MLflow and Prefect."""

__version__ = "0.1.0"
