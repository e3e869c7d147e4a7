"""Probes on a TFDS classification dataset prepared as ArrayRecord (ImageNet-1k, Food101, Pets, RESISC45, SUN397,
CLEVR...): the paper's transfer suite, read with `tfds.data_source`, no TensorFlow.

Its `config.evals` entry names the dataset (`name`, `data_dir`, `train_split`, `test_split`) and the label: `task`
"label" reads the ClassLabel `label_key`; "clevr_count" and "clevr_distance" are VTAB's CLEVR label spaces, computed
from the `objects` feature (`clevr_labels` below). It caps the examples encoded (`max_train`, `max_test`: the first N
of each split, TFDS's own fixed order). Images go through the same decode and canvas as training data, and are probed
whole at `env.view_size` by the `probes` listed:
  * `linear`: a grid (learning rate × CLS/mean/both pooling, best on a validation split carved from train),
  * `knn`: DINO's weighted kNN at k ∈ {10, 20, 100, 200},
  * `fewshot`: big_vision's few-shot ridge at 1/5/10/25 shots (shot counts a class cannot fill are left out),
  * `decoder`: the paper's main probe, the autoregressive decoder of `sequence_probe` reading the class as a
    one-token sequence (`decoder` holds its size and training, `sequence_probe.ProbeSettings`' fields).
"""

from collections.abc import Iterator

import ml_collections
import numpy as np

from rlvis.data.tfds_source import TFDSSource
from rlvis.data import sources
from rlvis.evaluators import common, probes, sequence_probe
from rlvis.models import features

KNN_KS = (10, 20, 100, 200)  # DINO's protocol
PROBES = ("linear", "knn", "fewshot", "decoder")
# VTAB's CLEVR/Distance: the closest object's depth (pixel_coords[2]) binned at these edges → 6 classes.
CLEVR_DISTANCE_EDGES = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
CLEVR_COUNTS = range(3, 11)  # every CLEVR scene has 3–10 objects: VTAB's CLEVR/Count has 8 classes


def clevr_labels(task: str, objects: dict) -> int:
    """VTAB's label of one CLEVR example from its `objects` feature: "clevr_count" = objects − 3; "clevr_distance" =
    the bin of the nearest object's depth (the largest edge below it)."""
    if task == "clevr_count":
        count = len(objects["size"])
        if count not in CLEVR_COUNTS:
            raise ValueError(f"a CLEVR scene has 3–10 objects, this one {count}")
        return count - CLEVR_COUNTS.start
    depth = float(np.min(np.asarray(objects["pixel_coords"], np.float32).reshape(-1, 3)[:, 2]))
    return max(i for i, edge in enumerate(CLEVR_DISTANCE_EDGES[:-1]) if edge < depth)


CLASS_COUNTS = {"clevr_count": len(CLEVR_COUNTS), "clevr_distance": len(CLEVR_DISTANCE_EDGES) - 1}


class Evaluator:
    def __init__(
        self,
        encode_fn: features.EncodeFn,
        config: ml_collections.ConfigDict,
        channels: int,
        *,
        name: str,
        data_dir: str = "",
        train_split: str = "train",
        test_split: str = "test",
        label_key: str = "label",
        task: str = "label",
        probes: tuple[str, ...] = ("linear", "knn", "fewshot"),
        decoder: dict | None = None,
        max_train: int = 10_000,
        max_test: int = 5_000,
    ):
        if not name:
            raise ValueError("the tfds_tasks evaluator needs the dataset's name (e.g. 'food101')")
        if task not in ("label", *CLASS_COUNTS):
            raise ValueError(f"task={task!r}: use 'label' (the ClassLabel label_key) or one of {sorted(CLASS_COUNTS)}")
        unknown = sorted(set(probes) - set(PROBES))
        if unknown or not probes:
            raise ValueError(f"probes={tuple(probes)!r}: choose from {PROBES}")
        self.name = name if task == "label" else task
        self.probes = tuple(probes)
        self.decoder = sequence_probe.ProbeSettings(**(decoder or {}))
        self.data = {}
        for split, limit in ((train_split, max_train), (test_split, max_test)):
            source = TFDSSource(name, split, data_dir or None, caption_key=label_key if task == "label" else None)
            if task == "label" and source.label_names is None:
                raise ValueError(f"label_key={label_key!r} is not a ClassLabel of {name}")
            images, labels = common.EncodedImages(sources.canvas(config), channels), []
            for index in range(min(len(source), limit)):
                example = source.example(index)
                if images.add(example[source.image_key]) is None:
                    continue  # an evaluation set with a broken image: probe the rest (counted in `skipped`)
                labels.append(int(example[label_key]) if task == "label" else clevr_labels(task, example["objects"]))
            self.data["train" if split == train_split else "test"] = (images, np.asarray(labels, np.int32))
        self.num_classes = len(source.label_names) if task == "label" else CLASS_COUNTS[task]
        self.features = features.token_features(encode_fn, config.env.view_size, channels)
        self.probe_steps = config.eval.probe_steps
        fewest = int(np.bincount(self.data["train"][1], minlength=self.num_classes).min())
        self.shots = tuple(s for s in (1, 5, 10, 25) if s <= fewest)
        name = self.name
        tasks = [f"linear/{name}"] if "linear" in probes else []
        tasks += [f"knn{k}/{name}" for k in KNN_KS] if "knn" in probes else []
        tasks += [f"fewshot{s}/{name}" for s in self.shots] if "fewshot" in probes else []
        tasks += [f"decoder/{name}"] if "decoder" in probes else []
        self.tasks = tuple(tasks)

    def run(self, params) -> Iterator[tuple[str, float]]:
        tokens = {
            split: (images.encode(self.features, params), labels) for split, (images, labels) in self.data.items()
        }
        (train_t, train_y), (test_t, test_y) = tokens["train"], tokens["test"]
        if "linear" in self.probes:
            grid = probes.linear_probe_grid(train_t, train_y, test_t, test_y, self.num_classes, steps=self.probe_steps)
            yield f"linear/{self.name}", grid["test_accuracy"]
        pooled = {split: probes.cls_and_mean(t) for split, (t, _) in tokens.items()}
        if "knn" in self.probes:
            for k, score in probes.knn_scores(
                pooled["train"], train_y, pooled["test"], test_y, self.num_classes, ks=KNN_KS
            ).items():
                yield f"knn{k}/{self.name}", score
        if "fewshot" in self.probes:
            for s, score in probes.fewshot_ridge(
                pooled["train"], train_y, pooled["test"], test_y, self.num_classes, shots=self.shots
            ).items():
                yield f"fewshot{s}/{self.name}", score
        if "decoder" in self.probes:
            yield f"decoder/{self.name}", self.decoder_accuracy(train_t, train_y, test_t, test_y)

    def decoder_accuracy(
        self, train_t: np.ndarray, train_y: np.ndarray, test_t: np.ndarray, test_y: np.ndarray
    ) -> float:
        """Classification as a one-token sequence (no prompt): the decoder names the class."""
        vocab = sequence_probe.Vocabulary(bins=2, num_classes=self.num_classes)  # no boxes here: 2 unused bins
        no_prompt = lambda n: np.zeros((n, 0), np.int32)
        return sequence_probe.class_accuracy(
            train_t,
            no_prompt(len(train_y)),
            train_y,
            test_t,
            no_prompt(len(test_y)),
            test_y,
            vocab,
            self.decoder,
            progress=True,
        )
