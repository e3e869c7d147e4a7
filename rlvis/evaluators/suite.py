"""Evaluators by name, as the config lists them, and the one place that runs them on encoder parameters.

`config.evals` holds one entry per evaluator, as big_vision's `config.evals` does:

    config.evals.foresight = dict(type="foresight", final=True, every=600)
    config.evals.tfds = dict(type="tfds_tasks", final=True, every=0, name="food101", data_dir="…")

`type` names a module in rlvis/evaluators whose `Evaluator(encode_fn, config, channels, **kwargs)` takes the entry's
other fields; `final` runs it at the end of training, for the trained and a random-init encoder (results.json, and
`rlvis.evaluate` on any checkpoint, hence the same numbers); `every` > 0 also runs it at the start, every that many
steps and at the end as a monitor (`monitor/<task>` in monitor.jsonl). An evaluator is built once (it prepares its
data and jitted feature function); `run(params)` yields (task name, score) for each name in its `tasks`.

    demo_tasks    the embedded held-out tasks: digit, count, digit-in-box probes
    foresight     the value head's foresight against reading the source or the destination view
    digit_monitor kNN and few-shot ridge on held-out centred digits: seconds, so it can run often
    tfds_tasks    linear / kNN / few-shot on a TFDS dataset prepared as ArrayRecord
"""

import collections
import importlib
import inspect
import json

import ml_collections
import tqdm

from rlvis import storage
from rlvis.models import features

ENTRY_FIELDS = ("type", "final", "every")  # the suite's own fields of a config.evals entry; the rest are kwargs


def evaluator_class(type_name: str) -> type:
    """rlvis.evaluators.<type_name>.Evaluator; a ValueError naming what is missing."""
    try:
        module = importlib.import_module(f"rlvis.evaluators.{type_name}")
    except ModuleNotFoundError as error:
        if error.name != f"rlvis.evaluators.{type_name}":
            raise  # the module exists; something it imports does not
        raise ValueError(f"evaluator type {type_name!r} is not a module in rlvis/evaluators") from None
    if not hasattr(module, "Evaluator"):
        raise ValueError(f"rlvis/evaluators/{type_name}.py has no Evaluator class")
    return module.Evaluator


def check_entry(name: str, entry: ml_collections.ConfigDict) -> str | None:
    """What is wrong with `config.evals[name]`, or None (config_lib turns it into a one-line error)."""
    missing = [field for field in ENTRY_FIELDS if field not in entry]
    if missing:
        return f"config.evals.{name} needs the field {missing[0]!r} ({', '.join(ENTRY_FIELDS)})"
    try:
        cls = evaluator_class(entry.type)
    except ValueError as error:
        return f"config.evals.{name}: {error}"
    accepted = set(inspect.signature(cls).parameters) - {"encode_fn", "config", "channels"}
    unknown = sorted(set(entry) - set(ENTRY_FIELDS) - accepted)
    if unknown:
        return f"config.evals.{name}: {entry.type} takes no field {unknown[0]!r}; it takes {sorted(accepted)}"
    if entry.every < 0:
        return f"config.evals.{name}.every={entry.every} must be >= 0 (0 = only at the end)"
    return None


def build(config: ml_collections.ConfigDict, encode_fn: features.EncodeFn, channels: int, when: str) -> dict:
    """name → evaluator for the entries of `config.evals` that run `when` ("final" or "monitor")."""
    built = {}
    for name, entry in config.evals.items():
        if entry.final if when == "final" else entry.every > 0:
            kwargs = {k: v for k, v in entry.items() if k not in ENTRY_FIELDS}
            try:
                built[name] = evaluator_class(entry.type)(encode_fn, config, channels, **kwargs)
            except (FileNotFoundError, ValueError) as error:
                raise type(error)(f"config.evals.{name}: {error}") from None
    return built


def due(config: ml_collections.ConfigDict, step: int) -> list[str]:
    """The monitors that run after `step` (each at its own `every`)."""
    return [name for name, entry in config.evals.items() if entry.every > 0 and step % entry.every == 0]


def run_all(evaluators: dict, params, progress: bool = False, names_from: dict | None = None) -> dict[str, float]:
    """Every evaluator's tasks in one flat dict. Task names carry their data set ("linear/digit"); a name two
    evaluators both report is prefixed by each one's evaluator name, so neither overwrites the other. Which names
    collide is decided over `names_from` (default: `evaluators`), so that a subset run at one step names its tasks
    as the whole set does.

    `progress` shows a bar with the task just scored, elapsed time and an ETA (on stderr)."""
    by_evaluator = {}
    bar = tqdm.tqdm(
        total=sum(len(evaluator.tasks) for evaluator in evaluators.values()),
        unit="task",
        desc="evaluate",
        disable=not progress,
        leave=False,
    )
    for name, evaluator in evaluators.items():
        by_evaluator[name] = {}
        for task, score in evaluator.run(params):
            by_evaluator[name][task] = float(score)
            bar.set_postfix_str(f"{task} {score:.3f}")
            bar.update()
    bar.close()
    counts = collections.Counter(task for evaluator in (names_from or evaluators).values() for task in evaluator.tasks)
    return {
        (f"{name}/{task}" if counts[task] > 1 else task): score
        for name, tasks in by_evaluator.items()
        for task, score in tasks.items()
    }


def plot_curves(jsonl_path: str, prefix: str | tuple[str, ...], png_path: str) -> str | None:
    """Each `prefix…` metric of a JSONL log over steps, one line per task, as a PNG (None if nothing logged).
    With several prefixes, metrics of the first are solid lines and of the others dashed, in matching colours."""
    lines = [json.loads(line) for line in storage.AppendLog(jsonl_path).read_lines()]
    if not lines:
        return None
    prefixes = (prefix,) if isinstance(prefix, str) else prefix
    groups = [sorted({key for line in lines for key in line if key.startswith(p)}) for p in prefixes]
    if not groups[0]:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for style, p, tasks in zip(("-", "--", ":"), prefixes, groups):
        for colour, task in enumerate(tasks):
            points = [(line["step"], line[task]) for line in lines if line.get(task) is not None]
            label = task.removeprefix(prefixes[0]) if p == prefixes[0] else task
            axis.plot(*zip(*points), style, color=f"C{colour}", marker="o", markersize=3, label=label)
    axis.set_xlabel("step"), axis.set_ylabel("accuracy"), axis.grid(alpha=0.3), axis.legend(fontsize=7)
    axis.set_title(" vs ".join(p.rstrip("/") for p in prefixes) + " over training", fontsize=9)
    figure.tight_layout()
    storage.save_figure(figure, png_path, dpi=110)
    plt.close(figure)
    return png_path
