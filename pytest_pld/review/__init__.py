"""`pld review` as a library: rule-level diffs of instruction sets between git revisions and
what they did to the metrics.

- `diff`: rule-level differences of two loaded instruction sets (deepdiff), unified text diffs;
- `git`: reading project files at revisions;
- `report`: the shape of a review (dataclasses);
- `reviewer`: computing a review (loading both sides, running or reusing run records);
- `format`: a review as Markdown, text or JSON.

Nothing is imported here, so `pld snapshot` can use `diff` without loading the reviewer.
"""
