"""One command-line style for every rlvis tool: absl flags, each tool's on a FlagValues of its own.

A tool defines its flags in `define_flags(flag_values)` and starts `main(argv=None)` with
`args = cli.parse(define_flags, argv, __doc__)`. Separate FlagValues (not absl's global FLAGS) let tools be imported
together and called in-process (tests, notebooks, `rlvis.compare` beside `rlvis.main`) without clashing flag
names, and give every tool the same behaviour: `--help` prints its docstring and each of its flags once (those
defined here too: `tool_flags`); an unknown or malformed flag, a missing required flag, a stray argument or a bad
`--config` override is one line on stderr and exit code 2, before any compute, and so is a workdir without the
checkpoint a tool reads (`reading_checkpoint`); `--verbosity` is absl's (default: warnings only, since Orbax logs
every file it writes at INFO). tests/test_docs_commands.py checks every documented command against `tool_flags`.
"""

import contextlib
import contextvars
import os
import re
import sys
from collections.abc import Callable, Sequence

from absl import flags, logging
from ml_collections import config_flags

from rlvis.errors import ConfigError

Define = Callable[[flags.FlagValues], None]
_ARGV: contextvars.ContextVar[list[str]] = contextvars.ContextVar("argv")  # what `parse` is parsing


def fail(message: str) -> None:
    """A usage or input error: one line on stderr, exit code 2 (SystemExit, so in-process callers can catch it)."""
    print(f"rlvis: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@contextlib.contextmanager
def reading_checkpoint(workdir: str):
    """Around a tool's use of WORKDIR's checkpoint: a workdir without one, without the step asked for, or with one
    of another format (checkpoints.FormatError), is one line naming it (exit code 2) instead of a traceback from
    deep inside the restore."""
    try:
        yield
    except ConfigError as error:
        fail(str(error))
    except FileNotFoundError as error:
        from rlvis import checkpoints

        folder, step = os.path.split(str(workdir).rstrip("/"))
        step_folder = step.isdigit() and os.path.basename(folder) == "checkpoints"  # rlvis.export takes one
        if not step_folder and not checkpoints.checkpoint_steps(workdir):
            fail(f"no checkpoint in {workdir} (a training run's --workdir holds checkpoints/<step>)")
        fail(" ".join(str(error).split()))  # e.g. no checkpoint for that step, with the steps there are


def define_config(help_text: str, flag_values: flags.FlagValues, lock_config: bool = True) -> None:
    """The required `--config=FILE[:arg]` flag with its `--config.field=value` overrides. ml_collections finds the
    overrides in sys.argv unless told otherwise; it is told the argv being parsed, so in-process calls work."""
    config_flags.DEFINE_config_file(
        "config",
        None,
        help_text,
        flag_values=flag_values,
        lock_config=lock_config,
        sys_argv=["rlvis", *_ARGV.get(sys.argv[1:])],
    )
    flags.mark_flag_as_required("config", flag_values=flag_values)


class _NumbersParser(flags.ArgumentParser):
    """ "0.3,0.5" → (0.3, 0.5); anything that is not a number is a parse error naming the flag."""

    def __init__(self, kind: type):
        self.kind = kind
        self.syntactic_help = self.flag_type()  # `--help` shows it beside the default

    def parse(self, argument):
        items = argument.split(",") if isinstance(argument, str) else argument
        return tuple(self.kind(item) for item in items)

    def flag_type(self) -> str:
        return f"comma-separated {self.kind.__name__}s"


def define_numbers(
    name: str, default: Sequence[float], help_text: str, flag_values: flags.FlagValues, kind: type = float
) -> None:
    """A comma-separated list of numbers (`kind`), read back as a tuple."""
    flags.DEFINE(
        _NumbersParser(kind),
        name,
        tuple(default),
        help_text,
        flag_values=flag_values,
        serializer=flags.CsvListSerializer(","),
    )


def tool_flags(define: Define, argv: Sequence[str] = ()) -> flags.FlagValues:
    """A tool's flags (its `define`, with `--verbosity`), unparsed, all registered under the tool's module.

    absl files each flag under the module whose frame defined it, and `--help` prints one section per module: a
    tool run as `python -m` is filed as its path while a helper that names its caller files it as `__main__`,
    which absl's help renders as the path's flags a second time and never as its own; flags defined in this file
    (`--config`) land under rlvis.cli. One section per tool is the fix that does not depend on who calls DEFINE.
    """
    own = flags.FlagValues()
    token = _ARGV.set(list(argv))
    try:
        define(own)
    finally:
        _ARGV.reset(token)
    flags.DEFINE_integer(
        "verbosity", None, "absl logging verbosity: 0 INFO, -1 WARNING (default), 1 DEBUG.", flag_values=own
    )
    tool = define.__module__
    if tool == "__main__":  # `python -m rlvis.search`: its import name, as the docs write it
        tool = getattr(sys.modules["__main__"].__spec__, "name", None) or sys.argv[0]
    by_module = own.flags_by_module_dict()
    by_module.clear()
    for flag in {id(own[name]): own[name] for name in own}.values():  # a flag with a short name is listed once
        own.register_flag_by_module(tool, flag)
    return own


def parse(define: Define, argv: Sequence[str] | None, doc: str | None = None) -> flags.FlagValues:
    """argv (without the program name; default sys.argv[1:]) → the tool's parsed flags, or a one-line exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own = tool_flags(define, argv)
    if any(arg in ("--help", "-h", "--helpfull") for arg in argv):
        print((doc or "").strip() + "\n\nflags:\n" + own.get_help(include_special_flags=False), flush=True)
        raise SystemExit(0)
    try:
        remaining = own(["rlvis", *argv])
        if len(remaining) > 1:
            raise flags.Error(f"unexpected arguments: {' '.join(remaining[1:])}")
        if "config" in own and own["config"].value is not None:
            own["config"].value.keys()  # ml_collections reports a bad config file lazily: fail here, not mid-run
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
        fail(_describe(error, argv))
    logging.set_verbosity(logging.WARNING if own["verbosity"].value is None else own["verbosity"].value)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # libraries that read absl's global flags (Grain) get their defaults
    return own


def _describe(error: Exception, argv: list[str]) -> str:
    """A parse error in one line; a problem with --config says so."""
    if isinstance(error, (AttributeError, KeyError)):  # ml_collections: a field the locked config lacks
        return _unknown_field(error, argv)
    if isinstance(error, OSError):  # the config file itself: its last line names the cause
        return f"config error: cannot load --config: {str(error).strip().splitlines()[-1].strip()}"
    message = str(error).splitlines()[0]
    return f"config error: {message}" if "--config" in message else message


def _unknown_field(error: Exception, argv: list[str]) -> str:
    """ml_collections wraps an unknown field in AttributeError(KeyError(...)) whose text is the key's repr and a
    "Did you mean" line, which str() of the wrapper turns into escaped quotes and a literal backslash-n: → the field,
    the override that names it and the suggestion, on one line."""
    while error.args and isinstance(error.args[0], Exception):  # the innermost message
        error = error.args[0]
    lines = str(error.args[0] if error.args else error).splitlines() or [""]
    field = lines[0].strip().strip("\"'")
    culprit = next(
        (arg for arg in argv if arg.startswith("--config.") and field in arg.partition("=")[0].split(".")[1:]), field
    )
    suggestion = re.search(r'Did you mean "([^"]+)"', " ".join(lines[1:]))
    hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else ""
    return f"config error: unknown config field {field!r} in {culprit}{hint}"
