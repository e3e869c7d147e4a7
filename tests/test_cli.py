"""Every command-line tool answers the same way (rlvis/cli.py): importable together, `--help`, one-line errors."""

import importlib

import pytest

from tests.runs import usage_error

TOOLS = ("rlvis.main", "rlvis.compare", "rlvis.evaluate", "rlvis.bench", "rlvis.export", "rlvis.search",
         "rlvis.reproduction", "rlvis.evaluators.value_maps", "rlvis.data.tar_shards", "rlvis.data.throughput")


@pytest.mark.parametrize("name", TOOLS)
def test_every_tool_prints_its_help_and_refuses_a_wrong_flag_in_one_line(name, capsys):
    tool = importlib.import_module(name)  # all in one process: no tool claims a global flag name
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--verbosity" in out and tool.__doc__.strip().splitlines()[0] in out
    assert usage_error(capsys, tool.main, ["--no_such_flag=1"]) == "rlvis: Unknown command line flag 'no_such_flag'"
    assert "must have a value other than None" in usage_error(capsys, tool.main, [])  # each has a required flag


def test_config_errors_and_stray_arguments_are_one_line_before_any_compute(tmp_path, capsys):
    from rlvis import main
    workdir = tmp_path / "run"
    flags = ["--config=configs/demo.py:tiny", f"--workdir={workdir}"]
    assert usage_error(capsys, main.main, [*flags, "--config.ab.no_such_key=1"]) == (
        "rlvis: config error: unknown config field 'no_such_key' in --config.ab.no_such_key=1")
    assert usage_error(capsys, main.main, [*flags, "--config.total_steps=many"]).startswith(
        "rlvis: config error: flag --config.total_steps=many")
    assert usage_error(capsys, main.main, ["--config=configs/no_such.py", f"--workdir={workdir}"]).startswith(
        "rlvis: config error: cannot load --config")
    assert usage_error(capsys, main.main, [*flags, "extra"]) == "rlvis: unexpected arguments: extra"
    assert not workdir.exists()


def test_number_lists_are_parsed_and_checked(capsys):
    from rlvis import search
    assert "--zooms=0.5,big" in usage_error(capsys, search.main, ["--workdir=x", "--zooms=0.5,big"])
    from rlvis import cli
    args = cli.parse(search.define_flags, ["--workdir=a", "--workdir=b", "--zooms=0.5,1", "--start=0,0,1,1"])
    assert args.workdir == ["a", "b"] and args.zooms == (0.5, 1.0) and args.start == (0.0, 0.0, 1.0, 1.0)
    assert args.pans == search.PANS  # defaults come back as the same tuples
