"""``fasd synth``'s entry point: validate the options, plan and render each domain, write its HDF5 pack and the
registry (fasd.toml)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from fasd.config import refuse_rebinding, write_config
from fasd.constants import MODALITIES, SPLITS
from fasd.data.hdf5_pack import PackWriter
from fasd.data.synth.domains import (BLOCK, DEFAULT_FRAMES, DEFAULT_WORLD, DOMAIN_NAMES, FRAMES_PER_VIDEO,
                                     MAX_THREADS, MIN_SIZE, SYNTH_SOURCE, VIDEOS_PER_SUBJECT, WORLDS, DomainStyle,
                                     SensorStyle, sensor_style)
from fasd.data.synth.plan import plan_frames
from fasd.data.synth.raster import Grid
from fasd.data.synth.render import render_block
from fasd.data.synth.sensors import Sensors, plan_sensors
from fasd.errors import FasdError


def refuse_foreign_pack(path: Path) -> None:
    """Only a pack ``fasd synth`` wrote may be replaced by a new one."""
    if not path.exists():
        return
    try:
        with h5py.File(path, "r") as handle:
            ours = handle.attrs.get("source") == SYNTH_SOURCE
    except OSError:
        ours = False
    if not ours:
        raise FasdError(f"{path} exists and was not written by fasd synth; fasd will not overwrite it: "
                        f"choose another folder")


def synthesize(out_dir: Path, domains: int = 3, frames: int = DEFAULT_FRAMES, size: int = 112,
               seed: int = 0, progress: bool = True, modalities: Sequence[str] = ("rgb",),
               world: str = DEFAULT_WORLD) -> Path:
    """Write ``OUT_DIR/<domain>.h5`` for each domain of ``world`` and ``OUT_DIR/fasd.toml``; return the toml's path.

    The same arguments give byte-identical image arrays, and the RGB images do not depend on
    ``modalities`` (depth and IR draw from their own random streams).
    """
    style = WORLDS.get(world).style
    unknown = [name for name in modalities if name not in MODALITIES]
    if unknown or "rgb" not in modalities:
        raise FasdError(f"--modalities {','.join(modalities)}: choose among {', '.join(MODALITIES)}, rgb included")
    min_frames = len(SPLITS) * VIDEOS_PER_SUBJECT * FRAMES_PER_VIDEO
    if not 1 <= domains <= len(DOMAIN_NAMES):
        raise FasdError(f"--domains must be between 1 and {len(DOMAIN_NAMES)}, got {domains}")
    if frames < min_frames:
        raise FasdError(f"--frames must be at least {min_frames} (enough subjects for train, val and test), "
                        f"got {frames}")
    if size < MIN_SIZE:
        raise FasdError(f"--size must be at least {MIN_SIZE} pixels, got {size}")
    if seed < 0:
        raise FasdError(f"--seed must be a non-negative integer, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(DOMAIN_NAMES[:domains])
    entries = {name: {"format": "hdf5", "path": f"{name}.h5"} for name in names}
    refuse_rebinding(out_dir / "fasd.toml", entries, "choose another folder")  # the user's fasd.toml keeps its names
    for name in names:
        refuse_foreign_pack(out_dir / f"{name}.h5")
    extra = tuple(name for name in MODALITIES[1:] if name in modalities)
    with tqdm(total=domains * frames, desc="synth", unit="frame", disable=not progress) as bar:
        for index, name in enumerate(names):
            sensors = (sensor_style(index), extra, np.random.default_rng([seed, index, 1])) if extra else None
            write_domain(out_dir / f"{name}.h5", name, style(index), frames, size,
                         np.random.default_rng([seed, index]), bar, sensors)
    config = out_dir / "fasd.toml"
    write_config(config, entries, names)
    return config


def write_domain(path: Path, name: str, style: DomainStyle, frames: int, size: int,
                 rng: np.random.Generator, bar: tqdm,
                 sensors: tuple[SensorStyle, tuple[str, ...], np.random.Generator] | None = None) -> None:
    """Plan every frame, then render blocks on all cores (numpy releases the GIL) and append in order.

    ``sensors`` (the domain's depth/IR sensors, which of depth and ir to render, and their own random
    generator) adds depth and/or IR images; RGB draws only from ``rng``, so it is the same without them.
    """
    meta, params = plan_frames(name, style, frames, rng)
    blocks = [slice(start, min(start + BLOCK, frames)) for start in range(0, frames, BLOCK)]
    noise_seeds = rng.integers(2**63, size=len(blocks))  # a seed per block keeps threads deterministic
    grid = Grid(size)
    extra: tuple[str, ...] = ()
    if sensors is not None:
        sensor, extra, sensor_rng = sensors
        sensor_params = plan_sensors(sensor, params, frames, sensor_rng)
        sensor_seeds = sensor_rng.integers(2**63, size=(len(blocks), 2))  # depth's and IR's noise

    def render(index: int) -> dict[str, np.ndarray]:
        block = {key: value[blocks[index]] for key, value in params.items()}
        block_sensors = None if not extra else Sensors(
            sensor, {key: value[blocks[index]] for key, value in sensor_params.items()},
            {name: np.random.default_rng(seed) for name, seed in zip(MODALITIES[1:], sensor_seeds[index])
             if name in extra})
        return render_block(grid, style, block, np.random.default_rng(noise_seeds[index]), block_sensors)

    with (PackWriter(path, dataset=name, size=size, source=SYNTH_SOURCE, crop_policy="synthetic-centred",
                     modalities=("rgb", *extra)) as pack,
          ThreadPoolExecutor(max_workers=min(MAX_THREADS, os.cpu_count() or 1)) as pool):
        for block, frames_of in zip(blocks, pool.map(render, range(len(blocks)))):
            images = frames_of.pop("images")
            pack.append(images, **{key: value[block] for key, value in meta.items()}, **frames_of)
            bar.update(len(images))

