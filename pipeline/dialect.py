"""A CSV's dialect: its encoding, delimiter and decimal mark, set in params.yaml or detected.

- Encoding: UTF-8 when the bytes are UTF-8 (a byte-order mark, as Excel's "CSV UTF-8" writes,
  is dropped); otherwise charset-normalizer's guess, Windows-1252 when that decodes as cleanly as
  its best (Latin-1 and Windows-1252 files are the common case, and a table's few accented
  letters fit many code pages). A strict UTF-8 decode is tried first because it is exact: a guess
  is only needed when it fails. The summary prints what was used; prepare.encoding overrides it.
- Delimiter: the standard library's csv.Sniffer (the detector pandas' `sep=None` uses), limited
  to `,` `;` tab `|` and checked: the sample must parse with the sniffed delimiter into rows of
  one width, else the comma is kept. Sniffer is quote-aware, needs no compiled dependency in the
  training image (clevercsv would add one), and the width check catches its known mistakes.
- Decimal mark: `,` when the delimiter is not a comma, some cells are numbers with a decimal
  comma (`3,14`) and none has a decimal point (`3.14`); else `.`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PipelineError

DELIMITERS = ",;\t|"
WESTERN = "cp1252"
SAMPLE_BYTES = 1 << 20  # enough lines to sniff, little enough to stay instant on a 5 GB file
DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+\s*$")
DECIMAL_POINT = re.compile(r"^\s*[+-]?\d*\.\d+\s*$")


@dataclass(frozen=True)
class Dialect:
    encoding: str  # a Python codec name
    delimiter: str
    decimal: str
    detected: tuple[str, ...]  # which of the three were detected (for the stage summary)

    def describe(self) -> str:
        shown = {"\t": "tab"}.get(self.delimiter, self.delimiter)
        how = f" (detected: {', '.join(self.detected)})" if self.detected else ""
        return f"encoding {self.encoding}, delimiter {shown!r}, decimal {self.decimal!r}{how}"


def _line_and_column(data: bytes, offset: int, delimiter: bytes) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, data.count(delimiter, line_start, offset) + 1


def detect_encoding(data: bytes, path: Path) -> str:
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return "utf-8"
    from charset_normalizer import from_bytes

    matches = from_bytes(data[:SAMPLE_BYTES])
    best = matches.best()
    if best is None:
        raise PipelineError(f"{path}: cannot tell the text encoding: set prepare.encoding (e.g. latin-1)")
    # A few accented letters in a table decode cleanly in many code pages; among the equally
    # clean ones, Windows-1252 (what Excel writes in Western locales) is the likeliest.
    clean = [m for m in matches if m.chaos <= best.chaos]
    if any(WESTERN in m.could_be_from_charset for m in clean):
        return WESTERN
    return codecs.lookup(best.encoding).name


def decode(data: bytes, encoding: str, delimiter: str, path: Path, header: list[str] | None = None) -> str:
    """The file's text; a byte the encoding cannot decode is refused naming its line and column."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line, column = _line_and_column(data, exc.start, delimiter.encode())
        name = f" ({header[column - 1]!r})" if header and column <= len(header) else ""
        raise PipelineError(
            f"{path}: line {line}, column {column}{name}: byte 0x{data[exc.start]:02x} is not {encoding} "
            "(set prepare.encoding, e.g. latin-1)"
        ) from None


def sniff_delimiter(sample: str) -> str:
    lines = sample.splitlines()[:200]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may cut its last line
    text = "\n".join(lines)
    try:
        found = csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    widths = {len(row) for row in csv.reader(io.StringIO(text), delimiter=found) if row}
    return found if len(widths) == 1 and widths != {1} else ","


def sniff_decimal(sample: str, delimiter: str) -> str:
    if delimiter == ",":
        return "."
    cells = [cell for row in csv.reader(io.StringIO(sample), delimiter=delimiter) for cell in row]
    comma = any(DECIMAL_COMMA.match(c) for c in cells)
    point = any(DECIMAL_POINT.match(c) for c in cells)
    return "," if comma and not point else "."


def read_text(
    path: Path, *, encoding: str | None, delimiter: str | None, decimal: str | None
) -> tuple[str, Dialect]:
    """The file's decoded text and its dialect (each part as set, or detected)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror}") from None
    detected = []
    if encoding is None:
        encoding = detect_encoding(data, path)
        detected.append("encoding")
    try:
        sample = data[:SAMPLE_BYTES].decode(encoding, errors="replace")  # for sniffing only
    except LookupError:
        raise PipelineError(f"params.yaml: prepare.encoding: unknown encoding {encoding!r}") from None
    if delimiter is None:
        delimiter = sniff_delimiter(sample)
        detected.append("delimiter")
    header = next(csv.reader(io.StringIO(sample), delimiter=delimiter), None)
    text = decode(data, encoding, delimiter, path, header=header)
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark under an explicitly set utf-8
    if decimal is None:
        decimal = sniff_decimal(text[:SAMPLE_BYTES], delimiter)
        detected.append("decimal")
    return text, Dialect(encoding, delimiter, decimal, tuple(detected))
