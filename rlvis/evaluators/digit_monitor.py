"""The cheap monitor: kNN and few-shot ridge on held-out centred digits, seconds on CPU, so it can run often."""

from collections.abc import Iterator

import ml_collections

from rlvis.data import digits as digits_lib
from rlvis.evaluators import common, probes
from rlvis.models import features


class Evaluator:
    """Held-out centred digits → DINO-protocol kNN (k = eval.knn_k) and few-shot ridge (5 and 10 shots)."""

    SHOTS = (5, 10)

    def __init__(self, encode_fn: features.EncodeFn, config: ml_collections.ConfigDict, channels: int):
        self.data = common.heldout_digits(digits_lib.load_digits(config.eval.digits_per_class))
        self.features = features.token_features(encode_fn, config.env.view_size, channels)
        self.k = config.eval.knn_k
        self.tasks = ("knn/digit", *(f"fewshot{shots}/digit" for shots in self.SHOTS))

    def run(self, params) -> Iterator[tuple[str, float]]:
        pooled = {}
        for split, (images, valid, labels) in self.data.items():
            tokens = common.encode_in_batches(self.features, params, images, valid)
            pooled[split] = (probes.cls_and_mean(tokens), labels)
        (train_x, train_y), (test_x, test_y) = pooled["train"], pooled["test"]
        yield "knn/digit", probes.knn_scores(train_x, train_y, test_x, test_y, 10, ks=(self.k,))[self.k]
        for shots, score in probes.fewshot_ridge(train_x, train_y, test_x, test_y, 10, shots=self.SHOTS).items():
            yield f"fewshot{shots}/digit", score
