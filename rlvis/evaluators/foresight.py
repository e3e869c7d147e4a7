"""Foresight: does the value head predict what a move will show better than reading the source view does?

The value head is trained to answer "which annotations will I see if I move the view like this?". On held-out
scenes (digits never seen in pre-training, boxes known) this evaluator asks it that question for every ordered
pair of views (x_i → x_j) of each scene, sampled as in training (`env.views` RandomResizedCrops with
`env.scale`), and scores three predictors of "which digit class is at the destination":
  * value       argmax_c Q(c | x_i, a_{i→j}): the value head, which never sees x_j;
  * invariance  argmax_c p(c | x_i): the base model on the *source* view ("what I see here"), the answer of a
                model that ignores the move;
  * brute_force argmax_c p(c | x_j): the base model on the *destination* view (render it and look), the
                ceiling the value head's targets come from;
  * source_crop argmax_c p(c | crop of x_i): the base model on the part of the *source view's own pixels* that
                the destination covers, cut out and enlarged to a view (the whole source view when they do not
                overlap). It tells whether the source view holds what the value head should foresee: on zoom-ins
                it is the value head's ceiling given its input, so a value head far below it failed to learn,
                not to see.
  * other_move  the value head's answer for *another* of the source's moves (the previous destination's, cyclically;
                `other_move_scores`) scored against this destination: what the head says when given the wrong move. Value above it
                means the head uses where the view moves; value equal to it means it predicts the source's scene
                whatever the action (as a scene-level reader better than invariance can still do). Needs
                `env.views` ≥ 3.
A prediction is right when it names a digit with at least half its box inside the destination box; pairs whose
destination holds no such digit are left out, and `chance` is the expected score of a uniform guess.
Scores are given for all pairs, for zoom-ins (destination ≥ 90 % inside the source: everything needed is visible)
and by source/destination IoU bucket (objectives/td.py). A value head that learned something beyond the source
view scores above invariance, most visibly at low IoU; one that reads the destination perfectly from the source
approaches brute force.

Scenes and class exemplars are disjoint sets of held-out probe-train digits (never the probe-test digits the
final probes report), so foresight can be used to tune on.
Digit classes from annotations: every predictor gives a distribution over the run's annotation vocabulary, as in
training, and a class's probability is the mass on its annotations. SimCLR: the vocabulary is 40 held-out centred
digits per class, each its own annotation (as the annotation batch's images are in training); CLIP: the captions
"a 0" … "a 9"; DINO: the prototypes, spread over classes by P(c | k) ∝ the mean prototype distribution of class
c's exemplars. The three predictors are read the same way, so only what they look at differs.
"""

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rlvis import methods, storage
from rlvis.data import digits as digits_lib
from rlvis.envs import crop_env
from rlvis.evaluators import value_maps
from rlvis.models.ab_model import ABModel
from rlvis.objectives import td

PREDICTORS = ("value", "other_move", "invariance", "brute_force", "source_crop", "chance")
BUCKETS = ("all", "zoom_in", "zoom_out", *td.IOU_BUCKETS)
_SCENE_SEED, _VIEW_SEED = 2025, 11
ZOOM_IN = 0.9  # destination at least this fraction inside the source
ZOOM_OUT = 0.9  # source at least this fraction inside the destination (and not a zoom-in)
DIGIT_INSIDE = 0.5  # a digit is "at the destination" when at least this fraction of its box is inside
EXEMPLARS_PER_CLASS = 40


def pair_geometry(boxes: np.ndarray) -> dict[str, np.ndarray]:
    """boxes [S, n, 4] → per ordered pair [S, n, n-1]: `iou`, `contained` (fraction of the destination inside
    the source) and `covered` (fraction of the source inside the destination)."""
    pairs = crop_env.pair_indices(boxes.shape[1])
    source, destination = boxes[:, :, None], boxes[:, pairs]
    overlap = np.asarray(crop_env.intersection(source, destination))
    return dict(
        iou=np.asarray(crop_env.iou(source, destination)),
        contained=overlap / (destination[..., 2] * destination[..., 3]),
        covered=overlap / (source[..., 2] * source[..., 3]),
    )


def digits_in_views(
    view_boxes: np.ndarray, digit_boxes: np.ndarray, labels: np.ndarray, num_classes: int = 10
) -> np.ndarray:
    """bool [S, n, C]: classes with a digit at least DIGIT_INSIDE inside each view. view_boxes [S, n, 4],
    digit_boxes [S, D, 4], labels [S, D] (-1 = no digit)."""
    inside = np.asarray(crop_env.intersection(view_boxes[:, :, None], digit_boxes[:, None]))  # [S, n, D]
    inside = inside / np.maximum(digit_boxes[:, None, :, 2] * digit_boxes[:, None, :, 3], 1e-9)
    present = (inside >= DIGIT_INSIDE) & (labels[:, None] >= 0)
    one_hot = labels[..., None] == np.arange(num_classes)  # [S, D, C]
    return np.einsum("snd,sdc->snc", present, one_hot) > 0


def bucket_masks(
    keep: np.ndarray, iou: np.ndarray, contained: np.ndarray, covered: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Pairs to score [P] (bool) and their geometry [P] → {bucket: mask [P]}, in `BUCKETS` order; `zoom_out` only
    when `covered` is given."""
    zoom_in = contained >= ZOOM_IN
    masks = {"all": keep, "zoom_in": keep & zoom_in}
    if covered is not None:
        masks["zoom_out"] = keep & (covered >= ZOOM_OUT) & ~zoom_in
    masks.update({name: keep & mask for name, mask in td.iou_bucket_masks(iou).items()})
    return masks


def foresight_scores(
    value: np.ndarray,
    source: np.ndarray,
    destination: np.ndarray,
    truth: np.ndarray,
    iou: np.ndarray,
    contained: np.ndarray,
    source_crop: np.ndarray | None = None,
    other_move: np.ndarray | None = None,
    covered: np.ndarray | None = None,
) -> dict[str, float]:
    """Class scores per pair [P, C] of the predictors, the destination's classes truth [P, C] (bool), and the
    pairs' geometry [P] → {"foresight/<predictor>/<bucket>": accuracy}. A bucket with no pair is left out, and
    so are `source_crop` and `other_move` when they are not given, and `zoom_out` without `covered`.

    Zoom-outs are apart because reading the source is nearly the best answer there: every digit of the source is
    in the destination, and shown larger in the source than in the wide destination view."""
    masks = bucket_masks(truth.any(-1), iou, contained, covered)
    rows = np.arange(len(truth))
    predictions = dict(
        value=value, other_move=other_move, invariance=source, brute_force=destination, source_crop=source_crop
    )
    hits = {name: truth[rows, np.argmax(scores, -1)] for name, scores in predictions.items() if scores is not None}
    hits["chance"] = truth.mean(-1)
    return {
        f"foresight/{predictor}/{bucket}": float(hits[predictor][mask].mean())
        for predictor in PREDICTORS
        if predictor in hits
        for bucket, mask in masks.items()
        if mask.any()
    }


def other_move_scores(q: jax.Array) -> jax.Array:
    """Value scores [S, n, n-1, C] (source, destination k of `crop_env.pair_indices`, class) → the same, each
    destination given the answer for the source's previous destination (cyclically): the value head's prediction
    with the wrong move. Needs n - 1 ≥ 2 destinations per source."""
    return jnp.roll(q, 1, axis=2)


def source_crop_boxes(actions: np.ndarray) -> np.ndarray:
    """Relative actions [..., 4] → the destination's part inside the source view, in the source view's frame
    [..., 4]; the whole view where they do not overlap."""
    low = np.clip(actions[..., :2], 0.0, 1.0)
    high = np.clip(actions[..., :2] + actions[..., 2:], 0.0, 1.0)
    overlaps = np.all(high - low > 1e-3, axis=-1, keepdims=True)
    return np.where(overlaps, np.concatenate([low, high - low], axis=-1), crop_env.FULL_BOX)


def _validation_digits(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exemplars [10·E, 32, 32, 1] class by class, scene digits, their labels), all from the held-out probe-train
    digits and disjoint: foresight never reads the probe-test digits, so it can be tuned on."""
    splits = digits_lib.load_digits(config.eval.digits_per_class)
    images, labels = splits.probe_train_images, splits.probe_train_labels
    per_class = min(EXEMPLARS_PER_CLASS, np.bincount(labels, minlength=10).min() // 2)
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(labels)), chosen)
    exemplars = np.stack([digits_lib.centred_digit(images[i])["image"] for i in chosen])
    return exemplars, images[rest], labels[rest]


def digit_vocabulary(
    model: ABModel, params, config: ml_collections.ConfigDict, channels: int, exemplars: np.ndarray | None = None
) -> tuple[methods.Annotations, jax.Array]:
    """The run's annotation vocabulary and class_of_annotation [V, C], the share of each annotation in each digit
    class, so that a distribution over annotations becomes one over classes by a matrix product. `exemplars`
    [10·E, H, W, C] class-major (default: the held-out exemplars of `_validation_digits`)."""
    if exemplars is None:
        exemplars = _validation_digits(config)[0]
        exemplars = np.repeat(exemplars, channels // exemplars.shape[-1], axis=-1)
    views = jax.vmap(
        lambda im: crop_env.observe(im, jnp.array(im.shape[:2]), jnp.asarray(crop_env.FULL_BOX), config.env.view_size)
    )(jnp.asarray(exemplars))
    tokens = model.apply(params, views, method=ABModel.encode)
    return methods.get(config).digit_vocabulary(model, params, config, tokens, channels)


class Evaluator:
    """Evaluator(encode_fn, config, channels).run(params) yields ("foresight/<predictor>/<bucket>", acc).

    `params` are a full network's (value head and heads included), as the trainer's state holds them.
    """

    def __init__(self, encode_fn, config: ml_collections.ConfigDict, channels: int = 1):
        self.config, self.channels = config, channels
        self.method = methods.get(config)
        self.model = self.method.build_model(config)
        exemplars, scene_digits, scene_labels = _validation_digits(config)
        self.exemplars = np.repeat(exemplars, channels // exemplars.shape[-1], axis=-1)
        scenes = digits_lib.compose_scenes(
            np.random.default_rng(_SCENE_SEED), scene_digits, scene_labels, config.eval.foresight_scenes, config.data
        )
        images = np.repeat(scenes["image"], channels // scenes["image"].shape[-1], axis=-1)
        rollout = crop_env.batch_rollout(
            jax.random.PRNGKey(_VIEW_SEED),
            jnp.asarray(images),
            jnp.asarray(scenes["valid"]),
            num_views=config.env.views,
            size=config.env.view_size,
            scale=tuple(config.env.scale),
            ratio=tuple(config.env.ratio),
        )
        self.views, self.actions = rollout["views"], rollout["actions"]
        size, n = config.env.view_size, config.env.views
        sources = jnp.repeat((self.views + 1.0) * 127.5, n - 1, axis=1).reshape(-1, size, size, channels)
        crop_boxes = jnp.asarray(source_crop_boxes(np.asarray(self.actions)).reshape(-1, 4))
        self.source_crops = jax.jit(
            jax.vmap(lambda image, box: crop_env.observe(image, jnp.array([size, size]), box, size))
        )(sources, crop_boxes)  # [S·n·(n-1), size, size, C]
        boxes = np.asarray(rollout["boxes"])
        pairs = crop_env.pair_indices(config.env.views)
        self.view_digits = digits_in_views(boxes, scenes["boxes"], scenes["labels"])  # [S, n, C]
        self.truth = self.view_digits[:, pairs].reshape(-1, 10)  # destination of each pair
        geometry = pair_geometry(boxes)
        self.iou, self.contained, self.covered = (geometry[k].reshape(-1) for k in ("iou", "contained", "covered"))
        self.pairs = pairs
        self.tasks = tuple(f"foresight/{p}/{b}" for p in PREDICTORS for b in BUCKETS)
        self._predict = jax.jit(self._class_scores)

    def _class_scores(self, params, annotations: methods.Annotations, class_of_annotation: jax.Array):
        """(value, source, destination, source_crop, other_move) class probabilities [P, C] for every ordered pair
        (other_move: None with 2 views): distributions over the annotation vocabulary, summed per class."""
        model, (s, n) = self.model, self.views.shape[:2]
        tokens = model.apply(params, self.views, method=ABModel.encode)  # [S, n, T, D]
        p_views = value_maps.base_distribution(model, params, annotations, tokens)  # [S, n, V]
        q = value_maps.q_distribution(
            model,
            params,
            self.config,
            tokens.reshape(s * n, *tokens.shape[2:]),
            self.actions.reshape(s * n, n - 1, 4),
            annotations,
        )
        q = q.reshape(s, n, n - 1, -1) @ class_of_annotation
        base = p_views @ class_of_annotation  # [S, n, C]
        source = jnp.broadcast_to(base[:, :, None], q.shape)
        destination = base[:, self.pairs]
        crop_tokens = model.apply(params, self.source_crops, method=ABModel.encode)
        source_crop = value_maps.base_distribution(model, params, annotations, crop_tokens) @ class_of_annotation
        other_move = other_move_scores(q) if n > 2 else None
        return tuple(
            x if x is None else x.reshape(-1, x.shape[-1]) for x in (q, source, destination, source_crop, other_move)
        )

    def _annotations(self, params) -> tuple[methods.Annotations, jax.Array]:
        return digit_vocabulary(self.model, params, self.config, self.channels, self.exemplars)

    def run(self, params) -> Iterator[tuple[str, float]]:
        annotations, class_of_annotation = self._annotations(params)
        value, source, destination, source_crop, other_move = (
            None if x is None else np.asarray(x) for x in self._predict(params, annotations, class_of_annotation)
        )
        yield from foresight_scores(
            value, source, destination, self.truth, self.iou, self.contained, source_crop, other_move, self.covered
        ).items()


def plot(scores: dict[str, float], path: str, title: str = "") -> str:
    """One picture: per bucket, value vs invariance vs brute force vs chance. Value above invariance means the
    head foresees beyond the source view; its distance to brute force is what is left to learn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "value": "tab:red",
        "other_move": "salmon",
        "invariance": "tab:blue",
        "brute_force": "tab:green",
        "source_crop": "tab:olive",
        "chance": "0.6",
    }
    figure, axis = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / len(PREDICTORS)
    for p, predictor in enumerate(PREDICTORS):
        heights = [scores.get(f"foresight/{predictor}/{bucket}", np.nan) for bucket in BUCKETS]
        axis.bar(np.arange(len(BUCKETS)) + p * width, heights, width, label=predictor, color=colours[predictor])
    axis.set_xticks(np.arange(len(BUCKETS)) + 0.4 - width / 2, BUCKETS)
    axis.set_ylabel("destination digit named"), axis.set_ylim(0, 1), axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8, ncol=len(PREDICTORS))
    axis.set_title(title or "foresight on held-out scenes: Q(c | x_i, a) vs p(c | x_i) vs p(c | x_j)", fontsize=9)
    figure.tight_layout()
    storage.save_figure(figure, path, dpi=110)
    plt.close(figure)
    return path
