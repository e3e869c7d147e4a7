"""Every command-line tool answers the same way (rlvis/cli.py): importable together, `--help`, one-line errors."""

import importlib
import json
import re
import subprocess
import sys

import pytest

from tests.runs import ROOT, ok, subprocess_env, usage_error

TOOLS = (
    "rlvis.main",
    "rlvis.compare",
    "rlvis.evaluate",
    "rlvis.bench",
    "rlvis.device_check",
    "rlvis.export",
    "rlvis.search",
    "rlvis.reproduction",
    "rlvis.evaluators.value_maps",
    "rlvis.data.tar_shards",
    "rlvis.data.throughput",
)


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_prints_its_help_and_refuses_a_wrong_flag_in_one_line(name, capsys):
    tool = importlib.import_module(name)  # all in one process: no tool claims a global flag name
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--verbosity" in out and tool.__doc__.strip().splitlines()[0] in out
    assert usage_error(capsys, tool.main, ["--no_such_flag=1"]) == "rlvis: Unknown command line flag 'no_such_flag'"
    assert "must have a value other than None" in usage_error(capsys, tool.main, [])  # each has a required flag


# `python -m TOOL --help` for each tool in one interpreter: runpy runs each as `__main__` with sys.argv[0] its file,
# which is how absl files flags by module, and where a flag used to be listed twice or not at all.
HELP_AS_MAIN = """
import contextlib, io, json, runpy, sys
helps = {}
for name in sys.argv[1:]:
    sys.argv, out = [name, "--help"], io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module(name, run_name="__main__", alter_sys=True)
        except SystemExit as exit_:
            assert exit_.code == 0, (name, exit_.code)
    helps[name] = out.getvalue()
print(json.dumps(helps))
"""


def test_help_of_each_tool_run_as_a_module_lists_each_of_its_flags_exactly_once():
    from rlvis import cli

    result = ok(
        subprocess.run(
            [sys.executable, "-c", HELP_AS_MAIN, *TOOLS],
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
    )
    helps = json.loads(result.stdout.strip().splitlines()[-1])
    for name in TOOLS:
        flags_part = helps[name].split("\nflags:\n", 1)[1]
        listed = re.findall(r"^\s+--(?:\[no\])?(\w+):", flags_part, re.M)
        defined = set(cli.tool_flags(importlib.import_module(name).define_flags))
        assert sorted(listed) == sorted(defined), (name, listed)  # sorted lists: a name twice fails too
        assert flags_part.count(f"\n{name}:\n") == 1, flags_part  # one section, named as `python -m` names it


def test_config_errors_and_stray_arguments_are_one_line_before_any_compute(tmp_path, capsys):
    from rlvis import main

    workdir = tmp_path / "run"
    flags = ["--config=configs/demo.py:tiny", f"--workdir={workdir}"]
    assert usage_error(capsys, main.main, [*flags, "--config.ab.no_such_key=1"]) == (
        "rlvis: config error: unknown config field 'no_such_key' in --config.ab.no_such_key=1"
    )
    assert usage_error(capsys, main.main, [*flags, "--config.ab.gama=0.5"]) == (
        "rlvis: config error: unknown config field 'gama' in --config.ab.gama=0.5; did you mean 'gamma'?"
    )
    assert usage_error(capsys, main.main, [*flags, "--config.abb.gamma=0.5"]) == (
        "rlvis: config error: unknown config field 'abb' in --config.abb.gamma=0.5; did you mean 'ab'?"
    )
    assert usage_error(capsys, main.main, [*flags, "--config.total_steps=many"]).startswith(
        "rlvis: config error: flag --config.total_steps=many"
    )
    assert usage_error(capsys, main.main, ["--config=configs/no_such.py", f"--workdir={workdir}"]).startswith(
        "rlvis: config error: cannot load --config"
    )
    assert usage_error(capsys, main.main, [*flags, "extra"]) == "rlvis: unexpected arguments: extra"
    assert not workdir.exists()


def test_number_lists_are_parsed_and_checked(capsys):
    from rlvis import search

    assert "--zooms=0.5,big" in usage_error(capsys, search.main, ["--workdir=x", "--zooms=0.5,big"])
    from rlvis import cli

    args = cli.parse(search.define_flags, ["--workdir=a", "--workdir=b", "--zooms=0.5,1", "--start=0,0,1,1"])
    assert args.workdir == ["a", "b"] and args.zooms == (0.5, 1.0) and args.start == (0.0, 0.0, 1.0, 1.0)
    assert args.pans == search.PANS  # defaults come back as the same tuples


@pytest.mark.parametrize("name", ["rlvis.search", "rlvis.evaluators.value_maps", "rlvis.evaluate", "rlvis.export"])
def test_a_tool_pointed_at_a_workdir_without_a_checkpoint_says_so_in_one_line(name, tmp_path, capsys):
    tool = importlib.import_module(name)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert usage_error(capsys, tool.main, [f"--workdir={empty}"]) == (
        f"rlvis: no checkpoint in {empty} (a training run's --workdir holds checkpoints/<step>)"
    )
    if name == "rlvis.search":  # each workdir of the success table too
        assert usage_error(capsys, tool.main, ["--measure", f"--workdir={empty}"]).startswith(
            f"rlvis: no checkpoint in {empty}"
        )
