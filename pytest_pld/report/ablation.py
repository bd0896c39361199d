"""`pld ablate`'s result (`pytest_pld.ablate.Ablation`) as text, Markdown or JSON; the JSON is
what `pld report --ablation` reads back (`ablate.load_ablation`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..ablate import Ablation, Effect, RuleAblation


def effect_text(e: Effect) -> str:
    """An effect and its interval: '+0.050 [-0.010, +0.120]'."""
    return f"{e.value:+.3f} [{e.low:+.3f}, {e.high:+.3f}]"


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _rows(a: Ablation) -> list[tuple[RuleAblation, str]]:
    """Each rule, then all rules at once, with "yes" where the rule is a prune candidate."""
    rows = [*a.rules, *([a.all_rules] if a.all_rules else [])]
    return [(r, "yes" if r.prune_candidate and r is not a.all_rules else "") for r in rows]


def format_text(a: Ablation) -> str:
    out = [
        (
            f"ablation of {a.instructions} on {a.suite}/{a.split}: {a.examples} examples, "
            f"model {a.model}"
        ),
        f"full set: macro-F1 {a.full['macro_f1']:.3f}, accuracy {a.full['accuracy']:.3f}",
        (
            "effect = metric with the rule - metric without it (> 0: the rule helps); "
            f"95% paired bootstrap intervals, {a.resamples} resamples"
        ),
        "",
        (
            f"{'rule':<12} {a.size_unit:>7}  {'effect on macro-F1':<26} {'effect on accuracy':<26}"
            "  prune?  text"
        ),
    ]
    for r, prune in _rows(a):
        out.append(
            f"{r.id:<12} {r.tokens:>7}  {effect_text(r.effects['macro_f1']):<26} "
            f"{effect_text(r.effects['accuracy']):<26}  {prune:<6}  {_short(r.text)}"
        )
    out += [
        "",
        "prune candidates (removal did not lower macro-F1 or accuracy): "
        + (", ".join(a.prune_candidates) or "none"),
    ]
    out.append(f"model calls: {a.model_calls} (cache hits: {a.cache_hits})")
    out += [f"note: {n}" for n in a.notes]
    return "\n".join(out) + "\n"


def format_markdown(a: Ablation) -> str:
    out = [
        f"### pld ablate: `{a.instructions}` on `{a.suite}/{a.split}`",
        "",
        (
            f"{a.examples} examples, model `{a.model}`; full set macro-F1 "
            f"{a.full['macro_f1']:.3f}, accuracy {a.full['accuracy']:.3f}. Effect = metric with "
            "the rule minus without it, with 95% paired bootstrap intervals."
        ),
        "",
        f"| rule | {a.size_unit} | effect on macro-F1 | effect on accuracy | prune? |",
        "|---|--:|--:|--:|:-:|",
    ]
    for r, prune in _rows(a):
        out.append(
            f"| `{r.id}` | {r.tokens} | {effect_text(r.effects['macro_f1'])} | "
            f"{effect_text(r.effects['accuracy'])} | {prune} |"
        )
    out += [
        "",
        "Prune candidates: " + (", ".join(f"`{i}`" for i in a.prune_candidates) or "none") + ".",
        f"Model calls: {a.model_calls} (cache hits: {a.cache_hits}).",
    ]
    out += [f"> {n}" for n in a.notes]
    return "\n".join(out) + "\n"


def format_json(a: Ablation) -> str:
    data = asdict(a)
    data["prune_candidates"] = a.prune_candidates
    return json.dumps({"schema": 1, **data}, indent=1, ensure_ascii=False) + "\n"
