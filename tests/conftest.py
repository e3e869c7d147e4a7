"""Shared test setup, before JAX is imported: 8 fake CPU devices, JAX's persistent compilation cache, absl flags
parsed (Grain threads read them); the `slow` tier; the trained run that tests in several files share.

`pytest` runs the fast tier; `pytest --full` also runs the tests marked `slow` (real subprocesses: signals,
kill -9, several processes, each CLI once, the README walkthrough, the notebooks).
"""

import os
import shutil

from rlvis import gcs_emulator, storage  # import no JAX, no fsspec
from tests import runs  # imports no JAX

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.update(storage.emulator_environment(None))  # bucket tests: no credentials, before gcsfs is imported
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={runs.DEVICES}", runs.XLA_TEST_FLAGS]
).strip()

import jax
import pytest
from absl import flags

flags.FLAGS.mark_as_parsed()
jax.config.update("jax_compilation_cache_dir", runs.COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", runs.MIN_CACHED_COMPILE_SECONDS)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", help="also run the tests marked slow (the whole suite)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a real subprocess test; runs with --full (and in CI)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Without --full, `slow` tests are deselected (counted as such in pytest's summary line). Under pytest-xdist
    (`--dist=loadgroup`) each file's tests run on one worker, which builds its module fixtures once, and every test
    that reads the shared tiny run runs on the same worker, which trains it once."""
    for item in items:
        group = "tiny_run" if "tiny_run" in item.fixturenames else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    if config.getoption("--full"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny demo config trained for its 6 steps on 1 device, monitored and evaluated in full, as the README's
    first command does: the run that the results, evaluation, export, search and value-map tests read."""
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    run = runs.train(workdir)
    return workdir, run


@pytest.fixture
def tiny_copy(tiny_run, tmp_path):
    """A copy of the shared run's workdir, for a test that writes into it (evaluation, search, re-running)."""
    return shutil.copytree(tiny_run[0], tmp_path / "copy")


@pytest.fixture(scope="session")
def s3_bucket():
    """A bucket on moto's S3 server on loopback, with this process's s3:// pointed at it (botocore reads
    AWS_ENDPOINT_URL when each client is made)."""
    import socket
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    environment = dict(
        AWS_ACCESS_KEY_ID="rlvis-tests",
        AWS_SECRET_ACCESS_KEY="rlvis-tests",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        storage.path("s3://rlvis-tests").mkdir()
        yield "s3://rlvis-tests"
    finally:
        server.stop()
        _restore_environment(saved)


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def gcs_bucket():
    """A bucket on a GCS emulator on loopback (rlvis/gcs_emulator.py), with this process's gs:// pointed at it."""
    emulator = gcs_emulator.Emulator()
    saved = {name: os.environ.get(name) for name in storage.emulator_environment(emulator.url)}
    os.environ.update(storage.emulator_environment(emulator.url))
    try:
        yield emulator.create_bucket("rlvis-tests")
    finally:
        emulator.stop()
        _restore_environment(saved)
