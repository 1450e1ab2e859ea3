"""Loaders for the vendored data sets, and readers for the user's own files.

Everything returns NumPy arrays (float64 values, int64 labels, datetime64[D] dates).  Bad data
raises ValueError with a compiler-style message, ``FILE:LINE: problem``, so the command line
can print it as is.  Line numbers count from 1, as an editor shows them.

Vendored files (see ``engine/apps/data/PROVENANCE.md`` for sources and licences):

=========================  =====================================================================
``load_sunspots``          monthly mean sunspot numbers 1749-2008, (3120,) float64
``load_stocks``            daily adjusted close for AAPL, IBM, MSFT, GOOG or FB
``load_devils_dictionary`` Bierce's *The Devil's Dictionary* as one str
``load_japanese_vowels``   9-speaker classification, 270 train / 370 test, 12 channels, T 7-29
=========================  =====================================================================
"""
import codecs
import csv
import datetime
import gzip
import io
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

DATA_DIR = Path(__file__).resolve().parent / "data"

# Column names tried, in order, when read_price_csv is not told which column to use.
DATE_COLUMNS = ("date", "datetime", "timestamp", "time", "ds", "period", "day", "week", "month",
                "quarter", "datum", "fecha")  # ds: Prophet's name for it
# Of DATE_COLUMNS, those that name dates alone (a 'time' or 'day' column may hold counts).
NAMES_OF_DATES = {"date", "datetime", "timestamp", "ds", "datum", "fecha"}
# Names match ignoring case, spaces, underscores, hyphens and dots ("Date Time", "Adj. Close").
PRICE_COLUMNS = ("adj close", "adjusted close", "close", "price", "value")


def _fail(path, line, problem):
    """The one error every reader raises: ``FILE:LINE: problem``."""
    raise ValueError(f"{path}:{line}: {problem}")


GZIP_MAGIC = b"\x1f\x8b"
# Binary files that users pass for a CSV or a text, by their first bytes: what to do instead.
BINARY_KINDS = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx or OpenDocument sheet?); save the sheet as "
                     "CSV, or unzip it"),
    (b"\xd0\xcf\x11\xe0", "an old Office file (Excel .xls?); save the sheet as CSV"),
    (b"PAR1", "a Parquet file; write it as CSV (pandas: read_parquet(...).to_csv(...))"),
    (b"\x93NUMPY", "a NumPy .npy array; write it as CSV (numpy.savetxt)"),
    (b"\x89HDF", "an HDF5 file; write the data set as CSV"),
    (b"%PDF", "a PDF document; export its table or text first"),
)


def _decode(path):
    """The text of a file: gunzipped when ``*.gz`` or gzip's magic number starts it; UTF-16
    when it starts with its BOM or looks so without one (``_utf16_order``), else UTF-8 (a BOM
    is dropped), each byte that is not read as Windows-1252 or latin-1 (``_eight_bit``).  A
    binary file is refused, naming its kind when BINARY_KINDS knows it.

    Every byte decodes as latin-1, so the fallback cannot fail; newlines are left as they are
    (csv handles '\r\n' itself).
    """
    path = Path(path)
    if path.is_dir():
        _fail(path, 1, "is a folder: expected a file")
    if path.exists() and not path.is_file():
        _fail(path, 1, "is not a regular file (a pipe or a device?)")
    data = path.read_bytes()
    if path.suffix == ".gz" or data[:2] == GZIP_MAGIC:  # a .csv served gzipped reads too
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:  # truncated, or not gzip at all
            _fail(path, 1, f"cannot decompress: {e or 'the file ends early (truncated?)'}")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its BOM, as Windows writes it
        try:
            return _text_or_fail(path, data.decode("utf-16"))
        except UnicodeDecodeError as e:
            _fail(path, 1, f"starts as UTF-16 but does not decode as it: {e.reason}")
    if b"\0" in data and _utf16_order(data):  # UTF-16 without its BOM
        try:
            return _text_or_fail(path, data.decode(_utf16_order(data)))
        except UnicodeDecodeError:
            pass  # binary after all
    if b"\0" in data:
        kind = next((what for magic, what in BINARY_KINDS if data.startswith(magic)), None)
        _fail(path, _line_of(data, data.index(b"\0")), "NUL byte: this is a binary file, not "
                                                          "text" + (f": {kind}" if kind else ""))
    return _text_or_fail(path, data.decode("utf-8-sig", errors=_EIGHT_BIT))


def _utf16_order(data):
    """"utf-16-le" or "utf-16-be" when ``data`` look like text in UTF-16 without a byte-order
    mark (as some Windows tools write it): a NUL in nearly every high byte, as Latin text has,
    and in few low ones; else None."""
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2], data[1::2]
    for order, high, low in (("utf-16-le", odd, even), ("utf-16-be", even, odd)):
        if high.count(0) >= 0.9 * len(high) and low.count(0) <= 0.1 * len(low):
            return order
    return None


def _eight_bit(error):
    """A codecs error handler: each byte that is not UTF-8 read as Windows-1252, as Windows
    editors and Excel save text in the West (its curly quotes, dashes and euro sign sit where
    latin-1 has control characters, which text never holds; browsers read files labelled
    latin-1 so), and as latin-1 where Windows-1252 leaves it undefined.  Byte by byte, so one
    stray byte leaves the UTF-8 around it as it is, and a file saved as Windows-1252 reads
    whole (its letters are no UTF-8 sequences: 'é' then a letter is not)."""
    return "".join(_BYTE_CHARS[b] for b in error.object[error.start:error.end]), error.end


_BYTE_CHARS = [bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(256)]
_EIGHT_BIT = "lstm-engine-8bit"
codecs.register_error(_EIGHT_BIT, _eight_bit)


def _text_or_fail(path, text):
    """``text``, unless it holds as many control characters as binary data does."""
    controls = sum(text.count(chr(c)) for c in _BINARY_CONTROLS)
    if controls > max(8, len(text) // 100):
        _fail(path, 1, f"{controls} control characters in {len(text)}: this looks like a "
                       "binary file, not text")
    return text


# C0 control characters other than tab, newline, form feed and carriage return: text has
# almost none, binary data about one byte in ten.
_BINARY_CONTROLS = [c for c in range(32) if c not in (9, 10, 12, 13)]


def _line_of(data, offset):
    """The 1-based line number of byte ``offset`` of ``data``."""
    return data.count(b"\n", 0, offset) + 1


# Values beyond this magnitude are refused: squared (variances, squared errors) and summed,
# larger ones overflow float64 (the models see scaled values, so float32 is not the limit).
MAX_ABS_VALUE = 1e100
# A dated column whose values differ by less than this is refused: their differences would
# vanish in squared errors (a square underflows below 1e-154).
MIN_SPREAD = 1e-100


def _to_float(path, line, value, what):
    """float(value), finite and of magnitude at most MAX_ABS_VALUE, or a ValueError naming the
    file, the line and the quoted value."""
    if not value:
        _fail(path, line, f"empty cell in {what} (missing value)")
    try:
        number = float(value)
    except ValueError:
        comma = re.fullmatch(r"[-+]?[\d.]*\d,\d[\d,.]*", value)
        unit = re.fullmatch(r"([^\d\s.,+-]*)\s*[-+]?[\d.]*\d\s*([^\d\s.,]*)", value)
        unit = unit and (unit.group(1) or unit.group(2))  # '$12.5', '12 kg', '5%
        _fail(path, line, f"non-numeric value {value!r} in {what}"
                          + (": write numbers with a decimal point and no thousands "
                             "separator, as 1234.5 (a file split on semicolons may use a "
                             "decimal comma, one split on commas commas between thousands)"
                             if comma else
                             f": write the number without {unit!r}" if unit else ""))
    if not abs(number) <= MAX_ABS_VALUE:
        _fail(path, line, f"value {value!r} in {what} is "
                          + ("not finite" if not np.isfinite(number)
                             else f"too large (magnitude above {MAX_ABS_VALUE:g})"))
    return number


def _floats(path, line, text, what):
    """A comma-separated list of floats as a float64 array; the bad token is quoted on failure
    (non-numeric, missing, not finite or too large, as ``_to_float``)."""
    tokens = text.split(",")
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not (np.abs(values) <= MAX_ABS_VALUE).all():
        for token in tokens:
            _to_float(path, line, token.strip(), what)
    return values


# --------------------------------------------------------------------------------------------
# CSV tables
# --------------------------------------------------------------------------------------------

@dataclass
class CsvTable:
    """A CSV file read as strings.  ``rows[i]`` came from file line ``lines[i]``."""
    path: Path
    header: list
    rows: list
    lines: list
    header_line: int = 1
    na_values: tuple = ()  # numbers and words that mark a missing cell, beside MISSING_TOKENS
    delimiter: str = ","

    def numbers(self, cells):
        """``cells`` as float() reads numbers: the minus sign U+2212 (as some spreadsheets
        and web tables write it) is '-'.  Fields split on semicolons may write a number
        with a decimal comma (1.234,5 and 1 234,5 are 1234.5; where a column does, 1.000 is
        1000, as a spreadsheet writes a whole number), and fields split on commas with commas
        between groups of thousands, quoted ("1,234.5"); in a file split on tabs, 1,234 could
        be either, and stays as written."""
        cells = [c.replace(MINUS_SIGN, "-") if MINUS_SIGN in c else c for c in cells]
        if self.delimiter == ";":
            commas = [c for c in cells if "," in c and _DECIMAL_COMMA.match(c)]
            if commas:  # the column writes decimal commas: a dot or space groups thousands
                cells = [_GROUPED.sub(_ungrouped, c) for c in cells]
            return [_DECIMAL_COMMA.sub(_decimal_point, c) if "," in c else c for c in cells]
        if self.delimiter == ",":
            return [c.replace(",", "") if "," in c and _THOUSANDS.match(c) else c
                    for c in cells]
        return cells

    def column(self, name):
        """Index of the column called ``name``; a missing one lists those available, and one
        named twice stops (which would be meant?)."""
        if name not in self.header:
            _fail(self.path, self.header_line,
                  f"no column {name!r}; available columns: {self.header}{self.header_hint()}")
        at = [i + 1 for i, h in enumerate(self.header) if h == name]
        if len(at) > 1:
            _fail(self.path, self.header_line, f"the header names {name!r} {len(at)} times "
                                               f"(columns {', '.join(map(str, at))}): rename "
                                               "all but one")
        return self.header.index(name)

    def header_hint(self):
        """A hint for an error about the header, when its cells look like values (a number
        with a fraction, or a date) rather than names: the file probably has no header."""
        values = [cell for cell in self.header if _looks_like_value(cell)]
        if not values:
            return ""
        return (f" (the first row holds values such as {values[0]!r}, not column names: the "
                "file needs a header row naming its columns)")


def _looks_like_value(cell):
    """True for a cell no one names a column: a number with a fraction or exponent, or a
    date.  A whole number ('2019', '0') may well be a name."""
    try:
        number = float(cell)
    except ValueError:
        return any(re.fullmatch(pattern, cell.split()[0] if cell.split() else "")
                   for _, pattern in DATE_FORMATS[:4])
    return np.isfinite(number) and not re.fullmatch(r"[+-]?\d+", cell)


def read_csv_table(path, na_values=()):
    """Read a CSV file with a header row into a CsvTable of stripped strings.

    UTF-8 or latin-1, optionally gzipped (``*.gz``).  Fields are separated by commas, or by
    semicolons or tabs when the header row has those and no comma; numbers may have a
    decimal comma in a file split on semicolons, as spreadsheets save CSV where the comma is
    the decimal point, and commas between thousands in one split on commas
    (``CsvTable.numbers``).  Blank lines are skipped, and so are lines starting with ``#``
    before the header (notes, as NOAA's and many instruments' files open with), unless the
    header is one of them: when the first other line holds values, the last such line with
    as many fields, its ``#`` dropped, names the columns (``numpy.savetxt(header=...)``
    writes the header so).  A row with a different number of fields than the header raises;
    empty fields that end a line make no column (a separator ending every line, as some
    spreadsheets export).
    ``na_values``: numbers (such as -999.99, whichever way written) and words (such as "-",
    in any case) that mark missing cells, beside MISSING_TOKENS.
    """
    path = Path(path)
    text = _decode(path)
    delimiter = _delimiter(text)
    # skipinitialspace: '"Date", "value"' quotes its second name after the space too.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        skipinitialspace=True)
    header, header_line = None, 1
    comments, rows, lines = [], [], []
    for row in _csv_rows(path, reader):
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue
        row = [field.strip() for field in row]
        if header is None and row[0].startswith("#"):
            comments.append((row, line))
        elif header is None:
            header, header_line = _header(row, line, comments)
            named = len(_without_trailing_empties(header, 1))  # unnamed columns after these
            if header is not row:  # the header was a comment: this row is data
                rows.append(_fitted(path, line, row, header, named))
                lines.append(line)
        else:
            rows.append(_fitted(path, line, row, header, named))
            lines.append(line)
    if header is None:
        _fail(path, 1, "empty file: expected a header row"
                       + (" (lines starting with # are comments)" if comments else ""))
    used = max([named] + [len(_without_trailing_empties(row, 0)) for row in rows])
    if used < len(header):  # unnamed columns no row fills: a separator ending every line
        header, rows = header[:used], [row[:used] for row in rows]
    return CsvTable(path, header, rows, lines, header_line, tuple(na_values), delimiter)


def _fitted(path, line, row, header, named):
    """``row`` as long as ``header``: empty fields past it dropped, and missing ones padded
    where the header's last columns have no name (a separator ending some lines only); any
    other length stops with the line."""
    row = _without_trailing_empties(row, len(header))
    if named <= len(row) < len(header):
        row = row + [""] * (len(header) - len(row))
    if len(row) != len(header):
        note = " (lines starting with # are notes only before the header)" \
            if row[0].startswith("#") else ""
        _fail(path, line, f"{len(row)} fields, but the header has {len(header)}{note}")
    return row


def _without_trailing_empties(fields, keep):
    """``fields`` without the empty ones that end it beyond the first ``keep``: a separator
    ending every line, as some spreadsheets export, makes no column."""
    end = len(fields)
    while end > keep and not fields[end - 1]:
        end -= 1
    return fields[:end] if end < len(fields) else fields


def _header(row, line, comments):
    """(header, its line) for ``row``, the first line after the ``comments`` (rows and lines
    of the ``#`` lines before it): the row itself, unless it holds values and a comment has
    as many fields, the last of which then names the columns."""
    if comments and any(_looks_like_value(cell) for cell in row):
        for comment, comment_line in reversed(comments):
            if len(comment) == len(row):
                return [comment[0].lstrip("#").strip()] + comment[1:], comment_line
    return row, line


MINUS_SIGN = "\u2212"  # the typographic minus, which float() does not read
# A number written with a decimal comma, as spreadsheets in much of Europe save it (with ';'
# between fields): -1234,5 or 1.234,5, with an exponent or without.
_DECIMAL_COMMA = re.compile(r"^([-+]?)(\d{1,3}(?:[. \u00a0\u202f]\d{3})+|\d*),"
                            r"(\d+(?:[eE][-+]?\d+)?)$")
# A whole number with its thousands grouped by dots or spaces (1.000, 10 282), as written
# beside decimal commas.
_GROUPED = re.compile(r"^[-+]?\d{1,3}(?:[. \u00a0\u202f]\d{3})+$")
# A number with commas between groups of thousands, as spreadsheets in the US and UK save
# it (quoted, in a file split on commas): 1,234 or -1,234,567.25.
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?(?:[eE][-+]?\d+)?$")


_GROUP_MARKS = re.compile(r"[. \u00a0\u202f]")


def _decimal_point(match):
    sign, whole, fraction = match.groups()
    return f"{sign}{_GROUP_MARKS.sub('', whole)}.{fraction}"


def _ungrouped(match):
    return _GROUP_MARKS.sub("", match.group())


def _delimiter(text):
    """The field separator the header row (the first line with text not starting with ``#``)
    shows: a comma, unless it has none and has semicolons (as spreadsheets write CSV where
    the comma is the decimal point) or tabs."""
    texts = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in texts if not line.lstrip().startswith("#")),
                  texts[0] if texts else "")
    if "," not in header:
        for sep in ";\t":
            if sep in header:
                return sep
    return ","


# How the readers treat missing values, and the cells that are missing values.
MISSING_POLICIES = ("error", "drop", "interpolate")
MISSING_TOKENS = {"", "na", "n/a", "nan", "null", "none", "?"}


def _fill_missing(path, lines, cells, what, missing, na_values=()):
    """(kept row indices, float64 values, how many cells were missing) of ``cells`` under the
    ``missing`` policy; a cell is missing when MISSING_TOKENS holds it or it is one of the
    numbers or words ``na_values``."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    gaps = [i for i, cell in enumerate(cells)
            if _missing_token(cell) or _marked(cell, na_values)]
    if gaps and missing == "error":
        _fail(path, lines[gaps[0]], f"missing value {cells[gaps[0]]!r} in {what} ({len(gaps)} "
                                    "missing in all): give --missing drop or --missing "
                                    "interpolate to use the file as it is")
    gap = set(gaps)
    known = [i for i in range(len(cells)) if i not in gap]
    values = np.array([_to_float(path, lines[i], cells[i], what) for i in known], np.float64)
    if missing == "drop" or not gaps:
        return np.array(known, np.int64), values, len(gaps)
    if not known:
        _fail(path, lines[0] if lines else 1, f"every value in {what} is missing")
    # Linear between the nearest known neighbours.  Before the first known value and after
    # the last nothing lies between two, so those rows are left out, as "drop" leaves them:
    # a constant carried out from the end would be data the file does not hold.
    span = np.arange(known[0], known[-1] + 1)
    return span, np.interp(span, known, values), len(gaps)


def missing_code(values):
    """(value, rows, low, high) when ``values`` hold a number written with nines alone (-99,
    999.9, -9999, -999.99: the codes that data sets write for a missing value) that lies
    farther outside the range [low, high] of the other values than that range is wide; None
    otherwise.  Such a number is read as data unless named by ``na_values``."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    for value in (values.min(), values.max()):  # only an extreme lies outside the others
        digits = f"{abs(value):.10g}".replace(".", "")
        if len(digits) < 2 or set(digits) != {"9"}:
            continue
        others = values[values != value]
        if others.size < 2:
            continue
        low, high = others.min(), others.max()
        if max(low - value, value - high) > high - low:
            return float(value), int((values == value).sum()), float(low), float(high)
    return None


def _missing_token(cell):
    """True when ``cell`` is one of MISSING_TOKENS (empty, NA, NaN, null, ?), in any case."""
    return cell.strip().lower() in MISSING_TOKENS


def _marked(cell, na_values):
    """True when ``cell`` is one of ``na_values``: a number equal to one of its numbers
    ('-999.990' is -999.99), or one of its words, in any case."""
    if not na_values:
        return False
    if cell.strip().lower() in [v for v in na_values if isinstance(v, str)]:
        return True
    try:
        return float(cell) in [v for v in na_values if not isinstance(v, str)]
    except ValueError:
        return False


def _csv_rows(path, reader):
    """The rows of ``reader``; the csv module's errors (a field over its size limit, a NUL)
    as ``FILE:LINE: problem``."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            _fail(path, reader.line_num, f"not readable as CSV: {e}")


def read_csv_series(path, column, min_length=2, missing="error", na_values=()):
    """A univariate numeric series: column ``column`` of a CSV file with a header row.

    Returns float64 (T,), in file order.  Raises ValueError naming the file and line for a
    missing column (listing those available), a non-numeric cell (quoted), or fewer than
    ``min_length`` values.  Missing values (empty cells, NA, NaN, null, ?, and the numbers
    and words ``na_values``) follow ``missing`` (``MISSING_POLICIES``): "error" names the
    first one's line and their count, "drop" leaves their rows out, "interpolate" fills them
    linearly from their neighbours (and leaves out those before the first value or after the
    last).
    """
    return _series_column(read_csv_table(path, na_values), column, min_length, missing)[1]


def _series_column(table, column, min_length, missing, purpose=None):
    """(kept row indices, float64 values, missing cells) of ``column`` under the ``missing``
    policy, at least ``min_length`` values (``purpose``: why so many, for the error)."""
    j = table.column(column)
    keep, values, gaps = _fill_missing(table.path, table.lines,
                                       table.numbers(row[j] for row in table.rows),
                                       f"column {column!r}", missing, table.na_values)
    if len(values) < min_length:
        _fail(table.path, table.lines[-1] if table.lines else 1,
              f"series too short: column {column!r} has {len(values)} values, at least "
              f"{min_length} needed{_why(purpose)}")
    return keep, values, gaps


def _why(purpose):
    return f" ({purpose})" if purpose else ""


def read_dated_series(path, column, date_column=None, min_length=2, missing="error",
                      date_format=None):
    """``read_csv_series`` and the dates of its rows: (values (T,), dates datetime64[D] (T,)
    or None).  ``date_column`` names the dates; without it a column named like a date
    (DATE_COLUMNS) is used when all its cells read as dates (DATE_FORMATS or
    ``date_format``), and None is returned otherwise.  Rows are returned oldest first: a file
    written newest first is turned round, and one whose dates go back anywhere else raises,
    naming the line."""
    values, dates = read_dated_columns(path, [column], date_column, min_length, missing,
                                       date_format)
    return values[:, 0], dates


def read_dated_columns(path, columns, date_column=None, min_length=2, missing="error",
                       date_format=None, unit="D"):
    """Several numeric columns of one CSV file and the dates of their rows: (values float64
    (T, len(columns)), dates or None), as ``read_dated_series`` reads one.  Under
    ``missing="drop"`` a row is left out when any of the columns misses its value.  ``unit``
    "m" keeps the time of day (to the minute) where the cells have one."""
    return read_dated_table(path, columns, date_column, min_length, missing, date_format,
                            unit)[:2]


class DatedTable(NamedTuple):
    values: np.ndarray  # float64 (T, len(columns))
    dates: object       # datetime64 (T,) or None
    missing: dict       # {column: its missing cells, dropped or filled under ``missing``}
    undated: str = None  # without dates: why the column named like dates gave none


def read_dated_table(path, columns, date_column=None, min_length=2, missing="error",
                     date_format=None, unit="D", purpose=None, na_values=(), order_unit=None):
    """``read_dated_columns``, with how many cells of each column were missing; ``purpose``
    says why ``min_length`` values are needed when there are fewer; ``na_values`` as
    ``read_csv_table``.  ``order_unit`` "D" checks the rows' order by day only, where the
    time of day does not matter (a clock put back by half an hour goes back)."""
    table = read_csv_table(path, na_values)
    parts = [_series_column(table, c, min_length, missing, purpose) for c in columns]
    gaps = {c: part[2] for c, part in zip(columns, parts)}
    rows = parts[0][0]
    for keep, _, _ in parts[1:]:
        rows = np.intersect1d(rows, keep)
    if len(rows) < min_length:
        _fail(table.path, table.lines[-1] if table.lines else 1,
              f"too few rows: {len(rows)} have a value in every one of {list(columns)}, at "
              f"least {min_length} needed{_why(purpose)}")
    if missing == "interpolate" and len(rows) < len(table.rows):
        _warn_of_ends(table, columns, [keep for keep, _, _ in parts], rows)
    values = np.stack([v[np.isin(keep, rows)] for keep, v, _ in parts], axis=1)
    for name, spread in zip(columns, np.ptp(values, axis=0)):
        if 0 < spread < MIN_SPREAD:
            _fail(table.path, table.header_line,
                  f"column {name!r} varies by only {spread:.3g}: values less than "
                  f"{MIN_SPREAD:g} apart lose their differences in squared errors; multiply "
                  "the column by a power of ten first")
    if date_column is not None:
        d = table.column(date_column)
        dates = _with_time_of_day(table, rows, _column_dates(table, d, rows, date_format, unit),
                                  d)
    else:
        dates, why = _guessed_dates(table, rows, date_format, unit)
        if dates is None:  # nothing reads as dates: the plot counts steps
            return DatedTable(values, None, gaps, why)
    lines = [table.lines[i] for i in rows]
    ordered = _in_date_order(table.path, lines, values, dates, order_unit)
    if unit == "m":  # read to the minute, a repeated date is a repeated row
        _check_repeats(table.path, lines, dates)
    return DatedTable(*ordered, gaps)


def _warn_of_ends(table, columns, spans, rows):
    """Warn of the rows that interpolation left out at the ends (``rows`` the kept ones):
    before a column's first value and after its last there is nothing to interpolate from,
    and a forecast's last value is then earlier than the file's last line."""
    ends = []
    if rows[0] > 0:
        names = [c for c, span in zip(columns, spans) if span[0] == rows[0]]
        ends.append(f"{rows[0]} before line {table.lines[rows[0]]}, where "
                    f"{' and '.join(map(repr, names))} start{'s' if len(names) == 1 else ''}")
    if rows[-1] < len(table.rows) - 1:
        names = [c for c, span in zip(columns, spans) if span[-1] == rows[-1]]
        ends.append(f"{len(table.rows) - 1 - rows[-1]} after line {table.lines[rows[-1]]}, "
                    f"where {' and '.join(map(repr, names))} end{'s' if len(names) == 1 else ''}")
    warnings.warn(f"{table.path}: rows left out, as nothing is there to interpolate from: "
                  + "; ".join(ends))


def _column_dates(table, d, rows, date_format, unit, years=True):
    """The dates of column ``d`` in ``rows``, datetime64[unit]; a cell that is no date
    raises.  ``years``: a column of four-digit whole numbers holds years."""
    cells = [table.rows[i][d] for i in rows]
    if date_format is None and years and all(_YEAR.fullmatch(cell) for cell in cells):
        return np.array(cells, dtype="datetime64[Y]").astype(f"datetime64[{unit}]")
    day_first = _day_first(cells) if date_format is None else False
    readings = [day_first] if day_first is not None else [False, True]
    dates = [np.array([_parse_date(table.path, table.lines[i], cell, date_format, unit, first)
                       for i, cell in zip(rows, cells)], dtype=f"datetime64[{unit}]")
             for first in readings]
    # 01/02/2020 reads either way: the reading whose rows skip fewer steps is meant (a
    # monthly series on the 1st read month first skips most of each year).
    return min(dates, key=lambda x: _skipped_count(np.sort(x)))


def _skipped_count(dates):
    skips = skipped_steps(dates)
    return 0 if skips is None else skips.skipped


_YEAR = re.compile(r"\s*[12]\d{3}\s*")  # a year alone: 1871, 2024
_SLASH_DATE = re.compile(r"\s*(\d{1,2})/(\d{1,2})/\d{4}(?!\d)")


def _day_first(cells):
    """Whether the dates written a/b/YYYY among ``cells`` are day/month/year: True when some
    a is over 12 and no b is (13/01/2020), None when neither is (both readings are dates),
    else False (month/day/year, as in the US)."""
    firsts, seconds = [0], [0]
    for cell in cells:
        m = _SLASH_DATE.match(cell)
        if m:
            firsts.append(int(m[1]))
            seconds.append(int(m[2]))
    if max(firsts) <= 12 and max(seconds) <= 12 and len(firsts) > 1:
        return None
    return max(firsts) > 12 >= max(seconds)


def _guessed_dates(table, rows, date_format, unit):
    """(dates, None) of ``rows`` from a column named like a date (DATE_COLUMNS) whose cells
    all read as dates, else from columns year and month (with day and hour, when there), or
    year and quarter, holding whole numbers in range; (None, why the column named like a date
    was no use, or None when there is none) when neither is there."""
    guess, why = _guess_column(table.header, DATE_COLUMNS), None
    if guess is not None:
        try:
            years = _plain_name(table.header[guess]) in NAMES_OF_DATES | {"period"}
            dates = _column_dates(table, guess, rows, date_format, unit, years)
            return _with_time_of_day(table, rows, dates, guess), None
        except ValueError as e:  # or only looks like dates (a month column of 1 to 12, say)
            cells = [table.rows[i][guess] for i in rows]
            if date_format is not None or _reads_as_date(cells[0]):
                raise  # dates, one of them bad (a footer row, an empty cell): say which
            name = table.header[guess]
            if not all(is_number(cell) for cell in cells):  # text meant as dates
                why = f"{e}; column {name!r} is not read as dates"
            elif _plain_name(name) in NAMES_OF_DATES:
                why = (f"{table.path}:{table.header_line}: column {name!r} holds numbers, not "
                       "dates: give --date-format epoch or epoch-ms (Unix time) or excel (a "
                       "spreadsheet's day numbers) to read them as dates")
    return _split_dates(table, rows, unit), why


def _with_time_of_day(table, rows, dates, d):
    """``dates`` (column ``d``, read to the minute) plus the time of day of a column named
    time (13:00, 1:00 PM), or hour (0 to 24) and minute, beside them, as weather stations and
    meters write a day's rows (Date;Time); as they are when each row has a day of its own (a
    time column then holds something else, as a run's duration in a daily log), when the
    dates have their own times, or when no such column is there."""
    if dates.dtype != np.dtype("datetime64[m]") or len(np.unique(dates)) == len(dates) \
            or not whole_days(dates):
        return dates
    time, hour, minute = (_guess_column(table.header, [name]) for name in ("time", "hour",
                                                                           "minute"))
    cells = {j: [table.rows[i][j] for i in rows] for j in (time, hour, minute)
             if j is not None and j != d}
    if time in cells and all(_CLOCK_CELL.fullmatch(c) for c in cells[time]):
        minutes = [_minutes(table.path, table.lines[i], c, c.strip())
                   for i, c in zip(rows, cells[time])]
    elif hour in cells and all(c.strip().isdigit() and int(c) <= 24 for c in cells[hour]):
        minutes = [60 * int(c) for c in cells[hour]]
        if minute in cells and all(c.strip().isdigit() and int(c) < 60 for c in cells[minute]):
            minutes = [m + int(c) for m, c in zip(minutes, cells[minute])]
    else:
        return dates
    return dates + np.array(minutes, dtype="timedelta64[m]")


def _reads_as_date(cell):
    try:
        _parse_date("", 0, cell)
    except ValueError:
        return False
    return True


_MONTH_NUMBERS = {name: str(k) for k, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# Columns that hold the parts of a date, each with its range.
DATE_PARTS = {"year": (1, 9999), "quarter": (1, 4), "month": (1, 12), "day": (1, 31),
              "hour": (0, 23)}


def _split_dates(table, rows, unit):
    """datetime64[unit] of ``rows`` from the columns year and month (day, hour optional) or
    year and quarter, as NOAA's and statsmodels' tables write dates, or year alone when each
    row has its own (January 1st); None when the columns are not there or a cell is not a
    whole number in its range (or no such day)."""
    parts = {}
    for name in DATE_PARTS:
        j = _guess_column(table.header, [name])
        if j is None:
            continue
        cells = [table.rows[i][j] for i in rows]
        if name == "month":  # Jan, January (seaborn's flights) as 1
            cells = [_MONTH_NUMBERS.get(c.strip().lower()[:3], c) if len(c.strip()) >= 3
                     else c for c in cells]
        try:
            cells = np.array(cells, dtype=np.float64)
        except ValueError:
            return None
        low, high = DATE_PARTS[name]
        if not ((cells == np.round(cells)) & (cells >= low) & (cells <= high)).all():
            return None
        parts[name] = cells.astype(np.int64)
    if "year" not in parts:
        return None
    if "month" not in parts and "quarter" not in parts:  # yearly data: each year once
        if len(np.unique(parts["year"])) < len(rows):
            return None
        parts["month"] = np.ones_like(parts["year"])
    month = parts["month"] if "month" in parts else 3 * parts["quarter"] - 2
    months = (parts["year"] - 1970) * 12 + month - 1
    start = months.astype("datetime64[M]").astype("datetime64[D]")
    days = start + (parts.get("day", 1) - 1)
    if (days.astype("datetime64[M]") != start.astype("datetime64[M]")).any():
        return None  # no such day (31 April)
    if unit == "D":
        return days
    return days.astype(f"datetime64[{unit}]") + parts.get("hour", 0) * np.timedelta64(60, "m")


def _seen_before(dates):
    """Which of ``dates`` repeat a date on an earlier row."""
    again = np.ones(len(dates), bool)
    again[np.unique(dates, return_index=True)[1]] = False
    return again


def _check_repeats(path, lines, dates):
    """Rows whose dates repeat: over a tenth of them repeating a time of day stops (several
    series in one file); over a tenth repeating a day warns, naming both causes (several
    series, or the time of day in a column not read); a day repeating the row before warns
    (a duplicate counts as one more step).  A time of day may repeat where a clock is put
    back in autumn, and passes."""
    again = _seen_before(dates)
    repeats = int(again.sum())
    days, shown = whole_days(dates), as_days(dates)
    if repeats > len(dates) // 10:
        i = int(np.flatnonzero(again)[0])
        problem = (f"date {shown[i]} repeats, as {repeats} of the {len(dates)} rows' dates do: "
                   "several series in one file? keep one")
        if not days:
            _fail(path, lines[i], f"{problem} (or give --date-column if this column is not "
                                  "the date)")
        warnings.warn(f"{path}:{lines[i]}: {problem}; or the time of day is in a column not "
                      "read as such (name it time, or hour and minute): the rows are taken as "
                      "steps in file order")
        return
    same = np.flatnonzero(dates[1:] == dates[:-1]) + 1
    if same.size and days:  # an hour repeats where a clock is put back in autumn
        i = int(same[0])
        warnings.warn(f"{path}:{lines[i]}: date {shown[i]} repeats line {lines[i - 1]} "
                      f"({same.size} row{' repeats' if same.size == 1 else 's repeat'} the one "
                      "before): each row counts as one step; leave out the duplicates")


# How far local clock time goes back where daylight saving time ends.
CLOCK_PUT_BACK = np.timedelta64(60, "m")


def _in_date_order(path, lines, values, dates, order_unit=None):
    """(values, dates) oldest first: a file written newest first is turned round, and dates
    that go back anywhere else stop with the line (a forecast of rows out of order would be
    silently wrong).  A date may repeat (hourly rows read to the day), and local time go
    back as a clock put back in autumn does (``_first_back``).  ``order_unit``: the unit the
    order is checked in (default the dates')."""
    shown = dates if order_unit is None else dates.astype(f"datetime64[{order_unit}]")
    i = _first_back(shown)
    if i is None:
        return values, dates
    if _first_back(shown[::-1]) is None:
        return values[::-1].copy(), dates[::-1].copy()
    again = " (several series one after another? keep one)" if shown[i] <= shown[0] else ""
    shown = as_days(shown)
    _fail(path, lines[i], f"date {shown[i]} is before {shown[i - 1]} on line {lines[i - 1]}: "
                          "rows must be in date order (oldest or newest first); sort the "
                          f"file, or give --date-format if the dates are misread{again}")


def _first_back(dates):
    """The first row whose date is before the row's before it, or None.  A time of day that
    goes back by up to an hour to one already seen is a clock put back (local time repeats
    an hour in autumn), not disorder."""
    clock = dates.dtype == np.dtype("datetime64[m]")
    for i in np.flatnonzero(dates[1:] < dates[:-1]) + 1:
        if not (clock and dates[i - 1] - dates[i] <= CLOCK_PUT_BACK
                and (dates[:i] == dates[i]).any()):
            return int(i)
    return None


class Skips(NamedTuple):
    step: np.timedelta64  # how far apart the rows usually are
    gaps: int             # how many times the dates skip
    skipped: int          # steps skipped in all
    first: np.datetime64  # the date before the first skip


def usual_step(x):
    """The most common spacing of ``x`` (dates or step numbers, at least two)."""
    values, counts = np.unique(np.diff(x), return_counts=True)
    return values[counts.argmax()]


def skipped_steps(dates):
    """Where ``dates`` (oldest first) skip steps: a Skips, or None when they are evenly
    spaced, fewer than 3, or closer than their unit shows (hourly rows read to the day).
    The step is the most common spacing; a spacing over 1.5 steps skips.  Dates on weekdays
    only, a day apart, count business days, and a single skipped one is a holiday."""
    return _skips(dates, _step_counts(dates))


def _skips(dates, counted):
    """The Skips of ``dates`` from their ``_step_counts``, or None."""
    if counted is None:
        return None
    step, steps, gaps, _ = counted
    skipped = int((np.round(steps[gaps]) - 1).sum())
    return Skips(step, int(gaps.sum()), skipped, dates[int(np.flatnonzero(gaps)[0])])


def _step_counts(dates):
    """(the usual step, the steps from each date to the next (float), where they skip,
    whether the dates are weekdays counted in business days) as ``skipped_steps`` counts
    them; None when they skip nothing."""
    if dates is None or len(dates) < 3:
        return None
    step = usual_step(dates)
    if step <= np.timedelta64(0):
        return None
    days = dates.astype("datetime64[D]")
    weekdays = step == np.timedelta64(1, "D") and np.is_busday(days).all() \
        and _one_time_of_day(dates)  # closes at 16:00 too, whatever unit they were read in
    if weekdays:
        steps = np.busday_count(days[:-1], days[1:]).astype(np.float64)
        gaps = steps > 2
    else:
        steps = np.diff(dates) / step
        gaps = steps > 1.5
    return (step, steps, gaps, weekdays) if gaps.any() else None


def fill_skipped_steps(values, dates):
    """(values (T', C), dates (T',), the Skips filled) with a row put in for each step that
    ``dates`` skip (``skipped_steps``), its values linear between the rows either side, as
    --missing interpolate fills an empty cell; None when they skip nothing or a skip is no
    whole number of steps (dates off an even time axis: no row has a date to take).  Months,
    quarters and years step by the calendar, on the same day of the month or the month's
    end; weekdays by business days, a holiday left out as ``skipped_steps`` leaves it."""
    counted = _step_counts(dates)
    if counted is None:
        return None
    step, steps, gaps, weekdays = counted
    ahead = _stepper(dates, step, weekdays)
    counts = np.where(gaps, np.round(steps), 1).astype(np.int64)
    added = []
    for i in np.flatnonzero(gaps):
        if ahead(dates[i], counts[i]) != dates[i + 1]:
            return None
        added += [ahead(dates[i], k) for k in range(1, counts[i])]
    at = np.concatenate([[0], np.cumsum(counts)])  # each row's place on the even axis
    every = np.arange(at[-1] + 1)
    filled = np.stack([np.interp(every, at, column) for column in values.T], axis=1)
    return filled, np.sort(np.concatenate([dates, np.array(added, dates.dtype)])), \
        _skips(dates, counted)


def whole_days(dates):
    """True when none of ``dates`` has a time of day."""
    return bool((dates == dates.astype("datetime64[D]")).all())


def as_days(dates):
    """``dates`` as datetime64[D] when they are whole days (shown without 'T00:00'), else as
    they are."""
    return dates.astype("datetime64[D]") if whole_days(dates) else dates


def _one_time_of_day(dates):
    """True when every one of ``dates`` falls at the same time of day."""
    into = dates - dates.astype("datetime64[D]").astype(dates.dtype)
    return bool((into == into[0]).all())


# Calendar steps (in days, as the most common spacing shows them) and their months.
_MONTHS_IN_STEP = {31: 1, 92: 3, 365: 12}


def _stepper(dates, step, weekdays):
    """f(date, k): the date k steps after ``date`` on the dates' time axis."""
    unit = dates.dtype
    if weekdays:
        return lambda date, k: date + (np.busday_offset(date.astype("datetime64[D]"), k)
                                       - date.astype("datetime64[D]"))
    months = _MONTHS_IN_STEP.get(step / np.timedelta64(1, "D"))
    if months:
        month = dates.astype("datetime64[M]")
        into = dates - month.astype(unit)
        if (into == into[0]).all():  # the same day (and time) of every month
            return lambda date, k: (date.astype("datetime64[M]") + k * months).astype(unit) \
                + into[0]
        day = np.timedelta64(1, "D")
        after = dates + day
        if (after == after.astype("datetime64[M]").astype(unit)).all():  # months' ends
            return lambda date, k: ((date + day).astype("datetime64[M]") + k * months) \
                .astype(unit) - day
    return lambda date, k: date + k * step


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------

@dataclass
class PriceSeries:
    """A daily price series sorted by date.

    name:  the ticker, or the file name for a user's CSV
    dates: datetime64[D] (T,), strictly increasing
    close: float64 (T,), adjusted close (or the chosen price column), all > 0
    missing: {price column: its missing cells, dropped or filled under ``missing``}
    """
    name: str
    dates: np.ndarray
    close: np.ndarray
    missing: dict = field(default_factory=dict)


def _plain_name(name):
    """A column name as the guesses compare it: lower case, no spaces, underscores, hyphens
    or dots ("Date Time" and "date_time" are "datetime")."""
    return re.sub(r"[\s_.\-]", "", name.lower())


def _guess_column(header, preferred):
    """The index of the first name of ``preferred`` in ``header`` (compared as _plain_name),
    or None."""
    plain = [_plain_name(name) for name in header]
    return next((plain.index(_plain_name(n)) for n in preferred if _plain_name(n) in plain),
                None)


def _pick_column(table, given, preferred, what):
    """The index of ``given``, or of the first header matching ``preferred`` (_plain_name)."""
    if given is not None:
        return table.column(given)
    guess = _guess_column(table.header, preferred)
    if guess is not None:
        same = [h for h in table.header if _plain_name(h) == _plain_name(table.header[guess])]
        if len(same) > 1:
            _fail(table.path, table.header_line,
                  f"columns {' and '.join(map(repr, same))} could each be the {what} column: "
                  f"name one explicitly (--{what}-column)")
        return guess
    _fail(table.path, table.header_line,
          f"no {what} column found (looked for {list(preferred)}); "
          f"available columns: {table.header}; name one explicitly{table.header_hint()}")


# The date forms read without --date-format: ISO (also with '/'), US month/day/year and
# European day.month.year, each optionally followed by a time of day (which is dropped), ISO
# year-month for monthly data (its first day), and dates with the month's English name or
# its first three letters, as spreadsheets and reports write them (Jan 5, 2020; 5-Jan-2020;
# 5 January 2020; Jan 2020).  Quarters (2020Q1, 2020-Q1) and ISO weeks (2020-W05) are
# QUARTER and ISO_WEEK.
_MON, _MONTH = r"[A-Za-z]{3}", r"[A-Za-z]{4,9}"
DATE_FORMATS = (("%Y-%m-%d", r"\d{4}-\d{1,2}-\d{1,2}"), ("%Y/%m/%d", r"\d{4}/\d{1,2}/\d{1,2}"),
                ("%m/%d/%Y", r"\d{1,2}/\d{1,2}/\d{4}"), ("%d.%m.%Y", r"\d{1,2}\.\d{1,2}\.\d{4}"),
                ("%Y-%m", r"\d{4}-\d{1,2}"),
                ("%b %d, %Y", _MON + r" \d{1,2}, \d{4}"),
                ("%B %d, %Y", _MONTH + r" \d{1,2}, \d{4}"),
                ("%d-%b-%Y", r"\d{1,2}-" + _MON + r"-\d{4}"),
                ("%d %b %Y", r"\d{1,2} " + _MON + r" \d{4}"),
                ("%d %B %Y", r"\d{1,2} " + _MONTH + r" \d{4}"),
                ("%b %Y", _MON + r" \d{4}"), ("%B %Y", _MONTH + r" \d{4}"))
QUARTER = re.compile(r"(\d{4}) ?-?Q([1-4])", re.IGNORECASE)
ISO_WEEK = re.compile(r"(\d{4})-?W(\d{2})(?:-?([1-7]))?")
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?: ?[AaPp]\.?[Mm]\.?)?(?:Z|[+-]\d{2}:?\d{2})?"
_DATE_AND_TIME = re.compile(r"\s*(\S.*?)(?:[T ](" + _TIME + r"))?\s*")
_CLOCK_CELL = re.compile(r"\s*" + _TIME + r"\s*")  # a time of day alone, as a Time column's
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?: ?([AaPp])\.?[Mm]\.?)?")
EXPECTED_DATES = ("YYYY-MM-DD, YYYY/MM/DD, MM/DD/YYYY (DD/MM/YYYY where a day over 12 shows "
                  "it) or DD.MM.YYYY, optionally with a time, YYYY-MM, Jan 5, 2020, "
                  "5-Jan-2020, Jan 2020, 2020Q1 or 2020-W05")
# --date-format names for counts from an epoch: (counts per second, what a count is, the
# epoch in Unix seconds).  Unix time is UTC; spreadsheets count days from 1899-12-30 (so that
# 1900-03-01 is day 61, as Excel's and LibreOffice's serial numbers have it).
EPOCH_FORMATS = {"epoch": (1, "seconds since 1970-01-01 UTC", 0),
                 "epoch-ms": (1000, "milliseconds since 1970-01-01 UTC", 0),
                 "excel": (1 / 86400, "days since 1899-12-30 (a spreadsheet's date number)",
                           -2209161600)}
_UNIX_TIME = re.compile(r"\s*-?\d{9,13}(?:\.\d*)?\s*")  # how a bare Unix time looks
_LAST_UNIX_SECOND = 253402300799  # 9999-12-31 23:59:59, the last second datetime64 prints


def _parse_date(path, line, value, date_format=None, unit="D", day_first=False):
    """A date as datetime64[D]: in ``date_format`` (strptime's codes, or a name of
    EPOCH_FORMATS for Unix time) when given, else in one of DATE_FORMATS (with ``day_first``,
    a/b/YYYY is day/month/year), a time of day after it ignored; with ``unit`` "m",
    datetime64[m] with the time of day (hours and minutes, on a 24-hour clock or with AM/PM;
    a time zone suffix or %z offset is ignored: the clock time as written)."""
    if not value.strip():
        _fail(path, line, "no date: every row needs one (leave out the rows without)")
    if date_format in EPOCH_FORMATS:
        return _parse_unix_time(path, line, value, date_format, unit)
    if date_format is not None:
        try:
            parsed = datetime.datetime.strptime(value.strip(), date_format)
        except ValueError:
            _fail(path, line, f"cannot read date {value!r} with --date-format {date_format!r}")
        # The clock time as written, as without --date-format: a %z offset is dropped, not
        # applied (NumPy would convert to UTC, and the calendar inputs follow local time).
        return np.datetime64(parsed.replace(tzinfo=None), unit)
    m = _DATE_AND_TIME.fullmatch(value)
    day = m.group(1) if m else value
    if unit != "D":
        minutes = _minutes(path, line, value, (m.group(2) if m else None) or "0:00")
        return _parse_date(path, line, day, day_first=day_first).astype("datetime64[m]") \
            + np.timedelta64(minutes, "m")
    if len(day) == 10 and day[4] == day[7] == "-":  # ISO, the common case: NumPy reads it
        try:
            return np.datetime64(day, "D")
        except ValueError:
            pass
    named = _quarter_or_week(day)
    if named is not None:
        return named
    for fmt, pattern in DATE_FORMATS:
        if day_first and fmt == "%m/%d/%Y":
            fmt = "%d/%m/%Y"
        if re.fullmatch(pattern, day):
            try:
                return np.datetime64(datetime.datetime.strptime(day, fmt), "D")
            except ValueError:
                break  # the right shape but no such day (13/31/1999)
    hint = ("; a Unix time? --date-format epoch (seconds) or epoch-ms (milliseconds)"
            if _UNIX_TIME.fullmatch(value) else "")
    _fail(path, line, f"cannot read date {value!r}: expected {EXPECTED_DATES}, or give "
                      f"--date-format (for example --date-format %d/%m/%Y){hint}")


def _quarter_or_week(day):
    """datetime64[D] of a quarter (its first day) or an ISO week (its Monday, or the day
    given), or None when ``day`` is neither or names no such week."""
    m = QUARTER.fullmatch(day)
    if m:
        return np.datetime64(f"{m[1]}-{3 * int(m[2]) - 2:02d}-01")
    m = ISO_WEEK.fullmatch(day)
    if m:
        try:
            return np.datetime64(datetime.date.fromisocalendar(int(m[1]), int(m[2]),
                                                               int(m[3] or 1)), "D")
        except ValueError:  # week 54
            return None
    return None


def _minutes(path, line, value, clock):
    """Minutes after midnight of a _TIME ``clock``: 24-hour (24:00 is the next midnight, as
    ISO 8601 and some weather services write it), or 12-hour with AM/PM."""
    m = _CLOCK.match(clock)
    hours, minutes, half = int(m[1]), int(m[2]), m[3]
    if half and not 1 <= hours <= 12 or 60 * hours + minutes > 1440 or minutes > 59:
        _fail(path, line, f"cannot read the time of day in {value!r}")
    if half:
        hours = hours % 12 + (12 if half in "Pp" else 0)
    return 60 * hours + minutes


def is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_unix_time(path, line, value, date_format, unit):
    """A count from an epoch (EPOCH_FORMATS: Unix seconds or milliseconds, or a spreadsheet's
    days; a fraction allowed) as datetime64 of ``unit``, truncated to it."""
    try:
        count = float(value)
    except ValueError:
        count = float("nan")
    per_second, what, epoch = EPOCH_FORMATS[date_format]
    seconds = count / per_second + epoch
    if not abs(seconds) <= _LAST_UNIX_SECOND:  # also NaN
        _fail(path, line, f"cannot read date {value!r} with --date-format {date_format}: "
                          f"expected a number of {what}, up to the year 9999")
    # Rounded to the millisecond first: a spreadsheet's 1 am, 43831.0416666667 days, is
    # 00:59:59.99997 in binary floating point.
    return np.datetime64(int(np.floor(round(seconds, 3))), "s").astype(f"datetime64[{unit}]")


def _price_series(table, rows_lines, name, date_col, price_col, min_length=2,
                  missing="error", date_format=None):
    """Build a sorted PriceSeries from (row, line) pairs of ``table``; missing prices follow
    ``missing`` (``read_csv_series``), in date order."""
    path, price_name = table.path, table.header[price_col]
    day_first = bool(_day_first([row[date_col] for row, _ in rows_lines]))  # US when either
    dates = np.array([_parse_date(path, line, row[date_col], date_format, "D", day_first)
                      for row, line in rows_lines], dtype="datetime64[D]")
    lines = np.array([line for _, line in rows_lines], dtype=np.int64)
    again = _seen_before(dates)
    if again.any():
        i = int(np.flatnonzero(again)[0])
        _fail(path, lines[i], f"date {dates[i]} repeats line {lines[dates == dates[i]][0]} "
                              "(several series in one file, or prices within a day? the "
                              "prices are one a day of one series: keep one)")
    _in_date_order(path, lines, dates, dates)  # oldest or newest first, as forecast's
    order = np.argsort(dates, kind="stable")
    cells = table.numbers(rows_lines[i][0][price_col] for i in order)
    keep, close, gaps = _fill_missing(path, lines[order].tolist(), cells,
                                      f"column {price_name!r}", missing, table.na_values)
    dates, lines = dates[order[keep]], lines[order[keep]]  # in date order from here on
    bad = np.flatnonzero(~(close > 0))
    if bad.size:
        _fail(path, lines[bad[0]], f"price {float(close[bad[0]])!r} in column {price_name!r} "
                                   "must be positive (log returns are taken)")
    if len(close) < min_length:
        _fail(path, lines[-1] if len(lines) else 1,
              f"series too short: {len(close)} prices, at least {min_length} needed")
    return PriceSeries(name, dates, close, {price_name: gaps})


def read_price_csv(path, date_column=None, price_column=None, min_length=2, missing="error",
                   date_format=None, na_values=()):
    """A daily price series from a CSV file with a header row, sorted by date.

    date_column:  default the first column named like Date / Datetime / Timestamp / Time / Day
    price_column: default the first of Adj Close, Adjusted Close, Close, Price, Value
                  (matched case-insensitively; Yahoo/Quandl/Stooq exports work as they are)
    Dates in one of DATE_FORMATS (a time after them is ignored) or ``date_format``; prices
    must be positive, missing ones follow ``missing`` (``read_csv_series``); a date may not
    repeat.  Returns a PriceSeries named after the file.
    """
    table = read_csv_table(path, na_values)
    date_col = _pick_column(table, date_column, DATE_COLUMNS, "date")
    price_col = _pick_column(table, price_column, PRICE_COLUMNS, "price")
    return _price_series(table, list(zip(table.rows, table.lines)), table.path.stem,
                         date_col, price_col, min_length, missing, date_format)


def load_stocks(ticker="AAPL"):
    """Daily adjusted close of one bundled ticker (Quandl WIKI prices, 2000-03-01 - 2013-03-01).

    Tickers: AAPL, IBM, MSFT (3270 days), GOOG (2148), FB (196).  Returns a PriceSeries.
    """
    table = read_csv_table(DATA_DIR / "stocks.csv.gz")
    t = table.column("Ticker")
    available = sorted({row[t] for row in table.rows})
    if ticker not in available:
        raise ValueError(f"unknown ticker {ticker!r}; available tickers: {available}")
    rows_lines = [(row, line) for row, line in zip(table.rows, table.lines) if row[t] == ticker]
    return _price_series(table, rows_lines, ticker, table.column("Date"),
                         table.column("Adj Close"))


# --------------------------------------------------------------------------------------------
# Sunspots and text
# --------------------------------------------------------------------------------------------

def load_sunspots():
    """Monthly mean sunspot numbers, January 1749 - December 2008: float64 (3120,).

    The NOAA table has one line per year: the year, then 12 monthly values; every other line
    (titles, notes, blank lines) is skipped.
    """
    path = DATA_DIR / "sunspots_monthly.dat"
    rows = []
    with open(path, encoding="ascii") as f:
        for line, text in enumerate(f, start=1):
            fields = text.split()
            if len(fields) == 13 and re.fullmatch(r"\d{4}", fields[0]):
                rows.append(_floats(path, line, ",".join(fields[1:]), f"year {fields[0]}"))
    return np.concatenate(rows)


def read_text(path):
    """The contents of a text file as str: UTF-8 (a BOM is dropped), else latin-1.

    Newlines are normalised to '\\n'.  An empty or whitespace-only file raises ValueError.
    """
    path = Path(path)
    text = _decode(path).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        _fail(path, 1, "empty text: the file has no characters other than whitespace")
    return text


# The dictd conversion adds entries named 00-database-* before the book; the book proper is the
# Internet Wiretap edition, which begins with this line.  dictfmt also appends the alphabet.
_DEVIL_FIRST_LINE = "The Internet Wiretap 1st Online Edition of"
_DEVIL_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def load_devils_dictionary():
    """Ambrose Bierce, *The Devil's Dictionary*, as one str (about 383,000 characters).

    The dictd header entries (``00-database-dictfmt``, ``-url``, ``-short`` and the packager's
    ``-info`` note) and the trailing ``00-database-alphabet`` line are removed; what is left
    is the Wiretap edition: title page, preface, then the entries ABASEMENT ... ZOOLOGY.
    """
    with gzip.open(DATA_DIR / "devil.dict.dz", "rb") as f:  # dictzip is gzip-compatible
        text = f.read().decode("latin-1")
    start = text.find(_DEVIL_FIRST_LINE)
    if start < 0:
        raise ValueError("devil.dict.dz: the first line of the book was not found")
    start = text.rfind("\n", 0, start) + 1  # keep the title's leading indentation
    body = text[start:].rstrip()
    if body.endswith(_DEVIL_ALPHABET):
        body = body[: -len(_DEVIL_ALPHABET)].rstrip()
    return body + "\n"


# --------------------------------------------------------------------------------------------
# Labelled sequences: sktime .ts files and one-row-per-step CSV files
# --------------------------------------------------------------------------------------------

def _sorted_labels(labels):
    """Distinct labels, in numeric order when all are numbers ('2' < '10'), else text order."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=float)
    except ValueError:
        return sorted(distinct)


def _encode_labels(path, labels, lines, class_names):
    """Label strings -> int64 indices into ``class_names`` (inferred when None).  A label
    written as another number equal to a class ('1.0' for class '1', as a spreadsheet or
    pandas may write it) is that class; an empty label stops at its line."""
    for label, line in zip(labels, lines):
        if not label.strip():
            _fail(path, line, "empty label: every sequence needs its class (leave out the "
                              "sequences that have none)")
    names = list(class_names) if class_names is not None else _sorted_labels(labels)
    index = {name: i for i, name in enumerate(names)}
    index.update({float(name): i for i, name in enumerate(names) if is_number(name)})
    codes = []
    for label, line in zip(labels, lines):
        code = index.get(label, index.get(float(label)) if is_number(label) else None)
        if code is None:
            _fail(path, line, f"unknown label {label!r}; known labels: {names}")
        codes.append(code)
    return np.array(codes, dtype=np.int64), names


@dataclass
class _TsHeader:
    dimensions: int = None
    class_labels: list = None   # declared by '@classLabel true ...', else None
    data_line: int = None       # line number of '@data'


def _ts_header_line(path, line, text, header):
    """Apply one '@' line of a .ts header to ``header``."""
    key, _, rest = text[1:].partition(" ")
    key, words = key.lower(), rest.split()
    if key == "data":
        header.data_line = line
    elif key == "dimensions":
        header.dimensions = int(_to_float(path, line, words[0] if words else "", "@dimensions"))
    elif key == "classlabel":
        if not words or words[0].lower() != "true":
            _fail(path, line, "@classLabel is not 'true': the file has no class labels")
        header.class_labels = words[1:]
    elif key == "timestamps" and words and words[0].lower() == "true":
        _fail(path, line, "@timeStamps true is not supported: give plain value lists")


def _ts_data_line(path, line, text, n_channels):
    """One .ts data line -> ((T, C) float64, label).  All C channels must have the same T."""
    *channels, label = text.split(":")
    if not channels:
        _fail(path, line, "no ':' in the line: expected channels then ':' and the label")
    if n_channels is not None and len(channels) != n_channels:
        _fail(path, line, f"{len(channels)} channels, expected {n_channels}")
    arrays = [_channel(path, line, ch, c + 1) for c, ch in enumerate(channels)]
    lengths = [len(a) for a in arrays]
    if min(lengths) != max(lengths):
        c = int(np.argmax(np.array(lengths) != lengths[0]))
        _fail(path, line, f"inconsistent channel lengths: channel 1 has {lengths[0]} values, "
                          f"channel {c + 1} has {lengths[c]}")
    return np.stack(arrays, axis=1), label.strip()


def _channel(path, line, text, number):
    """One channel of a .ts data line as float64.  Missing values ('?', NaN, as files with
    '@missing true' write them) at its end are padding to a common length and are dropped;
    one before a value stops with its step, as the classifier needs every value."""
    tokens = [token.strip().replace(MINUS_SIGN, "-") for token in text.split(",")]
    end = len(tokens)
    while end and _missing_token(tokens[end - 1]):
        end -= 1
    gap = next((t for t in range(end) if _missing_token(tokens[t])), None)
    if gap is not None:
        _fail(path, line, f"missing value {tokens[gap]!r} at step {gap + 1} of channel "
                          f"{number}: the classifier needs every value of a sequence (only "
                          "missing values at its end, padding, are dropped); fill the gaps "
                          "first, for example by linear interpolation")
    if not end:
        _fail(path, line, f"channel {number} has no values")
    return _floats(path, line, ",".join(tokens[:end]), f"channel {number}")


def read_ts(path, class_names=None):
    """A labelled, possibly variable-length, multivariate sktime/aeon ``.ts`` file.

    Header lines ('#' comments, '@' keywords) come before '@data'.  Each data line holds C
    channels separated by ':', each a comma-separated list of floats, then ':' and the label.
    The class list is ``class_names`` when given (pass the training set's for a test set),
    else the one declared by '@classLabel true ...', else the distinct labels found.

    Missing values ('?', NaN) at the end of a channel are padding and are dropped.

    Returns (X, y, class_names): X a list of N float64 arrays (T_i, C); y int64 (N,) indices
    into class_names.  Raises ValueError naming file and line for a missing '@data', a wrong
    channel count, channels of unequal length, a missing value before a channel's end, a
    non-numeric value or an unknown label.
    """
    path = Path(path)
    header, X, labels, lines = _TsHeader(), [], [], []
    line = 1
    for line, text in enumerate(_decode(path).splitlines(), start=1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        if header.data_line is None:
            if not text.startswith("@"):
                _fail(path, line, "data line before any '@data' line (missing '@data'?)")
            _ts_header_line(path, line, text, header)
            continue
        n_channels = header.dimensions or (X[0].shape[1] if X else None)
        values, label = _ts_data_line(path, line, text, n_channels)
        X.append(values)
        labels.append(label)
        lines.append(line)
    if header.data_line is None:
        _fail(path, line, "no '@data' line found")
    if not X:
        _fail(path, header.data_line, "no data lines after '@data'")
    if header.class_labels is not None:
        _encode_labels(path, labels, lines, header.class_labels)  # checks: declared labels only
    y, names = _encode_labels(path, labels, lines, class_names or header.class_labels)
    return X, y, names


# What the sequence CSV reader wants, for the errors a file laid out otherwise runs into.
ONE_ROW_PER_STEP = ("this reader wants one row per time step (sequence id, label, features); a "
                    "file with one sequence per row (label, then its values, as the UCR "
                    "archive's CSVs) must be written as one row per step, or as a .ts file")


TS_KEYS = {"problemname", "timestamps", "missing", "univariate", "dimensions", "dimension",
           "equallength", "serieslength", "classlabel", "targetlabel", "data"}


def sequence_format(path):
    """"ts" when ``path`` is an sktime .ts file (by its suffix, or by an '@' header line such
    as @problemName), else "csv"; an ARFF file (Weka's @relation) raises, saying what to use
    instead.  Gzipped files are judged by what they hold."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith(".ts"):
        return "ts"
    first = next((line.split() for line in _decode(path).splitlines()
                  if line.strip() and not line.lstrip().startswith(("#", "%"))), [""])
    word = first[0].lower()
    if name.endswith(".arff") or word == "@relation":
        _fail(path, 1, "an ARFF file (Weka's format): give the sktime .ts file of the data set "
                       "(the UEA and UCR archives offer both), or a CSV with one row per time "
                       "step (sequence id, label, features)")
    return "ts" if word.startswith("@") and word[1:] in TS_KEYS else "csv"


def read_sequence_csv(path, class_names=None):
    """Labelled multivariate sequences from a CSV file with one row per time step.

    Columns, by position: sequence id, label, then F >= 1 features.  A header row is
    expected.  The rows of one sequence must be contiguous and in time order, with one label.
    The class list is ``class_names`` when given, else the distinct labels found.

    Returns (X, y, class_names) as read_ts does: X a list of float64 (T_i, F) arrays.
    """
    table = read_csv_table(path)
    if len(table.header) < 3:
        _fail(table.path, table.header_line,
              f"{len(table.header)} columns {table.header}; expected sequence id, label, "
              "then at least one feature")
    if table.rows and table.header[:2] == table.rows[0][:2]:
        _fail(table.path, table.header_line,
              f"the first row holds a step of sequence {table.header[0]!r} (label "
              f"{table.header[1]!r}), not column names: the file needs a header row (sequence "
              "id, label, then the features' names)")
    starts = [i for i, row in enumerate(table.rows) if i == 0 or row[0] != table.rows[i - 1][0]]
    # Column by column, so that a column's number format (decimal commas) holds for all rows.
    features = list(zip(*[table.numbers(row[j] for row in table.rows)
                          for j in range(2, len(table.header))])) or [()] * len(table.rows)
    seen, X, labels, lines = set(), [], [], []
    for a, b in zip(starts, starts[1:] + [len(table.rows)]):
        seq_id, label, line = table.rows[a][0], table.rows[a][1], table.lines[a]
        if seq_id in seen:
            wide = a == len(seen)  # every sequence so far one row: one sequence per row?
            _fail(table.path, line, f"sequence {seq_id!r} continues after other sequences: "
                                    "the rows of one sequence must be contiguous"
                                    + (f"; {ONE_ROW_PER_STEP}" if wide else ""))
        seen.add(seq_id)
        for row, row_line in zip(table.rows[a:b], table.lines[a:b]):
            if row[1] != label:
                _fail(table.path, row_line, f"label {row[1]!r} differs from {label!r} given "
                                            f"at line {line} for sequence {seq_id!r}")
        X.append(np.array([_cells_as_floats(table, row_line, cells)
                           for cells, row_line in zip(features[a:b], table.lines[a:b])]))
        labels.append(label)
        lines.append(line)
    if not X:
        _fail(table.path, 1, "no data rows after the header")
    y, names = _encode_labels(table.path, labels, lines, class_names)
    return X, y, names


def _cells_as_floats(table, line, cells):
    """The feature cells of one row (as ``CsvTable.numbers`` gave them) as float64, each
    checked as ``_to_float`` does (a cell holding a comma is one bad value, not several)."""
    cells = list(cells)
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not (np.abs(values) <= MAX_ABS_VALUE).all():
        for name, cell in zip(table.header[2:], cells):
            _to_float(table.path, line, cell, f"feature {name!r}")
    return values


def load_japanese_vowels():
    """UCI JapaneseVowels: name the speaker (9 classes) from 12 LPC cepstra per frame.

    Returns (X_train, y_train, X_test, y_test): X lists of float64 (T_i, 12) arrays with
    T_i in 7..29; y int64 labels 0..8 (speaker k is label k-1).  270 train, 370 test.
    """
    X_train, y_train, names = read_ts(DATA_DIR / "JapaneseVowels_TRAIN.ts")
    X_test, y_test, _ = read_ts(DATA_DIR / "JapaneseVowels_TEST.ts", class_names=names)
    return X_train, y_train, X_test, y_test


def pad_sequences(X, dtype=np.float64, value=0.0):
    """Stack variable-length sequences into one batch-first array.

    X: list of N arrays (T_i, F).  Returns (padded, lengths): padded (N, T_max, F) of ``dtype``
    with steps t >= T_i set to ``value``; lengths int64 (N,).  Use lengths (or a mask
    ``np.arange(T_max) < lengths[:, None]``) so that the padding never reaches a result.
    """
    if len(X) == 0:
        raise ValueError("pad_sequences: no sequences given")
    lengths = np.array([len(x) for x in X], dtype=np.int64)
    features = {x.shape[1] for x in X}
    if len(features) != 1:
        raise ValueError(f"pad_sequences: sequences have different feature counts {features}")
    padded = np.full((len(X), lengths.max(), features.pop()), value, dtype=dtype)
    for i, x in enumerate(X):  # one copy per sequence, not per element
        padded[i, : len(x)] = x
    return padded, lengths
