"""Fixtures for the end-to-end tests: real `sapper broker` processes on 127.0.0.1.

`SAPPER_BIN` names the broker binary (scripts/test.sh exports target/release/sapper);
each broker gets a fresh data directory under pytest's tmp_path and an ephemeral port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTEN_PREFIX = "sapper: listening on "
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0


def sapper_bin() -> Path:
    path = Path(os.environ.get("SAPPER_BIN", REPO_ROOT / "target" / "release" / "sapper"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """One `sapper broker` process.

    Attributes: bootstrap ("127.0.0.1:PORT"), host, port, data_dir, proc, node_id.
    restart() stops it with SIGTERM (asserting exit 0) and starts it again on the same data
    dir and, by default, the same port, so clients that stay connected can reconnect.
    """

    def __init__(self, data_dir: Path, log_dir: Path, node_id: int = 1,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.node_id = node_id
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.starts = 0
        self.stderr_path: Path | None = None
        self._expected_exit = False
        self._stdout_lines: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, port: int | None = None) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        binary = sapper_bin()
        if not binary.exists():
            raise BrokerStartError(
                f"{binary} does not exist: build it (cargo build --release -p sapper) "
                "or set SAPPER_BIN")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.stderr_path = self.log_dir / f"broker-{self.node_id}-start{self.starts}.stderr"
        listen_port = self.port if port is None else port
        cmd = [str(binary), "broker",
               "--node-id", str(self.node_id),
               "--listen", f"127.0.0.1:{listen_port}",
               "--data-dir", str(self.data_dir),
               *self.extra_args]
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self.env)
        stderr = open(self.stderr_path, "wb")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=stderr, env=env, cwd=str(self.log_dir))
        finally:
            stderr.close()
        self._expected_exit = False
        self.cmd = cmd

        ready = threading.Event()
        found: dict[str, str] = {}
        lines = self._stdout_lines = []
        proc = self.proc

        def pump():
            # Read stdout for the whole life of the process so it can never block on a full pipe.
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                if not ready.is_set() and line.startswith(LISTEN_PREFIX):
                    found["addr"] = line[len(LISTEN_PREFIX):].strip()
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name=f"sapper-{self.node_id}-stdout", daemon=True).start()
        if not ready.wait(START_TIMEOUT_S) or "addr" not in found:
            try:
                rc = self.proc.wait(2)
                why = f"exited with code {rc} before printing '{LISTEN_PREFIX}HOST:PORT'"
            except subprocess.TimeoutExpired:
                why = f"did not print '{LISTEN_PREFIX}HOST:PORT' within {START_TIMEOUT_S}s"
            self._expected_exit = True
            self._kill()
            raise BrokerStartError(
                f"broker {why}; command: {' '.join(cmd)}\n"
                f"--- stdout ---\n" + "\n".join(lines[-50:]) +
                f"\n--- stderr (tail) ---\n{self.stderr_tail()}")
        host, _, port_s = found["addr"].rpartition(":")
        assert host == "127.0.0.1", f"broker listens on {found['addr']}, expected 127.0.0.1"
        self.host, self.port = host, int(port_s)
        if listen_port:
            assert self.port == listen_port, f"asked for port {listen_port}, got {self.port}"
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM; waits; asserts a clean exit (code 0)."""
        assert self.proc is not None
        self._expected_exit = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            raise AssertionError(
                f"broker did not exit within {timeout}s of SIGTERM\n{self.stderr_tail()}")
        assert rc == 0, f"broker exited with {rc} after SIGTERM\n{self.stderr_tail()}"
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self._expected_exit = True
        self._kill()

    def restart(self, same_port: bool = True) -> "Broker":
        self.stop()
        return self.start(port=self.port if same_port else 0)

    def start_again(self, same_port: bool = True) -> "Broker":
        """Start after stop()/kill9() on the same data dir."""
        return self.start(port=self.port if same_port else 0)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def stderr_tail(self, nbytes: int = 8000) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return "(no stderr)"
        data = self.stderr_path.read_bytes()
        return data[-nbytes:].decode("utf-8", "replace")

    def check_no_crash(self) -> None:
        """Fails if the process died without being asked to (a panic, an abort)."""
        if self.proc is None or self._expected_exit:
            return
        try:
            self.proc.wait(0.05)
        except subprocess.TimeoutExpired:
            return  # still running: fine
        if not self._expected_exit:
            raise AssertionError(
                f"broker died unexpectedly with exit code {self.proc.returncode}\n"
                f"{self.stderr_tail()}")

    def teardown(self) -> None:
        try:
            self.check_no_crash()
        finally:
            self._expected_exit = True
            self._kill()
            if self.port:
                import sapper_util
                sapper_util.forget_admin(self.bootstrap)


def _make_broker(tmp: Path, request, **kwargs) -> Broker:
    marker = request.node.get_closest_marker("broker_args")
    extra = list(marker.args) if marker else []
    extra += kwargs.pop("extra_args", [])
    env = {
        # The retention checker runs often in tests (the lead's flag; harmless if unknown).
        "SAPPER_RETENTION_CHECK_INTERVAL_MS": "200",
    }
    env.update(kwargs.pop("env", {}))
    return Broker(tmp / "data", tmp / "logs", extra_args=extra, env=env, **kwargs)


@pytest.fixture
def broker_factory(tmp_path, request):
    """Builds brokers with custom arguments: broker_factory(extra_args=[...]).start()."""
    made: list[Broker] = []

    def factory(**kwargs) -> Broker:
        sub = tmp_path / f"broker{len(made)}"
        b = _make_broker(sub, request, **kwargs)
        made.append(b)
        return b

    yield factory
    errors = []
    for b in made:
        try:
            b.teardown()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def broker(tmp_path, request):
    """A fresh broker for one test (auto-create off). Extra flags: @pytest.mark.broker_args(...)."""
    b = _make_broker(tmp_path, request, extra_args=["--auto-create-topics", "false"])
    b.start()
    yield b
    b.teardown()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory, request):
    """One broker shared by a module's tests (auto-create off)."""
    tmp = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    b = _make_broker(tmp, request, extra_args=["--auto-create-topics", "false"])
    b.start()
    yield b
    b.teardown()


@pytest.fixture(autouse=True)
def _module_broker_alive(request):
    """Tests sharing a module broker fail loudly if it died during them."""
    yield
    if "module_broker" in request.fixturenames:
        request.getfixturevalue("module_broker").check_no_crash()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    config.addinivalue_line("markers", "broker_args(*args): extra command-line flags for the broker fixture")
