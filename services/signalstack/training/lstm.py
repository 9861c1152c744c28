"""The direction model: an LSTM over the last ``sequence_length`` scaled feature rows of a session.

Input: ``inputs.sequences(...)`` — ``(n, L, width)`` float32, oldest step first, steps before the
session's first row padded as "every input missing". Output: logits over the direction classes
(down / flat / up) from the last step's hidden state. Served through ONNX (``training.export``),
so torch is imported by training only.

Training is deterministic on CPU for a seed: the seed initialises the weights and a dedicated
generator shuffles the batches (the global RNGs are left as they were), deterministic algorithms
are enforced and the fit runs on a fixed number of threads (both settings restored afterwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

#: threads inside a fit: fixed, so the float reductions (and the fitted weights) do not depend on
#: the machine's core count; the model is small enough that one thread is not slower on 2 cores
FIT_THREADS: Final = 1


@dataclass(frozen=True)
class LstmConfig:
    sequence_length: int = 30
    hidden_size: int = 32
    num_layers: int = 1
    dropout: float = 0.0  # between LSTM layers (num_layers > 1)
    epochs: int = 6
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    class_weighting: bool = True  # balanced class weights in the loss, from the training labels


class DirectionLstm(nn.Module):
    """``(batch, L, width)`` float32 → logits ``(batch, n_classes)`` from the last step."""

    def __init__(
        self,
        width: int,
        n_classes: int = 3,
        hidden_size: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.width = width
        self.n_classes = n_classes
        self.lstm = nn.LSTM(
            width,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        logits: torch.Tensor = self.head(out[:, -1, :])
        return logits


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG state is restored
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(FIT_THREADS)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(was_deterministic, warn_only=warn_only)


def balanced_class_weights(y: npt.NDArray[np.int64], n_classes: int) -> npt.NDArray[np.float64]:
    """``n / (classes present × count)`` per class (scikit-learn's "balanced"); a class absent
    from the labels gets weight 0 (it contributes no loss term anyway)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = int((counts > 0).sum())
    out: npt.NDArray[np.float64] = np.divide(
        len(y), present * counts, out=np.zeros(n_classes), where=counts > 0
    )
    return out


def _validate(x: npt.ArrayLike, y: npt.ArrayLike, n_classes: int) -> tuple[torch.Tensor, ...]:
    xa = np.ascontiguousarray(x, dtype=np.float32)
    ya = np.asarray(y)
    if xa.ndim != 3:
        raise ValueError(f"expected sequences (n, length, width); got shape {xa.shape}")
    if ya.shape != (xa.shape[0],):
        raise ValueError(f"one label per sequence: {xa.shape[0]} sequences, labels {ya.shape}")
    if xa.shape[0] == 0:
        raise ValueError("no training sequences")
    if not np.isfinite(xa).all():
        raise ValueError("training sequences must be finite (scale them with inputs.Scaler)")
    yi = ya.astype(np.int64)
    if (yi != ya).any() or yi.min() < 0 or yi.max() >= n_classes:
        raise ValueError(f"labels must be class codes 0..{n_classes - 1}")
    return torch.from_numpy(xa), torch.from_numpy(yi)


def fit_lstm(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    config: LstmConfig = LstmConfig(),
    n_classes: int = 3,
    on_epoch: Callable[[int, float], None] | None = None,
) -> DirectionLstm:
    """Fit on sequences ``x`` ``(n, L, width)`` and class codes ``y``; ``on_epoch(epoch,
    mean_loss)`` after each epoch (1-based). Returns the model in eval mode. The same seed and
    data give bit-identical weights."""
    xt, yt = _validate(x, y, n_classes)
    n = xt.shape[0]
    with _deterministic(config.seed):
        model = DirectionLstm(
            xt.shape[2], n_classes, config.hidden_size, config.num_layers, config.dropout
        )
        weight = None
        if config.class_weighting:
            w = balanced_class_weights(yt.numpy(), n_classes)
            weight = torch.tensor(w, dtype=torch.float32)
        # mean over the batch weighted by class: sum of w·loss / sum of w
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        opt = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        gen = torch.Generator().manual_seed(config.seed)
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, config.batch_size):
                idx = order[start : start + config.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            if on_epoch is not None:
                on_epoch(epoch, total / n)
    model.eval()
    return model


def predict_proba(model: DirectionLstm, x: npt.ArrayLike, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities ``(n, n_classes)`` float64 (softmax of the logits), batched."""
    xa = np.ascontiguousarray(x, dtype=np.float32)
    if xa.ndim != 3:
        raise ValueError(f"expected sequences (n, length, width); got shape {xa.shape}")
    model.eval()
    out = np.zeros((xa.shape[0], model.n_classes), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, xa.shape[0], batch_size):
            logits = model(torch.from_numpy(xa[start : start + batch_size]))
            out[start : start + len(logits)] = torch.softmax(logits.double(), dim=1).numpy()
    return out


def parameter_count(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())


__all__ = [
    "DirectionLstm",
    "LstmConfig",
    "balanced_class_weights",
    "fit_lstm",
    "parameter_count",
    "predict_proba",
]
