"""The docs cannot drift from the code unnoticed: every shell command they show is checked against the tool it runs.

Each `python -m MODULE ...` (and each launcher line, whose arguments go to `rlvis.main`) in a bash block, an
indented code block or an inline code span of README.md, launch/README.md and docs/*.md must name a module that
exists, only flags that module defines (its `define_flags`, as rlvis/cli.py parses them), and only `--config.X.Y`
overrides that are fields of the config that command's own `--config=FILE:ARG` builds. Placeholders the docs use
for the reader's values (`ARGS...`, `FLAGS`, `--config=...`, `[--optional]`) are read as such. docs/export.md's
Python snippets run as written, on a copy of the shared tiny run.
"""

import glob
import importlib
import importlib.util
import os
import re
import shlex
import shutil
from typing import NamedTuple

import numpy as np
import pytest

from rlvis import cli
from tests.runs import ROOT, load_config

DOCS = (
    "README.md",
    "launch/README.md",
    *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
)
SHELL_FENCES = ("bash", "sh", "shell", "console")
PYTHON = re.compile(r"\bpython3?\s+(-m\s|\S+\.py\b)")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(\.\.\.)?|\.\.\.")  # ARGS..., FLAGS, DIR, ...
SEPARATORS = ("&&", "||", ";", "|")
ENV_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
LAUNCHERS = {"launch/tpu_pod.sh": "--", "launch/slurm_gpu.sbatch": None}  # rlvis.main's arguments: after "--" / it


class Command(NamedTuple):
    file: str
    line: int
    text: str  # continuation lines joined

    def __str__(self):
        return f"{self.file}:{self.line}: `{self.text}`"


def shell_commands(file: str, text: str) -> list[Command]:
    """The shell commands of a markdown page: every line of a bash block, every indented code line that runs
    python, every inline code span that runs python; a trailing backslash joins the next line."""
    commands, lines, fence, prose = [], text.splitlines(), None, []
    i = 0
    while i < len(lines):
        line, start = lines[i], i
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = (stripped[3:].strip() or "text") if fence is None else None
            prose.append("")
            i += 1
            continue
        shell = fence in SHELL_FENCES or (fence is None and line.startswith("    ") and PYTHON.match(stripped))
        prose.append("" if fence is not None else line)
        i += 1
        if not shell or not stripped:
            continue
        while stripped.endswith("\\") and i < len(lines):
            stripped = stripped[:-1].rstrip() + " " + lines[i].strip()
            prose.append("")
            i += 1
        commands.append(Command(file, start + 1, stripped))
    prose_text = "\n".join(prose)
    for span in re.finditer(r"`([^`]+)`", prose_text):
        if PYTHON.search(span.group(1)) and "\n\n" not in span.group(1):  # a span never crosses a paragraph
            commands.append(Command(file, prose_text.count("\n", 0, span.start()) + 1, " ".join(span.group(1).split())))
    return commands


class Invocation(NamedTuple):
    module: str  # "rlvis.main", or a script path for `python FILE.py`
    args: list[str]


def invocations(command: str) -> list[Invocation]:
    """Every python run in a shell command line: `[VAR=value ...] python -m MODULE ARGS` between `&&`, `;` or
    `|`, a launcher's training arguments, and a python command quoted inside an argument (`--command='...'`)."""
    found, simple = [], []
    for word in [*shlex.split(command, comments=True), "&&"]:
        if word not in SEPARATORS:
            simple.append(word)
            continue
        while simple and ENV_PREFIX.match(simple[0]):
            simple.pop(0)
        words = [w.removeprefix("[").removesuffix("]") for w in simple]  # [--optional=flags] are flags
        if len(words) >= 3 and os.path.basename(words[0]) in ("python", "python3") and words[1] == "-m":
            found.append(Invocation(words[2], words[3:]))
        elif len(words) >= 2 and os.path.basename(words[0]) in ("python", "python3") and words[1].endswith(".py"):
            found.append(Invocation(words[1], []))
        for launcher, marker in LAUNCHERS.items():
            at = next((k for k, w in enumerate(words) if w.endswith(launcher)), None)
            if at is not None:
                rest = words[at + 1 :]
                if marker is not None:
                    rest = rest[rest.index(marker) + 1 :] if marker in rest else []
                if rest and rest[0] != "--help":
                    found.append(Invocation("rlvis.main", rest))
        for word in simple:  # e.g. gcloud's --command='cd DIR && python3 -m rlvis.main ARGS...'
            inner = PYTHON.search(word)
            if inner and word != simple[0] and " " in word:
                found.extend(invocations(word[inner.start() :]))
        simple = []
    return found


_CONFIGS: dict[str, object] = {}


def _config(spec: str):
    """The config `--config=SPEC` builds (cached): configs/FILE.py's get_config(ARG), as ml_collections calls it;
    a message instead where it builds none."""
    if spec not in _CONFIGS:
        file = spec.partition(":")[0]
        if not os.path.exists(os.path.join(ROOT, file)):
            _CONFIGS[spec] = f"no config file {file}"
        else:
            try:
                _CONFIGS[spec] = load_config(spec)
            except (ImportError, ValueError) as error:
                _CONFIGS[spec] = f"--config={spec} builds no config: {error}"
    return _CONFIGS[spec]


def _has_field(config, path: str) -> bool:
    node = config
    for key in path.split("."):
        if not hasattr(node, "keys") or key not in node:
            return False
        node = node[key]
    return True


def problems(invocation: Invocation) -> list[str]:
    """What in one invocation the code does not have: the module, a flag, a config field; empty when none."""
    module, args = invocation
    if module.endswith(".py"):
        return [] if os.path.exists(os.path.join(ROOT, module)) else [f"no file {module}"]
    if importlib.util.find_spec(module) is None:
        return [f"no module {module}"]
    if not module.startswith("rlvis."):
        return []  # another package's tool (`python3 -m pip install -e .`): its flags are not ours to check
    tool = importlib.import_module(module)
    if not hasattr(tool, "define_flags"):
        return [f"{module} is not a command-line tool (no define_flags)"]
    defined = cli.tool_flags(tool.define_flags)
    found, spec, overrides, placeholders = [], None, [], False
    words = iter(args)
    for word in words:
        if not word.startswith("-"):
            if PLACEHOLDER.fullmatch(word):
                placeholders = True  # the reader's arguments go here
            else:
                found.append(f"stray argument {word!r} ({module} takes flags only)")
            continue
        name, equals, value = word.lstrip("-").partition("=")
        if name.startswith("config."):
            overrides.append(name.removeprefix("config."))
        elif name in defined:
            if not equals and not defined[name].boolean:
                value = next(words, "")  # `--flag value`
            if name == "config":
                spec = value
        elif name.startswith("no") and name[2:] in defined and defined[name[2:]].boolean:
            pass
        else:
            found.append(f"{module} has no flag --{name}")
    if not overrides:
        return found
    if spec is None and "config" in defined and defined["config"].default_unparsed is not None:
        spec = defined["config"].default_unparsed  # a tool with a default config file
    if spec is not None and not PLACEHOLDER.fullmatch(spec.partition(":")[0]):
        config = _config(spec)
        if isinstance(config, str):
            return [*found, config]
        found += [
            f"--config.{path}: no such field in the config of --config={spec}"
            for path in overrides
            if not _has_field(config, path)
        ]
    elif placeholders or spec is not None:
        # The reader picks the config (FLAGS, --config=...): a field is documented for any of them only if every
        # config file's default config has it.
        files = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
        found += [
            f"--config.{path}: not a field of {os.path.relpath(file, ROOT)}'s config"
            for path in overrides
            for file in files
            if not _has_field(_config(os.path.relpath(file, ROOT)), path)
        ]
    else:
        found.append(f"--config.{overrides[0]} without --config ({module} has no default config)")
    return found


def _read(file: str) -> str:
    with open(os.path.join(ROOT, file)) as f:
        return f.read()


@pytest.mark.parametrize("file", DOCS)
def test_every_documented_command_names_real_modules_flags_and_config_fields(file):
    commands = shell_commands(file, _read(file))
    failures = [
        f"{command}: {problem}"
        for command in commands
        for invocation in invocations(command.text)
        for problem in problems(invocation)
    ]
    assert not failures, "docs and code part:\n" + "\n".join(failures)


def test_the_checker_finds_each_kind_of_command_and_names_what_is_wrong():
    page = "\n".join(
        [
            "Run `python -m rlvis.search --workdir=w --no_such_flag=1` first.",  # 1: inline
            "```bash",
            "pip install -e . && XLA_FLAGS=--x python -m rlvis.main --config=configs/demo.py:tiny \\",  # 3
            "    --workdir=w --config.ab.gama=0.5   # a comment",
            "python -m rlvis.no_such_module --x=1",  # 5
            "launch/tpu_pod.sh --tpu t --zone z -- --config=configs/demo.py --config.total_steps=5 --typo=1",  # 6
            "```",
            "    python -m rlvis.main FLAGS --workdir=runs/STEM --config.seeed=S",  # 8: indented, placeholder
            "```bash",
            "python -m rlvis.export --workdir=runs/demo [--encoder=auto|ema|online] [--step=S] extra",  # 10
            "python -m rlvis.main --config=configs/demo.py:method=ab_dino --config.dino.local_views=2 "
            "--config.env.views=4 --workdir=w",  # 11: all real
            "```",
        ]
    )
    commands = shell_commands("page.md", page)
    assert sorted(c.line for c in commands) == [1, 3, 5, 6, 8, 10, 11]
    assert any(c.text.endswith("--workdir=w --config.ab.gama=0.5   # a comment") for c in commands if c.line == 3)
    report = {c.line: [p for i in invocations(c.text) for p in problems(i)] for c in commands}
    assert report[1] == ["rlvis.search has no flag --no_such_flag"]
    assert report[3] == ["--config.ab.gama: no such field in the config of --config=configs/demo.py:tiny"]
    assert report[5] == ["no module rlvis.no_such_module"]
    assert report[6] == ["rlvis.main has no flag --typo"]
    assert report[8] == [
        f"--config.seeed: not a field of {f}'s config" for f in ("configs/cc12m.py", "configs/demo.py")
    ]
    assert report[10] == ["stray argument 'extra' (rlvis.export takes flags only)"]
    assert report[11] == []
    assert "page.md:3: `pip install" in str(commands[[c.line for c in commands].index(3)])


def test_a_config_field_is_checked_in_the_config_of_its_own_command():
    """Each command's fields are looked up in what its own `--config=FILE:ARG` builds (ARG included: a bad one is
    named), not in one global list, since a method's section exists only in the configs of that method."""
    dino = Invocation("rlvis.main", ["--config=configs/demo.py:method=ab_dino", "--workdir=w", "--config.ab.gamma=0.5"])
    assert problems(dino) == []
    missing = Invocation("rlvis.main", ["--config=configs/demo.py:tiny", "--workdir=w", "--config.ab.gamma.x=1"])
    assert problems(missing) == ["--config.ab.gamma.x: no such field in the config of --config=configs/demo.py:tiny"]
    [bad_arg] = problems(Invocation("rlvis.main", ["--config=configs/demo.py:huge", "--config.seed=1"]))
    assert bad_arg.startswith("--config=configs/demo.py:huge builds no config: ") and "'huge'" in bad_arg
    assert problems(Invocation("rlvis.main", ["--config=configs/no_such.py", "--config.seed=1"])) == [
        "no config file configs/no_such.py"
    ]
    assert problems(Invocation("rlvis.evaluate", ["--workdir=w", "--config.seed=1"])) == [
        "--config.seed without --config (rlvis.evaluate has no default config)"
    ]


def test_table1_entries_are_named_in_the_docs_as_the_preset_names_them():
    from rlvis.evaluators import presets

    row = next(line for line in _read("docs/evaluation.md").splitlines() if line.startswith("| `table1`"))
    entries = row.split("|")[2].split("(config names")[0]  # what follows names the TFDS datasets
    assert re.findall(r"`(\w+)`", entries) == list(presets.TABLE1)


@pytest.fixture
def export_page_folder(tiny_run, tmp_path, monkeypatch):
    """A folder where `runs/demo` is a copy of the shared tiny run, as the current directory: the page's relative
    paths mean what they mean to a reader who trained the demo there."""
    shutil.copytree(tiny_run[0], tmp_path / "runs" / "demo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_export_page_runs_as_written(export_page_folder, capsys):
    """docs/export.md top to bottom: its export command (optional flags left out), then each Python snippet in
    one namespace, with the reader's `images`, `labels`, `test_images`, `test_labels` (centred held-out digits)."""
    from rlvis import downstream, export
    from rlvis.data import digits as digits_lib

    page = _read("docs/export.md")
    [command] = shell_commands("docs/export.md", page)
    python, dash_m, module, *argv = shlex.split(command.text)
    assert (python, dash_m, module) == ("python", "-m", "rlvis.export")
    export.main([arg for arg in argv if not arg.startswith("[")])  # the optional flags left at their defaults
    assert (export_page_folder / "runs" / "demo" / "export" / "encoder.json").exists()

    splits = digits_lib.load_digits(20)
    as_input = lambda images: downstream.to_model_input(
        np.stack([digits_lib.centred_digit(d)["image"] for d in images])
    )
    namespace = dict(
        images=as_input(splits.probe_train_images),
        labels=splits.probe_train_labels,
        test_images=as_input(splits.probe_test_images),
        test_labels=splits.probe_test_labels,
    )
    snippets = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(snippets) == 3
    capsys.readouterr()
    for snippet in snippets:
        exec(compile(snippet, "docs/export.md", "exec"), namespace)
    assert namespace["step"] == 6  # the latest checkpoint of the tiny run
    assert namespace["tokens"].shape[:2] == (len(splits.probe_train_images), 1 + 16)
    assert "block0.attn.query.kernel" in namespace["arrays"]
    assert 0.0 <= float(capsys.readouterr().out.strip()) <= 1.0  # the fine-tuned head's test accuracy
