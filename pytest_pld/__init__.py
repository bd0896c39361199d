"""pytest-pld: Prompt-Level Distillation as code.

Importing this package stays cheap: torch, transformers and openai load lazily inside the
backends that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"
