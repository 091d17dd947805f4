"""Reading the labelled corpora in ``../shared/corpora`` (and our own under ``data/``).

Every row becomes a :class:`Row` that names its source (the corpus folder, or folder/file
stem where a folder holds several sets) and its *group*: rows of one group are
translations or near-duplicates of one another and must sit on the same side of a split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OWN_DATA_DIR = Path(__file__).resolve().parent / "data"


def corpora_dir() -> Path:
    """``$WARDEN_CORPORA`` or ``../shared/corpora`` beside the repository."""
    env = os.environ.get("WARDEN_CORPORA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "corpora"


@dataclass(frozen=True, slots=True)
class Row:
    text: str
    label: int
    task: str
    source: str
    group: str
    category: str = ""
    lang: str = "en"
    hard_negative: bool = False
    #: the source's own split, where it has one ("train" / "test"), else ""
    split: str = ""


def _group(source: str, raw: dict[str, object], index: int) -> str:
    """Which rows must stay together: the corpus's cluster, else a key that ties variants."""
    if raw.get("cluster"):
        return f"{source}:{raw['cluster']}"
    if source == "bipia":
        # A clean document and its injected copies share their context's source_id.
        return f"{source}:{raw['source_id']}"
    if raw.get("behavior"):
        # JailbreakBench: every attack method rewrote the same 100 behaviours.
        return f"jbb-behavior:{raw['behavior']}"
    return f"{source}:{index}"


def read_jsonl(path: Path, source: str) -> list[Row]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for index, line in enumerate(fh):
            if not line.strip():
                continue
            raw = json.loads(line)
            split = raw.get("split")
            rows.append(
                Row(
                    text=str(raw["text"]),
                    label=int(raw["label"]),
                    task=str(raw["task"]),
                    source=source,
                    group=_group(source, raw, index),
                    category=str(raw.get("category") or ""),
                    lang=str(raw.get("lang") or "en"),
                    hard_negative=bool(raw.get("hard_negative", False)),
                    split=split if split in ("train", "test") else "",
                )
            )
    return rows


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """(source name, file) for every JSONL under ``root``, in a stable order."""
    for path in sorted(root.glob("*/*.jsonl")):
        folder = path.parent.name
        siblings = list(path.parent.glob("*.jsonl"))
        yield (folder if len(siblings) == 1 else f"{folder}/{path.stem}"), path


def load_source(name: str, root: Path | None = None) -> list[Row]:
    """Rows of one source by name (``bipia``, ``jailbreakbench_artifacts/jailbreaks``, ``own/...``)."""
    if name.startswith("own/"):
        return read_jsonl(OWN_DATA_DIR / f"{name.removeprefix('own/')}.jsonl", name)
    base = root or corpora_dir()
    for source, path in source_files(base):
        if source == name:
            return read_jsonl(path, source)
    raise FileNotFoundError(f"no corpus {name!r} under {base}")
