"""Workdirs on a bucket (rlvis/storage.py): against a real GCS API server on loopback (rlvis/gcs_emulator.py)."""

import json
import os
import pickle

import jax
import numpy as np
import pytest

from rlvis import evaluate, export, storage
from tests.runs import NO_EVAL, load_state, metrics, train


def test_local_files_are_written_whole_and_the_log_appends(tmp_path):
    storage.write_json(tmp_path / "a" / "results.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "results.json").read_text()) == {"x": 1}
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["results.json"]  # no temporary left behind
    log = storage.AppendLog(tmp_path / "m.jsonl")
    log.append("1\n"), log.append("2\n")
    assert log.read_lines() == ["1\n", "2\n"]
    log.replace(["1\n"])
    log.append("3\n")
    assert (tmp_path / "m.jsonl").read_text() == "1\n3\n"
    assert storage.join("gs://b/run", "plots", "x.png") == "gs://b/run/plots/x.png"
    assert storage.join("runs/x", "a") == "runs/x/a" and storage.absolute("gs://b/x") == "gs://b/x"


def test_a_bucket_log_keeps_every_line_although_objects_cannot_be_appended_to(gcs_bucket):
    location = f"{gcs_bucket}/log/metrics.jsonl"
    first = storage.AppendLog(location)
    first.append("1\n"), first.append("2\n")
    later = storage.AppendLog(location)  # a resumed process: reads what is there, then adds
    later.append("3\n")
    assert storage.path(location).read_text() == "1\n2\n3\n"
    later.replace(["1\n"])
    later.append("4\n")
    assert storage.path(location).read_text() == "1\n4\n"


def test_a_run_on_a_bucket_resumes_bit_identically_and_evaluates_and_exports_from_it(gcs_bucket, tiny_run):
    """The tiny demo with --workdir=gs://…: stopped at step 4, resumed from the bucket, equal to the local
    uninterrupted run; evaluation, export and load_encoder read the bucket workdir."""
    workdir = f"{gcs_bucket}/runs/tiny"
    overrides = [o for o in NO_EVAL if o != "evals.foresight.final=False"]  # one cheap final evaluator
    first = train(workdir, *overrides, stop_at_step=4)
    assert first.results is None and "stopped at step 4/6" in first.stdout
    second = train(workdir, *overrides)
    assert "resumed from step 4" in second.stdout
    local, remote = metrics(tiny_run[0]), metrics(workdir)
    assert sorted(remote) == [1, 2, 3, 4, 5, 6]
    assert all(
        remote[s]["loss"] == local[s]["loss"] and remote[s]["data_digest"] == local[s]["data_digest"] for s in remote
    )
    for a, b in zip(jax.tree.leaves(load_state(tiny_run[0], 6)), jax.tree.leaves(load_state(workdir, 6))):
        np.testing.assert_array_equal(a, b)
    results = storage.read_json(f"{workdir}/results.json")
    assert results["steps"] == 6 and "foresight/value/all" in results["trained"]
    assert storage.path(f"{workdir}/plots/foresight.png").read_bytes().startswith(b"\x89PNG")
    assert list(storage.path(f"{workdir}/tensorboard/metrics").iterdir())  # event files

    step, scores = evaluate.evaluate_step(workdir)
    assert step == 6 and scores == {t: v for t, v in results["trained"].items()}  # the trainer's numbers
    assert storage.read_json(f"{workdir}/eval/step_6.json")["scores"] == scores
    assert evaluate._evaluated(workdir) == {6}
    out = export.export_encoder(workdir, encoder="ema")
    assert out == f"{workdir}/export_ema_6" and storage.read_json(f"{out}/encoder.json")["step"] == 6
    module, variables = export.load_encoder(out)
    _, from_checkpoint = export.load_encoder(workdir)
    for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(from_checkpoint)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bucket_event_files_roll_over_to_new_parts_instead_of_rewriting_history(tmp_path, monkeypatch):
    from rlvis import metrics

    monkeypatch.setattr(metrics.BucketEventFile, "part_bytes", 10)
    events = metrics.BucketEventFile(str(tmp_path / "events.out.tfevents.1.host"))
    events.write(b"a" * 8), events.flush()
    events.write(b"b" * 8), events.flush()  # part 0 passes 10 bytes: the next events start part 1
    events.write(b"c" * 4), events.close()
    assert (tmp_path / "events.out.tfevents.1.host").read_bytes() == b"a" * 8 + b"b" * 8
    assert (tmp_path / "events.out.tfevents.1.host.part00001").read_bytes() == b"c" * 4


def test_a_folder_listed_once_shows_objects_another_process_writes_later(gcs_bucket):
    """`rlvis.evaluate --watch` polls a bucket for new checkpoints: a cached listing would hide them forever."""
    import os
    import urllib.request

    folder = f"{gcs_bucket}/watched"
    storage.write_text(f"{folder}/a", "1")
    assert [p.name for p in storage.path(folder).iterdir()] == ["a"]
    bucket = gcs_bucket.removeprefix("gs://")
    request = urllib.request.Request(  # another writer: the GCS upload API itself, not this process's file system
        f"{os.environ['STORAGE_EMULATOR_HOST']}/upload/storage/v1/b/{bucket}/o?uploadType=media&name=watched/b",
        data=b"2",
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()
    assert sorted(p.name for p in storage.path(folder).iterdir()) == ["a", "b"]


@pytest.fixture(scope="module")
def bucket_shards(gcs_bucket, tmp_path_factory):
    """The test webdataset (good, odd and bad records, a truncated shard) locally and uploaded to the bucket."""
    from tests import webdataset_fixture

    folder = str(tmp_path_factory.mktemp("shards"))
    expected = webdataset_fixture.make_webdataset(folder)
    for name in ("00000.tar", "00001.tar"):
        storage.write_bytes(f"{gcs_bucket}/cc12m/{name}", open(os.path.join(folder, name), "rb").read())
    return folder, f"{gcs_bucket}/cc12m", expected


def test_tars_in_a_bucket_give_the_same_records_as_on_disk(bucket_shards, tmp_path, monkeypatch):
    from rlvis.data import tar_shards

    folder, url, expected = bucket_shards
    monkeypatch.setenv("HOME", str(tmp_path))  # the default index cache of bucket shards: ~/.cache/rlvis
    local = tar_shards.TarShardSource(folder, index_dir=str(tmp_path / "local-index"), progress=False)
    for spec in (f"{url}/{{00000..00001}}.tar", url, f"{url}/*.tar"):  # a brace pattern, a folder, a glob
        remote = tar_shards.TarShardSource(spec, progress=False)
        assert remote.shards == [f"{url}/00000.tar", f"{url}/00001.tar"]
        assert remote.truncated_shards == [f"{url}/00001.tar"] and len(remote) == len(local)
    assert len(list((tmp_path / ".cache" / "rlvis" / "tar-index").iterdir())) == 2
    remote = pickle.loads(pickle.dumps(remote))  # as Grain's worker processes get it
    for i in range(len(remote)):
        assert remote[i] == local[i]
    assert remote.retries == 0


def test_a_bucket_object_that_changed_since_indexing_is_reindexed(gcs_bucket, bucket_shards, tmp_path):
    from rlvis.data import tar_shards

    folder, _, _ = bucket_shards
    url = f"{gcs_bucket}/changing/00000.tar"
    storage.write_bytes(url, open(os.path.join(folder, "00001.tar"), "rb").read())  # the truncated shard
    before = len(tar_shards.TarShardSource(url, index_dir=str(tmp_path), progress=False))
    storage.write_bytes(url, open(os.path.join(folder, "00000.tar"), "rb").read())  # replaced by another tar
    after = tar_shards.TarShardSource(url, index_dir=str(tmp_path), progress=False)
    local = tar_shards.TarShardSource(os.path.join(folder, "00000.tar"), index_dir=str(tmp_path / "l"), progress=False)
    assert len(after) == len(local) != before and after[0] == local[0]


def test_bucket_errors_are_one_line_naming_the_url_and_transient_ones_are_retried_and_counted(
    bucket_shards, tmp_path, monkeypatch
):
    import gcsfs.retry
    from rlvis.data import tar_shards

    folder, url, _ = bucket_shards
    with pytest.raises(FileNotFoundError, match=rf"^shard not found: {url}/00002\.tar$"):
        tar_shards.find_shards(f"{url}/{{00000..00002}}.tar")
    with pytest.raises(FileNotFoundError, match=r"^not found: gs://no-such-bucket-rlvis/x \(no such bucket"):
        tar_shards.find_shards("gs://no-such-bucket-rlvis/x")
    source = tar_shards.TarShardSource(url, index_dir=str(tmp_path), progress=False)
    source.backoff_seconds = 0.0
    reference = [source[i] for i in range(len(source))]
    fs, calls = tar_shards._file_system(url), [0]  # the process's one (cached) file system for the bucket
    original = fs._cat_file  # what every ranged read of fsspec's async file systems comes down to

    async def cat_file_failing_every_third(path, start=None, end=None, **kwargs):
        calls[0] += 1
        if calls[0] % 3 == 0:  # as a 503 that outlived gcsfs's own retries
            raise gcsfs.retry.HttpError({"code": 503, "message": "injected: service unavailable"})
        return await original(path, start=start, end=end, **kwargs)

    monkeypatch.setattr(fs, "_cat_file", cat_file_failing_every_third)
    assert [source[i] for i in range(len(source))] == reference  # every record, although a third of reads failed
    assert source.retries == calls[0] // 3 >= len(reference) // 3
    calls[0], source.retries = 0, 0
    assert source._getitems(range(len(source))) == reference  # a batch's reads: the failed ones retried together
    assert source.retries == calls[0] // 3 >= len(reference) // 3


def test_the_cc12m_preset_trains_on_tars_in_a_bucket_and_counts_bad_records(bucket_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    _, url, _ = bucket_shards
    run = train(
        tmp_path / "run",
        f"data.path='{url}/{{00000..00001}}.tar'",
        *NO_EVAL,
        config="configs/cc12m.py:tiny,method=ab_clip",
    )
    logged = metrics(tmp_path / "run")
    assert set(logged) == {1, 2, 3, 4} and "truncated" in run.stdout
    assert sum(v for line in logged.values() for k, v in line.items() if k.startswith("data/skipped/")) > 0


def test_tars_in_an_s3_bucket_give_the_same_records_and_train_and_an_s3_workdir_is_one_line(
    s3_bucket, bucket_shards, tmp_path, monkeypatch
):
    from rlvis import config_lib
    from rlvis.data import tar_shards

    monkeypatch.setenv("HOME", str(tmp_path))
    folder, _, _ = bucket_shards
    for name in ("00000.tar", "00001.tar"):
        storage.write_bytes(f"{s3_bucket}/cc12m/{name}", open(os.path.join(folder, name), "rb").read())
    local = tar_shards.TarShardSource(folder, index_dir=str(tmp_path / "local-index"), progress=False)
    remote = tar_shards.TarShardSource(f"{s3_bucket}/cc12m", progress=False)
    assert remote._getitems(range(len(remote))) == [local[i] for i in range(len(local))] and remote.retries == 0
    train(tmp_path / "run", f"data.path='{s3_bucket}/cc12m'", *NO_EVAL, config="configs/cc12m.py:tiny,method=ab_clip")
    assert set(metrics(tmp_path / "run")) == {1, 2, 3, 4}
    with pytest.raises(config_lib.ConfigError, match=r"^--workdir=s3://rlvis-tests/run: Orbax .* cannot write"):
        train(f"{s3_bucket}/run", *NO_EVAL)
