"""Global LSTM forecaster (torch): one model for all series, direct multi-step quantile output, any frequency.

Design (why, in short):
- The lookback of ``input_size`` steps is read as ``input_size / season_length`` tokens of one full season each
  (on hourly data a lookback of two weeks is 14 daily tokens). The LSTM runs one step per season instead of one per
  observation, which makes CPU training cheap, and every token sees a whole seasonal profile. Tokens stay ONE
  season wide on every grid: with ``season_length`` 1 (yearly, or a panel too short for its season) a token is one
  observation and the network is a plain LSTM over the lookback; a lookback of a few seasons gives a few steps.
  Wider "chunk" tokens were not needed: the derived lookbacks are short where the season is short (the profile
  bounds them by what a typical series affords), and one-season tokens keep the seasonal-naive baseline and the
  permutation-importance groups (last season / earlier seasons / calendar) meaningful on every grid.
- ``input_size=None`` means derived: ``build_forecaster`` passes the profile's ``lstm_input_size`` (bounded by what
  the series afford) and the panel ``horizon``; a model constructed directly derives the lookback at fit time from
  ``ts_kedro.frequency.derive_profile`` with the panel's lengths. ``horizon`` has no default: it is the trained
  output length, and the training node passes the panel horizon.
- Per-window scaling: every input window and its targets are divided by the mean absolute value of the input
  window, so one model serves series of any level.
- The network predicts a correction to the seasonal naive forecast of the scaled window (the last season
  repeated; the last value when ``season_length`` is 1), so an untrained or early-stopped model starts from the
  reference it has to beat.
- Output: the whole ``horizon`` at once for a FIXED grid of quantiles: the median plus the lower/upper quantiles of
  every level in ``interval_levels`` (default 50, 80, 90, 95, 99), trained with the pinball loss. At predict time
  a requested level between trained ones is linearly interpolated in probability; a level wider than the widest
  trained one is an error (add it to ``interval_levels``). ``mean`` is the 0.5 quantile.
- Calendar inputs (``calendar_features``): sin/cos of the calendar terms that vary at the panel's frequency and whose
  cycle the longest series covers twice (``feature_engineering.calendar.select_features``: hour and weekday for
  hourly data, month for monthly, quarter for quarterly, none for yearly), taken at each token's start.
- Series shorter than ``min_length`` = ``input_size + horizon`` (one lookback and its target) are served by the
  ``fallback`` family (ETS). A series with ``input_size + 2 * horizon`` points gives a validation window (its last
  ``horizon`` points as targets; its training targets end before them); shorter fitted series give training
  windows only. Early stopping on the validation windows keeps the best epoch's weights. When no series affords a
  validation window (few short series), the network trains without early stopping for
  ``min(max_epochs, epochs_without_validation)`` epochs (default 10) and keeps the last weights.
- Deterministic on CPU: seeded, ``torch.use_deterministic_algorithms(True)`` and a fixed thread count while
  training/predicting (previous global torch settings are restored afterwards).
- A seed ensemble (``n_models``, default 3; members seeded seed, seed+1, ...; quantiles averaged): single
  networks trained on a few tens of series differ noticeably from seed to seed, the ensemble removes most of it.
- Mixed precision on CUDA (``precision``: ``fp32`` default, ``fp16`` or ``bf16``): the forward passes run under
  ``torch.autocast`` and fp16 training scales the loss (``torch.amp.GradScaler``) so small gradients do not
  underflow; the weights, the optimiser state and the pinball loss stay fp32, so a model trained in mixed precision
  is saved, loaded and served like any other (its predictions on CPU run fp32). Not the default, and refused on
  CPU with a clear error: torch 2.13's CPU LSTM (oneDNN) failed in fp16 and bf16 autocast on this project's
  development machine (no AVX-512: "could not create a primitive descriptor"), and whether it keeps accuracy has not been
  measured on a GPU yet (``benchmarks/lstm_device.py`` measures it: CPU fp32 against CUDA fp32 / fp16 / bf16 on the
  same data). bf16 needs cuDNN >= 9.13 for the LSTM kernel (pytorch/pytorch#164411; older builds raise "not implemented
  for 'BFloat16'", pytorch/pytorch#116925).
- Picklable: the fitted state is the members' state_dicts as numpy arrays plus the last window of every series.
- No covariates (``supports_covariates`` False): a panel's covariate columns are ignored and recorded in
  ``ignored_covariates_``. Why not yet: the network's inputs are a public contract (``window_inputs`` /
  ``predict_scaled``) that the reporting pipeline's permutation importance reads, taking every token channel
  beyond the season as the calendar group and giving no input for values at the target times; covariate channels
  (lagged per token, and the plan for the horizon into the head) need that reader changed with them, and a
  scaling of covariates chosen on data.

Measurements (M4 Hourly, M3 quarterly/monthly) are in ``docs/benchmarks.md`` and
``benchmarks/family_check_prophet_lstm.py``.
"""
from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ts_kedro.forecasters._per_series import SeriesForecast, concat_forecasts
from ts_kedro.forecasters.base import SERIES_ID, TIMESTAMP, VALUE, Forecaster, ForecasterError

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")

class LSTMForecaster(Forecaster):
    """One LSTM trained on windows of all series; see the module docstring for the design.

    Hyperparameters: ``horizon`` (trained output length, required; predict may ask up to it), ``input_size``
    (lookback, a multiple of season_length; None = derived), ``hidden_size``, ``num_layers``, ``dropout``,
    ``batch_size``, ``lr``, ``max_epochs``, ``patience``, ``max_windows_per_series``, ``interval_levels``,
    ``calendar_features`` (use the calendar terms that vary at the panel's frequency), ``epochs_without_validation``
    (fixed epochs when no series affords a validation window), ``n_models`` (seed ensemble size: members seeded
    ``seed``, ``seed+1``, ...; quantiles averaged), ``seed``, ``device`` (auto|cpu|cuda), ``num_threads``, ``precision`` (fp32|fp16|bf16: mixed precision
    on CUDA, see the module docstring).
    """

    name = "lstm"
    fallback = "ets"

    def __init__(self, freq: str = "h", season_length: int | None = None, horizon: int | None = None,
                 input_size: int | None = None, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0,
                 batch_size: int = 256, lr: float = 3e-3, max_epochs: int = 40, patience: int = 5,
                 max_windows_per_series: int = 200, interval_levels: list[int] | None = None,
                 calendar_features: bool = True, epochs_without_validation: int = 10, n_models: int = 3,
                 seed: int = 0, device: str = "auto", num_threads: int = 1, precision: str = "fp32"):
        interval_levels = [50, 80, 90, 95, 99] if interval_levels is None else [int(v) for v in interval_levels]
        super().__init__(freq, season_length, horizon=horizon, input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers, dropout=dropout, batch_size=batch_size, lr=lr,
                         max_epochs=max_epochs, patience=patience, max_windows_per_series=max_windows_per_series,
                         interval_levels=interval_levels, calendar_features=calendar_features,
                         epochs_without_validation=epochs_without_validation, n_models=n_models, seed=seed,
                         device=device, num_threads=num_threads, precision=precision)
        m = self.season_length
        if input_size is not None and (int(input_size) < m or int(input_size) % m):
            raise ForecasterError(f"lstm: input_size={input_size} must be a positive multiple of season_length="
                                  f"{m} (the lookback is read one season per LSTM step)")
        if horizon is None:
            raise ForecasterError("lstm: horizon (the trained output length) is required; build_forecaster passes "
                                  "the panel horizon")
        if device not in ("auto", "cpu", "cuda"):
            raise ForecasterError(f"lstm: device must be auto, cpu or cuda, got {device!r}")
        if precision not in PRECISIONS:
            raise ForecasterError(f"lstm: precision must be one of {list(PRECISIONS)}, got {precision!r}")
        if any(not 0 < v < 100 for v in interval_levels):
            raise ForecasterError(f"lstm: interval_levels must lie strictly between 0 and 100, got {interval_levels}")
        if min(int(horizon), int(hidden_size), int(num_layers), int(batch_size), int(max_epochs), int(n_models),
               int(epochs_without_validation)) < 1:
            raise ForecasterError("lstm: horizon, hidden_size, num_layers, batch_size, max_epochs, n_models and "
                                  "epochs_without_validation must be >= 1")
        self.horizon = int(horizon)
        # None until fit derives it from the panel (see _resolve_input_size)
        self.input_size = None if input_size is None else int(input_size)
        self.hidden_size, self.num_layers, self.dropout = int(hidden_size), int(num_layers), float(dropout)
        self.batch_size, self.lr = int(batch_size), float(lr)
        self.max_epochs, self.patience = int(max_epochs), int(patience)
        self.max_windows_per_series = int(max_windows_per_series)
        self.interval_levels = sorted(set(interval_levels))
        self.calendar_features = bool(calendar_features)
        self.epochs_without_validation = int(epochs_without_validation)
        self.n_models = int(n_models)
        self.seed, self.device, self.num_threads = int(seed), device, int(num_threads)
        self.precision = precision

    def fit(self, panel: pd.DataFrame) -> "LSTMForecaster":
        # the lookback decides min_length, which the base class needs before it splits off the fallback series
        self._resolve_input_size(panel)
        return super().fit(panel)

    def _resolve_input_size(self, panel: pd.DataFrame) -> None:
        configured = self.hyperparameters.get("input_size")
        if configured is not None:
            self.input_size = int(configured)
            return
        from ts_kedro.frequency import derive_profile

        lengths = panel.groupby(SERIES_ID, sort=False)[VALUE].count() if SERIES_ID in panel and VALUE in panel else None
        profile = derive_profile({"freq": self.freq, "horizon": self.horizon, "season_length": self.season_length},
                                 None if lengths is None or lengths.empty else lengths.to_numpy())
        self.input_size = int(profile.lstm_input_size)
        logger.info("lstm: lookback derived from the frequency profile: %d steps (%d tokens of %d)",
                    self.input_size, self.input_size // self.season_length, self.season_length)

    # -- interface --------------------------------------------------------------------------------------------
    @property
    def min_length(self) -> int:
        # one lookback and its target; a validation window needs another horizon (see the module docstring)
        if self.input_size is None:
            raise ForecasterError("lstm: the lookback is derived at fit time; min_length is known after fit() "
                                  "or with an explicit input_size")
        return self.input_size + self.horizon

    @property
    def quantiles(self) -> np.ndarray:
        tails = [0.5 - level / 200 for level in self.interval_levels]
        return np.array(sorted({0.5, *tails, *(1 - t for t in tails)}))

    def n_parameters(self) -> int:
        return int(sum(v.size for state in getattr(self, "state_dicts_", []) for v in state.values()))

    def window_inputs(self, panel: pd.DataFrame, held_out: int = 0) -> dict:
        """The network's scaled inputs for the lookback window of every fitted series in ``panel``.

        The window ends ``held_out`` points before each series' end, and those ``held_out`` points come back as
        scaled targets (``held_out=horizon`` gives exactly the early-stopping validation windows of training).
        Series the model was not fitted on, or shorter than ``input_size + held_out``, are left out.

        Returns:
            ``series_ids`` (list), ``tokens`` (n, input_size/season_length, season_length [+ 2 per calendar term
            in ``calendar_names_``]),
            ``last_season`` (n, season_length), ``scale`` (n,: divide values by it to get the network's units) and
            ``targets`` (n, held_out, scaled).
        """
        self._require_fitted()
        if int(held_out) != held_out or held_out < 0:
            raise ForecasterError(f"lstm: held_out must be a non-negative integer, got {held_out!r}")
        length, held_out = self.input_size, int(held_out)
        known = set(self.fitted_series_ids_)
        ids, values, calendars = [], [], []
        for series_id, (series_values, calendar) in _series_arrays(panel, self._calendar_names()).items():
            if series_id not in known or len(series_values) < length + held_out:
                continue
            end = len(series_values) - held_out
            ids.append(series_id)
            values.append(series_values[end - length:end + held_out])
            calendars.append(calendar[end - length:end])
        if not ids:
            width = self.season_length + 2 * len(self._calendar_names())
            empty = np.empty((0, length // self.season_length, width), np.float32)
            return {"series_ids": [], "tokens": empty, "last_season": np.empty((0, self.season_length), np.float32),
                    "scale": np.empty(0), "targets": np.empty((0, held_out), np.float32)}
        values = np.stack(values)
        (tokens, last_season), scale = _scale_inputs(values[:, :length], np.stack(calendars), self.season_length)
        targets = (values[:, length:] / scale[:, None]).astype(np.float32)
        return {"series_ids": ids, "tokens": tokens, "last_season": last_season, "scale": scale, "targets": targets}

    def predict_scaled(self, tokens: np.ndarray, last_season: np.ndarray) -> np.ndarray:
        """Quantile forecasts (n, horizon, len(quantiles)) in the scaled units of ``window_inputs``.

        The mean over the seed-ensemble members of each quantile, sorted along the quantile axis (repairs any
        crossing); seeded and deterministic like training. Multiply by ``scale[:, None, None]`` for original units.
        """
        import torch

        self._require_fitted()
        tokens, last_season = np.asarray(tokens, np.float32), np.asarray(last_season, np.float32)
        if tokens.ndim != 3 or last_season.shape != (len(tokens), self.season_length):
            raise ForecasterError(f"lstm: predict_scaled expects tokens (n, seasons, features) and last_season "
                                  f"(n, {self.season_length}); got {tokens.shape} and {last_season.shape}")
        device = self._resolve_device()
        # a model trained in mixed precision predicts in fp32 on a CPU machine (its weights are fp32)
        autocast = self._autocast(device) if device == "cuda" else contextlib.nullcontext
        # older pickles hold a single network as state_dict_
        states = getattr(self, "state_dicts_", None) or [self.state_dict_]
        members = []
        with _torch_determinism(self.seed, self.num_threads):
            for state in states:
                network = self._network()
                network.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
                network.to(device).eval()
                outputs = []
                with torch.no_grad():
                    for start in range(0, len(tokens), self.batch_size):
                        chunk = slice(start, start + self.batch_size)
                        with autocast():
                            predicted = network(torch.as_tensor(tokens[chunk], device=device),
                                                torch.as_tensor(last_season[chunk], device=device))
                        outputs.append(predicted.float().cpu().numpy())
                members.append(np.concatenate(outputs) if outputs else
                               np.empty((0, self.horizon, len(self.quantiles)), np.float32))
        return np.sort(np.mean(members, axis=0), axis=-1)

    def _require_fitted(self) -> None:
        if not getattr(self, "is_fitted_", False):
            raise ForecasterError("lstm: call fit() before window_inputs()/predict_scaled()")

    def _fit(self, panel: pd.DataFrame) -> None:
        started, cpu_started = time.perf_counter(), time.process_time()
        device = self._resolve_device()
        self.calendar_names_ = self._select_calendar(panel)
        series = _series_arrays(panel, self.calendar_names_)
        train, valid = self._windows(series)
        self._autocast(device)  # a reduced precision on CPU fails here, before any work
        logger.info("lstm: %d training and %d validation windows from %d series on %s (%s), %d member(s)",
                    len(train[0]), len(valid[0]), len(series), device, self._precision(), self.n_models)
        self.state_dicts_: list[dict[str, np.ndarray]] = []
        self.history_: list[list[dict]] = []
        self.best_epochs_: list[int] = []
        for member in range(self.n_models):
            state, history, best_epoch = self._train_member(train, valid, device, seed=self.seed + member)
            self.state_dicts_.append(state)
            self.history_.append(history)
            self.best_epochs_.append(best_epoch)
        self.last_windows_ = {sid: (values[-self.input_size:].copy(), calendar[-self.input_size:].copy())
                              for sid, (values, calendar) in series.items()}
        self.fit_seconds_ = time.perf_counter() - started
        self.fit_cpu_seconds_ = time.process_time() - cpu_started
        logger.info("lstm: trained %d member(s) (epochs %s, best %s) in %.1f s wall, %.1f s CPU",
                    self.n_models, [len(h) for h in self.history_], self.best_epochs_, self.fit_seconds_,
                    self.fit_cpu_seconds_)

    def _train_member(self, train, valid, device: str, seed: int):
        """Train one network from seed ``seed``; return its best-epoch weights (numpy, CPU) and loss history."""
        import torch

        autocast = self._autocast(device)
        with _torch_determinism(seed, self.num_threads):
            network = self._network().to(device)
            optimiser = torch.optim.Adam(network.parameters(), lr=self.lr)
            # fp16 only: the loss is scaled so that small gradients survive; a no-op for fp32 and bf16
            scaler = torch.amp.GradScaler("cuda") if self._precision() == "fp16" else None
            quantiles = torch.tensor(self.quantiles, dtype=torch.float32, device=device)
            train_t = [torch.as_tensor(a, device=device) for a in train]
            valid_t = [torch.as_tensor(a, device=device) for a in valid]
            generator = torch.Generator().manual_seed(seed)
            best_loss, best_state, best_epoch, stale, history = np.inf, None, 0, 0, []
            validated = len(valid[0]) > 0
            # without a validation window: a fixed small number of epochs, the last weights are kept
            n_epochs = self.max_epochs if validated else min(self.max_epochs, self.epochs_without_validation)
            epochs = tqdm(range(1, n_epochs + 1), desc=f"lstm epochs (seed {seed})", unit="epoch", leave=False)
            for epoch in epochs:
                network.train()
                order = torch.randperm(len(train_t[0]), generator=generator).to(device)
                train_loss = 0.0
                for start in range(0, len(order), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    with autocast():
                        predicted = network(train_t[0][batch], train_t[1][batch])
                    loss = _pinball(predicted.float(), train_t[2][batch], quantiles)
                    optimiser.zero_grad()
                    if scaler is None:
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                        optimiser.step()
                    else:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimiser)  # clip the true gradients
                        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                        scaler.step(optimiser)  # skipped when the scaled gradients overflowed
                        scaler.update()
                    train_loss += loss.detach().item() * len(batch)
                valid_loss = self._evaluate(network, valid_t, quantiles, autocast) if validated else float("nan")
                history.append({"epoch": epoch, "train_loss": train_loss / len(order), "valid_loss": valid_loss})
                epochs.set_postfix(train=f"{train_loss / len(order):.4f}", valid=f"{valid_loss:.4f}")
                if not validated:
                    best_epoch = epoch
                    best_state = {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}
                elif valid_loss < best_loss - 1e-6:
                    best_loss, best_epoch, stale = valid_loss, epoch, 0
                    best_state = {k: v.detach().cpu().numpy().copy() for k, v in network.state_dict().items()}
                else:
                    stale += 1
                    if stale >= self.patience:
                        break
        logger.info("lstm: seed %d stopped after %d epochs, best %d (valid pinball %.4f)", seed, len(history),
                    best_epoch, best_loss)
        return best_state, history, best_epoch

    def _update(self, new_observations: pd.DataFrame) -> None:
        # a forecast reads only the last input window: the new values (and their calendar terms) push the oldest
        # out; the network weights are the fitted parameters and stay
        for series_id, (values, calendar) in _series_arrays(new_observations, self._calendar_names()).items():
            old_values, old_calendar = self.last_windows_[series_id]
            self.last_windows_[series_id] = (np.r_[old_values, values][-self.input_size:].copy(),
                                             np.concatenate([old_calendar, calendar])[-self.input_size:].copy())

    def _predict(self, horizon: int, levels: list[int]) -> pd.DataFrame:
        if horizon > self.horizon:
            raise ForecasterError(f"lstm: trained for horizon {self.horizon}, asked for {horizon}; "
                                  f"refit with hyperparameter horizon >= {horizon}")
        widest = max(self.interval_levels)
        too_wide = [level for level in levels if level > widest]
        if too_wide:
            raise ForecasterError(f"lstm: levels {too_wide} are wider than the trained quantiles (up to {widest}%); "
                                  f"add them to hyperparameter interval_levels and refit")
        started = time.perf_counter()
        ids = list(self.fitted_series_ids_)
        values = np.stack([self.last_windows_[sid][0] for sid in ids])
        calendar = np.stack([self.last_windows_[sid][1] for sid in ids])
        (tokens, last_season), scale = _scale_inputs(values, calendar, self.season_length)
        # back on the original scale
        predicted = self.predict_scaled(tokens, last_season)[:, :horizon, :] * scale[:, None, None]
        probabilities = self.quantiles
        frames = []
        for i, sid in enumerate(ids):
            mean = _interpolate_quantile(predicted[i], probabilities, 0.5)
            bounds = {level: (_interpolate_quantile(predicted[i], probabilities, 0.5 - level / 200),
                              _interpolate_quantile(predicted[i], probabilities, 0.5 + level / 200))
                      for level in levels}
            frames.append(SeriesForecast(sid, self.future_index(sid, horizon), mean, bounds))
        logger.info("lstm: predicted %d series in %.2f s", len(ids), time.perf_counter() - started)
        return concat_forecasts(frames)

    # -- internals --------------------------------------------------------------------------------------------
    def _select_calendar(self, panel: pd.DataFrame) -> list[str]:
        """Calendar terms that vary at the panel's frequency and whose cycle the longest series covers twice."""
        if not self.calendar_features:
            return []
        from ts_kedro.frequency import MIN_CYCLES
        from ts_kedro.pipelines.feature_engineering.calendar import capped_span, select_features, step_length

        stamps = panel.groupby(SERIES_ID, sort=False)[TIMESTAMP].agg(["min", "max"])
        # n observations cover n steps of time (336 hourly values are 14 whole days: two weekly cycles)
        span = capped_span(stamps["min"], stamps["max"]) + step_length(self.freq)
        names = select_features(self.freq, span, MIN_CYCLES)
        logger.info("lstm: calendar inputs %s", names or "none (no calendar term varies at this frequency)")
        return names

    def _calendar_names(self) -> list[str]:
        names = getattr(self, "calendar_names_", None)
        if names is None:  # models pickled before calendar_names_ existed used hour of day and day of week
            return ["hour", "weekday"] if self.calendar_features else []
        return list(names)

    def _precision(self) -> str:
        return getattr(self, "precision", "fp32")  # models pickled before precision existed trained in fp32

    def _autocast(self, device: str):
        """A factory of the forward passes' autocast context: a no-op for fp32, ``torch.autocast`` on CUDA."""
        import torch

        precision = self._precision()
        if precision == "fp32":
            return contextlib.nullcontext
        if device != "cuda":
            raise ForecasterError(
                f"lstm: precision={precision!r} needs a CUDA device, and this run is on {device}: torch's CPU LSTM "
                "has no reduced-precision kernel on most CPUs; set the lstm hyperparameter precision: fp32 (or leave "
                "it out) on CPU machines")
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return lambda: torch.autocast(device_type="cuda", dtype=dtype)

    def _resolve_device(self) -> str:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise ForecasterError("lstm: device='cuda' but torch sees no CUDA device; use device='auto' or 'cpu'")
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def _network(self):
        return _QuantileLSTM(season_length=self.season_length,
                             n_features=self.season_length + 2 * len(self._calendar_names()),
                             hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=self.dropout,
                             horizon=self.horizon, n_quantiles=len(self.quantiles))

    def _windows(self, series: dict[str, tuple[np.ndarray, np.ndarray]]):
        """Scaled (tokens, baseline, targets) for training and validation.

        A series with a lookback and two horizons gives a validation window (its last horizon as targets) and
        training windows whose targets end before it; a shorter series (one lookback and one horizon) gives
        training windows only.
        """
        rng = np.random.default_rng(self.seed)
        train_values, train_calendar, valid_values, valid_calendar = [], [], [], []
        L, H = self.input_size, self.horizon
        for values, calendar in series.values():
            n = len(values)
            last_origin = n - H
            if n >= L + 2 * H:
                valid_values.append(values[n - H - L:n])
                valid_calendar.append(calendar[n - H - L:n - H])
                last_origin = n - 2 * H  # training targets end before the validation targets start
            origins = np.arange(L, last_origin + 1)
            if len(origins) > self.max_windows_per_series:
                origins = np.sort(rng.choice(origins, self.max_windows_per_series, replace=False))
            for origin in origins:
                train_values.append(values[origin - L:origin + H])
                train_calendar.append(calendar[origin - L:origin])
        return self._scaled_windows(train_values, train_calendar), self._scaled_windows(valid_values, valid_calendar)

    def _scaled_windows(self, windows: list[np.ndarray], calendar: list[np.ndarray]):
        L, H = self.input_size, self.horizon
        if not windows:  # e.g. no series affords a validation window
            width = self.season_length + 2 * len(self._calendar_names())
            return (np.empty((0, L // self.season_length, width), np.float32),
                    np.empty((0, self.season_length), np.float32), np.empty((0, H), np.float32))
        windows, calendar = np.stack(windows), np.stack(calendar)
        inputs, scale = _scale_inputs(windows[:, :L], calendar, self.season_length)
        targets = (windows[:, L:] / scale[:, None]).astype(np.float32)
        return inputs[0], inputs[1], targets

    def _evaluate(self, network, tensors, quantiles, autocast=contextlib.nullcontext) -> float:
        import torch

        network.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(tensors[0]), self.batch_size):
                chunk = slice(start, start + self.batch_size)
                with autocast():
                    predicted = network(tensors[0][chunk], tensors[1][chunk])
                loss = _pinball(predicted.float(), tensors[2][chunk], quantiles)
                total += float(loss) * len(tensors[0][chunk])
        return total / len(tensors[0])


def _series_arrays(panel: pd.DataFrame, calendar_names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Values and cyclic calendar features (sin/cos of ``calendar_names``) of every series in time order."""
    from ts_kedro.pipelines.feature_engineering.calendar import calendar_frame

    ordered = panel.sort_values([SERIES_ID, TIMESTAMP], kind="stable")
    if calendar_names:
        calendar = calendar_frame(ordered[TIMESTAMP], calendar_names, "cyclic").to_numpy(np.float32)
    else:
        calendar = np.empty((len(ordered), 0), np.float32)
    values = ordered[VALUE].to_numpy(float)
    out, start = {}, 0
    for sid, size in ordered.groupby(SERIES_ID, sort=False).size().items():
        out[sid] = (values[start:start + size], calendar[start:start + size])
        start += size
    return out


def _scale_inputs(values: np.ndarray, calendar: np.ndarray, season_length: int):
    """Season tokens (batch, n_seasons, m [+ calendar]) divided by the window mean, the scaled last season, the scale.

    Each token carries the calendar features of its first step (none when ``calendar`` has no columns).
    """
    scale = np.abs(values).mean(axis=1)
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero window stays zero; any positive scale works
    scaled = (values / scale[:, None]).astype(np.float32)
    batch, length = scaled.shape
    tokens = scaled.reshape(batch, length // season_length, season_length)
    if calendar.shape[-1]:
        token_calendar = calendar.reshape(batch, length // season_length, season_length, -1)[:, :, 0, :]
        tokens = np.concatenate([tokens, token_calendar.astype(np.float32)], axis=-1)
    return (tokens.astype(np.float32), scaled[:, -season_length:].copy()), scale


def _interpolate_quantile(predicted: np.ndarray, probabilities: np.ndarray, p: float) -> np.ndarray:
    """Quantile ``p`` per step, linear in probability between the trained quantiles (predicted: horizon x Q)."""
    upper = int(np.clip(np.searchsorted(probabilities, p), 1, len(probabilities) - 1))
    lower = upper - 1
    weight = (p - probabilities[lower]) / (probabilities[upper] - probabilities[lower])
    return predicted[:, lower] + np.clip(weight, 0.0, 1.0) * (predicted[:, upper] - predicted[:, lower])


def _pinball(predicted, target, quantiles):
    """Mean pinball loss; predicted (batch, horizon, Q), target (batch, horizon)."""
    error = target.unsqueeze(-1) - predicted
    return (quantiles * error).maximum((quantiles - 1) * error).mean()


@contextlib.contextmanager
def _torch_determinism(seed: int, num_threads: int):
    """Seeded, deterministic kernels, fixed threads; the caller's global torch settings come back afterwards."""
    import torch

    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.get_num_threads())
    torch.manual_seed(seed)
    # warn_only: on CUDA a few kernels have no deterministic variant; CPU runs are fully deterministic
    torch.use_deterministic_algorithms(True, warn_only=True)
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.set_num_threads(previous[2])


def _build_network_class():
    import torch
    from torch import nn

    class QuantileLSTM(nn.Module):
        """LSTM over season tokens -> horizon x quantiles, added to the scaled seasonal naive forecast."""

        def __init__(self, season_length, n_features, hidden_size, num_layers, dropout, horizon, n_quantiles):
            super().__init__()
            self.season_length, self.horizon, self.n_quantiles = season_length, horizon, n_quantiles
            self.lstm = nn.LSTM(n_features, hidden_size, num_layers=num_layers, batch_first=True,
                                dropout=dropout if num_layers > 1 else 0.0)
            self.head = nn.Sequential(nn.Linear(hidden_size + season_length, hidden_size), nn.ReLU(),
                                      nn.Linear(hidden_size, horizon * n_quantiles))

        def forward(self, tokens, last_season):
            encoded, _ = self.lstm(tokens)
            features = torch.cat([encoded[:, -1, :], last_season], dim=-1)
            correction = self.head(features).view(-1, self.horizon, self.n_quantiles)
            repeats = -(-self.horizon // self.season_length)
            baseline = last_season.repeat(1, repeats)[:, : self.horizon]
            return baseline.unsqueeze(-1) + correction

    return QuantileLSTM


def _QuantileLSTM(**kwargs):
    # built lazily so that importing this module (and unpickling a fitted model) does not need torch up front
    return _build_network_class()(**kwargs)
