"""The ``fasd`` command line: parses options and calls the modules that do the work."""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from fasd.errors import FasdError

app = typer.Typer(
    help="fasd: distil a vision-language face anti-spoofing teacher (FLIP-MCL, CLIP ViT-B/16) into a "
         "phone-sized MobileNetV3-Small student. Labels: 0 = spoof, 1 = live.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def command(name: str) -> Callable:
    """Register a command whose user errors print one line (no traceback) and exit 2."""
    def decorate(func: Callable) -> Callable:
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except FasdError as exc:
                typer.echo(f"fasd {name}: error: {exc}", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:
                typer.echo(f"fasd {name}: interrupted; completed work is kept, re-run the same command to "
                           f"resume", err=True)
                raise typer.Exit(130) from None
        return app.command(name)(wrapper)
    return decorate


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _shard(value: Optional[str]) -> tuple[int, int]:
    """``--shard I/N``, else torchrun's RANK/WORLD_SIZE, else the whole job."""
    if value is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise FasdError(f"--shard must look like I/N (e.g. 0/4), got '{value}'") from None
    if count < 1 or not 0 <= index < count:
        raise FasdError(f"--shard {value}: need 0 <= I < N")
    return index, count


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise FasdError(f"{name} must be > 0, got {value}")


def _print_json(obj: object) -> None:
    typer.echo(json.dumps(obj, indent=2, default=float))


@command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the HDF5 packs and fasd.toml.")],
    domains: Annotated[int, typer.Option(help="Number of synthetic domains (cameras/attack styles).")] = 3,
    frames: Annotated[int, typer.Option(help="Frames per domain over all splits.")] = 600,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 112,
    seed: Annotated[int, typer.Option(help="Random seed; the output is deterministic for a seed.")] = 0,
) -> None:
    """Write a synthetic FAS benchmark (one HDF5 pack per domain + fasd.toml); needs no download."""
    from fasd.data.synth import synthesize

    if domains < 1 or frames < 10 or size < 32:
        raise FasdError("need --domains >= 1, --frames >= 10 and --size >= 32")
    config = synthesize(out_dir, domains=domains, frames=frames, size=size, seed=seed)
    typer.echo(f"wrote {domains} synthetic domain(s) and {config}")


@command("cache-teacher")
def cache_teacher(
    dataset: Annotated[str, typer.Option(help="Dataset name registered in fasd.toml.")],
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store: a folder or fsspec URL (s3://...).")] = "teacher.zarr",
    teacher: Annotated[str, typer.Option(help="flip-mcl (FLIP checkpoint) or clip (OpenAI CLIP state dict).")
                       ] = "flip-mcl",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint file (never downloaded).")] = None,
    prompts: Annotated[Optional[Path], typer.Option(
        help='JSON {"spoof": [...], "live": [...]} overriding FLIP\'s prompt ensemble.')] = None,
    centroid_mode: Annotated[str, typer.Option(help="flip (mean raw embeddings) or clip (mean of unit ones).")
                             ] = "flip",
    splits: Annotated[str, typer.Option(help="Comma-separated splits to cache.")] = "train,val,test",
    batch_size: Annotated[int, typer.Option(help="Frames per teacher forward.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader decode workers (default: half the cores, "
                                                        "at most 8).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="I/N: cache every N-th chunk starting at I (default: "
                                                      "torchrun's RANK/WORLD_SIZE).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per Zarr chunk (the unit of resume).")] = 4096,
    overwrite: Annotated[bool, typer.Option(help="Replace a store of another teacher / a changed dataset.")
                         ] = False,
    strict: Annotated[bool, typer.Option(help="Fail on the first unreadable frame instead of counting it.")
                      ] = False,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow arbitrary pickled objects in the checkpoint.")
                                ] = False,
) -> None:
    """Run the frozen teacher once over a dataset and write CLS features + logits into the Zarr store.

    Resumable: a killed job continues at the first unfinished chunk; a complete job does no teacher work.
    """
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_source
    from fasd.teacher_cache.job import CacheOptions, default_workers, run_cache
    from fasd.teacher_cache.prompts import load_prompts
    from fasd.teacher_cache.teacher import TEACHER_KINDS, load_teacher

    if teacher not in TEACHER_KINDS:
        raise FasdError(f"unknown --teacher '{teacher}'; valid: {', '.join(TEACHER_KINDS)}")
    if checkpoint is None:
        raise FasdError("--checkpoint FILE is required: fasd never downloads teacher weights "
                        "(build one with `fasd teacher-finetune` or use FLIP's released checkpoint)")
    split_list = _csv(splits)
    unknown = [s for s in split_list if s not in SPLITS]
    if unknown or not split_list:
        raise FasdError(f"--splits {splits}: valid splits are {', '.join(SPLITS)}")
    _positive("--batch-size", batch_size)
    _positive("--chunk-rows", chunk_rows)
    shard_index, shard_count = _shard(shard)
    source = open_source(load_registry(config).dataset(dataset))
    loaded = load_teacher(teacher, checkpoint, load_prompts(prompts), centroid_mode, trust_checkpoint)
    options = CacheOptions(splits=tuple(split_list), batch_size=batch_size, device=device,
                           workers=default_workers() if workers is None else workers, shard=shard_index,
                           num_shards=shard_count, chunk_rows=chunk_rows, overwrite=overwrite, strict=strict)
    report = run_cache(source, loaded, store, options)
    state = "complete" if report.completed else "incomplete (other shards or a re-run will finish it)"
    if report.chunks_written == 0:
        typer.echo(f"{dataset}: nothing to do, all {report.chunks} chunk(s) of this shard already cached; "
                   f"dataset {state}")
    else:
        typer.echo(f"{dataset}: cached {report.frames_computed} frames in {report.chunks_written} chunk(s), "
                   f"{report.frames_per_s:.1f} frames/s; {len(report.unreadable)} unreadable; dataset {state}")


@command("inspect")
def inspect(
    store: Annotated[str, typer.Argument(help="Teacher store folder or fsspec URL.")],
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    verify: Annotated[int, typer.Option(help="Recompute N random frames per dataset online (needs "
                                             "--checkpoint and --config).")] = 0,
    checkpoint: Annotated[Optional[Path], typer.Option(help="The teacher checkpoint, for --verify.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml, for --verify's frame sources.")] = None,
    trust_checkpoint: Annotated[bool, typer.Option(help="Allow arbitrary pickled objects in the checkpoint.")
                                ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Summarise a teacher store: teacher, completion, label/split counts, integrity, size, teacher metrics."""
    from fasd.store_schema.inspect import format_summary, summarize_store
    from fasd.store_schema.store import open_store

    opened = open_store(store)
    if dataset is not None:
        opened.dataset(dataset)
    summary = summarize_store(opened, dataset)
    if verify:
        if checkpoint is None:
            raise FasdError("--verify N needs --checkpoint FILE (the teacher the store was cached with)")
        from fasd.config import load_registry
        from fasd.data.open_source import open_source
        from fasd.teacher_cache.verify import verify_frames

        registry = load_registry(config)
        sources = [open_source(registry.dataset(name)) for name in summary["datasets"]]
        summary["verify"] = verify_frames(opened, sources, checkpoint, verify, trust_checkpoint=trust_checkpoint)
    if as_json:
        _print_json(summary)
        return
    typer.echo(format_summary(summary))
    for name, result in summary.get("verify", {}).items():
        typer.echo(f"verify [{name}] {result['frames']} frames: worst cosine {result['worst_cosine']:.6f}, "
                   f"max |Δlogit| {result['max_logit_diff']:.4g}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
