"""What several evaluators share: encoding images in batches, and the held-out digits."""

from collections.abc import Callable

import numpy as np

from rlvis.data import decode
from rlvis.data import digits as digits_lib


def encode_in_batches(
    features: Callable, params, images: np.ndarray, valid: np.ndarray, batch_size: int = 250
) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(features(params, images[i : i + batch_size], valid[i : i + batch_size]))
            for i in range(0, len(images), batch_size)
        ]
    )


class EncodedImages:
    """An evaluation set kept as its files' bytes and decoded batch by batch when encoded.

    Why: a paper-scale evaluation holds tens of thousands of images per dataset for as long as the run lives; on a
    256-px RGB canvas that is 196 KB each, as a JPEG about a tenth of that. Every image is decoded once when
    added, so a broken one is skipped and counted there, not in the middle of an evaluation.
    """

    def __init__(self, canvas: int, channels: int):
        self.canvas, self.channels = canvas, channels
        self.records: list[bytes] = []
        self.skipped: dict[str, int] = {}

    def _decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        return decode.fit_to_canvas(decode.decode(data, self.canvas, self.channels), self.canvas, min_side=1)

    def add(self, data: bytes) -> tuple[int, int] | None:
        """Keep one image; its decoded (h, w), or None (counted in `skipped`) if it cannot be read."""
        try:
            image = decode.decode(data, self.canvas, self.channels)
            decode.fit_to_canvas(image, self.canvas, min_side=1)
        except decode.BadRecord as error:
            self.skipped[error.reason] = self.skipped.get(error.reason, 0) + 1
            return None
        self.records.append(data)
        return image.shape[:2]

    def __len__(self) -> int:
        return len(self.records)

    def encode(self, features: Callable, params, batch_size: int = 250) -> np.ndarray:
        """Encoder tokens of every image, `features` as `token_features` makes it."""
        out = []
        for i in range(0, len(self.records), batch_size):
            images, valid = zip(*(self._decode(data) for data in self.records[i : i + batch_size]))
            out.append(np.asarray(features(params, np.stack(images), np.stack(valid))))
        return np.concatenate(out)


def heldout_digits(splits: digits_lib.DigitSplits) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The probe splits as centred-digit canvases: split → (images, valid, labels)."""
    data = {}
    for split, images, labels in (
        ("train", splits.probe_train_images, splits.probe_train_labels),
        ("test", splits.probe_test_images, splits.probe_test_labels),
    ):
        canvases = [digits_lib.centred_digit(d) for d in images]
        data[split] = (np.stack([c["image"] for c in canvases]), np.stack([c["valid"] for c in canvases]), labels)
    return data
