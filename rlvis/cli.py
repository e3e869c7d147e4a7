"""One command-line style for every rlvis tool: absl flags, each tool's on a FlagValues of its own.

A tool defines its flags in `define_flags(flag_values)` and starts `main(argv=None)` with
`args = cli.parse(define_flags, argv, __doc__)`. Separate FlagValues (not absl's global FLAGS) let tools be imported
together and called in-process (tests, notebooks, `rlvis.compare` beside `rlvis.main`) without clashing flag
names, and give every tool the same behaviour: `--help` prints its docstring and flags; an unknown or malformed
flag, a missing required flag, a stray argument or a bad `--config` override is one line on stderr and exit code 2,
before any compute; `--verbosity` is absl's (default: warnings only, since Orbax logs every file it writes at INFO).
"""

import contextvars
import sys
from collections.abc import Callable, Sequence

from absl import flags, logging
from ml_collections import config_flags

Define = Callable[[flags.FlagValues], None]
_ARGV: contextvars.ContextVar[list[str]] = contextvars.ContextVar("argv")  # what `parse` is parsing


def fail(message: str) -> None:
    """A usage or input error: one line on stderr, exit code 2 (SystemExit, so in-process callers can catch it)."""
    print(f"rlvis: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def define_config(help_text: str, flag_values: flags.FlagValues, lock_config: bool = True) -> None:
    """The required `--config=FILE[:arg]` flag with its `--config.field=value` overrides. ml_collections finds the
    overrides in sys.argv unless told otherwise; it is told the argv being parsed, so in-process calls work."""
    config_flags.DEFINE_config_file("config", None, help_text, flag_values=flag_values, lock_config=lock_config,
                                    sys_argv=["rlvis", *_ARGV.get(sys.argv[1:])])
    flags.mark_flag_as_required("config", flag_values=flag_values)


class _NumbersParser(flags.ArgumentParser):
    """"0.3,0.5" → (0.3, 0.5); anything that is not a number is a parse error naming the flag."""

    def __init__(self, kind: type):
        self.kind = kind

    def parse(self, argument):
        items = argument.split(",") if isinstance(argument, str) else argument
        return tuple(self.kind(item) for item in items)

    def flag_type(self) -> str:
        return f"comma-separated {self.kind.__name__}s"


def define_numbers(name: str, default: Sequence[float], help_text: str, flag_values: flags.FlagValues,
                   kind: type = float) -> None:
    """A comma-separated list of numbers (`kind`), read back as a tuple."""
    flags.DEFINE(_NumbersParser(kind), name, tuple(default), help_text, flag_values=flag_values,
                 serializer=flags.CsvListSerializer(","), module_name=sys._getframe(1).f_globals["__name__"])


def parse(define: Define, argv: Sequence[str] | None, doc: str | None = None) -> flags.FlagValues:
    """argv (without the program name; default sys.argv[1:]) → the tool's parsed flags, or a one-line exit."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own = flags.FlagValues()
    token = _ARGV.set(argv)
    try:
        define(own)
    finally:
        _ARGV.reset(token)
    flags.DEFINE_integer("verbosity", None, "absl logging verbosity: 0 INFO, -1 WARNING (default), 1 DEBUG.",
                         flag_values=own)
    if any(arg in ("--help", "-h", "--helpfull") for arg in argv):
        print((doc or "").strip() + "\n\nflags:\n" + own.get_help(), flush=True)
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
        field = str(error).strip("\"'")
        culprit = next((a for a in argv if a.startswith("--config.") and field in a.split("=")[0]), field)
        return f"config error: unknown config field {field!r} in {culprit}"
    if isinstance(error, OSError):  # the config file itself: its last line names the cause
        return f"config error: cannot load --config: {str(error).strip().splitlines()[-1].strip()}"
    message = str(error).splitlines()[0]
    return f"config error: {message}" if "--config" in message else message
