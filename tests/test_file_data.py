"""Real files on disk: tar shard indexing and random access, parquet, decoding every odd image, skipping and
counting bad records, and exact resume of a file stream."""

import os
import pickle

import grain
import numpy as np
import pytest

from configs import demo
from rlvis import config_lib, methods
from rlvis.data import decode, parquet_shards, pipeline, tar_shards, text
from tests import webdataset_fixture as fixture
from tests.runs import NO_EVAL, metrics, train


@pytest.fixture(scope="module")
def webdataset(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("cc12m"))
    return folder, fixture.make_webdataset(folder)


def test_index_gives_random_access_to_every_complete_sample_with_exact_bytes(webdataset):
    folder, expected = webdataset
    source = tar_shards.TarShardSource(folder, progress=False)
    assert len(source) == len(expected["images"])
    assert source.truncated_shards == [os.path.join(folder, "00001.tar")]
    for i in np.random.default_rng(0).permutation(len(source)):  # any order: positioned reads, no stream state
        record = source[int(i)]
        assert record["image"] == expected["images"][record["key"]]
        assert record["caption"] == expected["captions"][record["key"]]
    open_files = len(os.listdir("/proc/self/fd"))
    for i in range(len(source)):
        source[i]
    assert len(os.listdir("/proc/self/fd")) == open_files  # no descriptor kept per shard (CC12M has 2,176)
    again = pickle.loads(pickle.dumps(source))
    assert again[3] == source[3] and repr(again) == repr(source)
    assert grain.MapDataset.source(source)[5] == source[5]


def test_index_build_is_resumable_and_notices_a_changed_tar(webdataset, tmp_path):
    folder, _ = webdataset
    index_dir = str(tmp_path / "index")
    tar_shards.main([f"--data={folder}", f"--index_dir={index_dir}", "--threads=2"])
    first, second = (tar_shards.index_path(os.path.join(folder, f"{i:05d}.tar"), index_dir) for i in range(2))
    before = os.stat(first).st_mtime_ns
    os.remove(second)  # as if the build had been killed after the first shard
    tar_shards.build_indexes(tar_shards.find_shards(folder), index_dir, progress=False)
    assert os.path.exists(second) and os.stat(first).st_mtime_ns == before  # only the missing shard was rebuilt
    index = dict(np.load(first))
    index["tar_size"] = np.int64(1)  # written for a tar of another size
    np.savez(first, **index)
    assert tar_shards._load_valid_index(os.path.join(folder, "00000.tar"), index_dir) is None


def test_shard_patterns_and_one_line_errors(webdataset, tmp_path):
    folder, _ = webdataset
    assert tar_shards.expand_braces("cc12m-train-{0000..0002}.tar") == [
        "cc12m-train-0000.tar",
        "cc12m-train-0001.tar",
        "cc12m-train-0002.tar",
    ]
    assert tar_shards.find_shards(os.path.join(folder, "{00000..00001}.tar"))[1].endswith("00001.tar")
    with pytest.raises(FileNotFoundError, match=r"shard not found: .*00002\.tar$"):
        tar_shards.find_shards(os.path.join(folder, "{00000..00002}.tar"))
    with pytest.raises(FileNotFoundError, match="no .tar shards in"):
        tar_shards.find_shards(str(tmp_path))


@pytest.mark.parametrize("kind", fixture.GOOD_ODD_KINDS)
def test_odd_but_valid_images_decode_to_rgb_on_the_canvas(webdataset, kind):
    folder, expected = webdataset
    source = tar_shards.TarShardSource(folder, progress=False)
    record = next(
        source[i]
        for i in range(len(source))
        if source[i]["caption"]
        == {"grayscale": "gray", "cmyk": "cmyk", "png_alpha": "alpha", "huge": "huge", "progressive": "progressive"}[
            kind
        ]
    )
    element = pipeline.DecodeRecord(fixture.CANVAS, min_side=16, caption_length=32)(record, np.random.default_rng(0))
    height, width = element["valid"]
    assert element["image"].shape == (fixture.CANVAS, fixture.CANVAS, 3) and max(height, width) == fixture.CANVAS
    assert not element["image"][height:].any() and not element["image"][:, width:].any()  # padding stays black
    assert element["image"][:height, :width].mean() > 20


def test_decode_reasons_on_hand_made_bytes():
    rgb = fixture.picture(np.random.default_rng(0), 40, 60)
    with pytest.raises(decode.BadRecord, match="empty"):
        decode.decode(b"", 32)
    with pytest.raises(decode.BadRecord, match="corrupt"):
        decode.decode(fixture.encode(rgb)[:300], 32)
    with pytest.raises(decode.BadRecord, match="too_small"):
        decode.fit_to_canvas(rgb[:10], 32, min_side=16)
    image, valid = decode.fit_to_canvas(rgb, 30, min_side=16)
    np.testing.assert_array_equal(valid, [20, 30])  # 40x60 → longer side 30, aspect kept
    big = decode.decode(fixture.encode(fixture.picture(np.random.default_rng(1), 1600, 1600)), 100)
    assert 100 <= big.shape[0] < 400  # decoded at a reduced DCT scale, not at full size


def _file_config(folder: str, method: str = "ab_simclr"):
    config = demo.get_config(f"tiny,method={method},data=webdataset")
    config.data.path, config.data.canvas, config.data.min_side = folder, 64, 16
    return config


def _epoch_counts(folder: str, captions: bool) -> tuple[int, dict]:
    """One epoch, one element per batch: (elements whose own record was usable, bad records by reason)."""
    config = _file_config(folder, "ab_clip" if captions else "ab_simclr")
    config_lib.validate(config, 1)
    source_len = len(tar_shards.TarShardSource(folder, progress=False))
    iterator = iter(
        pipeline.file_stream(
            config.data, config, seed=0, global_batch=1, captions=captions, process_index=0, process_count=1
        )
    )
    skipped = np.stack([next(iterator)["skipped"][0] for _ in range(source_len)])
    assert skipped.sum(1).max() <= 1  # each element counts at most its own record
    return int((skipped.sum(1) == 0).sum()), dict(zip(decode.SKIP_REASONS, skipped.sum(0).tolist()))


@pytest.mark.parametrize("captions", [True, False])
def test_bad_records_are_skipped_and_counted_by_reason(webdataset, captions):
    folder, expected = webdataset
    good, counts = _epoch_counts(folder, captions)
    want = {reason: 0 for reason in decode.SKIP_REASONS}
    for kind in expected["bad"].values():
        reason = fixture.BAD_KINDS[kind][0 if captions else 1]
        if reason:
            want[reason] += 1
    assert counts == want
    assert good == len(expected["images"]) - sum(want.values())


def _file_global_batches(config, chain: list[tuple[int, int]]) -> list[dict]:
    """Global batches of a file stream read by processes whose count changes: (process count, steps) per leg, each
    leg started at the global element where the previous one stopped."""
    batches, start = [], 0
    for process_count, steps in chain:
        iterators = [
            iter(
                pipeline.file_stream(
                    config.data,
                    config,
                    seed=3,
                    global_batch=4,
                    captions=False,
                    process_index=index,
                    process_count=process_count,
                    start=start,
                )
            )
            for index in range(process_count)
        ]
        for _ in range(steps):
            parts = [next(it) for it in iterators]
            batches.append({key: np.concatenate([p[key] for p in parts]) for key in ("image", "valid", "skipped")})
        start += 4 * steps
    return batches


def test_file_stream_resumes_on_any_process_count_with_the_same_batches_and_skip_counts(webdataset):
    config = _file_config(webdataset[0])
    want = _file_global_batches(config, [(1, 7)])
    got = _file_global_batches(config, [(2, 2), (1, 2), (4, 2), (1, 1)])
    for step, (a, b) in enumerate(zip(want, got, strict=True)):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step}, {key}")
    assert sum(int(batch["skipped"].sum()) for batch in want) > 0  # the stretch read does cross bad records


def test_parquet_source_reads_img2dataset_rows_and_refuses_metadata_only_files(webdataset, tmp_path):
    records = fixture.make_parquet(str(tmp_path / "pq"))
    source = parquet_shards.ParquetSource(str(tmp_path / "pq"))
    assert len(source) == len(records)
    for i in (6, 0, 4, 2):
        assert source[i]["image"] == records[i]["jpg"] and source[i]["caption"] == records[i]["txt"]
        assert source[i]["key"] == records[i]["key"]
    assert pickle.loads(pickle.dumps(source))[5] == source[5]
    with pytest.raises(decode.BadRecord, match="empty"):
        decode.decode(source[2]["image"], 32)
    with pytest.raises(FileNotFoundError, match="use data.format='webdataset'"):
        parquet_shards.ParquetSource(webdataset[0])  # img2dataset's webdataset metadata parquet has no images


def test_a_demo_config_holds_no_file_fields_and_a_file_format_is_built_with_them():
    config = demo.get_config("tiny")
    assert not {"path", "canvas", "min_side", "bootstrap", "worker_processes"} & set(config.data)
    config.data.format = "webdataset"  # set on a config built for the demo: its file fields are missing
    with pytest.raises(
        config_lib.ConfigError,
        match=r"^config.data.format='webdataset': this config holds the "
        r"embedded demo's data fields only; build it with the file fields \(configs/demo.py:"
        r"data=webdataset",
    ):
        config_lib.validate(config, 1)
    for method, bootstrap in (("ab_simclr", True), ("simclr", False), ("ab_clip", True), ("mae", False)):
        files = demo.get_config(f"tiny,method={method},data=image_folder").data
        assert files.format == "image_folder" and {"path", "canvas", "min_side", "worker_processes"} <= set(files)
        assert ("bootstrap" in files) == bootstrap  # its own source only where a method reads the bootstrap stream
        assert "annotation_scene_fraction" not in files  # a demo stream's field
    with pytest.raises(ValueError, match=r"data='zip' is not one of"):
        demo.get_config("tiny,data=zip")


def test_config_errors_name_the_data_field(tmp_path):
    config = demo.get_config("tiny,data=webdataset")
    with pytest.raises(config_lib.ConfigError, match=r"config.data.path is empty"):
        config_lib.validate(config, 1)
    config.data.path = str(tmp_path / "nowhere")
    with pytest.raises(config_lib.ConfigError, match=r"config.data.path='.*nowhere' does not exist"):
        config_lib.validate(config, 1)
    config.data.format = "zip"
    with pytest.raises(config_lib.ConfigError, match=r"config.data.format='zip' is not one of"):
        config_lib.validate(config, 1)
    config.data.format = "demo"
    with pytest.raises(config_lib.ConfigError, match=r"config.data.format='demo' in a config built for files"):
        config_lib.validate(config, 1)
    config.data.format, config.data.path = "webdataset", str(tmp_path)
    config_lib.validate(config, 1)
    config.data.bootstrap.format = "demo"
    with pytest.raises(config_lib.ConfigError, match=r"config.data.bootstrap.format='demo' needs config.data.format"):
        config_lib.validate(config, 1)
    config.data.bootstrap.format = "image_folder"
    with pytest.raises(config_lib.ConfigError, match=r"config.data.bootstrap.path is empty"):
        config_lib.validate(config, 1)
    config.data.bootstrap.path = str(tmp_path)
    config_lib.validate(config, 1)


def test_trainer_reads_captioned_tars_and_a_frame_folder_and_reports_skips(webdataset, tmp_path):
    """Decoupled streams: AB_CLIP's annotations from captioned tars, bootstrap images from an EpicKitchens-style
    folder of frames; a missing path is one line before any compute."""
    folder, expected = webdataset
    frames = tmp_path / "P01" / "rgb_frames" / "P01_01"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        (frames / f"frame_{i:010d}.jpg").write_bytes(fixture.encode(fixture.picture(rng, 90, 160)))
    data = [
        f"data.path='{folder}'",
        "data.canvas=64",
        "data.min_side=16",
        "data.bootstrap.format='image_folder'",
        "data.bootstrap.frame_stride=2",
        "total_steps=2",
        "checkpoint_every=2",
        "batch.annotation=8",
        *NO_EVAL,
    ]  # 2 steps read the 16 good records once
    config = "configs/demo.py:tiny,method=ab_clip,data=webdataset"
    with pytest.raises(config_lib.ConfigError, match=r"^config.data.bootstrap.path=.*does not exist"):
        train(tmp_path / "missing", *data, f"data.bootstrap.path='{tmp_path / 'nowhere'}'", config=config)
    train(tmp_path / "run", *data, f"data.bootstrap.path='{tmp_path}'", config=config)
    logged = metrics(tmp_path / "run")
    total = {reason: sum(line[f"data/skipped/{reason}"] for line in logged.values()) for reason in decode.SKIP_REASONS}
    assert set(logged) == {1, 2} and all(np.isfinite(line["loss"]) for line in logged.values())
    assert 0 < sum(total.values()) <= len(expected["bad"])


@pytest.mark.parametrize("method", methods.NAMES)
def test_cc12m_preset_carries_table_7_and_validates_for_every_method(method, webdataset):
    from configs import cc12m

    config = cc12m.get_config(f"method={method}")
    config.data.path = webdataset[0]
    config_lib.validate(config, 8)
    base = method.removeprefix("ab_")
    assert config.model.variant == "S/16" and config.env.view_size == 224
    assert config.optim.lr == (2.4e-3 if base == "mae" else 1e-3)
    captioned = base in ("clip", "slip", "silc", "clip_aug")
    assert config.optim.b2 == (0.98 if captioned else 0.95 if base == "mae" else 0.999)
    assert config.optim.grad_clip == (1.0 if base == "dino" else 0.0)
    assert not config.model.box_attention  # the paper's value head, whatever the demo's default
    if method != base:
        assert not config.ab.center_target  # the paper's AB target, whatever the demo's default
    else:
        assert "ab" not in config  # a base method reads no AB field
    assert "foresight" not in config.evals  # foresight is scored on the demo's scenes only
    assert {"path", "canvas", "min_side"} <= set(config.data) and config.data.format == "webdataset"
    annotation_views = {
        "simclr": lambda: 2 * config.batch.annotation,
        "dino": lambda: (2 + config.dino.local_views) * config.batch.annotation,
        "slip": lambda: config.batch.annotation + 2 * config.batch.annotation // 2,
        "silc": lambda: config.batch.annotation + 10 * config.batch.annotation // 8,
    }.get(base, lambda: config.batch.annotation)()
    encoded = annotation_views + (config.batch.bootstrap * config.env.views if method != base else 0)
    # Table 7's effective batches: 8,192; DINO alone 10,240, SiLC 9,216, I-JEPA 4,096
    assert encoded == {"dino": 10240, "silc": 9216, "ijepa": 4096}.get(method, 9216 if method == "ab_dino" else 8192)
    assert methods.encoded_views_per_step(config) == encoded


def test_cc12m_preset_trains_on_img2dataset_shards(webdataset, tmp_path):
    train(tmp_path / "run", f"data.path='{webdataset[0]}'", *NO_EVAL, config="configs/cc12m.py:tiny,method=ab_clip")
    assert set(metrics(tmp_path / "run")) == {1, 2, 3, 4}


def test_interrupted_run_on_tar_shards_resumes_with_the_same_batches(webdataset, tmp_path):
    """Checkpointed Grain state of a file stream (skip counts included): stop at step 2, resume, and every logged
    batch digest and skip count equals the uninterrupted run's."""
    flags = [f"data.path='{webdataset[0]}'", "log_every=1", *NO_EVAL]
    config = "configs/cc12m.py:tiny,method=ab_simclr"
    train(tmp_path / "full", *flags, config=config)
    assert "stopped at step 2" in train(tmp_path / "resumed", *flags, stop_at_step=2, config=config).stdout
    assert "resumed from step 2" in train(tmp_path / "resumed", *flags, config=config).stdout
    want, got = metrics(tmp_path / "full"), metrics(tmp_path / "resumed")
    assert set(want) == set(got) == {1, 2, 3, 4}
    for step in want:
        assert got[step]["data_digest"] == want[step]["data_digest"]
        for reason in decode.SKIP_REASONS:
            assert got[step][f"data/skipped/{reason}"] == want[step][f"data/skipped/{reason}"]


def test_worker_processes_read_the_same_batches_as_threads_and_resume_exactly(webdataset):
    """Grain worker processes (the pipeline pickled, bad-record counting included) produce the same sequence of
    batches as read threads, from any saved position."""
    config = _file_config(webdataset[0])

    def batches(workers: int, start: int, count: int) -> list[dict]:
        config.data.worker_processes = workers
        iterator = iter(
            pipeline.file_stream(
                config.data,
                config,
                seed=1,
                global_batch=4,
                captions=False,
                process_index=0,
                process_count=1,
                start=start,
            )
        )
        return [next(iterator) for _ in range(count)]

    threads, workers, resumed = batches(0, 0, 6), batches(2, 0, 6), batches(2, 3 * 4, 3)
    for a, b in zip(threads, workers, strict=True):
        for key in ("image", "valid", "skipped"):
            np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(threads[3:], resumed, strict=True):
        for key in ("image", "valid", "skipped"):
            np.testing.assert_array_equal(a[key], b[key])


def test_a_record_with_several_captions_gets_each_of_them_across_visits():
    record = dict(
        image=fixture.encode(fixture.picture(np.random.default_rng(0), 40, 40)),
        caption="first",
        captions=["first", "second", "third"],
    )
    decoder = pipeline.DecodeRecord(32, min_side=16, caption_length=16)
    seen = {text.decode(decoder(record, np.random.default_rng(seed))["caption"]) for seed in range(30)}
    assert seen == {"first", "second", "third"}
