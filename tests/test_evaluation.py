"""Value maps on a hand-built model and the TFDS evaluator on a dataset the test prepares (no TensorFlow)."""

import io

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from configs import demo
from rlvis import methods
from rlvis.evaluators import suite, value_maps
from rlvis.models import ab_model

COLOURS = [(220, 40, 40), (40, 200, 60), (50, 60, 230)]


def _tiny_model(config):
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, size, size, 1), np.float32),
                        np.tile(np.float32([0, 0, 1, 1]), (1, config.env.views - 1, 1)), np.zeros((1, config.clip.caption_length),
                                                                                   np.int32))
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
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3)),
            "label": tfds.features.ClassLabel(names=["red", "green", "blue"])}))

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
    config = demo.get_config("tiny")
    config.data.format, config.data.canvas = "webdataset", 48  # RGB canvas; the evaluator never reads data.path
    config.evals.tfds.update(final=True, name="colour_squares", data_dir=str(tmp_path), max_train=60, max_test=30)
    config.evals.demo.final = config.evals.foresight.final = False
    model = methods.build_model(config)
    size = config.env.view_size
    params = model.init(jax.random.PRNGKey(0), np.zeros((1, size, size, 3), np.float32),
                        np.zeros((1, config.env.views - 1, 4), np.int32),
                        np.zeros((1, config.clip.caption_length), np.int32))
    encode = lambda p, views: model.apply(p, views, method=ab_model.ABModel.encode)  # noqa: E731
    evaluators = suite.build(config, encode, 3, "final")
    assert list(evaluators) == ["tfds"]
    scores = suite.run_all(evaluators, params)
    assert set(scores) == {"linear/colour_squares", "knn10/colour_squares", "knn20/colour_squares",
                           "knn100/colour_squares", "knn200/colour_squares", "fewshot1/colour_squares",
                           "fewshot5/colour_squares", "fewshot10/colour_squares"}  # 20 per class: no 25-shot
    assert scores["knn10/colour_squares"] > 0.9 and scores["linear/colour_squares"] > 0.9
    assert set(scores) == set(evaluators["tfds"].tasks)
