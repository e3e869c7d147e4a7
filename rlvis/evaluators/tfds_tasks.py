"""Probes on a TFDS classification dataset prepared as ArrayRecord (ImageNet-1k, Food101, Pets, RESISC45, SUN397,
CLEVR...): the paper's transfer suite, read with `tfds.data_source`, no TensorFlow.

Its `config.evals` entry names the dataset (`name`, `data_dir`, `train_split`, `test_split`, `label_key`) and caps
the examples encoded (`max_train`, `max_test`: the first N of each split, TFDS's own fixed order). Images go through
the same decode and canvas as training data, and are probed whole at `env.view_size`:
  * linear grid (learning rate × CLS/mean/both pooling, best on a validation split carved from train),
  * DINO's weighted kNN at k ∈ {10, 20, 100, 200},
  * big_vision's few-shot ridge at 1/5/10/25 shots (shot counts a class cannot fill are left out).
"""

from collections.abc import Iterator

import ml_collections
import numpy as np

from rlvis.data import decode
from rlvis.data.tfds_source import TFDSSource
from rlvis.evaluators import common, probes

KNN_KS = (10, 20, 100, 200)  # DINO's protocol


class Evaluator:
    def __init__(self, encode_fn: common.EncodeFn, config: ml_collections.ConfigDict, channels: int, *, name: str,
                 data_dir: str = "", train_split: str = "train", test_split: str = "test", label_key: str = "label",
                 max_train: int = 10_000, max_test: int = 5_000):
        if not name:
            raise ValueError("the tfds_tasks evaluator needs the dataset's name (e.g. 'food101')")
        self.name = name
        self.data = {}
        for split, limit in ((train_split, max_train), (test_split, max_test)):
            source = TFDSSource(name, split, data_dir or None, caption_key=label_key)
            if source.label_names is None:
                raise ValueError(f"label_key={label_key!r} is not a ClassLabel of {name}")
            images, valid, labels = [], [], []
            for index in range(min(len(source), limit)):
                record = source[index]
                try:
                    image, hw = decode.fit_to_canvas(decode.decode(record["image"], config.data.canvas, channels),
                                                     config.data.canvas, min_side=1)
                except decode.BadRecord:
                    continue  # an evaluation set with a broken image: probe the rest
                images.append(image), valid.append(hw), labels.append(source.label_names.index(record["caption"]))
            self.data["train" if split == train_split else "test"] = (
                np.stack(images), np.stack(valid), np.asarray(labels, np.int32))
        self.num_classes = len(source.label_names)
        self.features = common.token_features(encode_fn, config.env.view_size, channels)
        self.probe_steps = config.eval.probe_steps
        fewest = int(np.bincount(self.data["train"][2], minlength=self.num_classes).min())
        self.shots = tuple(s for s in (1, 5, 10, 25) if s <= fewest)
        self.tasks = (f"linear/{name}", *(f"knn{k}/{name}" for k in KNN_KS),
                      *(f"fewshot{s}/{name}" for s in self.shots))

    def run(self, params) -> Iterator[tuple[str, float]]:
        tokens = {split: (common.encode_in_batches(self.features, params, images, valid), labels)
                  for split, (images, valid, labels) in self.data.items()}
        (train_t, train_y), (test_t, test_y) = tokens["train"], tokens["test"]
        grid = probes.linear_probe_grid(train_t, train_y, test_t, test_y, self.num_classes, steps=self.probe_steps)
        yield f"linear/{self.name}", grid["test_accuracy"]
        pooled = {split: probes.cls_and_mean(t) for split, (t, _) in tokens.items()}
        for k, score in probes.knn_scores(pooled["train"], train_y, pooled["test"], test_y, self.num_classes,
                                          ks=KNN_KS).items():
            yield f"knn{k}/{self.name}", score
        for s, score in probes.fewshot_ridge(pooled["train"], train_y, pooled["test"], test_y, self.num_classes,
                                             shots=self.shots).items():
            yield f"fewshot{s}/{self.name}", score
