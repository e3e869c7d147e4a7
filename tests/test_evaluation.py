"""Value maps on a hand-built model and the TFDS evaluator on a dataset the test prepares (no TensorFlow)."""

import io

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import demo
from rlvis import methods
from rlvis.evaluators import suite, tfds_tasks, value_maps
from rlvis.models import ab_model

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230)]


def _tiny_model(config):
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(
        jax.random.PRNGKey(0),
        np.zeros((1, size, size, 1), np.float32),
        np.tile(np.float32([0, 0, 1, 1]), (1, config.env.views - 1, 1)),
    )  # no captions: not CLIP
    return model, params


def test_candidate_boxes_tile_the_image_at_each_zoom():
    boxes = value_maps.candidate_boxes(grid=3, zooms=(0.5, 1.0))
    assert boxes.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(boxes[0, 1, 1], [0.25, 0.25, 0.5, 0.5])  # centred
    np.testing.assert_allclose(boxes[0, 0, 2], [0.0, 0.5, 0.5, 0.5])  # clipped into the image at the corner
    np.testing.assert_allclose(boxes[1], np.tile([0.0, 0.0, 1.0, 1.0], (3, 3, 1)))  # zoom 1: the whole image


@pytest.mark.parametrize("action_tokens", [True, False])
def test_value_map_is_a_distribution_that_depends_on_the_action_only_with_action_tokens(action_tokens):
    config = demo.get_config("tiny")
    config.ab.action_tokens = action_tokens
    model, params = _tiny_model(config)
    scene = value_maps._demo_scene(config)
    annotations = methods.get(config).annotations(model, params, config)
    vocabulary, names = annotations.ab, annotations.names
    assert names == tuple(str(c) for c in range(10)) and vocabulary.shape == (10, config.model.proj_dim)
    boxes = value_maps.candidate_boxes(grid=4, zooms=(0.3, 0.6))
    p = value_maps.predict(model, params, config, scene["image"], scene["valid"], boxes, annotations)
    assert p.shape == (2, 4, 4, 10)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    spread = float(np.abs(p - p.mean(axis=(0, 1, 2))).max())
    assert (spread > 1e-4) if action_tokens else (spread < 1e-6)  # the mask-token ablation cannot tell moves apart


class ColourSquares(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Three colour classes with noise: separable even by a random-init encoder's features."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["red", "green", "blue"]),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(60, seed=0), "test": self._generate_examples(30, seed=1)}

    def _generate_examples(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        for i in range(n):
            label = i % 3
            image = np.clip(np.array(COLOURS[label]) + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            yield f"{seed}-{i}", dict(image=buffer.getvalue(), label=label)


def test_tfds_evaluator_probes_a_prepared_dataset_without_tensorflow(tmp_path):
    ColourSquares(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    config = demo.get_config("tiny,data=webdataset,evals=tfds")
    config.data.canvas = 48  # RGB canvas; the evaluator never reads data.path
    config.evals.tfds.update(final=True, name="colour_squares", data_dir=str(tmp_path), max_train=60, max_test=30)
    config.evals.tfds_decoder = dict(
        config.evals.tfds.to_dict(),
        probes=("decoder",),
        decoder=dict(depth=1, width=32, heads=2, steps=150, batch_size=32, learning_rate=3e-3),
    )
    config.evals.demo.final = config.evals.foresight.final = False
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(
        jax.random.PRNGKey(0),
        np.zeros((1, size, size, 3), np.float32),
        np.zeros((1, config.env.views - 1, 4), np.int32),
    )
    encode = lambda p, views: model.apply(p, views, method=ab_model.ABModel.encode)
    evaluators = suite.build(config, encode, 3, "final")
    assert list(evaluators) == ["tfds", "tfds_decoder"]
    scores = suite.run_all(evaluators, params)
    assert set(scores) == {
        "linear/colour_squares",
        "knn10/colour_squares",
        "knn20/colour_squares",
        "knn100/colour_squares",
        "knn200/colour_squares",
        "fewshot1/colour_squares",
        "fewshot5/colour_squares",
        "fewshot10/colour_squares",  # 20 per class: no 25-shot
        "decoder/colour_squares",
    }
    assert scores["knn10/colour_squares"] > 0.9 and scores["linear/colour_squares"] > 0.9
    assert scores["decoder/colour_squares"] > 0.9  # the decoder probe names the class as a one-token sequence
    assert set(scores) == set(evaluators["tfds"].tasks) | set(evaluators["tfds_decoder"].tasks)


def test_clevr_label_spaces_are_vtabs():
    objects = lambda depths: dict(
        size=np.zeros(len(depths), np.int64), pixel_coords=np.array([[10.0, 20.0, d] for d in depths], np.float32)
    )
    assert tfds_tasks.clevr_labels("clevr_count", objects([9.0] * 3)) == 0  # 3 objects: VTAB's first class
    assert tfds_tasks.clevr_labels("clevr_count", objects([9.0] * 10)) == 7
    with pytest.raises(ValueError, match="3–10 objects"):
        tfds_tasks.clevr_labels("clevr_count", objects([9.0] * 2))
    # The nearest object's depth, binned at 0 / 8 / 8.5 / 9 / 9.5 / 10: the largest edge below it.
    for depths, label in (
        ([12.0, 7.9, 11.0], 0),
        ([8.0, 13.0, 9.0], 0),
        ([8.2, 9.0, 9.9], 1),
        ([9.25] * 3, 3),
        ([10.5, 12.0, 11.0], 5),
    ):
        assert tfds_tasks.clevr_labels("clevr_distance", objects(depths)) == label, depths


class ClevrLike(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """CLEVR's features as TFDS declares them (an `objects` sequence with sizes and pixel coordinates)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "objects": tfds.features.Sequence(
                        {
                            "size": tfds.features.ClassLabel(names=["small", "large"]),
                            "pixel_coords": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                        }
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(24, seed=0), "validation": self._generate_examples(8, seed=1)}

    def _generate_examples(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        for i in range(n):
            count = 3 + i % 8
            image = np.zeros((32, 48, 3), np.uint8)
            image[:, : count * 4] = 255  # the count is visible
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, "PNG")
            coords = np.stack(
                [rng.uniform(0, 48, count), rng.uniform(0, 32, count), rng.uniform(7.5, 12.0, count)], 1
            ).astype(np.float32)
            yield (
                f"{seed}-{i}",
                dict(image=buffer.getvalue(), objects=dict(size=rng.integers(0, 2, count), pixel_coords=coords)),
            )


@pytest.mark.parametrize("task", ["clevr_count", "clevr_distance"])
def test_tfds_evaluator_reads_clevr_labels_from_objects(tmp_path, task):
    ClevrLike(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    config = demo.get_config("tiny,data=webdataset")
    config.data.canvas = 48
    evaluator = tfds_tasks.Evaluator(
        lambda p, v: v,
        config,
        3,
        name="clevr_like",
        data_dir=str(tmp_path),
        test_split="validation",
        task=task,
        probes=("linear",),
    )
    assert (
        evaluator.tasks == (f"linear/{task}",)
        and evaluator.num_classes == {"clevr_count": 8, "clevr_distance": 6}[task]
    )
    generated = list(ClevrLike(data_dir=str(tmp_path))._generate_examples(24, seed=0))
    expected = [tfds_tasks.clevr_labels(task, example["objects"]) for _, example in generated]
    # TFDS stores a split in its own (key-hashed) order: compare the labels as multisets.
    np.testing.assert_array_equal(np.sort(evaluator.data["train"][1]), np.sort(expected))
    if task == "clevr_count":
        np.testing.assert_array_equal(np.bincount(evaluator.data["train"][1]), [3] * 8)
    with pytest.raises(ValueError, match="task='depth'"):
        tfds_tasks.Evaluator(lambda p, v: v, config, 3, name="clevr_like", data_dir=str(tmp_path), task="depth")
