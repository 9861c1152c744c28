"""A Docker daemon for the image tests and the images, built once per session.

The daemon: one that answers already (DOCKER_HOST, the system socket, or the private one a
previous `make images` left running) is used as is; otherwise the fixture starts the private
daemon (`scripts/docker.sh start`: no bridge, its own data root and socket) and stops it at the
end of the session. The images: `scripts/docker.sh base` (debian:bookworm-slim and, for the
timescaledb image, debian:trixie-slim, made by debootstrap when missing, never pulled) and
`scripts/docker.sh build` (every target, from the layer cache when nothing changed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKER_SH = ROOT / "scripts" / "docker.sh"
TARGETS = ("ingest", "stream", "sink", "training", "serving", "backfill", "drift", "timescaledb")
TAG = "dev"


@dataclass(frozen=True)
class Docker:
    cli: str
    host: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS`` against the fixture's daemon; output captured as text."""
        done = subprocess.run(
            [self.cli, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def run(
        self, image: str, *args: str, opts: Sequence[str] = (), timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """A throw-away container of ``image``: read-only root, no network unless ``opts``
        says otherwise; never fails by itself (the caller checks the exit code)."""
        net = [] if any(o.startswith("--network") for o in opts) else ["--network", "none"]
        return self("run", "--rm", "--read-only", *net, *opts, image, *args,
                    timeout=timeout, check=False)  # fmt: skip


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DOCKER_SH), *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    cli = "/usr/bin/docker" if Path("/usr/bin/docker").is_file() else shutil.which("docker")
    if cli is None or shutil.which("dockerd") is None:
        pytest.fail("docker.io is not installed: run `make setup` (its docker step)")
    found = _script("host", timeout=60)
    started = found.returncode != 0
    if started:
        found = _script("start", timeout=120)
        if found.returncode != 0:
            pytest.fail(f"could not start dockerd:\n{found.stderr}")
    try:
        yield Docker(cli, found.stdout.strip())
    finally:
        if started:
            stop = _script("stop", timeout=120)
            assert stop.returncode == 0, stop.stderr
            # what it started leaves nothing mounted (dockerd's netns bind mount included)
            state = str(Path(found.stdout.strip().removeprefix("unix://")).parent)
            left = [m for m in Path("/proc/mounts").read_text().splitlines() if state in m]
            assert left == [], left


@pytest.fixture(scope="session")
def images(docker: Docker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every target built (cached) as signalstack/<target>:dev; target → image reference."""
    logs = tmp_path_factory.mktemp("image-builds")
    env = {**docker.env(), "IMAGE_TAG": TAG, "BUILD_LOG_DIR": str(logs)}
    for step in (["base"], ["build", *TARGETS]):
        # a cold build (a fresh machine: the training stack alone is ~5 GB of wheels) takes
        # minutes; a warm one seconds
        done = subprocess.run(
            ["bash", str(DOCKER_SH), *step], env=env, capture_output=True, text=True, timeout=2400
        )
        if done.returncode != 0:
            pytest.fail(f"scripts/docker.sh {' '.join(step)} failed:\n{done.stderr[-6000:]}")
    return {t: f"signalstack/{t}:{TAG}" for t in TARGETS}
