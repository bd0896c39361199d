"""Model backends, named `provider:model` (`local:qwen2.5-coder-0.5b-instruct`, `openai:gpt-4.1`).

Providers load lazily: naming a backend imports its module, importing this package does not
import torch, transformers or openai.
"""

from __future__ import annotations

from .base import INVALID, Backend, Classification, Generation, get_backend, split_name

__all__ = ["INVALID", "Backend", "Classification", "Generation", "get_backend", "split_name"]
