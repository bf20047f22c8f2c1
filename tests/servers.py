"""A real ``mlflow server`` on 127.0.0.1 for the tests that need HTTP tracking (shared server,
Ray workers, the report over HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(root: Path, backend_uri: str) -> SimpleNamespace:
    """``mlflow server`` over the test's SQLite store, artifacts proxied into ``root/served``."""
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    cmd += ["server", "--backend-store-uri", backend_uri, "--artifacts-destination", str(root / "served"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return SimpleNamespace(proc=proc, uri=f"http://127.0.0.1:{port}", log=root / "server.log", log_fh=log)


def wait_healthy(server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {server.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"mlflow server not healthy after {timeout} s: {server.log.read_text()[-2000:]}")


def stop_mlflow_server(server) -> None:
    try:
        os.killpg(server.proc.pid, signal.SIGTERM)  # the server and the uvicorn worker it started
        server.proc.wait(timeout=3)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.log_fh.close()
