"""The paper's scene-level probes: the autoregressive decoder (sequence_probe), COCO mAP by pycocotools, the
COCO-instances and VISOR readers, and the detection evaluator on a COCO-format folder the test writes."""

import io
import json
import pickle
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from configs import cc12m, demo
from rlvis import config_lib, evaluate, methods
from rlvis.data.coco import COCOSource
from rlvis.data.visor import VISORSource
from rlvis.evaluators import detection, detection_metrics, presets, sequence_probe, suite
from rlvis.models import ab_model

SIZE = np.array([[100, 100]])
BOX = np.array([[0.1, 0.1, 0.4, 0.4]])  # 40 × 40 px: a "medium" COCO object


def _map(predicted_boxes, labels, scores, truth_boxes=BOX, truth_labels=(1,)) -> dict:
    truth = [dict(boxes=np.asarray(truth_boxes), labels=np.asarray(truth_labels))]
    return detection_metrics.coco_map(
        truth, [dict(boxes=np.asarray(predicted_boxes), labels=np.asarray(labels), scores=np.asarray(scores))], SIZE
    )


def test_coco_map_on_hand_computed_cases():
    assert _map(BOX, [1], [0.9])["map"] == pytest.approx(1.0)
    # Shifted 10 px right: IoU = 40·30 / (40·50) = 0.6, a match at thresholds 0.50, 0.55, 0.60 of the ten.
    shifted = _map([[0.1, 0.2, 0.4, 0.4]], [1], [0.9])
    assert shifted["map50"] == pytest.approx(1.0) and shifted["map75"] == 0.0
    assert shifted["map"] == pytest.approx(0.3)
    # A better-scored false positive (same size class) first: precision 1/2 at recall 1.
    assert _map([[0.5, 0.5, 0.4, 0.4], BOX[0]], [1, 1], [0.9, 0.5])["map"] == pytest.approx(0.5)
    # The right box with the wrong class finds nothing; the same false positive ranked last costs nothing.
    assert _map(BOX, [2], [0.9])["map"] == 0.0
    assert _map([BOX[0], [0.5, 0.5, 0.4, 0.4]], [1, 1], [0.9, 0.5])["map"] == pytest.approx(1.0)
    # One of two objects found: precision 1 up to recall 0.5 on COCO's 101-point recall grid.
    two = _map(BOX, [1], [0.9], truth_boxes=[BOX[0], [0.55, 0.55, 0.4, 0.4]], truth_labels=[1, 1])
    assert two["map"] == pytest.approx(51 / 101)


def test_coco_map_geometry_on_a_wide_image_and_crowd_regions():
    """Fractions (y0, x0, h, w) of a 100 × 300 image: a tall box and its transpose are different boxes."""
    tall = np.array([[0.1, 0.1, 0.8, 0.1]])  # 80 px high, 30 px wide
    truth = [dict(boxes=tall, labels=np.array([1]))]

    def score(boxes, scores=(0.9,), crowd=None):
        image = dict(truth[0], **(crowd or {}))
        return detection_metrics.coco_map(
            [image],
            [dict(boxes=np.asarray(boxes), labels=np.ones(len(scores)), scores=np.asarray(scores))],
            np.array([[100, 300]]),
        )["map"]

    assert score(tall) == pytest.approx(1.0)
    assert score([[0.1, 0.1, 0.1, 0.8]]) == 0.0  # h and w swapped: 10 × 240 px, no overlap worth a match
    # A better-scored detection on a crowd region is ignored, not a false positive.
    on_crowd = [[0.0, 0.6, 1.0, 0.4], tall[0]]
    crowd = dict(crowd_boxes=np.array([[0.0, 0.5, 1.0, 0.5]]), crowd_labels=np.array([1]))
    assert score(on_crowd, (0.9, 0.5)) == pytest.approx(0.5)
    assert score(on_crowd, (0.9, 0.5), crowd) == pytest.approx(1.0)


def test_the_loss_never_trains_the_prompt_or_padding():
    outputs = np.array([[7, 8, 9, 10, 3, sequence_probe.EOS, sequence_probe.PAD]])  # prompt of 4, class, EOS, PAD
    np.testing.assert_array_equal(sequence_probe.loss_weights(outputs, 4), [[0, 0, 0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(sequence_probe.loss_weights(outputs, 0), [[1, 1, 1, 1, 1, 1, 0]])


def test_greedy_decoding_after_a_prompt_is_the_masked_argmax_of_the_teacher_forced_logits():
    vocab = sequence_probe.Vocabulary(bins=8, num_classes=3)
    model = sequence_probe.SequenceDecoder(vocab.size, width=16, depth=2, heads=2, max_length=12)
    rng = np.random.default_rng(0)
    memory = rng.normal(size=(3, 5, 8)).astype(np.float32)
    prompts = vocab.box_tokens(rng.uniform(0, 0.5, (3, 4)))
    params = model.init(jax.random.PRNGKey(1), memory, np.ones((3, 11), np.int32))
    probe = sequence_probe.TrainedProbe(model, params, vocab, [])
    is_class = (False, True, False, False, True)
    tokens, probs, eos = sequence_probe.decode(probe, memory, prompts, is_class)
    sequence = np.concatenate([np.full((3, 1), sequence_probe.BOS), prompts, tokens], axis=1)
    logits = np.asarray(model.apply(params, memory, sequence[:, :-1]))[:, 4:]  # the predictions of the 5 tokens
    allowed = sequence_probe._allowed(vocab, is_class)
    masked = np.where(allowed[None], logits, -np.inf)
    np.testing.assert_array_equal(tokens, masked.argmax(-1))
    expected = np.exp(masked - masked.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, np.take_along_axis(expected, tokens[..., None], -1)[..., 0], rtol=1e-4)
    assert np.all(tokens[:, [1, 4]] >= vocab.first_class) and np.all(tokens[:, [0, 2, 3]] < vocab.first_class)
    found = sequence_probe.detections(probe, memory, max_objects=2)
    for image in found:
        assert image["boxes"].shape == (2, 4) and np.all((image["scores"] >= 0) & (image["scores"] <= 1))
        assert np.all(image["boxes"][:, 2:] >= 0) and np.all(image["labels"] >= 0)


def test_box_tokens_round_trip_and_detection_targets():
    vocab = sequence_probe.Vocabulary(bins=101, num_classes=3)
    boxes = np.array([[0.1, 0.2, 0.3, 0.5], [0.0, 0.0, 1.0, 1.0]], np.float32)
    tokens = vocab.box_tokens(boxes)
    assert tokens.min() >= sequence_probe.FIRST_BIN and tokens.max() < vocab.first_class
    np.testing.assert_allclose(vocab.boxes(tokens), boxes, atol=0.5 / 100 + 1e-6)
    target = sequence_probe.detection_targets(vocab, boxes, np.array([2, 0]), max_objects=3)
    assert target.shape == (16,)
    np.testing.assert_array_equal(
        target[:10], np.concatenate([tokens[0], [vocab.first_class + 2], tokens[1], [vocab.first_class]])
    )
    assert target[10] == sequence_probe.EOS and (target[11:] == sequence_probe.PAD).all()
    shuffled = sequence_probe.detection_targets(vocab, boxes, np.array([2, 0]), 3, np.random.default_rng(1))
    assert sorted(map(tuple, shuffled[:10].reshape(2, 5))) == sorted(map(tuple, target[:10].reshape(2, 5)))
    capped = sequence_probe.detection_targets(vocab, boxes, np.array([2, 0]), max_objects=1)
    assert capped.shape == (6,) and capped[5] == sequence_probe.EOS


def test_decoder_is_causal():
    model = sequence_probe.SequenceDecoder(vocab_size=20, width=16, depth=2, heads=2, max_length=8)
    memory = np.random.default_rng(0).normal(size=(2, 5, 8)).astype(np.float32)
    ids = np.array([[1, 5, 6, 7, 8, 9], [1, 4, 4, 4, 4, 4]], np.int32)
    params = model.init(jax.random.PRNGKey(0), memory, ids)
    changed = ids.copy()
    changed[:, 4:] = 11
    before, after = model.apply(params, memory, ids), model.apply(params, memory, changed)
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)  # a position never sees later tokens
    assert np.abs(before[:, 4:] - after[:, 4:]).max() > 1e-3


def test_decoder_probe_classifies_from_tokens():
    """Classification as a one-token sequence: the class is written into one frozen token."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    tokens = rng.normal(size=(400, 6, 16)).astype(np.float32)
    tokens[np.arange(400), 2, :4] += 3 * np.eye(4)[labels]
    vocab = sequence_probe.Vocabulary(bins=2, num_classes=4)
    settings = sequence_probe.ProbeSettings(depth=1, width=32, heads=2, steps=150, batch_size=64, learning_rate=3e-3)
    probe = sequence_probe.train(
        tokens[:300], np.zeros((300, 0), np.int32), lambda i, _: vocab.class_tokens(labels[i])[:, None], vocab, settings
    )
    predicted = sequence_probe.classify(probe, tokens[300:], np.zeros((100, 0), np.int32))
    assert np.mean(predicted == labels[300:]) > 0.7  # chance 0.25
    assert probe.losses[-1] < probe.losses[0]


COLOURS = {1: (230, 40, 40), 3: (40, 220, 60)}  # COCO-style sparse category ids


def _write_coco(root, split: str, count: int, seed: int) -> None:
    """`count` 64 × 64 JPEGs on grey, each with 1–2 coloured squares, and an instances file in COCO's format."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        pixels = np.full((64, 64, 3), 90, np.uint8)
        for _ in range(rng.integers(1, 3)):
            side = int(rng.integers(18, 30))
            x, y = (int(v) for v in rng.integers(0, 64 - side, 2))
            category = int(rng.choice(list(COLOURS)))
            pixels[y : y + side, x : x + side] = COLOURS[category]
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=category,
                    iscrowd=0,
                    bbox=[x, y, side, side],
                    area=side * side,
                )
            )
        name = f"{i + 1:012d}.jpg"
        Image.fromarray(pixels).save(root / split / name, quality=95)
        images.append(dict(id=i + 1, file_name=name, height=64, width=64))
    categories = [dict(id=c, name=f"class{c}") for c in COLOURS]
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps(dict(images=images, annotations=annotations, categories=categories))
    )


def test_coco_instances_without_captions(tmp_path):
    _write_coco(tmp_path, "val2017", 3, seed=0)
    source = COCOSource(tmp_path, "val2017", captions=False)
    assert len(source) == 3 and source[0]["caption"] is None and len(source[0]["boxes"]) >= 1
    with pytest.raises(FileNotFoundError, match="captions_val2017.json"):
        COCOSource(tmp_path, "val2017")  # the default still reads captions


def test_detection_probe_beats_a_shuffled_box_control(tmp_path):
    _write_coco(tmp_path, "train2017", 160, seed=0)
    _write_coco(tmp_path, "val2017", 60, seed=1)
    config = demo.get_config("tiny,data=coco")
    config.data.canvas = 64
    config.evals = dict(
        coco=dict(
            type="detection",
            final=True,
            every=0,
            format="coco",
            root=str(tmp_path),
            max_objects=2,
            view_size=32,
            decoder=dict(depth=2, width=64, heads=4, steps=300, batch_size=64, bins=33, learning_rate=3e-3),
        )
    )
    model = methods.build_model(config)
    params = model.init(
        jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32), np.zeros((1, config.env.views - 1, 4), np.float32)
    )
    encode = lambda p, views: model.apply(p, views, method=ab_model.ABModel.encode)
    evaluator = suite.build(config, encode, 3, "final")["coco"]
    assert evaluator.tasks == ("det_map/coco", "det_map50/coco", "box_class/coco")
    tokens = evaluator.encode(params)
    train, test = evaluator.data["train"][1], evaluator.data["test"][1]
    scores = evaluator.score(tokens["train"], train, tokens["test"], test)
    shuffled = [train[i] for i in np.random.default_rng(0).permutation(len(train))]  # boxes of other images
    control = evaluator.score(tokens["train"], shuffled, tokens["test"], test)
    assert scores["det_map50/coco"] > control["det_map50/coco"] + 0.1, (scores, control)
    assert scores["box_class/coco"] > control["box_class/coco"] + 0.2, (scores, control)


def _write_visor(root, zipped: bool) -> None:
    frames = {
        "P01_01_frame_0000000010.jpg": [
            dict(name="left hand", class_id=300, segments=[[[960, 540], [1920, 540], [1440, 1080]]]),
            dict(name="knife", class_id=4, segments=[[[0, 0], [192, 108]], [[96, 216]]]),
            dict(name="nothing", class_id=7, segments=[]),
        ],
        "P01_01_frame_0000000001.jpg": [],
    }
    video = [
        dict(image=dict(name=name, video="P01_01", image_path=f"P01_01/{name}"), annotations=objects)
        for name, objects in frames.items()
    ]
    (root / "annotations/train").mkdir(parents=True)
    (root / "annotations/train/P01_01.json").write_text(json.dumps(dict(video_annotations=video)))
    folder = root / "rgb_frames/train/P01"
    folder.mkdir(parents=True)
    jpeg = io.BytesIO()
    Image.new("RGB", (854, 480), (10, 20, 30)).save(jpeg, "JPEG")
    if zipped:
        with zipfile.ZipFile(folder / "P01_01.zip", "w") as archive:
            archive.writestr("P01_01_frame_0000000010.jpg", jpeg.getvalue())  # frame 1 missing from the zip
    else:
        (folder / "P01_01").mkdir()
        (folder / "P01_01/P01_01_frame_0000000010.jpg").write_bytes(jpeg.getvalue())


@pytest.mark.parametrize("zipped", [True, False])
def test_visor_reader_boxes_from_polygons(tmp_path, zipped):
    _write_visor(tmp_path, zipped)
    source = VISORSource(tmp_path, "train")
    assert len(source) == 2 and source.categories == {300: "left hand", 4: "knife"}
    first, second = source[0], source[1]  # frames in name order
    assert first["image"] == b"" and len(first["boxes"]) == 0  # not on disk: decode skips it as "empty"
    assert second["image"][:2] == b"\xff\xd8" and second["key"] == "train/P01_01/P01_01_frame_0000000010.jpg"
    # The tight box of every polygon point, as fractions of 1920 × 1080; an object with no point is left out.
    np.testing.assert_allclose(second["boxes"], [[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.2, 0.1]], atol=1e-6)
    np.testing.assert_array_equal(second["box_labels"], [300, 4])
    restored = pickle.loads(pickle.dumps(source))
    assert restored[1]["image"] == second["image"]


def test_detection_evaluator_reads_visor_and_refuses_bad_entries(tmp_path):
    _write_visor(tmp_path, zipped=True)
    config = demo.get_config("tiny,data=coco")
    config.data.canvas = 64
    encode = lambda p, views: views[:, :4, :4].reshape(len(views), 4, -1)
    evaluator = detection.Evaluator(
        encode,
        config,
        3,
        format="visor",
        root=str(tmp_path),
        train_split="train",
        test_split="train",
        max_objects=3,
        decoder=dict(bins=11),
    )
    assert evaluator.skipped == {"empty": 2}  # the missing frame, once per split
    assert evaluator.vocab.num_classes == 2  # class ids 4 and 300, renumbered
    assert evaluator.max_objects == 2  # no frame has more objects: sequences no longer than that
    with pytest.raises(ValueError, match="format='kitti'"):
        detection.Evaluator(encode, config, 3, format="kitti", root=str(tmp_path))


@pytest.mark.parametrize("preset", sorted(presets.PRESETS))
def test_paper_table_presets_are_valid_config_entries(preset):
    config = demo.get_config(f"tiny,evals={preset}")
    added = set(presets.PRESETS[preset]("/data"))
    assert added <= set(config.evals) and {"demo", "digits"} <= set(config.evals)  # the run's own entries stay
    for name in added:
        assert suite.check_entry(name, config.evals[name]) is None  # every field is one its evaluator takes
    if preset == "table1":
        assert {config.evals[n].task for n in added} == {"label", "clevr_count", "clevr_distance"}
        config_lib.validate(config, 1)  # TFDS's default data dir: nothing more to name
    elif preset == "tfds":  # one dataset the user names on the command line
        with pytest.raises(config_lib.ConfigError, match=r"config.evals.tfds.name must name the TFDS dataset"):
            config_lib.validate(config, 1)
        config.evals.tfds.name = "food101"
        config_lib.validate(config, 1)
    else:
        with pytest.raises(config_lib.ConfigError, match=r"root must name the dataset's folder"):
            config_lib.validate(config, 1)
        config.evals[next(iter(added))].root = "/data"
        config_lib.validate(config, 1)
    assert set(cc12m.get_config(f"method=ab_clip,evals={preset}").evals) >= added


def test_evaluate_refuses_an_unknown_preset_or_a_missing_root(capsys):
    for argv, message in ((["--evals=table9"], "not one of"), (["--evals=coco"], "needs --evals_root")):
        with pytest.raises(SystemExit) as error:
            evaluate.main(["--workdir=/nonexistent", *argv])
        assert error.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(ValueError, match="evals='table9'"):
        demo.get_config("tiny,evals=table9")
    with pytest.raises(SystemExit):
        evaluate.main(["--workdir=/nonexistent", "--evals=table1", "--probe=depht=2"])
    assert "depht=2" in capsys.readouterr().err


def test_a_smaller_probe_overrides_every_preset_entry():
    assert presets.parse_probe("depth=2,width=64,learning_rate=0.003") == dict(depth=2, width=64, learning_rate=0.003)
    config = demo.get_config("tiny")
    presets.apply(config, "table1", "/data", presets.parse_probe("steps=300"))
    assert {config.evals[name].decoder.steps for name in presets.TABLE1} == {300}
    assert config.evals.imagenet.decoder.depth == 4  # the rest stays the paper's


def test_evaluate_scores_a_checkpoint_with_a_paper_table_preset(tiny_copy, tmp_path):
    """`rlvis.evaluate --evals=coco` on a trained run: the preset's tasks join the run's own in eval/step_<S>.json."""
    _write_coco(tmp_path / "coco", "train2017", 16, seed=0)
    _write_coco(tmp_path / "coco", "val2017", 8, seed=1)
    probe = presets.parse_probe("depth=1,width=32,heads=2,steps=5,batch_size=8")
    step, scores = evaluate.evaluate_step(str(tiny_copy), evals="coco", evals_root=str(tmp_path / "coco"), probe=probe)
    written = json.loads((tiny_copy / "eval" / f"step_{step}.json").read_text())["scores"]
    assert written == scores and {"det_map/coco", "det_map50/coco", "box_class/coco", "linear/digit"} <= set(scores)
    assert 0 <= scores["det_map/coco"] <= scores["det_map50/coco"] <= 1 and 0 <= scores["box_class/coco"] <= 1


def test_a_dataset_without_boxes_is_refused_in_one_line(tmp_path):
    _write_coco(tmp_path, "val2017", 2, seed=0)
    listing = tmp_path / "annotations" / "instances_val2017.json"
    listing.write_text(json.dumps(dict(json.loads(listing.read_text()), annotations=[])))
    config = demo.get_config("tiny,data=coco")
    config.data.canvas = 64
    with pytest.raises(ValueError, match="no object boxes") as error:
        detection.Evaluator(lambda p, v: v, config, 3, format="coco", root=str(tmp_path), train_split="val2017")
    assert "\n" not in str(error.value)
