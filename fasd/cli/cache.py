"""Phase 1 commands: synth, ingest, teacher-finetune, cache-teacher, inspect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fasd.cli.app import command, _csv, _detectors_help, _finite, _layers, _positive, _print_json, _shard, lazy_help
from fasd.errors import FasdError
from fasd.io_checks import ensure_writable

TrustCheckpoint = Annotated[bool, typer.Option("--trust-checkpoint",
                                               help="Allow arbitrary pickled objects in the checkpoint (--init).")]


@command("synth")
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the HDF5 packs and fasd.toml.")],
    domains: Annotated[int, typer.Option(help="Number of synthetic domains (cameras/attack styles).")] = 3,
    frames: Annotated[int, typer.Option(help="Frames per domain over all splits.")] = 600,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 112,
    seed: Annotated[int, typer.Option(help="Random seed; the output is deterministic for a seed.")] = 0,
    modalities: Annotated[str, typer.Option(help="Comma-separated modalities to render: rgb, depth, ir (depth "
                                                 "and IR carry their own spoof cues and sensor differences; "
                                                 "the RGB images are the same either way).")] = "rgb",
    world: Annotated[str, typer.Option(help="How the domains look: shared (one recapture cue shared by every "
                                            "domain under domain-specific camera, scene and attack-medium "
                                            "nuisance) or cues (fasd 0.2's: each domain's own cues, and masks).")
                     ] = "shared",
) -> None:
    """Write a synthetic FAS benchmark (one HDF5 pack per domain + fasd.toml); needs no download."""
    from fasd.data.synth import synthesize

    config = synthesize(out_dir, domains=domains, frames=frames, size=size, seed=seed,
                        modalities=tuple(_csv(modalities)), world=world)
    typer.echo(f"wrote {domains} synthetic domain(s) and {config}")


@command("frames")
def frames(
    pack: Annotated[Path, typer.Argument(help="HDF5 frame pack (written by synth or ingest).")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG files.")],
    count: Annotated[int, typer.Option(help="Frames to write, alternating live and spoof.")] = 8,
    split: Annotated[str, typer.Option(help="Split to take them from: train, val or test.")] = "test",
) -> None:
    """Write a few frames of a pack as <index>_<live|spoof>_<frame_id>.png (images to try `fasd predict` on); a
    multimodal pack's into OUT/rgb, OUT/depth and OUT/ir under the same names."""
    from fasd.data.export_frames import export_frames

    paths = export_frames(pack, out, count, split)
    folders = sorted({str(path.parent) for path in paths})
    typer.echo(f"wrote {len(paths)} file(s) of {pack} ({split}) to {', '.join(folders)}")


@command("ingest")
def ingest(
    kind: Annotated[str, typer.Argument(help="Native layout: oulu, replay, celeba, mcio, mmdg (the MMDG "
                                             "benchmark lists: RGB, depth and IR) or faces (your own photos and "
                                             "videos in <train|val|test>/<live|spoof>[/<attack>]/; faces "
                                             "detected, see docs/faces.md).")],
    root: Annotated[Path, typer.Option(help="The dataset as distributed (its top folder).")],
    out: Annotated[Path, typer.Option(help="HDF5 frame pack to write.")],
    size: Annotated[int, typer.Option(help="Side of the square face crops.")] = 112,
    frames_per_video: Annotated[Optional[int], typer.Option(
        help="Frames sampled evenly per video among annotated frames (default: all).")] = None,
    protocol: Annotated[Optional[str], typer.Option(help="OULU protocol: Protocol_1, Protocol_2, Protocol_3/K, "
                                                         "Protocol_4/K.")] = None,
    margin: Annotated[Optional[float], typer.Option(help="Extra crop border on each side, as a fraction of the "
                                                         "face size (default 0.2).")] = None,
    lists: Annotated[Optional[Path], typer.Option(help="mmdg: folder of the X-{train,val,test}.txt lists "
                                                       "(default: --root).")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="mmdg: which lists to ingest, e.g. W (one pack per "
                                                        "dataset; needed when --lists holds several).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel decoding processes.")] = 1,
    register: Annotated[Optional[str], typer.Option(help="Register the pack under this name in --config.")
                        ] = None,
    config: Annotated[Path, typer.Option(help="fasd.toml to register the pack in.")] = Path("fasd.toml"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out when it is a pack fasd ingest "
                                                                "wrote (never another file).")] = False,
    detector: Annotated[Optional[str], typer.Option(help=lazy_help(lambda: _detectors_help(
        "faces: the face detector (default haar)")))] = None,
    detector_weights: Annotated[Optional[str], typer.Option(
        help="faces: the detector's weights: yunet a .onnx; retinaface MODEL.caffemodel[,deploy.prototxt].")] = None,
    crop_scale: Annotated[Optional[float], typer.Option(help="faces: crop side / face box side (default 1.4).")
                          ] = None,
) -> None:
    """Turn a native dataset layout (videos + annotations, or images + labels) into an HDF5 frame pack;
    --register NAME also adds NAME to --config's [protocol] domains."""
    from fasd.config import register_dataset
    from fasd.data.ingest import DEFAULT_MARGIN, run_ingest

    if margin is not None:
        _finite("--margin", margin)
    ensure_writable(out)
    if register:  # a name the config binds elsewhere is refused before the long work
        register_dataset(config, register, "hdf5", out, check_only=True)
    summary = run_ingest(kind, root, out, size=size, frames_per_video=frames_per_video, protocol=protocol,
                         workers=workers, margin=DEFAULT_MARGIN if margin is None else margin, lists=lists,
                         dataset=dataset, overwrite=overwrite, detector=detector,
                         detector_weights=detector_weights, crop_scale=crop_scale)
    typer.echo(summary.format())
    if register:
        register_dataset(config, register, "hdf5", out)
        typer.echo(f"registered '{register}' in {config} (and added it to its [protocol] domains)")


@command("teacher-finetune")
def teacher_finetune(
    sources: Annotated[str, typer.Option(help="Comma-separated source datasets to fine-tune on.")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (read by cache-teacher: clip -> --teacher "
                                           "flip-mcl, vit -> --teacher vit).")],
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    method: Annotated[str, typer.Option(help="clip (FLIP-style CLIP image tower vs frozen prompt centroids), "
                                             "vit (a timm ViT/DeiT with a 2-way head, as HaTFAS) or mmda (paper "
                                             "B: CLIP ViT on RGB, depth and IR; -> --teacher mmda).")] = "clip",
    arch: Annotated[Optional[str], typer.Option(help="clip: open_clip architecture with random weights (default "
                                                     "fasd-tiny-clip, or ViT-B-16); vit: timm name (default "
                                                     "deit_base_patch16_224).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this checkpoint (clip: OpenAI-format or FLIP; "
                                                      "vit: a timm/DeiT state dict or {'model': ...}).")] = None,
    prompts: Annotated[Optional[Path], typer.Option(help='JSON {"spoof": [...], "live": [...]}.')] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 6; mmda 80, paper B's).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Frames per step (default 64; mmda 24).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW learning rate (default: clip 5e-4 for random weights, "
                                                    "1e-6 (FLIP's) with --init; vit 5e-4·batch/512 (DeiT's)).")
                  ] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay (default 0.05; mmda 1e-3).")
                            ] = None,
    centroid_mode: Annotated[str, typer.Option(help="flip or clip prompt centroids.")] = "flip",
    max_frames_per_epoch: Annotated[Optional[int], typer.Option(help="Cap the draws per epoch.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader workers.")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed; on the CPU two runs are bit-identical for one seed and "
                                           "one torch thread count (OMP_NUM_THREADS; the summary records it).")] = 0,
    trust_checkpoint: TrustCheckpoint = False,
    md2a: Annotated[bool, typer.Option("--md2a/--no-md2a", help="mmda: MD2A fusion (off: plain self-attention).")
                    ] = True,
    rs2: Annotated[bool, typer.Option("--rs2/--no-rs2", help="mmda: RS2 caption alignment (off: CE only).")] = True,
    udsa_depth: Annotated[int, typer.Option(help="mmda: U-DSA adapter depth (0: none).")] = 7,
    rs2_min: Annotated[str, typer.Option(help="mmda: over-all or own-class reading of RS2's min.")] = "over-all",
    udsa_exit: Annotated[str, typer.Option(help="mmda: U-DSA exit: v0 (paper B Fig. 6: v'0 = v0 + Remap(v'1), one "
                                                "Remap per layer) or v1 (fasd 0.2: the exit at v'1); the parameter "
                                                "counts are printed beside paper B's Table 9.")] = "v0",
    caption_udsa: Annotated[bool, typer.Option("--caption-udsa/--no-caption-udsa",
                                               help="mmda: pass the caption embeddings through U-DSA and align each "
                                                    "depth to its own (paper B Appendix B); off: every depth to the "
                                                    "raw captions (fasd 0.2).")] = True,
    captions: Annotated[Optional[Path], typer.Option(help='mmda: JSON {"spoof": [...], "live": [...]} (default: '
                                                          "paper B's 24 + 24 captions).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out when it is a checkpoint "
                                                                "teacher-finetune wrote (never another file).")
                         ] = False,
) -> None:
    """Fine-tune a teacher for FAS on the sources' train splits and write a checkpoint cache-teacher reads."""
    from fasd.teacher_cache.finetune import finetune_teacher
    from fasd.teacher_cache.prompts import load_prompts

    from fasd.teacher_cache.mmda.captions import load_captions
    from fasd.teacher_cache.mmda.model import MMDASettings

    # The MMDA switches: only --method mmda reads them, so another method refuses them rather than ignore them.
    settings = MMDASettings(md2a=md2a, rs2=rs2, udsa_depth=udsa_depth, rs2_min=rs2_min, udsa_exit=udsa_exit,
                            caption_udsa=caption_udsa)
    if method != "mmda" and (settings != MMDASettings() or captions is not None):
        raise FasdError(f"--md2a/--rs2/--udsa-depth/--rs2-min/--udsa-exit/--caption-udsa/--captions are --method "
                        f"mmda switches; --method {method} does not read them: drop them")
    method_options = {"settings": settings, "captions": load_captions(captions)}
    summary = finetune_teacher(config, _csv(sources), out, init=init, arch=arch, prompts=load_prompts(prompts),
                               centroid_mode=centroid_mode, lr=lr, weight_decay=weight_decay, epochs=epochs,
                               batch_size=batch_size, max_frames_per_epoch=max_frames_per_epoch, device=device,
                               workers=workers, seed=seed, trust_checkpoint=trust_checkpoint, method=method,
                               method_options=method_options, overwrite=overwrite)
    val = summary.get("val") or {}
    accuracy = summary.get("train_accuracy")
    typer.echo(f"{summary['arch']} ({summary['method']}) on {', '.join(summary['sources'])}: {summary['epochs']} "
               f"epoch(s) in {summary['seconds']:.1f} s; train loss {summary['train_loss']:.4f}"
               + (f", accuracy {accuracy:.3f}" if accuracy is not None else "")
               + (f"; val accuracy {val['accuracy']:.3f}, EER {val['eer']:.3f}" if val.get("eer") is not None else ""))
    typer.echo(f"wrote {summary['out']} (cache it with --teacher {summary['teacher']}); full summary: "
               f"{summary['out']}.json")


@command("cache-teacher")
def cache_teacher(
    dataset: Annotated[str, typer.Option(help="Dataset name registered in fasd.toml.")],
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml (default: $FASD_CONFIG, ./fasd.toml).")] = None,
    store: Annotated[str, typer.Option(help="Teacher store: a folder or fsspec URL (s3://...).")] = "teacher.zarr",
    teacher: Annotated[str, typer.Option(help="Registered teacher kind: flip-mcl (a FLIP checkpoint), clip (an "
                                              "OpenAI CLIP state dict), vit (a timm ViT/DeiT checkpoint), mmda "
                                              "(teacher-finetune --method mmda; reads RGB, depth and IR) or onnx "
                                              "(any model exported to ONNX: state its contract with --input-size, "
                                              "--channel-order, --pixel-range, --normalize, --live-class).")
                       ] = "flip-mcl",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Teacher checkpoint file (never downloaded).")] = None,
    normalize: Annotated[Optional[str], typer.Option(
        help="Input mean/std: imagenet, clip or none (onnx: raw pixels in --pixel-range units) (default: the "
             "kind's own contract — flip-mcl imagenet as FLIP trained it, clip clip, vit imagenet, onnx imagenet).")
    ] = None,
    input_size: Annotated[Optional[int], typer.Option(help="onnx: the model's input side in pixels (default: its "
                                                           "fixed input size; required when dynamic).")] = None,
    channel_order: Annotated[Optional[str], typer.Option(help="onnx: rgb or bgr, the channel order the model reads "
                                                              "(default: rgb).")] = None,
    pixel_range: Annotated[Optional[int], typer.Option(help="onnx: 1 or 255, what one unit of input means before "
                                                            "normalisation: 0..1 or 0..255 pixels (default: 1).")
                           ] = None,
    live_class: Annotated[Optional[list[str]], typer.Option(
        metavar="K", help="onnx: a class index meaning bona fide; repeat it or give a comma list, e.g. 1 or 0,2 "
                          "(default: 1 for a 1- or 2-logit head; required for more classes).")] = None,
    feature_output: Annotated[Optional[str], typer.Option(help="onnx: also cache this output (by name) as the "
                                                               "unit-length feature (default: none).")] = None,
    arch: Annotated[Optional[str], typer.Option(help="vit: the timm model name, e.g. deit_base_patch16_224.")
                    ] = None,
    layers: Annotated[Optional[str], typer.Option(
        help="Also cache the CLS token at these 0-based blocks as layer_cls, e.g. 4,6,8 (default: none).")] = None,
    layer_tap: Annotated[str, typer.Option(help="block (output of block k, before the final norm) or official "
                                                "(HaTFAS code: blk.attn(blk.norm1(x0))[:, 0]).")] = "block",
    prompts: Annotated[Optional[Path], typer.Option(
        help='JSON {"spoof": [...], "live": [...]} overriding FLIP\'s 6 + 6 prompt ensemble (paper A describes '
             '3 + 3 prompts: give them here, with --centroid-mode clip).')] = None,
    centroid_mode: Annotated[str, typer.Option(help="flip (mean of the raw text embeddings, then normalised: FLIP's "
                                                    "evaluation) or clip (each embedding normalised, then averaged: "
                                                    "paper A's description).")] = "flip",
    splits: Annotated[str, typer.Option(help="Comma-separated splits to cache.")] = "train,val,test",
    batch_size: Annotated[int, typer.Option(help="Frames per teacher forward.")] = 256,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[Optional[int], typer.Option(help="DataLoader decode workers (default: half the cores, "
                                                        "at most 8).")] = None,
    shard: Annotated[Optional[str], typer.Option(help="I/N: cache every N-th chunk starting at I (default: "
                                                      "torchrun's RANK/WORLD_SIZE).")] = None,
    chunk_rows: Annotated[int, typer.Option(help="Rows per Zarr chunk (the unit of resume).")] = 4096,
    overwrite: Annotated[bool, typer.Option("--overwrite",
                                            help="Replace a store of another teacher / a changed dataset.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable frame instead of counting it.")
                      ] = False,
    repair: Annotated[bool, typer.Option("--repair", help="First re-read every finished chunk of the dataset and "
                                                          "recompute the corrupt or missing ones.")] = False,
    trust_checkpoint: TrustCheckpoint = False,
    views: Annotated[int, typer.Option(help="Also cache every target on K augmented views of each frame (crop, "
                                            "flip, colour jitter) that `fasd train --views` replays (0: none).")
                     ] = 0,
    view_seed: Annotated[int, typer.Option(help="Seed of the view draws (with each frame ID).")] = 0,
    view_jitter: Annotated[int, typer.Option(help="1: views include colour jitter; 0: crop and flip only.")] = 1,
    mix: Annotated[Optional[str], typer.Option(
        help="With --views: mix each view with a partner frame of the same chunk and split and cache the teacher "
             "on the mixed pixels (HaTFAS: mixup=0.8,cutmix=1.0; also prob=P, switch_prob=P); `fasd train "
             "--views` replays the mixed image and its mixed label (default: no mixing).")] = None,
    precision: Annotated[str, typer.Option(help="The teacher's autocast: auto (bf16 on CUDA where supported, else "
                                                "fp16; fp32 on CPU), fp32, bf16 or fp16.")] = "auto",
) -> None:
    """Run the frozen teacher once over a dataset and write its targets (logits, CLS feature, layer tokens, ...)
    into the Zarr store.

    Resumable: a killed job continues at the first unfinished chunk; a complete job does no teacher work.
    """
    from fasd import distributed
    from fasd.config import load_registry
    from fasd.constants import SPLITS
    from fasd.data.open_source import open_source
    from fasd.device import default_workers
    from fasd.teacher_cache.job import CacheOptions, check_precision, run_cache
    from fasd.teacher_cache.prompts import load_prompts
    from fasd.teacher_cache.registry import TEACHERS, TeacherOptions, load_teacher
    from fasd.mixing import MixSettings
    from fasd.views import ViewSettings

    TEACHERS.get(teacher)  # an unknown kind is named before anything else is checked
    if checkpoint is None:
        raise FasdError("--checkpoint FILE is required: fasd never downloads teacher weights "
                        "(build one with `fasd teacher-finetune` or use FLIP's released checkpoint)")
    split_list = _csv(splits)
    unknown = [s for s in split_list if s not in SPLITS]
    if unknown or not split_list:
        raise FasdError(f"--splits {splits}: valid splits are {', '.join(SPLITS)}")
    _positive("--batch-size", batch_size)
    _positive("--chunk-rows", chunk_rows)
    check_precision(precision)
    mixing = MixSettings.parse(mix)
    if mixing.active and not views:
        raise FasdError("--mix mixes stored views: give --views K too")
    if views < 0 or view_jitter not in (0, 1):
        raise FasdError(f"--views must be >= 0 and --view-jitter 0 or 1, got --views {views} --view-jitter "
                        f"{view_jitter}")
    shard_index, shard_count = _shard(shard)
    source = open_source(load_registry(config).dataset(dataset))
    loaded = load_teacher(teacher, TeacherOptions(
        checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, normalize=normalize, prompts=load_prompts(prompts),
        centroid_mode=centroid_mode, arch=arch, layers=tuple(_layers(layers)) if layers else (), layer_tap=layer_tap,
        input_size=input_size, channel_order=channel_order, pixel_range=pixel_range,
        live_classes=_class_indices("--live-class", live_class or []), feature_output=feature_output))
    options = CacheOptions(splits=tuple(split_list), batch_size=batch_size, device=device,
                           workers=default_workers() if workers is None else workers, shard=shard_index,
                           num_shards=shard_count, chunk_rows=chunk_rows, overwrite=overwrite, strict=strict,
                           views=ViewSettings(views, view_seed, bool(view_jitter), mixing), precision=precision)
    if "://" not in store:
        ensure_writable(Path(store))
    if repair:
        _repair(store, dataset)
    with distributed.process_group() as ranks:
        report = run_cache(source, loaded, store, options)
    if not ranks.is_main:
        return
    state = "complete" if report.completed else "incomplete (other shards or a re-run will finish it)"
    if report.chunks_written == 0:
        typer.echo(f"{dataset}: nothing to do, all {report.chunks} chunk(s) of this shard already cached; "
                   f"dataset {state}")
    else:
        typer.echo(f"{dataset}: cached {report.frames_computed} frames in {report.chunks_written} chunk(s), "
                   f"{report.frames_per_s:.1f} frames/s; {len(report.unreadable)} unreadable; dataset {state}")


def _class_indices(flag: str, values: list[str]) -> tuple[int, ...]:
    """A repeatable option of class indices, each also a comma list: ``--live-class 0 --live-class 2,3``."""
    try:
        return tuple(int(v) for value in values for v in _csv(value))
    except ValueError:
        raise FasdError(f"{flag} takes class indices like 1 or 0,2, got '{','.join(values)}'") from None


def _repair(path: str, dataset: str) -> None:
    """Clear the done flags of damaged chunks so the cache run recomputes them."""
    from fasd.store_schema.check import describe, repair
    from fasd.store_schema.store import StoreNotFound, open_store

    try:
        store = open_store(path, writable=True)
    except StoreNotFound:
        return  # nothing cached yet: the run computes everything
    if dataset in store.dataset_names():
        damaged = repair(store, dataset)
        typer.echo(describe(dataset, damaged) + ("; recomputing them" if damaged else ""))


@command("inspect")
def inspect(
    store: Annotated[str, typer.Argument(help="Teacher store folder or fsspec URL.")],
    dataset: Annotated[Optional[str], typer.Option(help="Only this dataset.")] = None,
    verify: Annotated[int, typer.Option(help="Recompute N random frames per dataset online (needs "
                                             "--checkpoint and --config).")] = 0,
    check: Annotated[bool, typer.Option("--check", help="Decode every chunk and name the corrupt or missing ones "
                                                        "(exit 1 when any).")] = False,
    checkpoint: Annotated[Optional[Path], typer.Option(help="The teacher checkpoint, for --verify.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="fasd.toml, for --verify's frame sources.")] = None,
    trust_checkpoint: TrustCheckpoint = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Summarise a teacher store: teacher, completion, label/split counts, integrity, size, teacher metrics."""
    from fasd.evaluate.store_metrics import teacher_metrics
    from fasd.store_schema.inspect import format_summary, summarize_store
    from fasd.store_schema.store import open_store

    opened = open_store(store)
    if dataset is not None:
        opened.dataset(dataset)
    summary = summarize_store(opened, dataset)
    for name, entry in summary["datasets"].items():
        entry["teacher_metrics"] = {} if entry["damaged"] else teacher_metrics(opened, name)
    if verify < 0:
        raise FasdError(f"--verify must be >= 0 frames, got {verify}")
    if verify:
        if checkpoint is None:
            raise FasdError("--verify N needs --checkpoint FILE (the teacher the store was cached with)")
        from fasd.config import load_registry
        from fasd.data.open_source import open_source
        from fasd.teacher_cache.verify import verify_frames

        registry = load_registry(config)
        sources = [open_source(registry.dataset(name)) for name in summary["datasets"]]
        summary["verify"] = verify_frames(opened, sources, checkpoint, verify, trust_checkpoint=trust_checkpoint)
    damaged, text = {}, {}
    if check:
        from fasd.store_schema.check import damaged_chunks, damaged_text

        damaged = {name: damaged_chunks(opened, name) for name in summary["datasets"]}
        summary["check"] = {name: {str(c): why for c, why in chunks.items()} for name, chunks in damaged.items()}
        text = summary["check_text"] = damaged_text(opened)
    if as_json:
        _print_json(summary)
    else:
        typer.echo(format_summary(summary))
        for name, result in summary.get("verify", {}).items():
            views = ("" if "view_params_match" not in result else
                     f"; one stored view per frame recomputed, view parameters drawn again "
                     f"{'identical' if result['view_params_match'] else 'DIFFERENT (damaged store)'}")
            typer.echo(f"verify [{name}] {result['frames']} frames: worst cosine {result['worst_cosine']:.6f}, "
                       f"max |Δlogit| {result['max_logit_diff']:.4g}{views}")
    if check:
        _report_damage(store, damaged, text, as_json)


def _report_damage(path: str, damaged: dict[str, dict[int, str]], text: dict[str, str], quiet: bool) -> None:
    """One line per dataset and one for the text arrays (unless JSON was printed), then exit 1 naming the repair
    command when damaged (any cache run of the same teacher rewrites damaged text arrays)."""
    from fasd.store_schema.check import describe

    if not quiet:
        for name, chunks in damaged.items():
            typer.echo(describe(name, chunks))
        typer.echo("[text] " + ("; ".join(f"{name}: {why}" for name, why in text.items()) if text else
                                "every text array reads back intact"))
    broken = [name for name, chunks in damaged.items() if chunks]
    if text and not broken:
        typer.echo(f"fasd inspect: error: {', '.join(text)} damaged; restore with `fasd cache-teacher --dataset "
                   f"NAME --store {path} --checkpoint ...` (the same teacher rewrites it)", err=True)
        raise typer.Exit(1)
    if broken:
        typer.echo(f"fasd inspect: error: {len(broken)} dataset(s) damaged; recompute with `fasd cache-teacher "
                   f"--dataset {broken[0]} --store {path} --repair --checkpoint ...`", err=True)
        raise typer.Exit(1)
