"""The token budget: the proposed prompt must fit the suite's `max_prompt_tokens`.

The render gate counts the system prompt plus the longest user message of the split it runs
on. Distill never reads the gate split, so the longest user message among the examples it
does read (train and dev) stands in for it; a note says so.

While the prompt is over budget, rules are pruned one at a time: each remaining rule's
leave-one-out utility (dev selection fold macro-F1 with the rules minus without that rule) is
divided by the tokens it costs (system-prompt tokens with it minus without it), and the rule
with the lowest utility per token goes (equal ratios: the one costing more tokens, then the
later one). Utilities are measured again after each removal, since what a rule adds depends on
the others. Pruning stops when the prompt fits, or when no rule is left (the prompt is then
over budget without any rule, which pruning cannot fix; a note says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..instructions import InstructionSet, Rule
from .student import Scorer


@dataclass(frozen=True)
class Pruned:
    rule_id: str
    text: str
    utility: float  # leave-one-out macro-F1 effect on the dev selection fold
    tokens: int  # system-prompt tokens the rule cost
    prompt_tokens_after: int

    @property
    def per_token(self) -> float:
        return self.utility / max(self.tokens, 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "text": self.text,
            "utility": round(self.utility, 4),
            "tokens": self.tokens,
            "utility_per_token": round(self.per_token, 6),
            "prompt_tokens_after": self.prompt_tokens_after,
        }

    def line(self) -> str:
        return (
            f"{self.rule_id}: utility {self.utility:+.3f} for {self.tokens} tokens "
            f"({self.per_token:+.5f}/token); prompt {self.prompt_tokens_after} tokens after"
        )


@dataclass
class BudgetResult:
    rules: list[Rule]
    budget: int
    user_tokens: int  # the longest user message counted
    prompt_tokens: int  # system prompt + longest user message, after pruning
    pruned: list[Pruned] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.prompt_tokens <= self.budget

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "longest_user_message_tokens": self.user_tokens,
            "prompt_tokens": self.prompt_tokens,
            "fits": self.fits,
            "pruned": [p.to_json() for p in self.pruned],
            "notes": self.notes,
        }


def fit_budget(
    rules: Sequence[Rule],
    base: InstructionSet,
    score: Scorer,
    system_tokens: Callable[[InstructionSet], int],
    *,
    budget: int,
    user_tokens: int,
) -> BudgetResult:
    """Prune `rules` by leave-one-out utility per token until the prompt fits `budget`."""
    current = list(rules)

    def size(rs: Sequence[Rule]) -> int:
        return system_tokens(base.with_rules(rs)) + user_tokens

    result = BudgetResult(current, budget, user_tokens, size(current))
    while result.prompt_tokens > budget and current:
        full = score(current)
        choices = []
        for index, rule in enumerate(current):
            without = current[:index] + current[index + 1 :]
            utility = full.macro_f1 - score(without).macro_f1
            tokens = result.prompt_tokens - size(without)
            choices.append((utility / max(tokens, 1), -tokens, -index, utility, tokens))
        _, _, neg_index, utility, tokens = min(choices)
        rule = current.pop(-neg_index)
        result.prompt_tokens = size(current)
        result.pruned.append(Pruned(rule.id, rule.text, utility, tokens, result.prompt_tokens))
    result.rules = current
    if not result.fits:
        result.notes.append(
            f"the prompt is over max_prompt_tokens {budget} even without rules "
            f"({result.prompt_tokens} tokens with the longest user message, {user_tokens}): "
            "shorten the preamble or the template, or raise the budget"
        )
    return result
