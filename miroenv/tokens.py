"""Token counters for the context budget: a cheap deterministic default and adapters for real tokenizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TokenCounter = Callable[[str], int]
"""Counts the tokens of one message's text. Must be deterministic."""


def approx_token_count(text: str) -> int:
    """About one token per four UTF-8 bytes: fast, deterministic, and close for English BPE vocabularies."""
    return (len(text.encode("utf-8")) + 3) // 4


def tiktoken_counter(encoding: str = "o200k_base") -> TokenCounter:
    """A counter backed by `tiktoken` (extra `tokenizers`); the encoding files must be available locally."""
    import tiktoken

    enc = tiktoken.get_encoding(encoding)

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count


def hf_tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """A counter backed by a Hugging Face tokenizer object (anything with `encode(text) -> list`)."""

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count
