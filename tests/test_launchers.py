"""The multi-host launchers (launch/tpu_pod.sh, launch/slurm_gpu.sbatch), run with fake gcloud/srun/scontrol/python.

Each fake records its argv (NUL-separated) and a marker under FAKE_DIR, so the tests can check that a dry run
starts nothing, that the printed dry-run text, replayed by bash, runs exactly what the launcher runs, and that
arguments with spaces and quotes arrive unchanged in the python process.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")

ROOT = Path(__file__).resolve().parents[1]
TPU_POD = ROOT / "launch" / "tpu_pod.sh"
SLURM = ROOT / "launch" / "slurm_gpu.sbatch"

TRAIN_ARGS = [
    "--config=configs/cc12m.py:method=ab_clip",
    "--config.data.path=/data/my data",
    '--workdir=/shared/runs/it\'s "quoted" $HOME `x`',
]

FAKES = {
    # gcloud: record argv; exit 1 when asked to fail on the setup step.
    "gcloud": r"""
touch "$FAKE_DIR/gcloud.called"
printf '%s\0' "$@" >> "$FAKE_DIR/gcloud.args"
printf '\n' >> "$FAKE_DIR/gcloud.calls"
if [[ -n ${FAKE_GCLOUD_FAIL_ON:-} && "$*" == *"$FAKE_GCLOUD_FAIL_ON"* ]]; then exit 1; fi
""",
    # srun: run  -> start each of --ntasks tasks (sequentially) with SLURM_PROCID set, like srun would;
    #       wait -> block until SIGTERM, then record it and exit FAKE_SRUN_TERM_STATUS;  fail -> exit 3.
    "srun": r"""
touch "$FAKE_DIR/srun.called"
printf '%s\0' "$@" > "$FAKE_DIR/srun.args"
case ${FAKE_SRUN_MODE:-run} in
  wait)
    trap 'echo TERM >> "$FAKE_DIR/srun.term"; exit "${FAKE_SRUN_TERM_STATUS:-0}"' TERM
    touch "$FAKE_DIR/srun.started"
    while :; do sleep 0.02; done ;;
  fail) exit 3 ;;
esac
ntasks=1
while [[ $1 == --* ]]; do [[ $1 == --ntasks=* ]] && ntasks=${1#--ntasks=}; shift; done
for ((i = 0; i < ntasks; i++)); do SLURM_PROCID=$i SLURM_NTASKS=$ntasks "$@" || exit; done
""",
    "scontrol": r"""
touch "$FAKE_DIR/scontrol.called"
if [[ $1 == show && $2 == hostnames ]]; then printf 'gpu-a\ngpu-b\n'; exit 0; fi
printf '%s\0' "$@" >> "$FAKE_DIR/scontrol.args"
""",
    # python / python3: record argv and the RLVIS_* environment, per task.
    "python": r"""
printf '%s\0' "$@" > "$FAKE_DIR/python.${SLURM_PROCID:-x}.args"
env | grep -E '^RLVIS_(COORDINATOR_ADDRESS|NUM_PROCESSES|PROCESS_ID)=' | sort > "$FAKE_DIR/python.${SLURM_PROCID:-x}.env" || true
pwd > "$FAKE_DIR/python.${SLURM_PROCID:-x}.cwd"
""",
}
FAKES["python3"] = FAKES["python"]

STRIPPED = ("SLURM_", "TPU_", "RLVIS_", "COORDINATOR_", "DRY_RUN", "REQUEUE", "FAKE_")


@pytest.fixture
def fake(tmp_path):
    """(env, fake_dir): PATH starts with the fakes; no launcher or SLURM variables leak in from outside."""
    bin_dir, fake_dir = tmp_path / "bin", tmp_path / "fake"
    bin_dir.mkdir()
    fake_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text("#!" + BASH + "\n" + body.lstrip())
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED)}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", FAKE_DIR=str(fake_dir), HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return env, fake_dir


def run(script, args, env, **extra_env):
    return subprocess.run(
        [BASH, str(script), *args], env={**env, **extra_env}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def argv(path):
    return path.read_bytes().decode().split("\0")[:-1]


def gcloud_calls(fake_dir):
    """The fake gcloud's argv lists, one per call."""
    words = argv(fake_dir / "gcloud.args")
    calls, n = [], len((fake_dir / "gcloud.calls").read_text())
    for _ in range(n):
        end = words.index(next(w for w in words if w.startswith("--command="))) + 1
        calls.append(words[:end])
        words = words[end:]
    assert not words
    return calls


def in_order(text, pieces):
    """Every piece occurs in text, each after the previous one."""
    pos = 0
    for piece in pieces:
        found = text.find(piece, pos)
        assert found >= 0, f"{piece!r} missing (in order) from {text!r}"
        pos = found + len(piece)


def assert_one_line_error(result):
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.strip(), result.stderr


# ---------------------------------------------------------------------------------------------------- tpu_pod.sh

TPU_OPTS = ["--tpu", "my-tpu", "--zone=us-central2-b", "--project", "my-proj"]


def test_tpu_dry_run_prints_the_gcloud_command_and_runs_nothing(fake):
    env, fake_dir = fake
    result = run(TPU_POD, [*TPU_OPTS, "--dry-run", "--", *TRAIN_ARGS], env)
    assert result.returncode == 0, result.stderr
    assert not (fake_dir / "gcloud.called").exists()
    [line] = result.stdout.splitlines()
    in_order(
        line,
        [
            "gcloud compute tpus tpu-vm ssh my-tpu",
            "--zone=us-central2-b",
            "--project=my-proj",
            "--worker=all",
            "--command=",
            "cd ~/rlvis &&",
            "python3 -m rlvis.main",
            "--config=configs/cc12m.py:method=ab_clip",
            "--config.data.path=",
            "--workdir=",
        ],
    )
    assert line.count("rlvis.main") == 1 and line.count("--config=configs/cc12m.py:method=ab_clip") == 1
    assert line.count("--config.data.path=") == 1 and line.count("--workdir=") == 1
    assert "pip install" not in line


def test_tpu_runs_gcloud_with_exactly_the_args_and_the_worker_shell_gets_them_back(fake, tmp_path):
    env, fake_dir = fake
    repo = tmp_path / "my repo"
    repo.mkdir()
    opts = [*TPU_OPTS, "--repo", str(repo), "--"]
    result = run(TPU_POD, [*opts, *TRAIN_ARGS], env)
    assert result.returncode == 0, result.stderr
    [call] = gcloud_calls(fake_dir)
    assert call[:-1] == [
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "my-tpu",
        "--zone=us-central2-b",
        "--project=my-proj",
        "--worker=all",
    ]
    remote = call[-1].removeprefix("--command=")
    # What each worker's shell does with --command: the arguments arrive unchanged.
    subprocess.run([BASH, "-c", remote], env=env, check=True, timeout=30)
    assert argv(fake_dir / "python.x.args") == ["-m", "rlvis.main", *TRAIN_ARGS]
    assert Path((fake_dir / "python.x.cwd").read_text().strip()) == repo

    # The dry-run line, replayed by bash, makes exactly the same gcloud call.
    dry = run(TPU_POD, [*opts[:-1], "--dry-run", "--", *TRAIN_ARGS], env)
    for name in ("gcloud.args", "gcloud.calls"):
        (fake_dir / name).unlink()
    subprocess.run([BASH, "-c", dry.stdout], env=env, check=True, timeout=30)
    assert gcloud_calls(fake_dir) == [call]


def test_tpu_default_repo_is_home_rlvis_on_the_worker(fake, tmp_path):
    env, fake_dir = fake
    (tmp_path / "home" / "rlvis").mkdir()
    result = run(TPU_POD, ["--", "--workdir=w"], env, TPU_NAME="env-tpu", TPU_ZONE="env-zone")
    assert result.returncode == 0, result.stderr
    [call] = gcloud_calls(fake_dir)
    assert (
        call[4:6] == ["env-tpu", "--zone=env-zone"]
        and call[-1] == "--command=cd ~/rlvis && python3 -m rlvis.main --workdir=w"
    )
    subprocess.run([BASH, "-c", call[-1].removeprefix("--command=")], env=env, check=True, timeout=30)
    assert Path((fake_dir / "python.x.cwd").read_text().strip()) == tmp_path / "home" / "rlvis"


def test_tpu_flags_override_env_and_setup_is_a_separate_first_call(fake):
    env, fake_dir = fake
    env = {**env, "TPU_NAME": "env-tpu", "TPU_ZONE": "env-zone", "RLVIS_SETUP": "1"}
    dry = run(TPU_POD, ["--tpu=flag-tpu", "--dry-run", "--", "--workdir=w"], env)
    assert dry.returncode == 0 and not (fake_dir / "gcloud.called").exists()
    setup, train = dry.stdout.splitlines()
    in_order(setup, ["ssh flag-tpu --zone=env-zone --worker=all", "cd ~/rlvis && python3 -m pip install -e ", "[tpu]"])
    assert "rlvis.main" not in setup and "pip" not in train
    in_order(train, ["ssh flag-tpu --zone=env-zone --worker=all", "python3 -m rlvis.main --workdir=w"])

    result = run(TPU_POD, ["--tpu=flag-tpu", "--", "--workdir=w"], env)
    assert result.returncode == 0
    assert [c[-1] for c in gcloud_calls(fake_dir)] == [
        "--command=cd ~/rlvis && python3 -m pip install -e '.[tpu]'",
        "--command=cd ~/rlvis && python3 -m rlvis.main --workdir=w",
    ]


def test_tpu_failed_setup_stops_before_training(fake):
    env, fake_dir = fake
    result = run(TPU_POD, [*TPU_OPTS, "--setup", "--", "--workdir=w"], env, FAKE_GCLOUD_FAIL_ON="pip install")
    assert result.returncode != 0
    [call] = gcloud_calls(fake_dir)
    assert "pip install" in call[-1]


@pytest.mark.parametrize(
    "args",
    [
        ["--zone=z", "--", "--workdir=w"],  # no --tpu
        ["--tpu=t", "--", "--workdir=w"],  # no --zone
        ["--tpu=t", "--zone=z"],  # no training arguments
        ["--tpu=t", "--zone=z", "--"],  # empty training arguments
        ["--tpu=t", "--zone=z", "--workdir=w"],  # training arguments without --
        ["--tpu", "--zone=z", "--", "--workdir=w"],  # --tpu without a value
        ["--tpu=t", "--zone", "", "--", "x"],  # empty value
    ],
    ids=["no-tpu", "no-zone", "no-args", "empty-args", "no-dashdash", "no-value", "empty-value"],
)
@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry"])
def test_tpu_usage_errors_are_one_line(fake, args, dry):
    env, fake_dir = fake
    result = run(TPU_POD, (["--dry-run"] if dry else []) + args, env)
    assert_one_line_error(result)
    assert "usage:" in result.stderr
    assert not (fake_dir / "gcloud.called").exists()


# ------------------------------------------------------------------------------------------------ slurm_gpu.sbatch


def sbatch_lines():
    lines = SLURM.read_text().splitlines()
    assert lines[0].startswith("#!")
    first_command = next(i for i, l in enumerate(lines) if l.strip() and not l.startswith("#"))
    directives = [l for l in lines[:first_command] if l.startswith("#SBATCH")]
    assert not any(l.startswith("#SBATCH") for l in lines[first_command:])  # sbatch would ignore them
    return directives


def test_sbatch_directives():
    directives = sbatch_lines()
    assert "#SBATCH --signal=B:TERM@120" in directives
    assert "#SBATCH --ntasks-per-node=1" in directives
    assert "#SBATCH --requeue" in directives and "#SBATCH --open-mode=append" in directives
    for option in ("nodes", "gpus-per-node", "cpus-per-task", "time", "output"):
        assert any(re.fullmatch(rf"#SBATCH --{option}=\S+", l) for l in directives), option


def test_slurm_dry_run_outside_slurm_auto_coordinator(fake):
    env, fake_dir = fake
    result = run(SLURM, TRAIN_ARGS, env, DRY_RUN="1")
    assert result.returncode == 0, result.stderr
    for name in ("srun", "scontrol"):
        assert not (fake_dir / f"{name}.called").exists()
    assert "RLVIS_" not in result.stdout  # auto mode: jax finds the cluster itself
    [srun_line] = [l for l in result.stdout.splitlines() if l.startswith("srun ")]
    in_order(
        srun_line,
        [
            "srun ",
            "--nodes=2",
            "--ntasks=2",
            "--ntasks-per-node=1",
            "--cpus-per-task=32",
            "python -m rlvis.main",
            "--config=configs/cc12m.py:method=ab_clip",
            "--config.data.path='/data/my data'",
            "--workdir=",
        ],
    )
    assert srun_line.count("rlvis.main") == 1 and srun_line.count("--config.data.path=") == 1
    hostname = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert f"nodes {hostname})" in result.stdout.splitlines()[0]  # SLURM_JOB_NODELIST unset: this host


def test_slurm_dry_run_explicit_coordinator_from_hostname(fake):
    env, fake_dir = fake
    env = {**env, "PATH": env["PATH"].split(":", 1)[1]}  # no scontrol, like a laptop: SLURM_JOB_NODELIST unset
    hostname = subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    result = run(SLURM, ["--workdir=w"], env, DRY_RUN="1", COORDINATOR_MODE="explicit", COORDINATOR_PORT="23456")
    assert result.returncode == 0, result.stderr
    in_order(
        result.stdout,
        [
            f"export RLVIS_COORDINATOR_ADDRESS={hostname}:23456",
            "export RLVIS_NUM_PROCESSES=2",
            "srun ",
            "RLVIS_PROCESS_ID=",
            "python -m rlvis.main",
        ],
    )


def replay(stdout, env):
    subprocess.run([BASH, "-c", stdout], env=env, check=True, timeout=30)


def task_results(fake_dir, ntasks):
    return [
        (
            argv(fake_dir / f"python.{i}.args"),
            (fake_dir / f"python.{i}.env").read_text().splitlines(),
            (fake_dir / f"python.{i}.cwd").read_text().strip(),
        )
        for i in range(ntasks)
    ]


def test_slurm_explicit_coordinator_dry_run_replays_to_what_the_job_runs(fake, tmp_path):
    env, fake_dir = fake
    job = dict(
        SLURM_JOB_ID="1234",
        SLURM_JOB_NODELIST="gpu-[a-b]",
        SLURM_JOB_NUM_NODES="2",
        SLURM_NTASKS="2",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_CPUS_PER_TASK="16",
        COORDINATOR_MODE="explicit",
        RLVIS_REPO_DIR=str(tmp_path),
    )
    dry = run(SLURM, TRAIN_ARGS, env, DRY_RUN="1", **job)
    assert dry.returncode == 0, dry.stderr
    assert not (fake_dir / "srun.called").exists()
    in_order(
        dry.stdout,
        [
            "job 1234",
            f"cd {tmp_path}",
            "export RLVIS_COORDINATOR_ADDRESS=gpu-a:62674",  # 61440 + 1234 % 4096, as JAX picks
            "export RLVIS_NUM_PROCESSES=2",
            "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=16 --kill-on-bad-exit=1",
            'RLVIS_PROCESS_ID="$SLURM_PROCID"',
            "python -m rlvis.main",
        ],
    )
    expected = [
        (
            ["-m", "rlvis.main", *TRAIN_ARGS],
            ["RLVIS_COORDINATOR_ADDRESS=gpu-a:62674", "RLVIS_NUM_PROCESSES=2", f"RLVIS_PROCESS_ID={i}"],
            str(tmp_path),
        )
        for i in range(2)
    ]

    replay(dry.stdout, {**env, **job})  # the printed text, run by bash against the fake srun
    assert task_results(fake_dir, 2) == expected
    replayed_srun = argv(fake_dir / "srun.args")

    shutil.rmtree(fake_dir)
    fake_dir.mkdir()
    result = run(SLURM, TRAIN_ARGS, env, **job)  # the real thing, inside the (fake) allocation
    assert result.returncode == 0, result.stderr
    assert argv(fake_dir / "srun.args") == replayed_srun
    assert task_results(fake_dir, 2) == expected
    assert not (fake_dir / "scontrol.args").exists()  # no signal, no requeue


def test_slurm_auto_coordinator_runs_python_directly(fake, tmp_path):
    env, fake_dir = fake
    result = run(
        SLURM,
        TRAIN_ARGS,
        env,
        SLURM_JOB_ID="9",
        SLURM_JOB_NODELIST="n1",
        SLURM_JOB_NUM_NODES="1",
        RLVIS_REPO_DIR=str(tmp_path),
        RLVIS_NUM_PROCESSES="7",
    )  # a stale export is not passed on
    assert result.returncode == 0, result.stderr
    srun_args = argv(fake_dir / "srun.args")
    assert srun_args[srun_args.index("python") :] == ["python", "-m", "rlvis.main", *TRAIN_ARGS]
    assert task_results(fake_dir, 1) == [(["-m", "rlvis.main", *TRAIN_ARGS], [], str(tmp_path))]


@pytest.mark.parametrize("requeue", ["1", "0"])
def test_slurm_forwards_sigterm_to_srun_then_requeues(fake, tmp_path, requeue):
    env, fake_dir = fake
    proc = subprocess.Popen(
        [BASH, str(SLURM), "--workdir=w"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            **env,
            "SLURM_JOB_ID": "77",
            "SLURM_JOB_NODELIST": "n1",
            "SLURM_JOB_NUM_NODES": "1",
            "FAKE_SRUN_MODE": "wait",
            "REQUEUE": requeue,
            "RLVIS_REPO_DIR": str(tmp_path),
        },
    )
    try:
        deadline = time.monotonic() + 20
        while not (fake_dir / "srun.started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@120 does: the batch shell only
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert (fake_dir / "srun.term").read_text() == "TERM\n"  # forwarded once
    if requeue == "1":
        assert argv(fake_dir / "scontrol.args") == ["requeue", "77"]
    else:
        assert not (fake_dir / "scontrol.args").exists()


def test_slurm_failure_status_propagates_without_requeue(fake, tmp_path):
    env, fake_dir = fake
    result = run(
        SLURM,
        ["--workdir=w"],
        env,
        SLURM_JOB_ID="5",
        SLURM_JOB_NODELIST="n1",
        FAKE_SRUN_MODE="fail",
        RLVIS_REPO_DIR=str(tmp_path),
    )
    assert result.returncode == 3
    assert not (fake_dir / "scontrol.args").exists()


@pytest.mark.parametrize(
    "extra",
    [
        dict(DRY_RUN="1"),  # no training arguments
        dict(),  # no training arguments, no dry run
        dict(DRY_RUN="1", COORDINATOR_MODE="bogus", ARGS="--workdir=w"),
        dict(ARGS="--workdir=w"),  # not dry run and not inside SLURM
        dict(DRY_RUN="1", COORDINATOR_MODE="explicit", COORDINATOR_PORT="http", ARGS="--workdir=w"),
    ],
    ids=["dry-no-args", "no-args", "bad-mode", "outside-slurm", "bad-port"],
)
def test_slurm_usage_errors_are_one_line(fake, extra):
    env, fake_dir = fake
    args = [extra.pop("ARGS")] if "ARGS" in extra else []
    result = run(SLURM, args, env, **extra)
    assert_one_line_error(result)
    assert not (fake_dir / "srun.called").exists()


@pytest.mark.parametrize("script", [TPU_POD, SLURM], ids=["tpu_pod", "slurm"])
def test_scripts_parse(script):
    subprocess.run([BASH, "-n", str(script)], check=True, timeout=30)
