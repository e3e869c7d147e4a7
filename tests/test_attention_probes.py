import numpy as np
import pytest

from rlvis.evaluators import attention_probes, probes

CLASSES, DIM, TOKENS = 5, 32, 17
STEPS = 300


def _hidden_token(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens [n, 17, 32]: one token at a random position carries a marker + its class centre; the others carry
    other classes' centres without the marker, so pooling all tokens mixes the true class with distractors."""
    fixed = np.random.default_rng(99)
    centres = fixed.normal(size=(CLASSES, DIM)) * 1.5
    marker = fixed.normal(size=DIM) * 1.5
    rng = np.random.default_rng(seed)
    y = rng.integers(CLASSES, size=n)
    distractors = rng.integers(CLASSES, size=(n, TOKENS))
    tokens = centres[distractors] + rng.normal(size=(n, TOKENS, DIM)) * 0.5
    where = rng.integers(1, TOKENS, size=n)  # never the CLS slot, which is just another distractor here
    tokens[np.arange(n), where] = centres[y] + marker + rng.normal(size=(n, DIM)) * 0.5
    return tokens.astype(np.float32), y.astype(np.int32)


def _grid_scenes(n: int, seed: int, grid: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CLS + grid×grid patch tokens, patch k = centre of cell k's (random) class + noise, with no position code;
    a box ≈ one cell (jittered inside it), labelled with that cell's class."""
    centres = np.random.default_rng(99).normal(size=(CLASSES, DIM)) * 1.5
    rng = np.random.default_rng(seed)
    cell_classes = rng.integers(CLASSES, size=(n, grid * grid))
    patches = centres[cell_classes] + rng.normal(size=(n, grid * grid, DIM)) * 0.5
    cls = rng.normal(size=(n, 1, DIM))
    tokens = np.concatenate([cls, patches], axis=1).astype(np.float32)
    cell = rng.integers(grid * grid, size=n)
    size = 1 / grid * rng.uniform(0.6, 1.0, size=(n, 2))
    start = np.stack([cell // grid, cell % grid], 1) / grid + rng.uniform(0, 1, size=(n, 2)) * (1 / grid - size)
    boxes = np.concatenate([start, size], 1).astype(np.float32)
    return tokens, boxes, cell_classes[np.arange(n), cell].astype(np.int32)


@pytest.fixture(scope="module")
def hidden():
    return _hidden_token(800, 0), _hidden_token(400, 1)


def test_map_probe_finds_the_one_informative_token(hidden):
    (x, y), (tx, ty) = hidden
    acc = attention_probes.map_probe(x, y, tx, ty, CLASSES, steps=STEPS)
    assert acc > 0.9
    pooled = probes.linear_probe(x.mean(1), y, tx.mean(1), ty, CLASSES, steps=200)
    assert pooled < acc - 0.3  # the data need attention: mean pooling drowns the signal in distractors


def test_map_probe_on_random_labels_is_near_chance(hidden):
    (x, _), (tx, ty) = hidden
    noise = np.random.default_rng(3).integers(CLASSES, size=len(x)).astype(np.int32)
    assert attention_probes.map_probe(x, noise, tx, ty, CLASSES, steps=STEPS) < 0.35  # chance is 0.2


def test_decoder_probe_classifies(hidden):
    (x, y), (tx, ty) = hidden
    assert attention_probes.decoder_probe(x, y, tx, ty, CLASSES, steps=STEPS) > 0.9


def test_decoder_probe_reads_the_class_inside_the_box():
    x, boxes, y = _grid_scenes(1200, 0)
    tx, tboxes, ty = _grid_scenes(400, 1)
    acc = attention_probes.decoder_probe(x, y, tx, ty, CLASSES, train_boxes=boxes, test_boxes=tboxes, steps=STEPS)
    rng = np.random.default_rng(2)
    shuffled = attention_probes.decoder_probe(
        x, y, tx, ty, CLASSES, train_boxes=rng.permutation(boxes), test_boxes=rng.permutation(tboxes), steps=STEPS
    )
    assert acc > 0.9
    assert shuffled < 0.5 and acc - shuffled > 0.4  # boxes that don't match their items carry nothing


def test_same_seed_same_accuracy(hidden):
    (x, y), (tx, ty) = hidden
    x, y = x[:200], y[:200]
    runs = [attention_probes.map_probe(x, y, tx, ty, CLASSES, steps=30, seed=s) for s in (5, 5)]
    runs += [attention_probes.decoder_probe(x, y, tx, ty, CLASSES, steps=30, seed=s) for s in (5, 5)]
    assert runs[0] == runs[1] and runs[2] == runs[3]
