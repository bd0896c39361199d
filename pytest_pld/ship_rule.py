"""The ship rule: what an instruction set may ship with, read off the conditions table.

- A calibration ships wherever calibrated zero-shot beats raw zero-shot with a paired interval
  above 0 (it costs three or four numbers and no prompt token).
- Rules ship on top only where calibrated PLD beats calibrated zero-shot with a paired 95%
  interval above 0, and no rule names example-specific words. The conditions table cannot
  see the latter: `pld distill`'s generality test flags such rules in its proposal.

Both comparisons are paired on the same examples and resample the suite's clusters, as every
interval of the table does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ZERO_SHOT, ZERO_SHOT_CALIBRATED = "zero-shot", "zero-shot + calibration"
PLD, PLD_CALIBRATED = "PLD", "PLD + calibration"
GENERALITY = (
    "if no rule names example-specific words (this table cannot see them: check the "
    "generality flags of the pld distill proposal that made the rules)"
)

Delta = tuple[float, float, float]  # (difference, low, high)


@dataclass(frozen=True)
class ShipRule:
    calibration: Delta | None  # zero-shot + calibration - zero-shot
    rules: Delta | None  # PLD + calibration - zero-shot + calibration
    confidence: float
    has_rules: bool
    why_not: str = ""  # why the rule cannot be applied (no label scores, nothing to fit on)

    @property
    def calibration_ships(self) -> bool:
        return self.calibration is not None and self.calibration[1] > 0

    @property
    def rules_ship(self) -> bool:
        return self.has_rules and self.rules is not None and self.rules[1] > 0

    @property
    def ships(self) -> str | None:
        """The condition that ships (None: the rule could not be applied)."""
        if self.calibration is None:
            return None
        if self.rules_ship:
            return PLD_CALIBRATED
        return ZERO_SHOT_CALIBRATED if self.calibration_ships else ZERO_SHOT

    def lines(self) -> list[str]:
        if self.calibration is None:
            return [f"ship rule: cannot be applied: {self.why_not}"]
        level = f"{self.confidence:.0%}"
        out = [
            "ship rule:",
            "  calibration: "
            + _compared(ZERO_SHOT_CALIBRATED, ZERO_SHOT, self.calibration, level)
            + (": above 0, it ships" if self.calibration_ships else ": not above 0"),
        ]
        if not self.has_rules:
            out.append("  rules on top: the set has no rules or examples")
        elif self.rules is not None:
            out.append(
                "  rules on top: "
                + _compared(PLD_CALIBRATED, ZERO_SHOT_CALIBRATED, self.rules, level)
                + (": above 0, they ship" if self.rules_ship else ": not above 0, they do not")
            )
        out.append(f"  ships: {self.ships}" + (f", {GENERALITY}" if self.rules_ship else ""))
        return out

    def to_json(self) -> dict[str, Any]:
        def delta(d: Delta | None) -> list[float] | None:
            return None if d is None else [round(x, 4) for x in d]

        return {
            "calibration": delta(self.calibration),
            "calibration_ships": self.calibration_ships,
            "rules": delta(self.rules),
            "rules_ship": self.rules_ship,
            "ships": self.ships,
            "generality": GENERALITY if self.has_rules else "",
            "why_not": self.why_not,
        }


def _compared(new: str, old: str, d: Delta, level: str) -> str:
    return f"{new} - {old} = {d[0]:+.3f} ({level} interval {d[1]:+.3f} .. {d[2]:+.3f})"
