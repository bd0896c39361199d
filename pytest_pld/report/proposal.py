"""What `pld distill` prints about its proposal (`pytest_pld.distill.propose.Proposal`): the
diff, the rules, the checks that dropped or flagged some, the closed loop's rounds, the
held-out numbers, the conditions table and the cost."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..project import shown
from .conditions import format_text

if TYPE_CHECKING:
    from ..calibration import Calibration
    from ..distill.propose import Proposal


def proposal_text(proposal: Proposal, suite: str, root: Path) -> str:
    """The proposal as the command prints it, every line ending in a newline."""
    rel = shown(proposal.path, root)
    out = [f"# pld distill {suite}: proposal for {rel}\n"]
    out += [f"# note: {note}\n" for note in proposal.notes]
    dropped = proposal.base.calibration
    if dropped is not None and proposal.new.calibration is None:
        # with_rules drops a calibration fitted for other rules: say so, never silently
        out.append(
            f"# note: the calibration ({dropped.describe()}) was fitted for the current rules, "
            f"so the proposal drops it; after writing, refit it: pld calibrate {suite} --write\n"
        )
    out.append("\n")
    if proposal.changed:
        out.append(proposal.diff(rel))
    else:
        out.append("(no change proposed: no candidate rule improved the dev score)\n")
    out.append("\n# rules\n")
    out += [f"{line}\n" for line in proposal.summary_lines()]
    out += [f"{line}\n" for line in _check_lines(proposal)]
    out.append("\n# closed loop (student on the dev selection fold)\n")
    out += [f"{line}\n" for line in proposal.round_lines]
    if proposal.held_back is not None:
        out.append("\n")
        out += [f"{line}\n" for line in proposal.held_back.lines()]
    if proposal.calibration is not None:
        out.append("\n# calibration (in the diff; refitted for the proposed rules)\n")
        out += [f"{line}\n" for line in calibration_lines(proposal.calibration)]
    if proposal.conditions is not None:
        out.append("\n# conditions\n")
        out.append(format_text(proposal.conditions))
    out.append(f"\n# cost\n{proposal.cost_table}\n")
    if proposal.saved_to:
        out.append(f"\nproposal saved: {shown(proposal.saved_to, root)}\n")
    return "".join(out)


def calibration_lines(cal: Calibration) -> list[str]:
    """What a calibration is and what it did on the examples it was fitted on."""
    out = [cal.describe()]
    out.append(
        "offsets (added to each label's log-probability): "
        + ", ".join(f"{label} {value:+.4f}" for label, value in cal.offsets.items())
    )
    if cal.macro_f1_before is not None and cal.macro_f1_after is not None:
        gain = ""
        if cal.gain_interval is not None:
            gain = f", gain interval {cal.gain_interval[0]:+.3f} .. {cal.gain_interval[1]:+.3f}"
        out.append(
            f"macro-F1 there {cal.macro_f1_before:.3f} raw -> {cal.macro_f1_after:.3f} "
            f"calibrated (in-sample{gain})"
        )
    return out


def _check_lines(proposal: Proposal) -> list[str]:
    """What the generality test dropped, the wording check and the token budget."""
    out: list[str] = []
    if proposal.dropped_lines:
        out.append("\n# dropped: rules that name words of their source examples (generality test)")
        out += [f"  {line}" for line in proposal.dropped_lines]
    if proposal.wording_lines:
        out.append("\n# wording check (each new rule reworded by the teacher, dev selection fold)")
        out += [f"  {line}" for line in proposal.wording_lines]
    if proposal.budget is not None:
        b = proposal.budget
        state = "fits" if b["fits"] else "OVER"
        out.append(
            f"\n# token budget: {b['prompt_tokens']} of {b['budget']} tokens ({state}; system "
            f"prompt + the longest user message, {b['longest_user_message_tokens']})"
        )
        out += [f"  pruned {line}" for line in proposal.pruned_lines]
    return out


__all__ = ["proposal_text"]
