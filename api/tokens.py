"""Byte counts of a JSON body, taken before it is parsed (numpy over the bytes, no Python object per
value): they bound how many strings and values parsing could build, so no body within the byte
limit costs more than the largest valid one; and, with the parsed document, they show without a
per-value type check that no value is a string or a boolean where the document has none."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Past this size numpy counts a byte faster than bytes.count, whose per-call cost is lower.
NUMPY_COUNT_BYTES = 16 * 1024
_COUNT_SLICE = 1024 * 1024
# Letters no JSON number has: "r" is in every true token, "a" in every false one.
_TRUE_LETTER, _FALSE_LETTER = "r", "a"


def count(body: bytes, array: np.ndarray | None, char: str) -> int:
    if array is None:
        return body.count(char.encode())
    code = ord(char)
    # In slices: a comparison over the whole body would allocate a temporary as large as the body.
    return sum(
        int(np.count_nonzero(array[i : i + _COUNT_SLICE] == code)) for i in range(0, len(array), _COUNT_SLICE)
    )


@dataclass(frozen=True)
class BodyTokens:
    """Byte counts of a JSON body, taken before parsing: with the parsed document they show, without
    looking at each value, that no value is a string or a boolean where the document has none; and
    before it they bound how many strings and values parsing could build."""

    quotes: int  # '"' bytes (two per string, plus any escaped ones)
    escaped_quotes: int  # '\\"' pairs (0 when the body has no backslash)
    backslash: bool  # any escape sequence at all
    true_letters: int  # bytes equal to _TRUE_LETTER
    false_letters: int  # bytes equal to _FALSE_LETTER

    @classmethod
    def of(cls, body: bytes) -> BodyTokens:
        array = np.frombuffer(body, dtype=np.uint8) if len(body) > NUMPY_COUNT_BYTES else None
        backslash = b"\\" in body
        return cls(
            quotes=count(body, array, '"'),
            escaped_quotes=body.count(b'\\"') if backslash else 0,
            backslash=backslash,
            true_letters=count(body, array, _TRUE_LETTER),
            false_letters=count(body, array, _FALSE_LETTER),
        )

    @property
    def strings_at_least(self) -> int:
        """A lower bound on the body's strings: two unescaped quotes each (a quote after a backslash
        is subtracted even when the backslash is itself escaped, which can only undercount)."""
        return (self.quotes - self.escaped_quotes) // 2

    def excess(self, body: bytes, max_strings: int, max_values: int) -> str | None:
        """Why `body` holds more strings or values than `max_*` allow (checked before parsing, so
        no body within the byte limit builds more objects than the largest valid one), or None.

        Every value but the first of an array or object follows a comma, so a body has at most
        commas + containers + 1 values (commas inside strings count too: an overcount, never an
        undercount). And each value but the outermost takes two bytes at least (its first, and
        the comma or closing bracket after it), so a body that short needs no count.
        """
        if self.strings_at_least > max_strings:
            return f"body has at least {self.strings_at_least} JSON strings; at most {max_strings} fit"
        if (len(body) + 1) // 2 + 1 <= max_values:
            return None
        array = np.frombuffer(body, dtype=np.uint8) if len(body) > NUMPY_COUNT_BYTES else None
        values = sum(count(body, array, char) for char in ",[{") + 1
        if values > max_values:
            counted = f"body has up to {values} JSON values (counting its commas and brackets)"
            return f"{counted}; at most {max_values} fit"
        return None

    def only_numbers_besides(self, strings: int, letters: tuple[int, int]) -> bool:
        """Whether the body's strings are exactly `strings` ones, with no escapes, holding `letters`
        (_TRUE_LETTER, _FALSE_LETTER) in all, and it has no true/false token: then every other
        value is a number, null, array or object. Each string has two quotes, so one more would
        show in the quote count; a boolean token adds an "r" or an "a", which no number has."""
        if self.backslash or self.quotes != 2 * strings:
            return False
        return (self.true_letters, self.false_letters) == letters


def letters(text: str) -> tuple[int, int]:
    return text.count(_TRUE_LETTER), text.count(_FALSE_LETTER)
