"""Dataset registry (fasd.toml) and protocol resolution.

Lookup order for the config file: explicit ``--config``, then ``$FASD_CONFIG``, then ``./fasd.toml``.
Relative dataset paths are resolved against the folder that holds the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from fasd.errors import FasdError

FORMATS = ("hdf5", "folder", "mcio")
DATASET_KEYS = ("format", "path", "manifest")
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
INTRA = "intra-"  # intra-dataset protocol prefix: intra-X trains, selects and tests on X's own splits


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
        names += [f"{INTRA}{d}" for d in self.datasets]
        return names

    def protocol(self, name: str) -> Protocol:
        """Resolve ``holdout-X`` (all protocol domains but X -> X), ``A-to-B``, or ``intra-X`` (any registered
        dataset X: train on its train split, select on its val split, test on its test split; OULU-NPU's
        Train/Dev/Test of one protocol fold)."""
        if name.startswith(INTRA) and name[len(INTRA):] in self.datasets:
            dataset = name[len(INTRA):]
            return Protocol(name, (dataset,), dataset)
        if name.startswith("holdout-"):
            target = name[len("holdout-"):]
            if target in self.domains and len(self.domains) > 1:
                return Protocol(name, tuple(d for d in self.domains if d != target), target)
        elif "-to-" in name:
            source, target = name.split("-to-", 1)
            if source in self.domains and target in self.domains and source != target:
                return Protocol(name, (source,), target)
        valid = ", ".join(self.protocol_names()) or "(none: register a dataset)"
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
            raise FasdError(f"config file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
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


def check_dataset_name(name: object, where: str = "") -> str:
    """Dataset names become store groups, protocol names (``A-to-B``) and flags: plain words only."""
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name) or "-to-" in name:
        raise FasdError(f"{where}dataset name {name!r} is not allowed: use letters, digits, '_' and '-' "
                        f"(not '-to-'), starting with a letter or digit")
    return name


def _read_toml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FasdError(f"{path} is not a UTF-8 text file; fasd.toml must be TOML") from None
    except OSError as exc:
        raise FasdError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FasdError(f"{path} is not valid TOML: {exc}") from None


def _typed(value: object, kind: type, what: str, path: Path) -> object:
    if not isinstance(value, kind):
        names = {str: "a string", dict: "a table", list: "an array"}
        raise FasdError(f"{what} in {path} must be {names[kind]}, got {type(value).__name__} {value!r}"[:300])
    return value


def _parse(raw: dict, path: Path) -> tuple[dict[str, DatasetEntry], list[str]]:
    """Check every fasd key's type; one line names the first problem."""
    base = path.parent
    datasets: dict[str, DatasetEntry] = {}
    for name, spec in _typed(raw.get("datasets", {}), dict, "[datasets]", path).items():
        check_dataset_name(name, f"[datasets.{name}] in {path}: ")
        _typed(spec, dict, f"[datasets.{name}]", path)
        unknown = sorted(set(spec) - set(DATASET_KEYS))
        if unknown:
            raise FasdError(f"[datasets.{name}] in {path} has unknown key '{unknown[0]}'; "
                            f"valid keys: {', '.join(DATASET_KEYS)}")
        fmt = _typed(spec.get("format", "hdf5"), str, f"datasets.{name}.format", path)
        if fmt not in FORMATS:
            raise FasdError(f"dataset '{name}' in {path}: format '{fmt}' is not one of {', '.join(FORMATS)}")
        if "path" not in spec:
            raise FasdError(f"dataset '{name}' in {path} has no 'path'")
        data_path = _typed(spec["path"], str, f"datasets.{name}.path", path)
        manifest = _typed(spec.get("manifest", ""), str, f"datasets.{name}.manifest", path)
        if not data_path or "\0" in data_path or "\0" in manifest:
            raise FasdError(f"datasets.{name}.path in {path} must be a non-empty file path")
        datasets[name] = DatasetEntry(name=name, format=fmt, path=(base / data_path).resolve(),
                                      manifest=(base / manifest).resolve() if manifest else None)
    protocol = _typed(raw.get("protocol", {}), dict, "[protocol]", path)
    unknown = sorted(set(protocol) - {"domains"})
    if unknown:
        raise FasdError(f"[protocol] in {path} has unknown key '{unknown[0]}'; the only key is 'domains'")
    domains = _typed(protocol.get("domains", list(datasets)), list, "[protocol] domains", path)
    for domain in domains:
        if not isinstance(domain, str) or domain not in datasets:
            raise FasdError(f"[protocol] domains in {path} names {domain!r}, which is not a registered dataset")
    if len(set(domains)) != len(domains):
        raise FasdError(f"[protocol] domains in {path} lists a dataset twice")
    return datasets, list(domains)


def load_registry(explicit: str | Path | None = None) -> Registry:
    path = find_config(explicit).resolve()
    datasets, domains = _parse(_read_toml(path)[1], path)
    return Registry(path=path, datasets=datasets, domains=domains)


def _has_comment(text: str) -> bool:
    """True when a ``#`` starts a comment (outside every kind of TOML string) in valid TOML ``text``."""
    i, quote = 0, ""
    while i < len(text):
        if quote:
            if quote in ('"', '"""') and text[i] == "\\":  # basic strings have escapes, literal ones not
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = ""
                continue
        else:
            if text[i] == "#":
                return True
            for opener in ('"""', "'''", '"', "'"):
                if text.startswith(opener, i):
                    quote = opener
                    i += len(opener) - 1
                    break
        i += 1
    return False


def _read_for_update(config_path: Path) -> dict:
    """The existing fasd.toml to merge into ({} when there is none): valid, typed and without comments."""
    if not config_path.exists():
        return {}
    text, raw = _read_toml(config_path)
    if _has_comment(text):
        raise FasdError(f"{config_path} has comments, which fasd's TOML writer would drop; remove them or "
                        f"add the entry by hand")
    _parse(raw, config_path.resolve())
    return raw


def write_config(config_path: Path, datasets: dict[str, dict], domains: list[str] | None) -> None:
    """Merge ``datasets`` (and ``domains`` into [protocol] domains) into a fasd.toml, written atomically.

    Entries of the same name are replaced; every other dataset, table and key of the file is kept. A new
    domain list extends the existing one (or, without one, the datasets already registered). Files with
    comments are refused: the writer (tomli-w) cannot keep them.
    """
    config_path = Path(config_path)
    for name in datasets:
        check_dataset_name(name)
    raw = _read_for_update(config_path)
    old_datasets = raw.get("datasets", {})
    raw["datasets"] = {**old_datasets, **{name: dict(spec) for name, spec in datasets.items()}}
    if domains is not None:
        protocol = raw.setdefault("protocol", {})
        current = list(protocol.get("domains", old_datasets))
        protocol["domains"] = current + [d for d in domains if d not in current]
    _parse(raw, config_path.resolve())
    text = tomli_w.dumps(raw)
    tmp = config_path.with_name(f".{config_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)


def register_dataset(config_path: Path, name: str, fmt: str, data_path: Path) -> None:
    """Add or replace ``[datasets.NAME]`` in a fasd.toml, keeping everything else; paths stored relative."""
    config_path = Path(config_path)
    try:
        rel = os.path.relpath(Path(data_path).resolve(), config_path.resolve().parent)
    except ValueError:
        rel = str(Path(data_path).resolve())
    write_config(config_path, {name: {"format": fmt, "path": rel}}, None)
