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


CALIBRATED_TEXT = (
    "calibrated: answers with prior-shift offsets refitted for each variant, cross-fitted on "
    "these examples (a rule that only moves the label prior shows no effect there); raw: the "
    "student's own answers"
)


def _columns(a: Ablation) -> list[tuple[str, str, str]]:
    """(heading, effects attribute, metric) of each effect column."""
    raw = [
        ("effect on macro-F1", "effects", "macro_f1"),
        ("effect on accuracy", "effects", "accuracy"),
    ]
    if a.full_calibrated is None:
        return raw
    return [
        ("calibrated macro-F1", "calibrated_effects", "macro_f1"),
        ("calibrated accuracy", "calibrated_effects", "accuracy"),
        ("raw macro-F1", "effects", "macro_f1"),
        ("raw accuracy", "effects", "accuracy"),
    ]


def _effect(r: RuleAblation, attr: str, metric: str) -> str:
    effects = getattr(r, attr)
    return "-" if effects is None else effect_text(effects[metric])


def _full(a: Ablation) -> str:
    text = f"macro-F1 {a.full['macro_f1']:.3f}, accuracy {a.full['accuracy']:.3f}"
    if a.full_calibrated is not None:
        text += (
            f" (calibrated: macro-F1 {a.full_calibrated['macro_f1']:.3f}, accuracy "
            f"{a.full_calibrated['accuracy']:.3f})"
        )
    return text


def _prune_rule(a: Ablation) -> str:
    judged = "calibrated " if a.full_calibrated is not None else ""
    return f"removal did not lower {judged}macro-F1 or {judged}accuracy"


def format_text(a: Ablation) -> str:
    columns = _columns(a)
    out = [
        (
            f"ablation of {a.instructions} on {a.suite}/{a.split}: {a.examples} examples, "
            f"model {a.model}"
        ),
        f"full set: {_full(a)}",
        (
            "effect = metric with the rule - metric without it (> 0: the rule helps); "
            f"95% paired bootstrap intervals, {a.resamples} resamples"
        ),
        *([CALIBRATED_TEXT] if a.full_calibrated is not None else []),
        "",
        f"{'rule':<12} {a.size_unit:>7}  "
        + " ".join(f"{heading:<26}" for heading, _, _ in columns)
        + "  prune?  text",
    ]
    for r, prune in _rows(a):
        out.append(
            f"{r.id:<12} {r.tokens:>7}  "
            + " ".join(f"{_effect(r, attr, m):<26}" for _, attr, m in columns)
            + f"  {prune:<6}  {_short(r.text)}"
        )
    out += [
        "",
        f"prune candidates ({_prune_rule(a)}): " + (", ".join(a.prune_candidates) or "none"),
    ]
    out.append(f"model calls: {a.model_calls} (cache hits: {a.cache_hits})")
    out += [f"note: {n}" for n in a.notes]
    return "\n".join(out) + "\n"


def format_markdown(a: Ablation) -> str:
    columns = _columns(a)
    out = [
        f"### pld ablate: `{a.instructions}` on `{a.suite}/{a.split}`",
        "",
        (
            f"{a.examples} examples, model `{a.model}`; full set {_full(a)}. Effect = metric "
            "with the rule minus without it, with 95% paired bootstrap intervals."
            + (f" {CALIBRATED_TEXT[0].upper()}{CALIBRATED_TEXT[1:]}." if a.full_calibrated else "")
        ),
        "",
        f"| rule | {a.size_unit} | " + " | ".join(h for h, _, _ in columns) + " | prune? |",
        "|---|--:|" + "--:|" * len(columns) + ":-:|",
    ]
    for r, prune in _rows(a):
        cells = " | ".join(_effect(r, attr, m) for _, attr, m in columns)
        out.append(f"| `{r.id}` | {r.tokens} | {cells} | {prune} |")
    out += [
        "",
        "Prune candidates"
        + (" (on calibrated answers)" if a.full_calibrated is not None else "")
        + ": "
        + (", ".join(f"`{i}`" for i in a.prune_candidates) or "none")
        + ".",
        f"Model calls: {a.model_calls} (cache hits: {a.cache_hits}).",
    ]
    out += [f"> {n}" for n in a.notes]
    return "\n".join(out) + "\n"


def format_json(a: Ablation) -> str:
    data = asdict(a)
    data["prune_candidates"] = a.prune_candidates
    return json.dumps({"schema": 1, **data}, indent=1, ensure_ascii=False) + "\n"
