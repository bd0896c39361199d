"""The teacher's prompts, as small functions of plain strings.

Two shapes per task. `json`: the teacher returns a JSON object (a frontier model, asked with a
JSON schema where the server supports structured output). `prefill`: the assistant turn is
started for the model ("Rule: If") and generation stops at the first newline, so a small local
model cannot ramble; the prompt then asks for nothing but the rest of one sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..backends.base import Message

RULE_PREFILL = "Rule: If"
# a newline or the end of the first sentence: a small model that goes on past its rule only
# adds explanation, and each extra token costs time on a CPU
RULE_STOP = ("\n", ". ")

TEACH_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"reasoning": {"type": "string"}, "rule": {"type": "string"}},
    "required": ["reasoning", "rule"],
    "additionalProperties": False,
}
RULE_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {"rule": {"type": "string"}},
    "required": ["rule"],
    "additionalProperties": False,
}

GENERAL = (
    "The rule must be general: it must not name the people, groups, places, products or "
    "other specific words of this example; describe the kind of cue instead, so the rule "
    "also applies to other inputs."
)


def task_header(
    preamble: str, labels: Sequence[str], definitions: Mapping[str, str] | None = None
) -> str:
    lines = [f"Task: {preamble.strip()}", f"Labels: {', '.join(labels)}."]
    for label in labels:
        if definitions and definitions.get(label):
            lines.append(f"- {label}: {definitions[label]}")
    return "\n".join(lines)


def _avoid(words: Sequence[str], instead: str = "say what kind of thing they are instead") -> str:
    if not words:
        return ""
    shown = ", ".join(f"'{w}'" for w in list(words)[:8])
    return f" Do not use the words {shown}: {instead}."


def teach_messages(
    header: str, example: str, gold: str, *, mode: str, avoid: Sequence[str] = ()
) -> list[Message]:
    """`avoid`: this example's own names (telling a small model which words are specific
    works better than asking it for generality in the abstract)."""
    if mode == "json":
        system = (
            "You are an expert annotator who explains labelling decisions as reusable "
            "rules. Answer with a JSON object only."
        )
        user = (
            f"{header}\n\nInput:\n{example}\n\nCorrect label: {gold}\n\n"
            f"Explain briefly why {gold} is the correct label, then write one rule (one "
            f"sentence, of the form 'If <cue>, then the label is {gold}.') that a smaller "
            f"model could follow to label similar inputs. {GENERAL}{_avoid(avoid)}\n\n"
            'Answer as JSON: {"reasoning": "...", "rule": "..."}'
        )
    else:
        system = "You write short, general labelling rules."
        user = (
            f"{header}\n\nInput:\n{example}\n\nCorrect label: {gold}\n\n"
            f"Write one rule in one sentence: 'If <cue>, then the label is {gold}.' "
            f"{GENERAL}{_avoid(avoid)}"
        )
    return [Message("system", system), Message("user", user)]


def repair_message(error: str, *, mode: str) -> Message:
    if mode == "json":
        return Message(
            "user",
            f"That answer could not be used: {error}. Answer again with "
            'only the JSON object {"reasoning": "...", "rule": "..."}, '
            "with a non-empty one-sentence rule.",
        )
    return Message(
        "user",
        f"That rule could not be used: {error}. Write the rule again as one "
        "complete sentence starting with 'If', naming no specific words of "
        "the example.",
    )


def synthesis_messages(
    header: str,
    label: str,
    rules: Sequence[str],
    edge_cases: Sequence[tuple[str, str]],
    *,
    mode: str,
) -> list[Message]:
    """Merge a cluster's micro-rules into one instruction (phase 2). `edge_cases` are the
    cluster's minority-label rules (label, rule): the merged rule must not swallow them."""
    listed = "\n".join(f"- {r}" for r in rules)
    edges = ""
    if edge_cases:
        edges = (
            "\n\nExceptions seen in the same group (keep them as exceptions, do not "
            "contradict them):\n" + "\n".join(f"- ({lab}) {r}" for lab, r in edge_cases)
        )
    ask = (
        f"These rules were written for inputs whose correct label is {label}:\n{listed}"
        f"{edges}\n\nMerge them into one general rule, one sentence, of the form "
        f"'If <cue>, then the label is {label}.' {GENERAL}"
    )
    if mode == "json":
        return [
            Message("system", "You consolidate labelling rules. Answer with a JSON object only."),
            Message("user", f"{header}\n\n{ask}\n\n" + 'Answer as JSON: {"rule": "..."}'),
        ]
    return [
        Message("system", "You consolidate labelling rules into one short general rule."),
        Message("user", f"{header}\n\n{ask}"),
    ]


def _shown(
    failures: Sequence[tuple[str, str, str]], successes: Sequence[tuple[str, str]]
) -> tuple[str, str]:
    fail = "\n".join(
        f"- Input: {x}\n  Correct: {g}; the student answered: {p}" for x, g, p in failures
    )
    ok = "\n".join(f"- Input: {x}\n  Correct: {g} (the student got it right)" for x, g in successes)
    return fail, ok or "- (none recorded)"


def revision_messages(
    header: str,
    rule: str,
    label: str | None,
    failures: Sequence[tuple[str, str, str]],
    successes: Sequence[tuple[str, str]],
    *,
    mode: str,
) -> list[Message]:
    """Phase 3: revise a rule that misled the student, shown its failures *and* successes (so
    the revision fixes the one without breaking the other)."""
    fail, ok = _shown(failures, successes)
    target = label or "the right label"
    ask = (
        f"A student model follows this rule:\n  {rule}\n\nWith it, it got these wrong:\n"
        f"{fail}\n\nand these right:\n{ok}\n\n"
        f"Rewrite the rule so it still leads to {target} where it should but no longer "
        f"causes these mistakes. One sentence starting with 'If'. {GENERAL}"
    )
    return _rule_request("You revise labelling rules.", header, ask, mode)


def coverage_messages(
    header: str,
    label: str,
    failures: Sequence[tuple[str, str, str]],
    successes: Sequence[tuple[str, str]],
    *,
    mode: str,
) -> list[Message]:
    """Phase 3 for a label that no rule argues for: write one from the student's misses of it
    and from inputs it got right (so that the new rule leaves those alone)."""
    fail, ok = _shown(failures, successes)
    ask = (
        f"A student model has no rule for the label {label}, and got these wrong:\n"
        f"{fail}\n\nand these right:\n{ok}\n\n"
        f"Write one rule that leads to {label} where it should without changing the right "
        f"answers. One sentence starting with 'If'. {GENERAL}"
    )
    return _rule_request("You write labelling rules.", header, ask, mode)


def _rule_request(system: str, header: str, ask: str, mode: str) -> list[Message]:
    if mode == "json":
        return [
            Message("system", f"{system} Answer with a JSON object only."),
            Message("user", f"{header}\n\n{ask}\n\n" + 'Answer as JSON: {"rule": "..."}'),
        ]
    return [Message("system", system), Message("user", f"{header}\n\n{ask}")]


def generalise_messages(
    header: str, rule: str, label: str | None, words: Sequence[str], *, mode: str
) -> list[Message]:
    """A rule names words of the few examples it was learnt from (`words`: each with how often
    it occurs there and across the training data): ask for the same cue, stated generally."""
    listed = "\n".join(f"- {w}" for w in words)
    target = label or "the same label"
    ask = (
        f"This labelling rule was learnt from a few examples:\n  {rule}\n\n"
        f"It names words that are specific to those examples and rare elsewhere:\n{listed}\n\n"
        f"Rewrite it as one general rule that leads to {target} for the same kind of cue: "
        f"replace each of these words by the kind of thing it is, and keep the label. One "
        f"sentence starting with 'If'. {GENERAL}"
    )
    return _rule_request("You generalise labelling rules.", header, ask, mode)


def paraphrase_messages(
    header: str, rule: str, label: str | None, *, mode: str, avoid: Sequence[str] = ()
) -> list[Message]:
    """The same rule in other words: a rule whose effect rests on its wording, not on what it
    says, loses the effect when reworded (the wording check). `avoid`: the rule's own content
    words, named when a small teacher has handed the rule back unchanged."""
    target = label or "the same label"
    ask = (
        f"Reword this labelling rule:\n  {rule}\n\nSay exactly the same thing - the same cue, "
        f"leading to {target} - in different words and a different sentence structure. Do not "
        "add or drop any condition. One sentence starting with 'If'."
    )
    ask += _avoid(avoid, "use words of the same meaning instead")
    return _rule_request("You reword labelling rules.", header, ask, mode)
