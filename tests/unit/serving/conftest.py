"""Fixtures of the serving tests: the session's tiny trained bundles, their feature store, and
an app factory (a real repository over a bundle directory, loaded before the first request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.serving.serving_helpers import TestClient, Trained, copy_bundles, trained

from signalstack.config import ServingSettings, Settings
from signalstack.serving.app import create_app
from signalstack.serving.metrics import ServingMetrics
from signalstack.serving.repository import DirectorySource, ModelRepository
from signalstack.store.duckdb import DuckDBStore


@pytest.fixture(scope="session")
def models() -> Trained:
    return trained()


@pytest.fixture(scope="session")
def feature_store(models: Trained) -> Iterator[DuckDBStore]:
    store = DuckDBStore(str(models.store_path))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def model_dir(tmp_path: Path, models: Trained) -> Path:
    return copy_bundles(tmp_path / "models")


AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_factory(model_dir: Path, feature_store: DuckDBStore) -> Iterator[AppFactory]:
    """``make(**SERVING_* settings)`` → a TestClient whose models are loaded."""
    opened: list[tuple[TestClient, ModelRepository]] = []

    def make(*, wait: bool = True, directory: Path | None = None, **serving: Any) -> TestClient:
        settings = Settings(serving=ServingSettings(**serving))
        repo = ModelRepository(
            DirectorySource(directory or model_dir),
            interval_s=settings.serving.reload_interval_s,
            metrics=ServingMetrics(),
        )
        client = TestClient(create_app(settings, repo, feature_store))
        client.__enter__()  # the lifespan: the repository starts polling
        opened.append((client, repo))
        if wait:
            assert repo.wait_ready(60), repo.describe()
        return client

    yield make
    for client, _ in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app_factory: AppFactory) -> TestClient:
    return app_factory()
