"""StereoSet (Nadeem, Bethke & Reddy, 2021), read from the official dev.json layout.

Two tasks over the same clusters:

- `stereoset` (the PLD paper's task): which bias domain - gender, profession, race or
  religion - a stereotype sentence is about. One example per cluster.
- `stereoset_label`: whether a sentence is the stereotype, the anti-stereotype or the
  unrelated completion of its context. One example per sentence.

Both set `group` to the cluster id, so when a file is carved into splits by fraction the
three sentences of a cluster (and the cluster in the two tasks) always land in the same split:
otherwise a model could be tested on a sentence whose siblings it was taught from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import PldError
from .base import Example, Loader
from .jsonl import frozen, read_json

BIAS_TYPES = ("gender", "profession", "race", "religion")
GOLD_LABELS = ("stereotype", "anti-stereotype", "unrelated")
PARTS = ("intrasentence", "intersentence")
DEFAULTS: Mapping[str, Any] = MappingProxyType({"part": "intrasentence"})
WHAT = (
    'the StereoSet dev.json layout: {"data": {"intrasentence": [{"id", "target", '
    '"bias_type", "context", "sentences": [{"id", "sentence", "gold_label"}]}]}}'
)


def _clusters(path: Path, options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, cluster) pairs of the chosen part, each checked for the fields both tasks use."""
    part = options.get("part", DEFAULTS["part"])
    if part not in PARTS:
        raise PldError(
            f"stereoset loader: part must be one of {', '.join(PARTS)}, got {part!r}",
            key="dataset.options.part",
        )
    data = read_json(path, what=WHAT)
    items = (
        data.get("data", {}).get(part)
        if isinstance(data, dict) and isinstance(data.get("data"), dict)
        else None
    )
    if not isinstance(items, list) or not items:
        raise PldError(f"no data.{part} list found", path=path, hint=f"expected {WHAT}")
    out = []
    seen: set[str] = set()
    for index, cluster in enumerate(items):
        where = f"data.{part}[{index}]"
        if not isinstance(cluster, dict):
            raise PldError(f"{where}: expected an object", path=path, hint=f"expected {WHAT}")
        for key in ("id", "target", "bias_type", "context"):
            if not isinstance(cluster.get(key), str) or not cluster[key].strip():
                raise PldError(
                    f"{where}: missing or empty {key!r}", path=path, hint=f"expected {WHAT}"
                )
        where = f"{where} (id {cluster['id']})"
        if cluster["id"] in seen:
            raise PldError(f"{where}: duplicate cluster id", path=path)
        seen.add(cluster["id"])
        if cluster["bias_type"] not in BIAS_TYPES:
            raise PldError(
                f"{where}: bias_type {cluster['bias_type']!r}",
                path=path,
                hint=f"expected one of {', '.join(BIAS_TYPES)}",
            )
        sentences = cluster.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise PldError(f"{where}: expected a non-empty 'sentences' list", path=path)
        labels = []
        for j, sent in enumerate(sentences):
            if (
                not isinstance(sent, dict)
                or not isinstance(sent.get("id"), str)
                or not isinstance(sent.get("sentence"), str)
                or not sent["sentence"].strip()
            ):
                raise PldError(
                    f"{where}: sentences[{j}] needs 'id' and 'sentence' strings", path=path
                )
            if sent.get("gold_label") not in GOLD_LABELS:
                raise PldError(
                    f"{where}: sentences[{j}] has gold_label {sent.get('gold_label')!r}",
                    path=path,
                    hint=f"expected one of {', '.join(GOLD_LABELS)}",
                )
            labels.append(sent["gold_label"])
        if sorted(labels) != sorted(GOLD_LABELS):
            raise PldError(
                f"{where}: expected one sentence per gold label, got {', '.join(labels)}", path=path
            )
        out.append((where, cluster))
    return out


def load_bias_domain(path: Path, options: Mapping[str, Any]) -> list[Example]:
    examples = []
    for _, cluster in _clusters(path, options):
        stereotype = next(s for s in cluster["sentences"] if s["gold_label"] == "stereotype")
        examples.append(
            Example(
                id=cluster["id"],
                label=cluster["bias_type"],
                fields=frozen(
                    {
                        "sentence": stereotype["sentence"].strip(),
                        "context": cluster["context"].strip(),
                        "target": cluster["target"].strip(),
                    }
                ),
                group=cluster["id"],
            )
        )
    return examples


def load_sentence_label(path: Path, options: Mapping[str, Any]) -> list[Example]:
    examples = []
    seen: set[str] = set()
    for where, cluster in _clusters(path, options):
        for sent in cluster["sentences"]:
            if sent["id"] in seen:
                raise PldError(f"{where}: duplicate sentence id {sent['id']!r}", path=path)
            seen.add(sent["id"])
            examples.append(
                Example(
                    id=sent["id"],
                    label=sent["gold_label"],
                    fields=frozen(
                        {
                            "context": cluster["context"].strip(),
                            "sentence": sent["sentence"].strip(),
                            "target": cluster["target"].strip(),
                            "bias_type": cluster["bias_type"],
                        }
                    ),
                    group=cluster["id"],
                )
            )
    return examples


LOADERS: list[Loader] = [
    Loader(
        name="stereoset",
        load=load_bias_domain,
        options=DEFAULTS,
        fields=("sentence", "context", "target"),
        description="StereoSet bias-domain classification (the PLD paper's task): one example "
        "per cluster, the stereotype sentence labelled gender/profession/race/"
        "religion. group = cluster id.",
    ),
    Loader(
        name="stereoset_label",
        load=load_sentence_label,
        options=DEFAULTS,
        fields=("context", "sentence", "target", "bias_type"),
        description="StereoSet sentence labels: one example per sentence, labelled "
        "stereotype/anti-stereotype/unrelated. group = cluster id, so a cluster "
        "never straddles splits.",
    ),
]
