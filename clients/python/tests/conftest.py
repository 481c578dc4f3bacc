"""The real daemon for the integration tests: `seqd run` on a free loopback port, as
tests/common/daemon.rs starts it. The binary comes from $SEQD_BIN (default: the debug build of
the repository this package sits in)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from seqd import Client

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 60


def seqd_bin() -> Path:
    return Path(os.environ.get("SEQD_BIN", REPO / "target" / "debug" / "seqd"))


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path

    @property
    def certs(self) -> Path:
        return self.data_dir / "certs"

    async def client(self, principal: str, **kw: object) -> Client:
        return await Client.connect(
            self.host,
            self.port,
            ca=str(self.certs / "ca.pem"),
            cert=str(self.certs / f"{principal}.pem"),
            key=str(self.certs / f"{principal}.key"),
            **kw,  # type: ignore[arg-type]
        )

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path. Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_daemon(data_dir: Path) -> Daemon:
    binary = seqd_bin()
    if not binary.exists():
        pytest.fail(f"no seqd binary at {binary}: build it (cargo build --bin seqd) or set SEQD_BIN")
    process = subprocess.Popen(
        [str(binary), "run", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode()  # "seqd: listening on ADDR ..."
    prefix = "seqd: listening on "
    if not line.startswith(prefix):
        process.kill()
        process.wait()
        pytest.fail(f"unexpected first line from seqd: {line!r}")
    addr = line[len(prefix) :].split()[0]
    host, port = addr.rsplit(":", 1)
    return Daemon(process, host, int(port), data_dir)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path / "data")
    try:
        yield d
    finally:
        status = d.stop()
        # Each data directory holds preallocated journal segments: do not leave them behind.
        shutil.rmtree(d.data_dir, ignore_errors=True)
        assert status == 0, f"seqd run exited with {status}"


@pytest.fixture
async def admin(daemon: Daemon) -> AsyncIterator[Client]:
    client = await daemon.client("admin")
    try:
        yield client
    finally:
        await client.close()
