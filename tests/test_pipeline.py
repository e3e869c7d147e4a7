import numpy as np

from configs import demo
from rlvis.data import digits, pipeline


def _streams(process_index=0, process_count=1):
    config = demo.get_config("tiny")
    splits = digits.load_digits(config.eval.digits_per_class)
    return config, pipeline.training_streams(config, splits, process_index, process_count)


def test_batches_have_fixed_canvas_and_valid_sizes():
    config, streams = _streams()
    it = pipeline.make_iterator(streams["bootstrap"], config)
    batch = next(it)
    assert batch["image"].shape == (config.batch.bootstrap, 64, 64, 1) and batch["image"].dtype == np.uint8
    assert batch["valid"].shape == (config.batch.bootstrap, 2)
    assert (batch["valid"] >= config.data.scene_min_size).all() and (batch["valid"] <= 64).all()
    ann = next(pipeline.make_iterator(streams["annotation"], config))
    assert ann["image"].shape == (config.batch.annotation, 32, 32, 1)


def test_iterator_state_restores_the_exact_sequence():
    config, streams = _streams()
    it = pipeline.make_iterator(streams["bootstrap"], config)
    for _ in range(3):
        next(it)
    state = it.get_state()
    expected = [pipeline.digest(next(it)) for _ in range(3)]
    resumed = pipeline.make_iterator(_streams()[1]["bootstrap"], config)
    resumed.set_state(state)
    assert [pipeline.digest(next(resumed)) for _ in range(3)] == expected


def test_processes_read_disjoint_slices_of_half_the_batch():
    config, first = _streams(0, 2)
    _, second = _streams(1, 2)
    a = next(pipeline.make_iterator(first["annotation"], config))["image"]
    b = next(pipeline.make_iterator(second["annotation"], config))["image"]
    assert len(a) == config.batch.annotation // 2
    assert not {x.tobytes() for x in a} & {x.tobytes() for x in b}
