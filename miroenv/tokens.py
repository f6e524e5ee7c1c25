"""Token counters for the context budget: a cheap deterministic default and adapters for real tokenizers.

Every counter here takes any `str`: text holding lone surrogates is counted, never a `UnicodeEncodeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from miroenv.extras import requires_extra
from miroenv.protocol.text import scrub, utf8

TokenCounter = Callable[[str], int]
"""Counts the tokens of one message's text. Must be deterministic."""


def approx_token_count(text: str) -> int:
    """About one token per four UTF-8 bytes: fast, deterministic, and close for English BPE vocabularies.

    Total on any `str`: a lone surrogate counts as its three-byte form instead of raising.
    """
    return (len(utf8(text)) + 3) // 4


def tiktoken_counter(encoding: str = "o200k_base") -> TokenCounter:
    """A counter backed by `tiktoken` (extra `tokenizers`); the encoding files must be available locally."""
    with requires_extra("tokenizers", "tiktoken_counter"):
        import tiktoken

    enc = tiktoken.get_encoding(encoding)

    def count(text: str) -> int:
        return len(enc.encode(scrub(text), disallowed_special=()))

    return count


def hf_tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A counter backed by a Hugging Face tokenizer object (anything with `encode(text) -> list`)."""

    def count(text: str) -> int:
        return len(tokenizer.encode(scrub(text), add_special_tokens=False))

    return count
