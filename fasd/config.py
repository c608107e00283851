"""Dataset registry (fasd.toml) and protocol resolution.

Lookup order for the config file: explicit ``--config``, then ``$FASD_CONFIG``, then ``./fasd.toml``.
Relative dataset paths are resolved against the folder that holds the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from fasd.errors import FasdError

FORMATS = ("hdf5", "folder", "mcio")


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    format: str
    path: Path
    manifest: Path | None = None  # folder format: CSV manifest (default <path>/manifest.csv)


@dataclass(frozen=True)
class Protocol:
    name: str
    sources: tuple[str, ...]
    target: str


@dataclass
class Registry:
    path: Path
    datasets: dict[str, DatasetEntry]
    domains: list[str] = field(default_factory=list)

    def dataset(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            valid = ", ".join(sorted(self.datasets)) or "(none)"
            raise FasdError(f"unknown dataset '{name}' in {self.path}; registered datasets: {valid}")
        return self.datasets[name]

    def protocol_names(self) -> list[str]:
        names = [f"holdout-{d}" for d in self.domains] if len(self.domains) > 1 else []
        names += [f"{a}-to-{b}" for a in self.domains for b in self.domains if a != b]
        return names

    def protocol(self, name: str) -> Protocol:
        """Resolve ``holdout-X`` (all protocol domains but X -> X) or ``A-to-B``."""
        if name.startswith("holdout-"):
            target = name[len("holdout-"):]
            if target in self.domains and len(self.domains) > 1:
                return Protocol(name, tuple(d for d in self.domains if d != target), target)
        elif "-to-" in name:
            source, target = name.split("-to-", 1)
            if source in self.domains and target in self.domains and source != target:
                return Protocol(name, (source,), target)
        valid = ", ".join(self.protocol_names()) or "(none: register at least two datasets)"
        raise FasdError(f"unknown protocol '{name}'; valid protocols: {valid}")

    def explicit_protocol(self, sources: list[str], target: str) -> Protocol:
        for name in [*sources, target]:
            self.dataset(name)
        if target in sources:
            raise FasdError(f"target '{target}' is also a source; choose a held-out target")
        return Protocol(f"{'+'.join(sources)}-to-{target}", tuple(sources), target)


def find_config(explicit: str | Path | None = None) -> Path:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise FasdError(f"config file not found: {path}")
        return path
    env = os.environ.get("FASD_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FasdError(f"$FASD_CONFIG points to a missing file: {path}")
        return path
    path = Path("fasd.toml")
    if not path.is_file():
        raise FasdError("no fasd.toml found: pass --config FILE, set $FASD_CONFIG, "
                        "or run `fasd synth DIR` to create one")
    return path


def load_registry(explicit: str | Path | None = None) -> Registry:
    path = find_config(explicit).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FasdError(f"{path} is not valid TOML: {exc}") from None
    base = path.parent
    datasets: dict[str, DatasetEntry] = {}
    for name, spec in raw.get("datasets", {}).items():
        fmt = spec.get("format", "hdf5")
        if fmt not in FORMATS:
            raise FasdError(f"dataset '{name}' in {path}: format '{fmt}' is not one of {', '.join(FORMATS)}")
        if "path" not in spec:
            raise FasdError(f"dataset '{name}' in {path} has no 'path'")
        manifest = spec.get("manifest")
        datasets[name] = DatasetEntry(
            name=name, format=fmt, path=(base / spec["path"]).resolve(),
            manifest=(base / manifest).resolve() if manifest else None)
    domains = list(raw.get("protocol", {}).get("domains", list(datasets)))
    for domain in domains:
        if domain not in datasets:
            raise FasdError(f"[protocol] domains in {path} names '{domain}', which is not a registered dataset")
    return Registry(path=path, datasets=datasets, domains=domains)


def register_dataset(config_path: Path, name: str, fmt: str, data_path: Path) -> None:
    """Add or replace ``[datasets.NAME]`` in a fasd.toml, keeping other entries; paths stored relative."""
    config_path = Path(config_path)
    raw = tomllib.loads(config_path.read_text()) if config_path.is_file() else {}
    datasets = raw.get("datasets", {})
    try:
        rel = os.path.relpath(Path(data_path).resolve(), config_path.resolve().parent)
    except ValueError:
        rel = str(Path(data_path).resolve())
    datasets[name] = {"format": fmt, "path": rel}
    domains = raw.get("protocol", {}).get("domains")
    write_config(config_path, datasets, domains)


def write_config(config_path: Path, datasets: dict[str, dict], domains: list[str] | None) -> None:
    lines = []
    for name, spec in datasets.items():
        lines.append(f"[datasets.{name}]")
        for key, value in spec.items():
            lines.append(f'{key} = "{value}"')
        lines.append("")
    if domains is not None:
        lines.append("[protocol]")
        lines.append("domains = [" + ", ".join(f'"{d}"' for d in domains) + "]")
        lines.append("")
    Path(config_path).write_text("\n".join(lines))
