"""The wording check: a kept rule must keep its effect when it is reworded.

For each rule this run added or reworded, the teacher paraphrases it (the same cue and label
in other words), and the student scores on the dev selection fold: the rules with it, without
it, and with the paraphrase in its place. Its *effect* is macro-F1 with it minus without it;
the paraphrase's effect is the same with the paraphrase. The effect **vanishes when
reworded** when

- the original's paired 95% interval excludes 0 and the paraphrase's includes it, or
- the original's effect is positive and the paraphrase's is not (at most 0).

The second arm matters because on a few dozen dev examples most single-rule intervals include
0: a rule whose point gain does not survive a rewording has shown no effect that its content
carries. Such a rule is dropped by default (`action="drop"`): a reviewer would not merge a rule
whose wording, not its content, carries the effect - asked to reword it, they would lose the
effect without knowing why. `action="flag"` keeps it, flagged in the proposal.

Decoding greedily, a small teacher often hands the rule back unchanged (the 1.5B did for both
StereoSet rules it was asked to reword), so an identical or unusable answer is asked again as
sampled draws (`PARAPHRASE_DRAWS` in all, seeded by the rule id) whose request names the rule's
own content words to avoid. A rule still without a usable paraphrase is kept and reported as
unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..instructions import Rule
from .answers import RuleAnswer, Teacher, ask_for_rule, rule_key
from .draws import draw_seed
from .generalise import WORD, common_stems, stem
from .prompts import RULE_SCHEMA, paraphrase_messages
from .student import Scorer, delta

ACTIONS = ("drop", "flag", "off")
PARAPHRASE_DRAWS = 3  # the greedy answer, then sampled draws while it repeats the rule
PARAPHRASE_TEMPERATURE = 0.8
Effect = tuple[float, float, float]  # (delta, low, high)


@dataclass
class WordingCheck:
    rule_id: str
    text: str
    label: str | None
    paraphrase: str = ""
    effect: Effect | None = None  # the rule's leave-one-out effect on dev macro-F1
    reworded: Effect | None = None  # the paraphrase's, in the rule's place
    vanished: bool = False
    outcome: str = "kept"  # kept | dropped | flagged | unchecked
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        def rounded(e: Effect | None) -> list[float] | None:
            return None if e is None else [round(x, 4) for x in e]

        return {
            "rule_id": self.rule_id,
            "text": self.text,
            "label": self.label,
            "paraphrase": self.paraphrase,
            "effect": rounded(self.effect),
            "reworded_effect": rounded(self.reworded),
            "vanished": self.vanished,
            "outcome": self.outcome,
            "note": self.note,
        }

    def line(self) -> str:
        def shown(e: Effect | None) -> str:
            return "-" if e is None else f"{e[0]:+.3f} ({e[1]:+.3f} .. {e[2]:+.3f})"

        text = (
            f"{self.rule_id} {self.outcome}: effect {shown(self.effect)}, reworded "
            f"{shown(self.reworded)}"
        )
        if self.paraphrase:
            text += f"; reworded as: {self.paraphrase}"
        return text + (f" [{self.note}]" if self.note else "")


def vanishes(effect: Effect, reworded: Effect) -> bool:
    """The definition above: the interval no longer excludes 0, or the gain is gone."""
    interval_lost = effect[1] > 0 and reworded[1] <= 0
    gain_lost = effect[0] > 0 and reworded[0] <= 0
    return interval_lost or gain_lost


def check_wording(
    rules: Sequence[Rule],
    checked: Sequence[str],
    score: Scorer,
    teacher: Teacher,
    *,
    mode: str,
    header: str,
    confidence: float,
    action: str = "drop",
    log: Callable[[str], None] = lambda s: None,
) -> tuple[list[Rule], list[WordingCheck]]:
    """The rules after the check (without the dropped ones) and one report per checked id."""
    current = list(rules)
    reports: list[WordingCheck] = []
    for rule_id in checked:
        index = next((i for i, r in enumerate(current) if r.id == rule_id), None)
        if index is None:
            continue
        rule = current[index]
        report = WordingCheck(rule.id, rule.text, rule.label)
        reports.append(report)
        answer = paraphrase(teacher, rule, mode=mode, header=header)
        if not answer.ok:
            report.outcome = "unchecked"
            report.note = answer.error
            log(f"  {rule.id}: wording not checked ({report.note})")
            continue
        report.paraphrase = answer.rule
        without = [r for r in current if r.id != rule.id]
        with_paraphrase = list(current)
        with_paraphrase[index] = replace(rule, text=answer.rule)
        with_score, without_score = score(current), score(without)
        report.effect = delta(with_score, without_score, confidence)
        report.reworded = delta(score(with_paraphrase), without_score, confidence)
        report.vanished = vanishes(report.effect, report.reworded)
        if not report.vanished:
            if report.effect[0] <= 0:
                report.note = "no effect of its own on dev to lose"
            log(f"  {rule.id}: keeps its effect when reworded")
            continue
        report.outcome = "dropped" if action == "drop" else "flagged"
        if action == "drop":
            current = without
        log(f"  {rule.id}: effect vanishes when reworded; {report.outcome}")
    return current, reports


def content_words(rule: str, header: str, label: str | None) -> list[str]:
    """The rule's own content words, in order: not stop words, not the label, and not the
    task's vocabulary (words of the header, such as 'contract' or 'hypothesis', which a
    paraphrase may keep)."""
    common = common_stems([header, "label", label or ""])
    words: dict[str, str] = {}
    for word in WORD.findall(rule):
        if len(word) >= 4 and stem(word) not in common:
            words.setdefault(stem(word), word.lower().removesuffix("'s"))
    return list(words.values())


def reworded(text: str, rule: Rule, header: str) -> bool:
    """Whether `text` says the rule in other words: it drops at least one of the rule's own
    content words. Quotes, word order or an added 'given' are not a rewording (the 0.5B's
    answers were such); a rule with no content words of its own needs only different words."""
    own = content_words(rule.text, header, rule.label)
    if not own:
        return rule_key(text) != rule_key(rule.text)
    kept = {stem(w) for w in content_words(text, header, rule.label)}
    return any(stem(w) not in kept for w in own)


def paraphrase(teacher: Teacher, rule: Rule, *, mode: str, header: str) -> RuleAnswer:
    """The first usable paraphrase that is `reworded`: draw 0 greedy; then, when the
    teacher handed the rule back, draws that name its content words to avoid (the 1.5B and
    0.5B repeated rules under sampling alone), sampled. When none is, the last answer, failed
    with the reason."""
    plain = paraphrase_messages(header, rule.text, rule.label, mode=mode)
    avoid = content_words(rule.text, header, rule.label)
    avoiding = paraphrase_messages(header, rule.text, rule.label, mode=mode, avoid=avoid)
    answer = RuleAnswer()
    for draw in range(PARAPHRASE_DRAWS):
        sampled = draw > 0
        answer = ask_for_rule(
            teacher,
            avoiding if sampled else plain,
            mode=mode,
            label=rule.label,
            schema=RULE_SCHEMA,
            temperature=PARAPHRASE_TEMPERATURE if sampled else None,
            seed=draw_seed(0, "paraphrase:" + rule.id, draw) if sampled else None,
        )
        if answer.ok and reworded(answer.rule, rule, header):
            return answer
    if answer.ok:
        answer.error = f"the paraphrase repeats the rule's words in {PARAPHRASE_DRAWS} draws"
    return answer
