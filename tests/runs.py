"""Running the trainer from tests: in-process (the fast tier) or as the real command in a subprocess (`slow` tests,
where the process boundary is the point: signals, kill -9, several processes, each CLI once).

The test process has 8 fake CPU devices (tests/conftest.py); an in-process run picks how many it uses. Both kinds
share JAX's persistent compilation cache, so a program compiled once is not compiled again in the session. JAX is
imported only inside the functions: conftest.py imports this module before it sets JAX's environment.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = 8  # fake CPU devices of the test process (conftest.py)
COMPILATION_CACHE = os.path.join(tempfile.gettempdir(), "rlvis-tests-jax-cache")
# Tiny programs: XLA's cheapest CPU code generation compiles about a third faster and runs them as fast.
XLA_TEST_FLAGS = "--xla_backend_optimization_level=0"
MIN_CACHED_COMPILE_SECONDS = 0.0  # cache every program: most compile in under a second, but there are hundreds
NO_EVAL = (
    "evals.demo.final=False",
    "evals.foresight.final=False",
    "evals.foresight.every=0",
    "evals.digits.every=0",
)  # for runs whose test is not about evaluation


def load_config(spec: str = "configs/demo.py:tiny", *overrides: str):
    """ "configs/demo.py:tiny,method=dino" + "field=value" overrides (values read as Python literals) → a config,
    as `--config=SPEC --config.field=value` would give. Of NO_EVAL, the overrides of an evaluator the config does
    not hold (foresight: MAE, I-JEPA and configs/cc12m.py have none) are left out; any other unknown field is an
    error, as on the command line."""
    from rlvis import config_lib

    path, _, arg = spec.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    module = __import__(f"configs.{name}", fromlist=["get_config"])
    config = module.get_config(arg or None)
    overrides = [o for o in overrides if o not in NO_EVAL or o.split(".")[1] in config.evals]
    return config_lib.apply_variant(config, "+".join([config.method, *overrides])) if overrides else config


class Run(NamedTuple):
    results: dict | None  # train_and_evaluate's return: None when the run stopped early
    stdout: str


def train(
    workdir,
    *overrides: str,
    config: str = "configs/demo.py:tiny",
    devices: int = 1,
    stop_at_step: int | None = None,
    allow_config_change: bool = False,
    profile: tuple[int, int] = (0, 0),
) -> Run:
    """`python -m rlvis.main --config=CONFIG --workdir=WORKDIR [--config.OVERRIDE ...]`, in this process, on the
    first `devices` fake devices; its printed output is captured."""
    import jax

    from rlvis import train as trainer

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = trainer.train_and_evaluate(
            load_config(config, *overrides),
            str(workdir),
            stop_at_step,
            allow_config_change,
            devices=jax.devices()[:devices],
            profile=profile,
        )
    return Run(results, out.getvalue())


def subprocess_env(devices: int = 1) -> dict:
    """The environment of a real command: CPU, `devices` fake devices, the shared compilation cache."""
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=str(MIN_CACHED_COMPILE_SECONDS),
    )
    env["XLA_FLAGS"] = XLA_TEST_FLAGS + (f" --xla_force_host_platform_device_count={devices}" if devices > 1 else "")
    return env


def main_command(workdir, *flags: str, config: str = "configs/demo.py:tiny") -> list[str]:
    """The argv of the real command, `python -m rlvis.main`."""
    return [sys.executable, "-m", "rlvis.main", f"--config={config}", f"--workdir={workdir}", *flags]


def run_main(
    workdir, *flags: str, devices: int = 1, config: str = "configs/demo.py:tiny"
) -> subprocess.CompletedProcess:
    """The real command, `python -m rlvis.main`, in a subprocess."""
    return subprocess.run(
        main_command(workdir, *flags, config=config),
        cwd=ROOT,
        env=subprocess_env(devices),
        capture_output=True,
        text=True,
        timeout=900,
    )


def run_module(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` (a CLI entry point) in a subprocess on one CPU device."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def metrics(workdir) -> dict[int, dict]:
    """A run's metrics.jsonl by step (a local workdir or a bucket URL)."""
    from rlvis import storage

    lines = storage.path(storage.join(str(workdir), "metrics.jsonl")).read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]
    assert len(steps) == len(set(steps)), f"a step logged twice: {steps}"
    return {line["step"]: line for line in map(json.loads, lines)}


def saved_meta(workdir, step: int) -> dict:
    """A checkpoint's JSON metadata (config, data position, process count), as Orbax wrote it."""
    with open(os.path.join(workdir, "checkpoints", str(step), "meta", "metadata")) as f:
        return json.load(f)


def load_state(workdir, step: int) -> dict:
    """A checkpoint's train state as numpy, whatever device layout wrote it."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp
    from rlvis import storage

    path = storage.join(storage.absolute(str(workdir)), "checkpoints", str(step), "state")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, restore_args=args)


def usage_error(capsys, main, argv: list[str]) -> str:
    """The one stderr line of a command's `main(argv)` that refuses its input (exit code 2), as a user sees it."""
    import pytest

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, (exit_info.value.code, lines)
    return lines[0]
