"""The LSTM direction model: shapes, a learnable signal, determinism for a seed, global state."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from signalstack.training.lstm import (
    DirectionLstm,
    LstmConfig,
    balanced_class_weights,
    fit_lstm,
    predict_proba,
)

SMALL = LstmConfig(sequence_length=6, hidden_size=8, epochs=3, batch_size=64, seed=3)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def signal_data(n: int = 480, length: int = 6, width: int = 4, seed: int = 0) -> tuple:
    """Class = sign of the first input two steps back (down / flat / up): needs memory."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, length, width)).astype(np.float32)
    v = x[:, -3, 0]
    y = np.where(v < -0.43, 0, np.where(v > 0.43, 2, 1)).astype(np.int64)
    return x, y


def test_forward_gives_logits_of_the_last_step() -> None:
    torch.manual_seed(0)
    m = DirectionLstm(width=5, n_classes=3, hidden_size=4).eval()
    x = torch.randn(7, 9, 5)
    assert m(x).shape == (7, 3)
    # the last step's output depends on every step; changing only the last step changes it
    y = x.clone()
    y[:, -1, :] += 1.0
    assert not torch.allclose(m(x), m(y))
    # and a different history with the same last step changes it too (it is recurrent)
    z = x.clone()
    z[:, 0, :] += 1.0
    assert not torch.allclose(m(x), m(z))


def test_fit_learns_a_signal_that_needs_memory() -> None:
    x, y = signal_data()
    losses: list[tuple[int, float]] = []
    model = fit_lstm(x, y, LstmConfig(hidden_size=16, epochs=25, batch_size=32, seed=0),
                     on_epoch=lambda e, loss: losses.append((e, loss)))  # fmt: skip
    assert [e for e, _ in losses] == list(range(1, 26))
    assert losses[-1][1] < 0.7 * losses[0][1]
    assert not model.training
    xt, yt = signal_data(seed=1)
    acc = float((predict_proba(model, xt).argmax(axis=1) == yt).mean())
    assert acc > 0.6  # chance is ~1/3


def test_same_seed_same_data_bit_identical_and_another_seed_differs() -> None:
    x, y = signal_data(n=200)
    a = fit_lstm(x, y, SMALL)
    b = fit_lstm(x, y, SMALL)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb), ka
    np.testing.assert_array_equal(predict_proba(a, x), predict_proba(b, x))
    c = fit_lstm(x, y, LstmConfig(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(predict_proba(a, x), predict_proba(c, x))


def test_fit_does_not_depend_on_the_callers_threads_or_rng() -> None:
    x, y = signal_data(n=200)
    torch.set_num_threads(1)
    torch.manual_seed(1)
    a = fit_lstm(x, y, SMALL)
    torch.set_num_threads(2)
    torch.manual_seed(2)
    b = fit_lstm(x, y, SMALL)
    for va, vb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb)


def test_fit_leaves_global_torch_state_as_it_was() -> None:
    x, y = signal_data(n=64)
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    torch.set_num_threads(2)
    assert not torch.are_deterministic_algorithms_enabled()
    fit_lstm(x, y, SMALL)
    assert torch.get_num_threads() == 2
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.rand(3), expected_draw)  # the caller's RNG stream is untouched


def test_predict_proba_rows_are_probabilities_in_batches() -> None:
    x, y = signal_data(n=50)
    model = fit_lstm(x, y, SMALL)
    p = predict_proba(model, x, batch_size=7)
    assert p.shape == (50, 3)
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p, predict_proba(model, x, batch_size=1000), atol=1e-6)
    assert predict_proba(model, x[:0]).shape == (0, 3)


def test_balanced_class_weights() -> None:
    y = np.array([0, 0, 0, 1, 2, 2], dtype=np.int64)
    np.testing.assert_allclose(balanced_class_weights(y, 3), [6 / 9, 6 / 3, 6 / 6])
    # an absent class gets 0, the others share n / (present · count)
    np.testing.assert_allclose(balanced_class_weights(np.array([0, 2, 2, 2]), 3), [2, 0, 2 / 3])


def test_class_weighting_changes_the_fit_on_imbalanced_labels() -> None:
    x, y = signal_data(n=200)
    y = np.where(np.arange(len(y)) % 5 == 0, y, 1)  # mostly "flat"
    cfg = LstmConfig(**{**SMALL.__dict__, "class_weighting": False})
    a, b = fit_lstm(x, y, SMALL), fit_lstm(x, y, cfg)
    assert not np.array_equal(predict_proba(a, x), predict_proba(b, x))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((4, 6), np.float32), np.zeros(4, int), "sequences"),
        (np.zeros((4, 6, 2), np.float32), np.zeros(3, int), "one label per sequence"),
        (np.zeros((4, 6, 2), np.float32), np.array([0, 1, 3, 0]), "class codes"),
        (np.full((4, 6, 2), np.nan, np.float32), np.zeros(4, int), "finite"),
        (np.zeros((0, 6, 2), np.float32), np.zeros(0, int), "no training"),
    ],
)
def test_fit_refuses_bad_input(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_lstm(x, y, SMALL)
