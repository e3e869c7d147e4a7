"""Object detection and box-conditioned classification on COCO 2017 or EPIC-KITCHENS VISOR: the paper's scene-level
probes for COCO and EpicKitchens pre-training, both read by the autoregressive decoder probe (`sequence_probe`).

    config.evals.coco = dict(type="detection", final=True, every=0, format="coco", root="/data/coco",
                             train_split="train2017", test_split="val2017")

  * `det_map/<name>`, `det_map50/<name>` — detection as sequence prediction (Pix2Seq): the decoder, on the frozen
    tokens of the whole image, writes every object as 4 coordinate tokens and a class token; COCO's AP over IoU
    0.50:0.95 and at 0.5, by pycocotools (`detection_metrics.coco_map`);
  * `box_class/<name>` — given one object's box as a 4-token prompt, name its class (the paper's "object
    classification"): accuracy over every box of the test images.
Both decoders are trained on the train split's first `max_train` images and scored on the test split's first
`max_test`. Images go through the training data's decode and canvas and are encoded whole at `view_size` (default
`env.view_size`); boxes are fractions of the image, so they stay put. A broken image is skipped and counted.
Categories are renumbered contiguously (COCO's ids run to 90 with gaps; VISOR's are EPIC-KITCHENS noun ids); a
detection sequence holds at most `max_objects`, or as many as the most crowded image has if that is fewer.
"""

from collections.abc import Iterator

import ml_collections
import numpy as np

from rlvis.data import sources
from rlvis.evaluators import common, detection_metrics, sequence_probe
from rlvis.models import features

FORMATS = ("coco", "visor")


def open_source(format: str, root: str, split: str):
    """The reader of one split: COCO 2017 instances (no captions needed) or VISOR's sparse annotations."""
    if format == "coco":
        from rlvis.data.coco import COCOSource

        return COCOSource(root, split, captions=False)
    if format == "visor":
        from rlvis.data.visor import VISORSource

        return VISORSource(root, split)
    raise ValueError(f"format={format!r}: use one of {FORMATS}")


class Evaluator:
    def __init__(
        self,
        encode_fn: features.EncodeFn,
        config: ml_collections.ConfigDict,
        channels: int,
        *,
        format: str,
        root: str,
        name: str = "",
        train_split: str = "train2017",
        test_split: str = "val2017",
        max_train: int = 10_000,
        max_test: int = 5_000,
        max_objects: int = 100,
        view_size: int = 0,
        decoder: dict | None = None,
    ):
        if not root:
            raise ValueError("the detection evaluator needs the dataset's root folder (`root`)")
        self.name = name or format
        self.decoder = sequence_probe.ProbeSettings(**(decoder or {}))
        self.skipped: dict[str, int] = {}
        raw = {}
        for split, limit in (("train", max_train), ("test", max_test)):
            source = open_source(format, root, train_split if split == "train" else test_split)
            raw[split] = self._load(source, min(len(source), limit), sources.canvas(config), channels)
        classes = sorted(
            {int(c) for _, annotations, _ in raw.values() for _, labels, *_ in annotations for c in labels}
        )
        if not classes:
            raise ValueError(f"{format} at {root}: no object boxes in the images read; nothing to detect")
        self.vocab = sequence_probe.Vocabulary(self.decoder.bins, len(classes))
        # Sequences no longer than the most crowded image needs (COCO: up to ~90 objects; a demo scene: 4).
        self.max_objects = max(
            1, min(max_objects, max(len(labels) for _, annotations, _ in raw.values() for _, labels, *_ in annotations))
        )
        index = {c: i for i, c in enumerate(classes)}
        self.data = {
            split: (
                images,
                [(boxes, np.array([index[int(c)] for c in labels], np.int32)) for boxes, labels, _, _ in annotations],
                sizes,
            )
            for split, (images, annotations, sizes) in raw.items()
        }
        # Crowd regions of the test images (COCO's `iscrowd`), for the AP only; a class never seen as an object
        # cannot be detected, so its crowd regions are left out.
        self.test_crowds = [
            (
                crowd_boxes[[int(c) in index for c in crowd_labels]],
                np.array([index[int(c)] for c in crowd_labels if int(c) in index], np.int32),
            )
            for _, _, crowd_boxes, crowd_labels in raw["test"][1]
        ]
        self.features = features.token_features(encode_fn, view_size or config.env.view_size, channels)
        self.tasks = (f"det_map/{self.name}", f"det_map50/{self.name}", f"box_class/{self.name}")

    def _load(self, source, count: int, canvas: int, channels: int):
        """The first `count` readable images, with their (boxes, labels, crowd boxes, crowd labels) and size in
        pixels: the source's own where it lists sizes, as COCO does, so COCO's small/medium/large mean the same."""
        images, annotations, sizes = common.EncodedImages(canvas, channels), [], []
        for i in range(count):
            record = source[i]
            decoded_size = images.add(record["image"])
            if decoded_size is None:
                continue
            sizes.append(source.sizes[i] if hasattr(source, "sizes") else decoded_size)
            annotations.append(
                (
                    np.asarray(record["boxes"], np.float32).reshape(-1, 4),
                    np.asarray(record["box_labels"], np.int32),
                    np.asarray(record.get("crowd_boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4),
                    np.asarray(record.get("crowd_labels", []), np.int32),
                )
            )
        for reason, skipped in images.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + skipped
        if not len(images):
            raise ValueError(f"{source!r}: no readable image among the first {count} ({self.skipped})")
        return images, annotations, np.array(sizes, np.int64)

    def encode(self, params) -> dict[str, np.ndarray]:
        """split → encoder tokens of its images."""
        return {split: images.encode(self.features, params) for split, (images, *_) in self.data.items()}

    def run(self, params) -> Iterator[tuple[str, float]]:
        tokens = self.encode(params)
        yield from self.score(tokens["train"], self.data["train"][1], tokens["test"], self.data["test"][1]).items()

    def score(
        self, train_tokens: np.ndarray, train_annotations: list, test_tokens: np.ndarray, test_annotations: list
    ) -> dict[str, float]:
        """Train both decoders on (tokens, [(boxes, labels)] per image) and score them on the test images."""
        test_sizes = self.data["test"][2]
        detected = self.detect(train_tokens, train_annotations, test_tokens)
        truth = [
            dict(boxes=boxes, labels=labels, crowd_boxes=crowd_boxes, crowd_labels=crowd_labels)
            for (boxes, labels), (crowd_boxes, crowd_labels) in zip(test_annotations, self.test_crowds)
        ]
        ap = detection_metrics.coco_map(truth, detected, test_sizes)
        return {
            f"det_map/{self.name}": ap["map"],
            f"det_map50/{self.name}": ap["map50"],
            f"box_class/{self.name}": self.box_accuracy(train_tokens, train_annotations, test_tokens, test_annotations),
        }

    def detect(self, train_tokens: np.ndarray, train_annotations: list, test_tokens: np.ndarray) -> list[dict]:
        vocab, max_objects = self.vocab, self.max_objects

        def targets(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return np.stack(
                [sequence_probe.detection_targets(vocab, *train_annotations[i], max_objects, rng) for i in index]
            )

        no_prompt = np.zeros((len(train_tokens), 0), np.int32)
        probe = sequence_probe.train(train_tokens, no_prompt, targets, vocab, self.decoder, progress=True)
        return sequence_probe.detections(probe, test_tokens, max_objects)

    def box_accuracy(
        self, train_tokens: np.ndarray, train_annotations: list, test_tokens: np.ndarray, test_annotations: list
    ) -> float:
        def items(annotations: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            image = np.concatenate([np.full(len(labels), i) for i, (_, labels) in enumerate(annotations)])
            boxes = np.concatenate([boxes for boxes, _ in annotations])
            labels = np.concatenate([labels for _, labels in annotations])
            return image.astype(np.int64), self.vocab.box_tokens(boxes), labels

        train_image, train_prompts, train_labels = items(train_annotations)
        test_image, test_prompts, test_labels = items(test_annotations)
        return sequence_probe.class_accuracy(
            train_tokens,
            train_prompts,
            train_labels,
            test_tokens,
            test_prompts,
            test_labels,
            self.vocab,
            self.decoder,
            train_image=train_image,
            test_image=test_image,
            progress=True,
        )
