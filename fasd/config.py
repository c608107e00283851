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
HOLDOUT = "holdout-"  # holdout-X: train on every other protocol domain, test on X
TO = "-to-"  # A-to-B: train on A, test on B
POOL = "+"  # joins the datasets of one side of a protocol: the name of A,B-to-C,D is A+B-to-C+D
SIDE = re.compile(r"[,+]")  # how a user may list one side's datasets: A,B or A+B


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    format: str
    path: Path
    manifest: Path | None = None  # folder format: CSV manifest (default <path>/manifest.csv)


@dataclass(frozen=True)
class Protocol:
    """Train on ``sources``, test on ``targets``. Several targets are tested as one pooled test set (the union
    of their test splits, fasd.data.pooled), named ``target``: the target names joined by POOL."""

    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]

    @property
    def target(self) -> str:
        return POOL.join(self.targets)


def pooled_members(target: str) -> list[str]:
    """The dataset names of a (possibly pooled) target name: ``C+D`` -> [C, D], ``C`` -> [C]."""
    return target.split(POOL)


@dataclass
class DatasetRegistry:
    path: Path
    datasets: dict[str, DatasetEntry]
    domains: list[str] = field(default_factory=list)

    def dataset(self, name: str) -> DatasetEntry:
        if name not in self.datasets:
            valid = ", ".join(sorted(self.datasets)) or "(none)"
            raise FasdError(f"unknown dataset '{name}' in {self.path}; registered datasets: {valid}")
        return self.datasets[name]

    def protocol_names(self) -> list[str]:
        """Every protocol but the limited-source ones (A,B-to-C,D: one per pair of disjoint subsets)."""
        names = [f"{HOLDOUT}{d}" for d in self.domains] if len(self.domains) > 1 else []
        names += [f"{a}{TO}{b}" for a in self.domains for b in self.domains if a != b]
        names += [f"{INTRA}{d}" for d in self.datasets]
        return names

    def _unknown(self, name: str, problem: str = "") -> FasdError:
        valid = ", ".join(self.protocol_names()) or "(none: register a dataset)"
        return FasdError(f"unknown protocol '{name}'{problem}; valid protocols: {valid}, or A,B-to-C,D "
                         f"(limited sources: any disjoint protocol domains)")

    def protocol(self, name: str) -> Protocol:
        """Resolve ``holdout-X`` (all protocol domains but X -> X), ``A-to-B``, ``A,B-to-C,D`` (also written
        ``A+B-to-C+D``: limited sources, the targets' test splits pooled; named with '+'), or ``intra-X`` (any
        registered dataset X: train on its train split, select on its val split, test on its test split;
        OULU-NPU's Train/Dev/Test of one protocol fold)."""
        if name.startswith(INTRA) and name[len(INTRA):] in self.datasets:
            dataset = name[len(INTRA):]
            return Protocol(name, (dataset,), (dataset,))
        if name.startswith(HOLDOUT):
            target = name[len(HOLDOUT):]
            if target in self.domains and len(self.domains) > 1:
                return Protocol(name, tuple(d for d in self.domains if d != target), (target,))
        elif TO in name:
            return self._limited(name)
        raise self._unknown(name)

    def _limited(self, name: str) -> Protocol:
        """``A-to-B`` (named as given) and ``A,B-to-C,D`` (named ``A+B-to-C+D``) over protocol domains."""
        sides = [tuple(SIDE.split(side)) for side in name.split(TO, 1)]
        for side in sides:
            outside = [d for d in side if d not in self.domains]
            if outside:
                raise self._unknown(name, f" ('{outside[0]}' is not a protocol domain)")
            if len(set(side)) != len(side):
                raise self._unknown(name, " (a dataset is listed twice)")
        sources, targets = sides
        shared = sorted(set(sources) & set(targets))
        if shared:
            raise self._unknown(name, f" ('{shared[0]}' is both a source and a target)")
        canonical = name if len(sources) == len(targets) == 1 else f"{POOL.join(sources)}{TO}{POOL.join(targets)}"
        return Protocol(canonical, sources, targets)

    def explicit_protocol(self, sources: list[str], targets: list[str]) -> Protocol:
        """``--sources A,B --target C[,D]``: any registered datasets; several targets are pooled."""
        for name in [*sources, *targets]:
            self.dataset(name)
        shared = [t for t in targets if t in sources]
        if shared:
            raise FasdError(f"target '{shared[0]}' is also a source; choose a held-out target")
        if len(set(targets)) != len(targets):
            raise FasdError(f"--target lists '{next(t for t in targets if targets.count(t) > 1)}' twice")
        return Protocol(f"{POOL.join(sources)}{TO}{POOL.join(targets)}", tuple(sources), tuple(targets))

    def entries(self, target: str) -> list[DatasetEntry]:
        """The registered datasets of a target name: one, or the members of a pooled ``C+D`` (each once)."""
        names = pooled_members(target)
        repeated = next((name for name in names if names.count(name) > 1), None)
        if repeated is not None:
            raise FasdError(f"'{target}' lists '{repeated}' twice; a pooled test set names each dataset once")
        return [self.dataset(name) for name in names]


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


def load_registry(explicit: str | Path | None = None) -> DatasetRegistry:
    path = find_config(explicit).resolve()
    datasets, domains = _parse(_read_toml(path)[1], path)
    return DatasetRegistry(path=path, datasets=datasets, domains=domains)


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


def refuse_rebinding(config_path: Path, datasets: dict[str, dict], remedy: str) -> None:
    """Refuse to point a name the user's fasd.toml already registers at another format or path
    (``datasets``' paths are relative to the file's folder, as written); ``remedy`` says what to do instead."""
    config_path = Path(config_path)
    if not config_path.is_file():
        return
    registered, _ = _parse(_read_toml(config_path)[1], config_path.resolve())
    base = config_path.resolve().parent
    for name, spec in datasets.items():
        old = registered.get(name)
        if old is not None and (old.format != spec["format"] or old.path != (base / spec["path"]).resolve()
                                or old.manifest is not None):
            raise FasdError(f"{config_path} already registers '{name}' as {old.format} {old.path}; fasd will not "
                            f"rebind it: {remedy}")


def register_dataset(config_path: Path, name: str, fmt: str, data_path: Path, check_only: bool = False) -> None:
    """Add ``[datasets.NAME]`` to a fasd.toml and NAME to its [protocol] domains, keeping everything else;
    paths stored relative. A name already bound to another path is refused (``check_only``: refuse, write
    nothing — before the long work that makes ``data_path``)."""
    config_path = Path(config_path)
    try:
        rel = os.path.relpath(Path(data_path).resolve(), config_path.resolve().parent)
    except ValueError:
        rel = str(Path(data_path).resolve())
    spec = {name: {"format": fmt, "path": rel}}
    refuse_rebinding(config_path, spec, f"choose another --register name or remove [datasets.{name}] first")
    if not check_only:
        write_config(config_path, spec, [name])
