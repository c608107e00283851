"""Scaling out: concurrent cache shards, torch.distributed (gloo) caching and DDP training, s3:// stores on a
real S3 API (moto's server on loopback), and teacher targets streamed chunk by chunk."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from fasd.config import load_registry
from fasd.data.open_source import open_source
from fasd.errors import FasdError
from fasd.store_schema import writer
from fasd.store_schema.specs import specs_to_json, v1_specs
from fasd.store_schema.store import create_or_check_store, open_store
from fasd.student_train.data import DomainRows, StudentFrames
from fasd.training.sampler import BlockWindowSampler, block_window_order, domain_balanced_sampler
from fasd.student_train.targets import attach_targets
from fasd.student_train.trainer import seed_epoch
from fasd.training.transforms import eval_transform
from fasd.teacher_cache.job import CacheOptions, run_cache
from fasd.teacher_cache.registry import TeacherOptions, load_teacher

from helpers import dying_cache_command
from helpers import assert_one_line, fasd
from test_train import TINY

CHUNK_ROWS, BATCH = 8, 4  # 60 frames a domain -> 8 chunks, so two shards get 4 chunks each
TARGETS = ("feature", "logits", "frame_id", "label", "split", "done")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cache_args(config, checkpoint, store, dataset="alpha") -> list[str]:
    return ["cache-teacher", "--dataset", dataset, "--config", str(config), "--store", str(store),
            "--checkpoint", str(checkpoint), "--chunk-rows", str(CHUNK_ROWS), "--batch-size", str(BATCH),
            "--workers", "0"]


def _assert_same_dataset(store_a: str, store_b: str, name: str) -> None:
    a, b = open_store(store_a).dataset(name), open_store(store_b).dataset(name)
    for array in TARGETS:
        np.testing.assert_array_equal(a[array][:], b[array][:], err_msg=f"{name}/{array}")
    assert b.attrs["completed"] and b["done"][:].all()


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, synth_config, tiny_flip_checkpoint) -> str:
    """alpha and beta cached by one process with the chunking the tests below use, on one thread like the
    shard processes (float reductions, hence the stored bits, depend on the thread count)."""
    store = str(tmp_path_factory.mktemp("reference") / "teacher.zarr")
    registry = load_registry(synth_config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
        for name in ("alpha", "beta"):
            run_cache(open_source(registry.dataset(name)), loaded, store,
                      CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, progress=False))
    finally:
        torch.set_num_threads(threads)
    return store


# A shard process that dies (like SIGKILL) after writing the features of its second chunk, before its
# done flag: the chunk must count as not cached.
_DYING_SHARD = dying_cache_command("feature")


def _start(args: list[str], dying: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-c", _DYING_SHARD] if dying else [sys.executable, "-m", "fasd"]
    return subprocess.Popen(command + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=120)
    return process.returncode, output


@pytest.mark.slow
def test_concurrent_shards_fill_the_store_of_one_process_and_a_killed_shard_resumes(
        tmp_path, synth_config, tiny_flip_checkpoint, reference_store):
    together, killed = (_cache_args(synth_config, tiny_flip_checkpoint, tmp_path / name) for name in ("a.zarr",
                                                                                                      "b.zarr"))
    # Round 1: shards 0/2 and 1/2 on one store at the same time; beside them, shard 1/2 of another store dies.
    processes = [_start(together + ["--shard", "0/2"]), _start(together + ["--shard", "1/2"]),
                 _start(killed + ["--shard", "1/2"], dying=True)]
    (rc0, out0), (rc1, out1), (rc_killed, out_killed) = [_finish(p) for p in processes]
    assert (rc0, rc1, rc_killed) == (0, 0, 137), (out0, out1, out_killed)
    # Shard 0 has chunks 0, 2, 4, 6 (32 frames), shard 1 has 1, 3, 5 and 7, the last one of 4 frames.
    assert "cached 32 frames in 4 chunk(s)" in out0 and "cached 28 frames in 4 chunk(s)" in out1
    assert "dataset complete" in out0 + out1
    _assert_same_dataset(reference_store, str(tmp_path / "a.zarr"), "alpha")
    group = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")["alpha"]
    # Chunk 1 was finished; chunk 3's features were written but it was never flagged done.
    assert group["done"][:].tolist() == [False, True, False, False, False, False, False, False]

    # Round 2: the killed shard re-run, beside shard 0/2.
    (rc0, out0), (rc1, out1) = [_finish(p) for p in [_start(killed + ["--shard", "0/2"]),
                                                     _start(killed + ["--shard", "1/2"])]]
    assert rc0 == rc1 == 0 and "cached 20 frames in 3 chunk(s)" in out1, out1
    _assert_same_dataset(reference_store, str(tmp_path / "b.zarr"), "alpha")


def test_layout_of_another_shard_is_finished_not_recreated(tmp_path, synth_config, tiny_flip_checkpoint):
    """A group left without its attributes (a creator still running, or killed) is completed alongside;
    a finished one is verified; only shard 0 may replace a mismatching layout."""
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(2, 16)).astype(np.float32)
    path = str(tmp_path / "s.zarr")
    teacher = {"name": "x", "targets": specs_to_json(v1_specs(16))}
    store = create_or_check_store(path, teacher, {"centroids": centroids}, overwrite=False)
    ids = np.array([f"f{i}" for i in range(20)])
    meta = writer.frame_columns(ids, np.zeros(20, np.int8), np.full(20, "train"), np.full(20, "v"))
    half = store.root.create_group("d")
    half.create_array("frame_id", shape=(20,), dtype=str, chunks=(8,))
    assert store.dataset_names() == []  # unfinished: not listed as cached
    group = writer.prepare_dataset(store, "d", {"n": 20}, "", meta, 8, overwrite=False)
    writer.write_chunk(group, 0, {"feature": np.ones((8, 16)), "logits": np.zeros((8, 2))})
    again = writer.prepare_dataset(create_or_check_store(path, teacher, {"centroids": centroids}, False), "d",
                                   {"n": 20}, "", meta, 8, overwrite=False)
    assert again["done"][:].tolist() == [True, False, False] and (again["feature"][:8] == 1).all()
    with pytest.raises(FasdError, match="chunk-rows 8"):
        writer.prepare_dataset(store, "d", {"n": 20}, "", meta, 4, overwrite=False)

    loaded = load_teacher("flip-mcl", TeacherOptions(tiny_flip_checkpoint))
    source = open_source(load_registry(synth_config).dataset("alpha"))
    with pytest.raises(FasdError, match="only shard 0 replaces"):
        run_cache(source, loaded, path, CacheOptions(shard=1, num_shards=2, overwrite=True, progress=False))
    assert store.root.attrs["teacher"] == teacher  # shard 1 deleted nothing


def test_streamed_targets_equal_memory_and_read_each_chunk_once(reference_store, synth_config):
    registry = load_registry(synth_config)
    parts = [DomainRows(source, source.table.rows_in_splits(["train"]))
             for source in (open_source(registry.dataset(n)) for n in ("alpha", "beta"))]
    frames = StudentFrames(parts, eval_transform())
    _, (memory,) = attach_targets(reference_store, [frames])
    _, (streamed,) = attach_targets(reference_store, [frames], stream=True, window=2)
    everything = np.arange(len(frames))
    expected, found = memory(everything), streamed(everything)
    assert set(expected) == set(found) == {"feature", "logits"}
    for name in expected:
        assert expected[name].dtype == torch.float32 and torch.equal(expected[name], found[name])

    draws = np.fromiter(domain_balanced_sampler(frames.domain_of, 400, torch.Generator().manual_seed(0)), int)
    blocks = streamed.block_of
    ordered = block_window_order(draws, blocks, frames.domain_of, 2, np.random.default_rng(0))
    assert sorted(ordered.tolist()) == sorted(draws.tolist())  # the same draws, in another order
    for order, expected_reads in ((ordered, len(np.unique(blocks[draws]))), (draws, None)):
        _, (lookup,) = attach_targets(reference_store, [frames], stream=True, window=2)
        cache = lookup.domains[0].chunked["feature"].cache
        for start in range(0, len(order), 16):
            feature = lookup(order[start:start + 16])["feature"]
            assert torch.equal(feature, memory(order[start:start + 16])["feature"])
        if expected_reads is not None:
            assert cache.reads == expected_reads  # every chunk decompressed once per epoch
        else:
            assert cache.reads > 3 * len(np.unique(blocks[draws]))  # random order: one per frame or so
    sampler = BlockWindowSampler(domain_balanced_sampler(frames.domain_of, 400, torch.Generator().manual_seed(0)),
                                 blocks, frames.domain_of, 2, torch.Generator().manual_seed(1))
    assert len(list(sampler)) == len(sampler) == len(frames)  # draws are capped at the train size


def test_block_windows_mix_domains_and_never_revisit_a_block():
    domain_of = np.repeat([0, 1], [800, 80])
    block_of = np.concatenate([np.arange(800) // 8, 100 + np.arange(80) // 8])  # 100 + 10 blocks
    draws = np.fromiter(domain_balanced_sampler(domain_of, 880, torch.Generator().manual_seed(3)), int)
    order = block_window_order(draws, block_of, domain_of, 10, np.random.default_rng(0))
    blocks_in_order = list(dict.fromkeys(block_of[order]))  # blocks by first appearance
    # Once the stream leaves a window of 10 blocks it never comes back to them.
    first = {b: i // 10 for i, b in enumerate(blocks_in_order)}
    assert (np.diff([first[b] for b in block_of[order]]) >= 0).all()
    # Each quarter of the epoch draws both domains about equally often, like the whole epoch (sorting by
    # block instead would give quarters of one domain only).
    for quarter in np.array_split(order, 4):
        assert 0.25 < np.mean(domain_of[quarter] == 1) < 0.75


def test_ranks_draw_distinct_streams_and_rank_0_keeps_the_single_process_one():
    single = torch.randint(0, 10**9, (4,), generator=seed_epoch(3, 2))
    assert torch.equal(torch.randint(0, 10**9, (4,), generator=seed_epoch(3, 2, rank=0)), single)
    assert torch.equal(torch.randint(0, 10**9, (4,), generator=torch.Generator().manual_seed(3 * 100003 + 2)),
                       single)
    other = torch.randint(0, 10**9, (4,), generator=seed_epoch(3, 2, rank=1))
    assert not torch.equal(other, single)


def _ddp_worker(rank: int, world: int, port: int, config: str, checkpoint: str, store: str, run_dir: str,
                out: str) -> None:
    """One torchrun-like process: cache alpha and beta as rank `rank` of a gloo group, then train with DDP."""
    from fasd import distributed
    from fasd.student_train.run_config import TrainOptions
    from fasd.student_train.trainer import Trainer

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    registry = load_registry(config)
    loaded = load_teacher("flip-mcl", TeacherOptions(checkpoint))
    with distributed.process_group() as ranks:
        reports = [run_cache(open_source(registry.dataset(name)), loaded, store,
                             CacheOptions(batch_size=BATCH, chunk_rows=CHUNK_ROWS, shard=ranks.rank,
                                          num_shards=ranks.world_size, progress=False))
                   for name in ("alpha", "beta")]
        options = TrainOptions(protocol="holdout-gamma", sources=["alpha", "beta"], target="gamma", config=config,
                               store=store, epochs=1, max_draws=32, batch_size=16, workers=0, device="cpu")
        metrics = Trainer(registry, options, Path(run_dir), progress=False).run()
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "reports": [[r.chunks_written, r.frames_computed, r.completed] for r in reports],
        "metrics": metrics is not None}))


@pytest.mark.slow
def test_gloo_group_caches_like_one_process_and_ddp_keeps_the_steps_per_epoch(
        tmp_path, synth_config, tiny_flip_checkpoint, reference_store):
    store, run_dir = str(tmp_path / "ddp.zarr"), tmp_path / "run"
    torch.multiprocessing.spawn(_ddp_worker, nprocs=2, args=(
        2, _free_port(), str(synth_config), str(tiny_flip_checkpoint), store, str(run_dir), str(tmp_path)))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    # After the barrier both ranks report the totals of both: 8 chunks, 60 frames, complete.
    assert ranks[0]["reports"] == ranks[1]["reports"] == [[8, 60, True], [8, 60, True]]
    for name in ("alpha", "beta"):
        _assert_same_dataset(reference_store, store, name)
    assert [r["metrics"] for r in ranks] == [True, False]  # only rank 0 evaluates
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1]  # one writer
    # 32 draws / global batch 16 = 2 optimiser steps an epoch, as in a single process (each rank: 16 / 8).
    assert log[0]["train"]["steps"] == 2 and log[0]["train"]["kl"] > 0
    assert json.loads((run_dir / "metrics.json").read_text())["target"] == "gamma"


@pytest.fixture()
def one_thread():
    """Compute on one thread like the reference store (float reductions depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def s3_server(monkeypatch):
    """A real S3 API (moto's server) on loopback, with credentials in the environment as a user sets them."""
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    import boto3

    monkeypatch.setattr(logging.getLogger("werkzeug"), "level", logging.WARNING)  # one line per request
    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    secret = "fasd-test-secret-0123456789"
    for key, value in {"AWS_ACCESS_KEY_ID": "fasd-test-key", "AWS_SECRET_ACCESS_KEY": secret,
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket="fasd-bucket")
    yield secret
    server.stop()


@pytest.mark.slow
def test_cache_inspect_train_through_s3(s3_server, one_thread, tmp_path, synth_config, tiny_flip_checkpoint,
                                       reference_store):
    url = "s3://fasd-bucket/teacher.zarr"
    outputs = []
    for name in ("alpha", "beta"):
        result = fasd(*_cache_args(synth_config, tiny_flip_checkpoint, url, name))
        outputs.append(result.output)
        assert result.exit_code == 0 and "dataset complete" in result.output, result.output
        _assert_same_dataset(reference_store, url, name)
    inspected = fasd("inspect", url, "--json")
    outputs.append(inspected.output)
    summary = json.loads(inspected.stdout[inspected.stdout.index("{"):])
    assert summary["path"] == url and set(summary["datasets"]) == {"alpha", "beta"}
    assert all(d["completed"] and d["rows"] == 60 for d in summary["datasets"].values())

    trained = fasd("train", "--split", "holdout-gamma", "--config", synth_config, "--store", url, *TINY,
                   "--workers", "0", "--out", tmp_path / "run")
    outputs.append(trained.output)
    assert trained.exit_code == 0, trained.output
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["train"]["feat"] > 0 for r in log)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["store"] == url

    registry = load_registry(synth_config)
    frames = StudentFrames([DomainRows(s, s.table.rows_in_splits(["val"]))
                            for s in (open_source(registry.dataset(n)) for n in ("alpha", "beta"))], eval_transform())
    _, (streamed,) = attach_targets(url, [frames], stream=True)
    _, (local,) = attach_targets(reference_store, [frames])
    items = np.arange(len(frames))
    expected, found = local(items), streamed(items)
    assert set(found) == set(expected) and all(torch.equal(found[n], expected[n]) for n in expected)

    missing = fasd("inspect", "s3://fasd-bucket/nothing.zarr")
    outputs.append(missing.output)
    assert_one_line(missing, "no teacher store at s3://fasd-bucket/nothing.zarr")
    assert not any(s3_server in text for text in outputs)  # credentials are never printed
