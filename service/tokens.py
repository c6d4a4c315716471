"""A conservative token estimate for prompts sent to a model whose tokenizer we do not have.

It overestimates English (about 3.5 characters a token, where most tokenizers get 4) and counts each
non-ASCII character as 1.3 tokens (CJK characters are 1-2 tokens in common tokenizers), so a prompt built
to fit by this count fits the real window.
"""

from __future__ import annotations

import math


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    ascii_chars = sum(1 for ch in text if ord(ch) < 128)
    return math.ceil(ascii_chars / 3.5 + (len(text) - ascii_chars) * 1.3) + 1
