"""The one domain error of the interpretability functions."""


class InterpretabilityError(ValueError):
    """An input cannot be interpreted: a column is missing, a series has no backtest, a model is of the wrong kind."""


class TooFewWindowsError(InterpretabilityError):
    """Permutation importance needs held-out windows of at least two series (inputs are shuffled across them);
    the panel has fewer. Not a fault of the data: a one-series panel simply has nothing to permute across."""


def require_columns(frame, columns, what: str) -> None:
    """Raise naming the dataset and the missing columns (the usual fault: an upstream contract changed)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InterpretabilityError(
            f"{what} lacks columns {missing} (has {list(frame.columns)}); check the upstream pipeline that writes it"
        )
