"""Gymnasium spaces for free text: any Unicode string up to a length (Gymnasium's `Text` needs a charset)."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Text

_SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n\té中…"


class UnicodeText(Text):
    """Any `str` of length `min_length..max_length`; `sample()` draws short printable strings."""

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        sample_max_length: int = 256,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = min(sample_max_length, max_length)

    def contains(self, x: Any) -> bool:
        """Membership is by type and length only: every Unicode character is allowed."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random printable string no longer than `sample_max_length`."""
        length = int(
            self.np_random.integers(self.min_length, max(self.min_length, self.sample_max_length) + 1)
        )
        chars = self.np_random.choice(list(_SAMPLE_CHARSET), size=length)
        return "".join(chars)

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"
