"""engine.apps.datasets: the vendored loaders return the documented data, the generic readers read
users' files, and every kind of bad data fails with FILE:LINE: problem."""
import gzip
import re
import warnings

import numpy as np
import pytest

from engine.apps import datasets as ds


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raises_at(path, line, *words):
    """pytest.raises for ValueError whose message starts 'path:line:' and holds every word."""
    pattern = re.escape(f"{path}:{line}:") + "".join(f"(?=.*{re.escape(w)})" for w in words)
    return pytest.raises(ValueError, match=re.compile(pattern, re.S))


# ---------------------------------------------------------------------------------------------
# Vendored data
# ---------------------------------------------------------------------------------------------

def test_sunspots_shape_and_ends():
    s = ds.load_sunspots()
    assert s.shape == (3120,) and s.dtype == np.float64
    np.testing.assert_array_equal(s[:3], [58.0, 62.6, 70.0])       # Jan-Mar 1749
    np.testing.assert_array_equal(s[-3:], [2.9, 4.1, 0.8])         # Oct-Dec 2008
    assert np.all(s >= 0) and np.all(np.isfinite(s))


@pytest.mark.parametrize("ticker, rows", [("AAPL", 3270), ("IBM", 3270), ("MSFT", 3270),
                                          ("GOOG", 2148), ("FB", 196)])
def test_stocks_counts_sorted_positive(ticker, rows):
    p = ds.load_stocks(ticker)
    assert p.name == ticker
    assert p.dates.dtype == np.dtype("datetime64[D]") and p.close.dtype == np.float64
    assert len(p.dates) == len(p.close) == rows
    assert np.all(np.diff(p.dates) > np.timedelta64(0, "D"))
    assert np.all(p.close > 0)
    assert p.dates[-1] == np.datetime64("2013-03-01")


def test_stocks_reads_adjusted_close():
    p = ds.load_stocks("AAPL")
    assert p.dates[0] == np.datetime64("2000-03-01")
    assert p.close[0] == pytest.approx(4.186662803811)  # Adj Close, not Close (130.31)


def test_stocks_unknown_ticker_lists_available():
    with pytest.raises(ValueError, match=r"'XYZ'.*AAPL.*FB.*GOOG.*IBM.*MSFT"):
        ds.load_stocks("XYZ")


def test_devils_dictionary_without_dictd_headers():
    text = ds.load_devils_dictionary()
    assert isinstance(text, str) and 380_000 < len(text) < 384_000
    assert "00-database" not in text
    assert text.lstrip().startswith("The Internet Wiretap 1st Online Edition of")
    assert "ABASEMENT, n." in text and "ZOOLOGY, n." in text
    assert text.rstrip().endswith("sheds its horn every two years.")


def test_japanese_vowels_shapes_and_labels():
    X_train, y_train, X_test, y_test = ds.load_japanese_vowels()
    assert len(X_train) == len(y_train) == 270 and len(X_test) == len(y_test) == 370
    lengths = [len(x) for x in X_train + X_test]
    assert min(lengths) == 7 and max(lengths) == 29
    assert all(x.shape[1] == 12 and x.dtype == np.float64 for x in X_train + X_test)
    assert y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_train), [30] * 9)
    np.testing.assert_array_equal(np.bincount(y_test), [31, 35, 88, 44, 29, 24, 40, 50, 29])
    assert X_train[0][0, 0] == pytest.approx(1.860936)


def test_pad_sequences_keeps_values_and_lengths():
    X = [np.full((n, 2), n, dtype=np.float64) for n in (3, 1, 4)]
    padded, lengths = ds.pad_sequences(X, dtype=np.float32, value=-1.0)
    assert padded.shape == (3, 4, 2) and padded.dtype == np.float32
    np.testing.assert_array_equal(lengths, [3, 1, 4])
    for i, x in enumerate(X):
        np.testing.assert_array_equal(padded[i, : len(x)], x)
        assert np.all(padded[i, len(x):] == -1.0)


def test_pad_sequences_rejects_mixed_features():
    with pytest.raises(ValueError, match="feature counts"):
        ds.pad_sequences([np.zeros((2, 3)), np.zeros((2, 4))])


# ---------------------------------------------------------------------------------------------
# CSV series and prices
# ---------------------------------------------------------------------------------------------

def test_read_csv_series(tmp_path):
    path = write(tmp_path, "s.csv", "month,value\n1,1.5\n\n2,-2\n3,3e1\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "value"), [1.5, -2.0, 30.0])


def test_read_csv_series_gzip(tmp_path):
    path = tmp_path / "s.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("x\n1\n2\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "x"), [1.0, 2.0])


def test_read_csv_bom_and_latin1(tmp_path):
    """An Excel export starts with a BOM; an old one may be latin-1: both read as text."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffDate,Close\r\n2020-01-01,1\r\n2020-01-02,2\r\n".encode("utf-8"))
    np.testing.assert_array_equal(ds.read_price_csv(bom).close, [1.0, 2.0])
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Prix \u00e9t\u00e9\n1\n2\n".encode("latin-1"))
    np.testing.assert_array_equal(ds.read_csv_series(latin, "Prix \u00e9t\u00e9"), [1.0, 2.0])


# Bad files for read_csv_series: (name, content, line reported, words in the message, call)
BAD_READ_CSV_SERIES = [
    pytest.param("s.csv", "month,value\n1,2\n2,3\n",
                 1, ("'price'", "month", "value"),
                 lambda path: ds.read_csv_series(path, "price"),
                 id="missing_column_lists_available"),
    pytest.param("s.csv", "\n\nmonth,value\n1,2\n",
                 3, ("'price'",),
                 lambda path: ds.read_csv_series(path, "price"),
                 id="missing_column_names_the_header_line"),
    pytest.param("s.csv", "month,value\n1,2\n2,abc\n3,4\n", 3, ("'abc'", "non-numeric"),
                 lambda path: ds.read_csv_series(path, "value"), id="non_numeric_quoted"),
    pytest.param("s.csv", "month,value\n1,2\n2,\n", 3, ("missing value ''", "1 missing"),
                 lambda path: ds.read_csv_series(path, "value"), id="empty_cell"),
    pytest.param("s.csv", "value\n1\n2\n3\n", 4, ("too short", "3 values", "72"),
                 lambda path: ds.read_csv_series(path, "value", min_length=72), id="too_short"),
    pytest.param("s.csv", "a,b\n1,2\n3\n", 3, ("1 fields", "header has 2"),
                 lambda path: ds.read_csv_series(path, "a"), id="read_csv_ragged_row"),
    pytest.param("s.csv", "", 1, ("empty",),
                 lambda path: ds.read_csv_series(path, "a"), id="read_csv_empty_file"),
]


def test_read_price_csv_defaults_and_sorting(tmp_path):
    """Newest first is turned round; rows out of order elsewhere stop (a year mistyped on one
    row had moved it to the end, to be the last price)."""
    path = write(tmp_path, "ACME.csv", "Date,Open,Close,Adj Close\n"
                                       "2020-01-03,1,10,5\n2020-01-01,1,8,4\n2020-01-02,1,9,4.5\n")
    with raises_at(path, 3, "date 2020-01-01 is before 2020-01-03 on line 2"):
        ds.read_price_csv(path)
    path = write(tmp_path, "ACME.csv", "Date,Open,Close,Adj Close\n"
                                       "2020-01-03,1,10,5\n2020-01-02,1,9,4.5\n2020-01-01,1,8,4\n")
    p = ds.read_price_csv(path)
    twice = write(tmp_path, "t.csv", "Date,close,Close\n2020-01-01,1,2\n2020-01-02,1,2\n")
    with raises_at(twice, 1, "columns 'close' and 'Close' could each be the price column"):
        ds.read_price_csv(twice)
    assert ds.read_price_csv(twice, price_column="Close").close.tolist() == [2.0, 2.0]
    assert p.name == "ACME"
    np.testing.assert_array_equal(p.dates, np.array(["2020-01-01", "2020-01-02", "2020-01-03"],
                                                    dtype="datetime64[D]"))
    np.testing.assert_array_equal(p.close, [4.0, 4.5, 5.0])  # Adj Close preferred over Close


@pytest.mark.parametrize("date, price", [("date_time", "adj_close"), ("Date Time", "Adj. Close"),
                                         ("TIMESTAMP", "adjusted-close"), ("ds", "AdjClose")])
def test_date_and_price_columns_are_found_however_the_name_is_written(tmp_path, date, price):
    path = write(tmp_path, "p.csv", f"{date},Close,{price}\n01.01.2009 00:10:00,9,4\n"
                                    "02.01.2009 00:10:00,9,4.5\n")
    np.testing.assert_array_equal(ds.read_price_csv(path).close, [4.0, 4.5])
    values, dates = ds.read_dated_series(path, "Close")
    np.testing.assert_array_equal(dates, np.array(["2009-01-01", "2009-01-02"],
                                                  dtype="datetime64[D]"))


def test_dates_from_year_month_day_columns(tmp_path):
    noaa = write(tmp_path, "w.csv", "Year,month,DAY,decimal,average\n2019,12,29,2019.99,411.8\n"
                                    "2020,1,5,2020.01,412.3\n2020,1,12,2020.03,413.1\n")
    values, dates = ds.read_dated_series(noaa, "average")
    np.testing.assert_array_equal(values, [411.8, 412.3, 413.1])
    np.testing.assert_array_equal(dates, np.array(["2019-12-29", "2020-01-05", "2020-01-12"],
                                                  dtype="datetime64[D]"))
    macro = write(tmp_path, "m.csv", "year,quarter,gdp\n1960.0,4.0,3\n1961.0,1.0,4\n")
    np.testing.assert_array_equal(ds.read_dated_series(macro, "gdp")[1],
                                  np.array(["1960-10-01", "1961-01-01"], dtype="datetime64[D]"))
    hourly = write(tmp_path, "h.csv", "year,month,day,hour,t\n2020,3,1,22,1.5\n"
                                      "2020,3,1,23,1.25\n2020,3,2,0,1.0\n")
    _, dates = ds.read_dated_columns(hourly, ["t"], unit="m")
    np.testing.assert_array_equal(dates, np.array(["2020-03-01T22:00", "2020-03-01T23:00",
                                                   "2020-03-02T00:00"], dtype="datetime64[m]"))
    newest_first = write(tmp_path, "n.csv", "year,month,v\n2020,2,7\n2020,1,5\n2019,12,3\n")
    np.testing.assert_array_equal(ds.read_dated_series(newest_first, "v")[0], [3, 5, 7])
    stacked = write(tmp_path, "s.csv", "year,month,v\n2020,1,7\n2020,2,5\n2020,1,3\n")
    with raises_at(stacked, 4, "rows must be in date order"):
        ds.read_dated_series(stacked, "v")


@pytest.mark.parametrize("text", [
    "month,v\n1,2\n2,3\n",                  # no year
    "year,month,v\n2020,13,2\n2021,1,3\n",   # no month 13
    "year,month,day,v\n2020,4,30,2\n2020,4,31,3\n",  # no 31 April
    "year,month,v\n2020,1.5,2\n2020,2,3\n",  # not a whole number
    "year,month,v\n2020,x,2\n2020,2,3\n"])
def test_columns_that_are_no_dates_give_none(tmp_path, text):
    values, dates = ds.read_dated_series(write(tmp_path, "x.csv", text), "v")
    assert dates is None and values.tolist() == [2.0, 3.0]


def test_semicolon_files_read_numbers_with_a_decimal_comma(tmp_path):
    path = write(tmp_path, "eu.csv", "Datum;Wert\n2020-01-01;1,5\n2020-01-02;-1.234,5\n"
                                     "2020-01-03;2,5e-3\n2020-01-04;3\n2020-01-05;4.5\n"
                                     "2020-01-06;,25\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "Wert"),
                                  [1.5, -1234.5, 0.0025, 3.0, 4.5, 0.25])
    prices = write(tmp_path, "p.csv", "Date;Close\n2020-01-02;10,5\n2020-01-01;9,75\n")
    np.testing.assert_array_equal(ds.read_price_csv(prices).close, [9.75, 10.5])
    seqs = write(tmp_path, "s.csv", "id;label;a;b\n1;x;0,5;1\n1;x;1,5;2\n2;y;2,5;3\n")
    X, _, _ = ds.read_sequence_csv(seqs)
    np.testing.assert_array_equal(X[0], [[0.5, 1.0], [1.5, 2.0]])
    bad = write(tmp_path, "b.csv", "t;v\n1;1,2,3\n")
    with raises_at(bad, 2, "non-numeric value '1,2,3'"):
        ds.read_csv_series(bad, "v")
    commas = write(tmp_path, "c.csv", 't,v\n1,"1,5"\n')  # a comma file keeps the point
    with raises_at(commas, 2, "non-numeric value '1,5'", "decimal point"):
        ds.read_csv_series(commas, "v")


def test_a_column_named_twice_is_refused_when_asked_for(tmp_path):
    path = write(tmp_path, "d.csv", "# notes\nvalue,t,value\n1,2,3\n4,5,6\n")
    with raises_at(path, 2, "the header names 'value' 2 times (columns 1, 3)", "rename"):
        ds.read_csv_series(path, "value")
    np.testing.assert_array_equal(ds.read_csv_series(path, "t"), [2.0, 5.0])


def test_the_typographic_minus_reads_and_a_unit_is_named(tmp_path):
    path = write(tmp_path, "m.csv", "t\tv\n1\t\u22121.5\n2\t2\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "v"), [-1.5, 2.0])
    ts = write(tmp_path, "m.ts", "@data\n\u22121,2:a\n3,\u22124:b\n")
    np.testing.assert_array_equal(ds.read_ts(ts)[0][1][:, 0], [3.0, -4.0])
    for cell, unit in [("5%", "'%'"), ("$12.5", "'$'"), ("12 kg", "'kg'"),
                       ("-3 \u00b0C", "'\u00b0C'")]:
        bad = write(tmp_path, "u.csv", f"t,v\n1,{cell}\n")
        with raises_at(bad, 2, f"non-numeric value {cell!r}", f"without {unit}"):
            ds.read_csv_series(bad, "v")


def test_comma_files_read_commas_between_thousands(tmp_path):
    path = write(tmp_path, "us.csv", 'Date,Close\n2020-01-01,"1,234.5"\n2020-01-02,"-1,234,567"\n'
                                     '2020-01-03,"12,345.25e-3"\n2020-01-04,7.5\n')
    np.testing.assert_array_equal(ds.read_csv_series(path, "Close"),
                                  [1234.5, -1234567.0, 12.34525, 7.5])
    np.testing.assert_array_equal(ds.read_price_csv(
        write(tmp_path, "p.csv", 'Date,Close\n2020-01-01,"1,001.5"\n2020-01-02,"1,002"\n')).close,
        [1001.5, 1002.0])
    for cell in ["1,23", "1234,567", "1,234,56"]:  # not groups of three from the point
        bad = write(tmp_path, "b.csv", f't,v\n1,"{cell}"\n')
        with raises_at(bad, 2, f"non-numeric value '{cell}'"):
            ds.read_csv_series(bad, "v")


DAYS = np.arange("2020-01-01", "2020-03-01", dtype="datetime64[D]")
MONTHS = np.arange("2000-01", "2003-01", dtype="datetime64[M]").astype("datetime64[D]")
HOURS = np.arange("2020-01-01T00:00", "2020-01-05T00:00", 60, dtype="datetime64[m]")
WEEKDAYS = DAYS[np.is_busday(DAYS)]


@pytest.mark.parametrize("dates, skips", [
    (DAYS, None), (MONTHS, None), (HOURS, None), (WEEKDAYS, None),
    (HOURS.astype("datetime64[D]"), None),                # hourly rows read to the day
    (np.delete(WEEKDAYS, [3]), None),                     # a holiday
    (WEEKDAYS.astype("datetime64[m]"), None),             # weekdays read to the minute
    (WEEKDAYS + np.timedelta64(16 * 60, "m"), None),      # at 16:00
    (np.delete(DAYS, [5, 6, 30]), ((1, "D"), 2, 3, "2020-01-05")),
    (np.delete(MONTHS, [4]), ((31, "D"), 1, 1, "2000-04-01")),
    (np.delete(WEEKDAYS, [3, 4]), ((1, "D"), 1, 2, "2020-01-03")),
    (np.delete(HOURS, [10, 11, 50]), ((60, "m"), 2, 3, "2020-01-01T09:00"))])
def test_skipped_steps_finds_rows_missing_from_an_even_time_axis(dates, skips):
    found = ds.skipped_steps(dates)
    if skips is None:
        assert found is None
    else:
        (step, unit), gaps, skipped, first = skips
        assert found == (np.timedelta64(step, unit), gaps, skipped, np.datetime64(first))


MONTH_ENDS = (np.arange("2000-02", "2003-02", dtype="datetime64[M]").astype("datetime64[D]")
              - np.timedelta64(1, "D"))
QUARTERS = np.arange("2000-01", "2010-01", 3, dtype="datetime64[M]").astype("datetime64[D]")
YEARS = np.arange("1900", "1950", dtype="datetime64[Y]").astype("datetime64[D]")


@pytest.mark.parametrize("dates, gone, kept", [
    (HOURS, [10, 11, 50], []), (DAYS.astype("datetime64[m]"), [5, 6, 30], []),
    (MONTHS + np.timedelta64(14, "D"), [4, 20, 21], []), (MONTH_ENDS, [1, 2, 30], []),
    (QUARTERS, [7], []), (YEARS, [7, 8], []),
    (WEEKDAYS.astype("datetime64[m]"), [3, 10, 11], [3]),  # a holiday stays out
    (WEEKDAYS + np.timedelta64(16 * 60, "m"), [3, 10, 11], [3])])  # closes at 16:00
def test_fill_skipped_steps_puts_rows_back_on_the_time_axis(dates, gone, kept):
    """Values linear in the step come back exactly: each row lands on its own step."""
    rng = np.random.default_rng(3)
    line = np.arange(len(dates))[:, None] * rng.normal(size=2) + rng.normal(size=2)
    values, dates_filled, skips = ds.fill_skipped_steps(np.delete(line, gone, axis=0),
                                                        np.delete(dates, gone))
    assert skips.skipped == len(gone) - len(kept)
    assert (dates_filled == np.delete(dates, kept)).all()
    np.testing.assert_allclose(values, np.delete(line, kept, axis=0), rtol=1e-12, atol=1e-12)


def test_fill_skipped_steps_leaves_dates_off_an_even_axis():
    off = np.concatenate([HOURS[:5], HOURS[5:] + np.timedelta64(90, "m")])  # 2.5 steps
    assert ds.fill_skipped_steps(np.ones((len(off), 1)), off) is None
    assert ds.fill_skipped_steps(np.ones((len(HOURS), 1)), HOURS) is None  # nothing skipped
    days = MONTHS + np.asarray(np.arange(len(MONTHS)) % 3, "timedelta64[D]")  # days vary
    assert ds.fill_skipped_steps(np.ones((len(days) - 1, 1)), np.delete(days, 4)) is None


def test_a_dated_column_that_barely_varies_is_refused_at_its_header(tmp_path):
    text = "".join(f"{i},{v:.6e}\n" for i, v in enumerate(np.random.default_rng(0).normal(
        0, 1e-101, 5)))
    path = write(tmp_path, "t.csv", "# values in kilo-parsecs\nt,v\n" + text)
    with raises_at(path, 2, "column 'v' varies by only", "power of ten"):
        ds.read_dated_series(path, "v")
    path.write_text("t,v\n" + "".join(f"{i},{1e-99 * (i % 3)}\n" for i in range(5)))
    np.testing.assert_array_equal(ds.read_dated_series(path, "v")[0],
                                  [0, 1e-99, 2e-99, 0, 1e-99])
    path.write_text("t,v\n" + "".join(f"{i},7e-120\n" for i in range(5)))  # constant: read
    np.testing.assert_array_equal(ds.read_dated_series(path, "v")[0], [7e-120] * 5)


def test_read_price_csv_explicit_columns_and_times(tmp_path):
    path = write(tmp_path, "p.csv", "when,px\n2020-01-01 16:00:00,3\n2020-01-02 16:00:00,4\n")
    p = ds.read_price_csv(path, date_column="when", price_column="px")
    assert p.dates[1] == np.datetime64("2020-01-02")
    np.testing.assert_array_equal(p.close, [3.0, 4.0])


# Bad files for read_price_csv: (name, content, line reported, words in the message, call)
BAD_READ_PRICE_CSV = [
    pytest.param("p.csv", "date,volume\n2020-01-01,3\n2020-01-02,4\n",
                 1, ("no price column", "date", "volume"),
                 ds.read_price_csv, id="no_price_column"),
    pytest.param("p.csv", "date,close\n2020-01-01,3\nFeb 1 2020,4\n",
                 3, ("'Feb 1 2020'", "YYYY-MM-DD", "--date-format"),
                 ds.read_price_csv, id="bad_date"),
    pytest.param("p.csv", "date,close\n2020-01-01,3\n2020-01-02,n/a\n",
                 3, ("missing value 'n/a'", "--missing"),
                 ds.read_price_csv, id="bad_price"),
    pytest.param("p.csv", "date,close\n2020-01-01,3\n2020-01-02,0\n", 3, ("positive",),
                 ds.read_price_csv, id="non_positive_price"),
    pytest.param("p.csv", "date,close\n2020-01-01,3\n2020-01-02,4\n2020-01-01,5\n",
                 4, ("2020-01-01", "repeats line 2"),
                 ds.read_price_csv, id="repeated_date"),
    pytest.param("p.csv", "date,close\n2020-01-01,3\n", 2, ("too short",),
                 ds.read_price_csv, id="too_short"),
]


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

def test_read_text_utf8_and_newlines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("\ufeffcaf\u00e9\r\nna\u00efve\n".encode("utf-8"))
    assert ds.read_text(path) == "caf\u00e9\nna\u00efve\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_utf16_files_with_their_bom_are_text_and_tables(encoding, tmp_path):
    """Windows Notepad's \"Unicode\" and Excel's \"Unicode text\" (tab-separated) are
    UTF-16 with a byte-order mark; their NUL bytes must not make them binary."""
    bom = b"\xfe\xff" if encoding.endswith("be") else b""  # utf-16 writes its own BOM
    path = tmp_path / "u.txt"
    path.write_bytes(bom + "caf\u00e9\nna\u00efve\n".encode(encoding))
    assert ds.read_text(path) == "caf\u00e9\nna\u00efve\n"
    table = tmp_path / "u.csv"
    table.write_bytes(bom + "date\tvalue\r\n2000-01-01\t1.5\r\n2000-01-02\t2\r\n".encode(encoding))
    np.testing.assert_array_equal(ds.read_csv_series(table, "value"), [1.5, 2.0])
    odd = tmp_path / "odd.txt"
    odd.write_bytes(b"\xff\xfe" + b"a\x00b")  # an odd byte count
    with raises_at(odd, 1, "UTF-16"):
        ds.read_text(odd)


@pytest.mark.parametrize("magic, words", [
    (b"PK\x03\x04", ("ZIP", "Excel", "CSV")), (b"\xd0\xcf\x11\xe0", ("Excel .xls", "CSV")),
    (b"PAR1", ("Parquet", "to_csv")), (b"\x93NUMPY", ("NumPy .npy", "savetxt")),
    (b"\x89HDF", ("HDF5",)), (b"%PDF", ("PDF",)), (b"\x01\x02", ())])
def test_a_binary_file_is_refused_naming_what_it_looks_like(magic, words, tmp_path):
    """An Excel workbook, a Parquet file, ... given for a CSV: the NUL-byte error says what the
    file looks like and what to do; an unknown binary file gets the plain error."""
    body = np.random.default_rng(3).integers(14, 256, 64, np.uint8).tobytes()  # no NUL or EOL
    path = tmp_path / "data.csv"
    path.write_bytes(magic + body + b"\0\0")
    with raises_at(path, 1, "NUL byte: this is a binary file, not text", *words) as err:
        ds.read_csv_table(path)
    if not words:
        assert str(err.value).endswith("not text")


def test_a_gzipped_file_is_read_whatever_its_name(tmp_path):
    path = tmp_path / "served.csv"
    path.write_bytes(gzip.compress(b"date,y\n2000-01-01,1.5\n2000-01-02,2.5\n"))
    np.testing.assert_array_equal(ds.read_csv_series(path, "y"), [1.5, 2.5])


def test_a_windows_text_reads_its_curly_quotes_and_dashes(tmp_path):
    words = "\u201cCaf\u00e9\u201d \u2013 \u20ac5\n"
    path = tmp_path / "w.txt"
    path.write_bytes(words.encode("cp1252"))  # b'\x93', b'\x96', b'\x80': C1 in latin-1
    assert ds.read_text(path) == words
    path.write_bytes(b"caf\xe9 \x81\n")  # a byte Windows-1252 leaves undefined: latin-1
    assert ds.read_text(path) == "caf\u00e9 \x81\n"
    path.write_bytes(words.encode("cp1252") + b"\x81\n")  # that byte alone
    assert ds.read_text(path) == words + "\x81\n"
    path.write_bytes("na\u00efve caf\u00e9 \u2014 ".encode() + b"\xe9t\xe9\n")  # one stray
    assert ds.read_text(path) == "na\u00efve caf\u00e9 \u2014 \u00e9t\u00e9\n"  # byte each
    csv = tmp_path / "w.csv"
    csv.write_bytes("Preis \u20ac;Menge\n1,5;2\n2,5;3\n".encode("cp1252"))
    np.testing.assert_array_equal(ds.read_csv_series(csv, "Preis \u20ac"), [1.5, 2.5])


@pytest.mark.parametrize("order", ["utf-16-le", "utf-16-be"])
def test_utf16_without_its_byte_order_mark_reads_as_text(order, tmp_path):
    path = tmp_path / "u.csv"
    path.write_bytes("date,pr\u00e9cis\n2000-01-01,1.5\n2000-01-02,2.5\n".encode(order))
    np.testing.assert_array_equal(ds.read_csv_series(path, "pr\u00e9cis"), [1.5, 2.5])
    data = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8)
    data[1::2] = 0  # small 16-bit numbers: the same NULs, but control characters throughout
    path.write_bytes(data.tobytes())
    with raises_at(path, 1, "binary file"):
        ds.read_text(path)


def test_read_text_latin1_fallback(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))  # b'\xe9' alone is not valid UTF-8
    assert ds.read_text(path) == "caf\u00e9\n"


@pytest.mark.parametrize("content", ["", "  \n\n\t\n"])
def test_read_text_empty(tmp_path, content):
    path = write(tmp_path, "t.txt", content)
    with raises_at(path, 1, "empty text"):
        ds.read_text(path)


# ---------------------------------------------------------------------------------------------
# .ts files
# ---------------------------------------------------------------------------------------------

TS_HEADER = "# a comment\n@problemName toy\n@univariate false\n@dimensions 2\n" \
            "@equalLength false\n@classLabel true a b c\n@data\n"


def test_read_ts_variable_lengths_and_declared_labels(tmp_path):
    path = write(tmp_path, "toy.ts", TS_HEADER + "1,2,3:4,5,6:b\n\n7,8:9,10:a\n")
    X, y, names = ds.read_ts(path)
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(y, [1, 0])
    np.testing.assert_array_equal(X[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(X[1], [[7, 9], [8, 10]])


def test_read_ts_without_class_label_declaration_sorts_labels(tmp_path):
    path = write(tmp_path, "toy.ts", "@data\n1,2:10\n3,4:2\n5:2\n")
    X, y, names = ds.read_ts(path)
    assert names == ["2", "10"]           # numeric order, not text order
    np.testing.assert_array_equal(y, [1, 0, 0])
    assert [x.shape for x in X] == [(2, 1), (2, 1), (1, 1)]


def test_read_ts_test_set_uses_train_classes(tmp_path):
    path = write(tmp_path, "toy.ts", "@data\n1:z\n2:x\n")
    _, y, names = ds.read_ts(path, class_names=["x", "y", "z"])
    assert names == ["x", "y", "z"]
    np.testing.assert_array_equal(y, [2, 0])
    with raises_at(path, 3, "unknown label 'x'"):
        ds.read_ts(path, class_names=["z"])


def test_read_ts_drops_missing_values_padding_a_channel_and_names_a_gap(tmp_path):
    path = write(tmp_path, "toy.ts", "@missing true\n@data\n1.5,2,?,NaN:4,5,?,?:a\n7:9,nan:b\n")
    X, y, _ = ds.read_ts(path)
    np.testing.assert_array_equal(X[0], [[1.5, 4], [2, 5]])
    np.testing.assert_array_equal(X[1], [[7, 9]])
    path = write(tmp_path, "toy.ts", "@missing true\n@data\n1.5,2,?,NaN:4,5,?,?:a\n7,?:9,10:b\n")
    gap = write(tmp_path, "gap.ts", "@missing true\n@data\n1,2:3,4:a\n1,?,3:4,5,6:b\n")
    with raises_at(gap, 4, "missing value '?' at step 2 of channel 1", "fill the gaps"):
        ds.read_ts(gap)
    with raises_at(path, 4, "channel 1 has 1 values, channel 2 has 2"):  # padding dropped
        ds.read_ts(path)


# Bad files for read_ts: (name, content, line reported, words in the message, call)
BAD_READ_TS = [
    pytest.param("toy.ts", TS_HEADER + "1,2:3,4:a\n1,2:3,4:d\n",
                 9, ("unknown label 'd'", "'a', 'b', 'c'"),
                 ds.read_ts, id="unknown_label"),
    pytest.param("toy.ts", TS_HEADER + "1,2:3,4:a\n1,2,3:3,4:b\n",
                 9, ("inconsistent channel lengths", "channel 2 has 2"),
                 ds.read_ts, id="inconsistent_channel_lengths"),
    pytest.param("toy.ts", TS_HEADER + "1,2:3,4:5,6:a\n", 8, ("3 channels", "expected 2"),
                 ds.read_ts, id="wrong_channel_count_against_dimensions"),
    pytest.param("toy.ts", "@data\n1,2:3,4:a\n1,2:a\n", 3, ("1 channels", "expected 2"),
                 ds.read_ts, id="wrong_channel_count_against_first_line"),
    pytest.param("toy.ts", TS_HEADER + "1,2:3,x4:a\n", 8, ("'x4'", "channel 2"),
                 ds.read_ts, id="non_numeric"),
    pytest.param("toy.ts", "@problemName toy\n@classLabel true a\n", 2, ("no '@data'",),
                 ds.read_ts, id="missing_data_line"),
    pytest.param("toy.ts", "@problemName toy\n1,2:a\n", 2, ("'@data'",),
                 ds.read_ts, id="data_without_data_line"),
    pytest.param("toy.ts", "@problemName toy\n@data\n\n", 2, ("no data lines",),
                 ds.read_ts, id="no_rows"),
    pytest.param("toy.ts", "@classLabel false\n@data\n1,2:3,4\n", 1, ("no class labels",),
                 ds.read_ts, id="unlabelled"),
]


# ---------------------------------------------------------------------------------------------
# Sequence CSV files
# ---------------------------------------------------------------------------------------------

def test_read_sequence_csv(tmp_path):
    path = write(tmp_path, "seq.csv", "id,label,f1,f2\n"
                                      "s1,up,1,2\ns1,up,3,4\ns1,up,5,6\n"
                                      "s2,down,7,8\n")
    X, y, names = ds.read_sequence_csv(path)
    assert names == ["down", "up"]
    np.testing.assert_array_equal(y, [1, 0])
    np.testing.assert_array_equal(X[0], [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(X[1], [[7, 8]])


def test_read_sequence_csv_reads_a_column_one_way_in_every_row(tmp_path):
    """A decimal comma anywhere in a column of a ';' file makes its 1.000 a thousand in every
    sequence, not in those rows alone that hold one."""
    path = write(tmp_path, "s.csv", "id;label;f1;f2\ns0;b;1.000;2\ns0;b;2.000;3\n"
                                    "s1;a;1.000;3,5\ns1;a;2.000;4\n")
    X, _, _ = ds.read_sequence_csv(path)
    np.testing.assert_array_equal(X[0], [[1.0, 2], [2.0, 3]])  # f1 has no decimal comma
    np.testing.assert_array_equal(X[1], [[1.0, 3.5], [2.0, 4]])


def test_read_sequence_csv_with_train_classes(tmp_path):
    path = write(tmp_path, "seq.csv", "id,label,f\n1,b,0\n2,a,1\n")
    _, y, names = ds.read_sequence_csv(path, class_names=["a", "b"])
    np.testing.assert_array_equal(y, [1, 0])
    with raises_at(path, 3, "unknown label 'a'"):
        ds.read_sequence_csv(path, class_names=["b"])


def test_an_empty_label_stops_and_a_number_written_otherwise_is_its_class(tmp_path):
    path = write(tmp_path, "seq.csv", "id,label,f\n1,b,0\n1,b,1\n2,,1\n3,a,2\n")
    with raises_at(path, 4, "empty label"):  # it had become a class '' of its own
        ds.read_sequence_csv(path)
    ts = write(tmp_path, "x.ts", "@problemName x\n@univariate true\n@classLabel true a\n@data\n"
                                 "1,2,3:a\n4,5,6:\n")
    with raises_at(ts, 6, "empty label"):
        ds.read_ts(ts)
    floats = write(tmp_path, "f.csv", "id,label,f\n1,2.0,0\n2,10,1\n3,1e1,2\n")
    _, y, names = ds.read_sequence_csv(floats, class_names=["2", "10"])
    np.testing.assert_array_equal(y, [0, 1, 1])
    with raises_at(floats, 2, "unknown label '2.0'"):
        ds.read_sequence_csv(floats, class_names=["1", "10"])


def test_read_sequence_csv_names_the_feature_of_a_cell_holding_a_comma(tmp_path):
    path = write(tmp_path, "seq.csv", 'id,label,f1,f2\ns1,up,0.5,1\ns1,up,"1,5",2\n'
                                      's1,up,"1,500",3\n')
    with raises_at(path, 3, "non-numeric value '1,5' in feature 'f1'"):
        ds.read_sequence_csv(path)
    path.write_text(path.read_text().replace('"1,5"', "1.5"))
    np.testing.assert_array_equal(ds.read_sequence_csv(path)[0][0][:, 0], [0.5, 1.5, 1500])


# Bad files for read_sequence_csv: (name, content, line reported, words in the message, call)
BAD_READ_SEQUENCE_CSV = [
    pytest.param("seq.csv", "id,label,f\n1,a,0\n1,b,1\n", 3, ("'b'", "'a'", "line 2"),
                 ds.read_sequence_csv, id="label_changes_inside_sequence"),
    pytest.param("seq.csv", "id,label,f\n1,a,0\n2,a,1\n1,a,2\n", 4, ("'1'", "contiguous"),
                 ds.read_sequence_csv, id="non_contiguous"),
    pytest.param("seq.csv", "id,label,f,g\n1,a,0,1\n1,a,2,?\n", 3, ("'?'", "non-numeric"),
                 ds.read_sequence_csv, id="non_numeric"),
    pytest.param("seq.csv", "id,label\n1,a\n", 1, ("sequence id, label",),
                 ds.read_sequence_csv, id="too_few_columns"),
    pytest.param("seq.csv", "s1,up,0.5,1.5\ns1,up,2.5,3.5\ns2,down,1,2\n", 1,
                 ("sequence 's1'", "needs a header row"), ds.read_sequence_csv,
                 id="no_header_row"),
]


# ---------------------------------------------------------------------------------------------
# Every reader's bad files (the tables above)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,content,line,words,read", BAD_READ_CSV_SERIES + BAD_READ_PRICE_CSV
                         + BAD_READ_TS + BAD_READ_SEQUENCE_CSV)
def test_readers_report_bad_files_at_their_line(tmp_path, name, content, line, words, read):
    path = write(tmp_path, name, content)
    with raises_at(path, line, *words):
        read(path)


# ---------------------------------------------------------------------------------------------
# Missing values and date forms (issue 20, point 2)
# ---------------------------------------------------------------------------------------------
def test_missing_values_error_drop_or_interpolate(tmp_path):
    path = write(tmp_path, "s.csv", "t,v\n0,\n1,2\n2,NA\n3,?\n4,8\n5,nan\n")
    with raises_at(path, 2, "missing value ''", "4 missing in all", "--missing"):
        ds.read_csv_series(path, "v")
    np.testing.assert_array_equal(ds.read_csv_series(path, "v", missing="drop"), [2.0, 8.0])
    np.testing.assert_allclose(ds.read_csv_series(path, "v", missing="interpolate"),
                               [2.0, 4.0, 6.0, 8.0])  # nothing to interpolate at the ends
    with pytest.raises(ValueError, match="missing must be one of"):
        ds.read_csv_series(path, "v", missing="zero")


def test_interpolate_keeps_the_span_every_column_has_values_for(tmp_path):
    """A column that starts later or ends sooner bounds the rows: nothing is carried out
    from an end (that would be values the file does not hold)."""
    path = write(tmp_path, "s.csv", "date,a,b\n2020-01-01,1,\n2020-01-02,2,10\n"
                                    "2020-01-03,,20\n2020-01-04,4,40\n2020-01-05,,50\n")
    with pytest.warns(UserWarning, match="rows left out, as nothing is there to interpolate "
                                         "from: 1 before line 3, where 'b' starts; 1 after "
                                         "line 5, where 'a' ends"):
        values, dates, missing, _ = ds.read_dated_table(path, ["a", "b"],
                                                        missing="interpolate")
    np.testing.assert_allclose(values, [[2, 10], [3, 20], [4, 40]])
    np.testing.assert_array_equal(dates, np.arange("2020-01-02", "2020-01-05",
                                                   dtype="datetime64[D]"))
    assert missing == {"a": 2, "b": 1}


def test_na_values_mark_missing_numbers_as_written_or_not(tmp_path):
    path = write(tmp_path, "s.csv", "t,v\n0,1.5\n1,-999.99\n2,4.5\n3,-999.990\n4,-99\n"
                                    "5,7.5\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "v"),  # read as data by default
                                  [1.5, -999.99, 4.5, -999.99, -99.0, 7.5])
    with raises_at(path, 3, "missing value '-999.99'", "2 missing in all", "--missing"):
        ds.read_csv_series(path, "v", na_values=(-999.99,))
    np.testing.assert_array_equal(
        ds.read_csv_series(path, "v", missing="drop", na_values=(-999.99, -99.0)), [1.5, 4.5, 7.5])
    np.testing.assert_allclose(
        ds.read_csv_series(path, "v", missing="interpolate", na_values=(-999.99,)),
        [1.5, 3.0, 4.5, -47.25, -99.0, 7.5])
    words = write(tmp_path, "w.csv", "t,v\n0,1.5\n1,-\n2,N.A.\n3,4\n")
    np.testing.assert_array_equal(ds.read_csv_series(words, "v", missing="drop",
                                                     na_values=("-", "n.a.")), [1.5, 4.0])
    prices = write(tmp_path, "p.csv", "Date,Close\n2020-01-01,10\n2020-01-02,-1\n"
                                      "2020-01-03,12\n")
    np.testing.assert_array_equal(ds.read_price_csv(prices, missing="drop",
                                                    na_values=(-1.0,)).close, [10.0, 12.0])


@pytest.mark.parametrize("values, code", [
    ([315.2, -999.99, 316.0, 317.5, -999.99], (-999.99, 2, 315.2, 317.5)),
    ([3.0, 1.0, 9999.0, 2.0], (9999.0, 1, 1.0, 3.0)),
    ([0.5, -99.9, 0.7, 0.6], (-99.9, 1, 0.5, 0.7)),
    ([10.0, 20.0, 99.0, 60.0], None),     # outside, but by less than the others' range
    ([97.0, 98.0, 99.0, 99.9], None),     # within the others' range
    ([0.5, 0.999, 0.7], None),            # nines after a zero: a value, not a code
    ([1.0, 2.0, 9.0], None),              # one nine
    ([-99.0, -99.0], None),               # nothing else to compare with
    ([], None)])
def test_missing_code_spots_nines_far_outside_the_other_values(values, code):
    assert ds.missing_code(np.array(values)) == code


def test_comment_lines_before_the_header_are_skipped(tmp_path):
    noaa = write(tmp_path, "co2.csv", "# ------\n# USE OF NOAA GML DATA, please cite\n#\n"
                                      "year,month,average\n1974,5,333.37\n1974,6,332.95\n")
    np.testing.assert_array_equal(ds.read_csv_series(noaa, "average"), [333.37, 332.95])
    with raises_at(noaa, 4, "no column 'co2'", "'average'"):  # the header's own line
        ds.read_csv_series(noaa, "co2")
    ragged = write(tmp_path, "r.csv", noaa.read_text() + "1974,7\n")
    with raises_at(ragged, 7, "2 fields, but the header has 3"):
        ds.read_csv_series(ragged, "average")
    with raises_at(tmp_path / "c.csv", 1, "empty file", "lines starting with # are comments"):
        ds.read_csv_series(write(tmp_path, "c.csv", "# only notes\n"), "v")
    tabs = write(tmp_path, "t.tsv", "# a note, with a comma\nyear\tv\n1\t2.5\n2\t3.5\n")
    np.testing.assert_array_equal(ds.read_csv_series(tabs, "v"), [2.5, 3.5])


def test_a_header_written_as_a_comment_names_the_columns(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(5, 2))
    path = tmp_path / "saved.csv"
    np.savetxt(path, data, delimiter=",", header="x,level", comments="# ")
    np.testing.assert_array_equal(ds.read_csv_series(path, "level"), data[:, 1])
    np.savetxt(path, data, delimiter=",", header="made by a script\nx,level")
    np.testing.assert_array_equal(ds.read_csv_series(path, "x"), data[:, 0])
    names = write(tmp_path, "n.csv", "# a,b\nx,level\n1,2.5\n2,3.5\n")  # the names row wins
    np.testing.assert_array_equal(ds.read_csv_series(names, "level"), [2.5, 3.5])


def test_price_dates_in_common_forms_and_missing_prices_in_date_order(tmp_path):
    path = write(tmp_path, "p.csv", "Date,Close\n01/06/1999 16:00,4\n01/05/1999,\n"
                                    "1/4/1999,2\n")  # newest first
    prices = ds.read_price_csv(path, missing="interpolate")
    np.testing.assert_array_equal(prices.dates, np.array(
        ["1999-01-04", "1999-01-05", "1999-01-06"], dtype="datetime64[D]"))
    np.testing.assert_array_equal(prices.close, [2.0, 3.0, 4.0])
    euro = write(tmp_path, "e.csv", "Date,Close\n4.1.1999,2\n5.1.1999 09:30,3\n")
    np.testing.assert_array_equal(ds.read_price_csv(euro).dates, np.array(
        ["1999-01-04", "1999-01-05"], dtype="datetime64[D]"))
    dmy = write(tmp_path, "d.csv", "Date,Close\n13/01/1999,2\n14/01/1999,3\n")
    assert ds.read_price_csv(dmy).dates[0] == np.datetime64("1999-01-13")  # a day over 12
    assert ds.read_price_csv(dmy, date_format="%d/%m/%Y").dates[0] == np.datetime64("1999-01-13")
    both = write(tmp_path, "b.csv", "Date,Close\n01/13/1999,2\n14/01/1999,3\n")  # no reading
    with raises_at(both, 3, "'14/01/1999'", "MM/DD/YYYY", "--date-format"):
        ds.read_price_csv(both)


def test_monthly_year_month_dates_are_read_from_a_column_named_month(tmp_path):
    path = write(tmp_path, "m.csv", "month,value\n1949-01,112\n1949-02,118\n1949-12,104\n")
    values, dates = ds.read_dated_series(path, "value")
    np.testing.assert_array_equal(values, [112.0, 118.0, 104.0])
    np.testing.assert_array_equal(dates, np.array(["1949-01-01", "1949-02-01", "1949-12-01"],
                                                  dtype="datetime64[D]"))
    bad = write(tmp_path, "b.csv", "month,value\n1949-13,1\n1949-12,2\n")
    with raises_at(bad, 2, "'1949-13'", "YYYY-MM"):
        ds.read_dated_series(bad, "value", date_column="month")
    assert ds.read_dated_series(bad, "value")[1] is None  # only looks like dates: steps


def test_dated_rows_come_oldest_first_and_rows_out_of_order_are_refused(tmp_path):
    """A file written newest first (as many exports are) is turned round with its dates; one
    whose dates go back in the middle stops at that line, since a forecast of shuffled rows
    would be silently wrong.  A repeated date (hourly rows read to the day) is allowed."""
    newest = write(tmp_path, "n.csv", "date,y\n2000-01-03,3\n2000-01-02,\n2000-01-01,1\n")
    values, dates = ds.read_dated_series(newest, "y", missing="interpolate")
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(dates, np.array(["2000-01-01", "2000-01-02", "2000-01-03"],
                                                  dtype="datetime64[D]"))
    shuffled = write(tmp_path, "s.csv", "date,y\n2000-01-01,1\n2000-01-03,3\n2000-01-02,2\n")
    with raises_at(shuffled, 4, "2000-01-02", "2000-01-03", "line 3", "date order"):
        ds.read_dated_series(shuffled, "y")
    hourly = write(tmp_path, "h.csv", "time,y\n2000-01-01 23:00,1\n2000-01-02 00:00,2\n"
                                      "2000-01-02 01:00,3\n")
    np.testing.assert_array_equal(ds.read_dated_series(hourly, "y")[0], [1.0, 2.0, 3.0])
    values, dates = ds.read_dated_columns(hourly, ["y"], unit="m")
    assert dates[-1] == np.datetime64("2000-01-02T01:00")


def test_a_time_zone_offset_keeps_the_clock_time_with_or_without_date_format(tmp_path):
    """The calendar inputs follow local time: '+05:00' is dropped, not converted to UTC, whether
    the default reader or a --date-format with %z reads it (and NumPy warns of nothing)."""
    import warnings

    path = write(tmp_path, "z.csv", "time,y\n2021-03-01T23:30:00+05:00,1\n"
                                    "2021-03-02T00:30:00+05:00,2\n")
    want = np.array(["2021-03-01T23:30", "2021-03-02T00:30"], dtype="datetime64[m]")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fmt in (None, "%Y-%m-%dT%H:%M:%S%z"):
            _, dates = ds.read_dated_columns(path, ["y"], date_format=fmt, unit="m")
            np.testing.assert_array_equal(dates, want)


def test_unix_times_in_seconds_or_milliseconds_with_date_format_epoch(tmp_path):
    """--date-format epoch / epoch-ms: Unix time (UTC), a fraction allowed, truncated to the
    unit read; without it a bare Unix time is refused with the hint, and a count past the
    year 9999 or not a number stops at its line."""
    import datetime

    rng = np.random.default_rng(5)
    seconds = np.sort(rng.integers(-10**9, 4 * 10**9, 6))
    utc = [datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=int(s)) for s in seconds]
    want = np.array(utc, dtype="datetime64[m]")
    for fmt, scale in (("epoch", 1), ("epoch-ms", 1000)):
        rows = "".join(f"{s * scale + 0.25},{i}\n" for i, s in enumerate(seconds))
        path = write(tmp_path, f"{fmt}.csv", "timestamp,y\n" + rows)
        _, dates = ds.read_dated_columns(path, ["y"], date_format=fmt, unit="m")
        np.testing.assert_array_equal(dates, want)
        _, days = ds.read_dated_columns(path, ["y"], date_format=fmt)
        np.testing.assert_array_equal(days, want.astype("datetime64[D]"))
    bare = write(tmp_path, "bare.csv", "timestamp,y\n1614556800,1\n1614560400,2\n")
    with raises_at(bare, 2, "'1614556800'", "--date-format epoch", "epoch-ms"):
        ds.read_dated_columns(bare, ["y"], date_column="timestamp")
    for cell in ("1e13", "soon", "nan"):
        bad = write(tmp_path, "bad.csv", f"timestamp,y\n1614556800,1\n{cell},2\n")
        with raises_at(bad, 3, repr(cell), "seconds since 1970-01-01 UTC"):
            ds.read_dated_columns(bad, ["y"], date_column="timestamp", date_format="epoch")


def test_day_first_slash_dates_are_told_by_a_day_over_12(tmp_path):
    """13/01/2020 shows the day first for the whole column; 01/13/2020 and a column with no
    number over 12 read month first, as in the US; the stocks reader decides the same way."""
    days = np.arange("2020-01-01", "2020-02-15", dtype="datetime64[D]")
    y = np.random.default_rng(6).normal(size=len(days))
    for fmt in ("%d/%m/%Y", "%m/%d/%Y", "%d/%m/%Y %H:%M"):
        cells = [d.astype(object).strftime(fmt) for d in days]
        path = write(tmp_path, "d.csv", "Date,Close\n" + "".join(
            f"{c},{100 + v:.3f}\n" for c, v in zip(cells, y)))
        _, dates = ds.read_dated_columns(path, ["Close"], unit="m")
        np.testing.assert_array_equal(dates, days.astype("datetime64[m]"))
        np.testing.assert_array_equal(ds.read_price_csv(path).dates, days)
    path = write(tmp_path, "a.csv", "Date,y\n01/02/2020,1\n03/04/2020,2\n")  # either way
    np.testing.assert_array_equal(ds.read_dated_series(path, "y")[1],
                                  np.array(["2020-01-02", "2020-03-04"], "datetime64[D]"))


@pytest.mark.parametrize("clock, minutes", [
    ("01:30 PM", 13 * 60 + 30), ("12:00 AM", 0), ("12:15 pm", 12 * 60 + 15),
    ("9:05 a.m.", 9 * 60 + 5), ("11:59:59 PM", 23 * 60 + 59), ("24:00", 24 * 60),
    ("13:00 PM", None), ("0:30 AM", None), ("25:00", None), ("24:30", None), ("10:75", None)])
def test_times_of_day_on_a_12_or_24_hour_clock(clock, minutes, tmp_path):
    path = write(tmp_path, "t.csv", f"timestamp,y\n2020-03-01 00:00,1\n2020-03-02 {clock},2\n")
    if minutes is None:
        with raises_at(path, 3, "cannot read the time of day", repr(f"2020-03-02 {clock}")):
            ds.read_dated_columns(path, ["y"], date_column="timestamp", unit="m")
    else:
        _, dates = ds.read_dated_columns(path, ["y"], unit="m")
        assert dates[1] == np.datetime64("2020-03-02T00:00") + np.timedelta64(minutes, "m")


def test_a_date_column_that_does_not_read_says_why(tmp_path):
    """Text meant as dates gives the reason, for the command's warning; a column named like
    a date holding plain numbers (a month of 1 to 12) is no date column and says nothing."""
    path = write(tmp_path, "m.csv", "Date,y\nJan 1 2020,1\nJan 2 2020,2\nJan 3 2020,3\n")
    table = ds.read_dated_table(path, ["y"])
    assert table.dates is None
    assert table.undated.startswith(f"{path}:2: cannot read date 'Jan 1 2020'")
    assert table.undated.endswith("column 'Date' is not read as dates")
    path = write(tmp_path, "n.csv", "month,y\n1,1\n2,2\n3,3\n")
    table = ds.read_dated_table(path, ["y"])
    assert table.dates is None and table.undated is None


def test_a_date_column_with_a_bad_cell_stops_there(tmp_path):
    """A footer row ('Total') or an empty date in a column of dates: its line, not a series
    without dates that takes the footer's number as its last value."""
    rows = "".join(f"2020-01-{d:02d},{d}\n" for d in range(1, 21))
    for tail, problem in (("Total,210\n", "cannot read date 'Total'"),
                          (",21\n", "no date: every row needs one")):
        path = write(tmp_path, "f.csv", "Date,y\n" + rows + tail)
        with raises_at(path, 22, problem):
            ds.read_dated_table(path, ["y"], unit="m")
    path = write(tmp_path, "g.csv", "Date,y\n" + rows)
    with raises_at(path, 2, "cannot read date '2020-01-01' with --date-format '%d/%m/%Y'"):
        ds.read_dated_table(path, ["y"], date_format="%d/%m/%Y")  # asked for: not a warning


def test_years_alone_are_dates_and_numbers_in_a_date_column_say_how_to_read_them(tmp_path):
    years = np.arange("1871", "1891", dtype="datetime64[Y]").astype("datetime64[D]")
    for head in ("year", "Date"):
        path = write(tmp_path, "y.csv", f"{head},v\n" + "".join(
            f"{1871 + k},{k}\n" for k in range(20)))
        np.testing.assert_array_equal(ds.read_dated_table(path, ["v"]).dates, years)
    path = write(tmp_path, "r.csv", "year,v\n" + "".join(f"{2000 + k // 12},{k}\n"
                                                         for k in range(24)))
    assert ds.read_dated_table(path, ["v"]).dates is None  # a year per row, or no dates
    serial = write(tmp_path, "e.csv", "Date,v\n43831,1\n43832.5,2\n61,3\n")
    table = ds.read_dated_table(serial, ["v"], unit="m")
    assert table.dates is None and table.undated == (
        f"{serial}:1: column 'Date' holds numbers, not dates: give --date-format epoch or "
        "epoch-ms (Unix time) or excel (a spreadsheet's day numbers) to read them as dates")
    serial = write(tmp_path, "e.csv", "Date,v\n61,3\n43831,1\n43832.5,2\n")
    dates = ds.read_dated_table(serial, ["v"], date_format="excel", unit="m").dates
    np.testing.assert_array_equal(dates, np.array(["1900-03-01T00:00", "2020-01-01T00:00",
                                                   "2020-01-02T12:00"], "datetime64[m]"))
    counts = write(tmp_path, "c.csv", "time,v\n0,1\n1,2\n2,3\n")  # a count, not a date
    assert ds.read_dated_table(counts, ["v"]).undated is None


@pytest.mark.parametrize("cell, day", [
    ("Jan 5, 2020", "2020-01-05"), ("January 5, 2020", "2020-01-05"), ("5-Jan-2020", "2020-01-05"),
    ("5 Jan 2020", "2020-01-05"), ("5 September 2020", "2020-09-05"), ("Jan 2020", "2020-01-01"),
    ("September 2020", "2020-09-01"), ("2020Q1", "2020-01-01"), ("2020-Q3", "2020-07-01"),
    ("2020 q4", "2020-10-01"), ("2020-W05", "2020-01-27"), ("2020W05-3", "2020-01-29"),
    ("2020-W53", "2020-12-28"), ("2021-W53", None), ("Foo 2020", None), ("2020Q5", None)])
def test_dates_with_month_names_quarters_and_iso_weeks(cell, day, tmp_path):
    path = write(tmp_path, "d.csv", f'period,y\n"{cell}",1\n')
    if day is None:
        with raises_at(path, 2, f"cannot read date {cell!r}"):
            ds.read_dated_table(path, ["y"], "period", min_length=1)
    else:
        assert ds.read_dated_table(path, ["y"], "period", min_length=1).dates[0] == \
            np.datetime64(day)


def test_slash_dates_either_way_are_read_the_way_that_keeps_their_step(tmp_path):
    """01/02/2010 for every month's first day, as in the UK: day first, the monthly step
    (month first, it would be Jan 1 to Jan 12 then a jump of a year); days 1 to 12 of one
    month, which read as a monthly step too, stay month first, as in the US."""
    months = np.arange("2010-01", "2020-01", dtype="datetime64[M]").astype("datetime64[D]")
    cells = [d.astype(object).strftime("%d/%m/%Y") for d in months]
    path = write(tmp_path, "uk.csv", "Date,y\n" + "".join(f"{c},{i}\n"
                                                          for i, c in enumerate(cells)))
    np.testing.assert_array_equal(ds.read_dated_table(path, ["y"]).dates, months)
    days = np.arange("2021-03-01", "2021-03-13", dtype="datetime64[D]")
    cells = [d.astype(object).strftime("%m/%d/%Y") for d in days]
    path = write(tmp_path, "us.csv", "Date,y\n" + "".join(f"{c},{i}\n"
                                                          for i, c in enumerate(cells)))
    np.testing.assert_array_equal(ds.read_dated_table(path, ["y"]).dates, days)


def test_a_semicolon_file_with_decimal_commas_groups_thousands_by_dots_or_spaces(tmp_path):
    path = write(tmp_path, "de.csv", "Datum;Wert;X\n01.01.2020;1.000;1.5\n02.01.2020;1.050,5;2.5"
                                     "\n03.01.2020;10 282,5;3\n04.01.2020;-2.000;4\n")
    table = ds.read_dated_table(path, ["Wert", "X"])
    np.testing.assert_array_equal(table.values, [[1000, 1.5], [1050.5, 2.5], [10282.5, 3],
                                                 [-2000, 4]])  # X writes decimal points
    assert table.dates[0] == np.datetime64("2020-01-01")  # 'Datum' names the dates


def test_a_time_or_hour_column_beside_the_dates_gives_their_time_of_day(tmp_path):
    """Date;Time, as meters write them (UCI's household power: 16/12/2006;17:24:00), or a
    date and an hour column; the days alone would repeat, as several series do."""
    minutes = np.arange("2006-12-16T17:24", "2006-12-16T20:00", 1, dtype="datetime64[m]")
    cells = "".join(f"{m.astype(object):%d/%m/%Y;%H:%M:%S};{k % 7}.5\n"
                    for k, m in enumerate(minutes))
    path = write(tmp_path, "power.txt", "Date;Time;Global_active_power\n" + cells)
    for date_column in (None, "Date"):
        table = ds.read_dated_table(path, ["Global_active_power"], date_column, unit="m")
        np.testing.assert_array_equal(table.dates, minutes)
    hours = np.arange("2021-01-01T00:00", "2021-01-03T00:00", 60, dtype="datetime64[m]")
    path = write(tmp_path, "h.csv", "date,hour,y\n" + "".join(
        f"{h.astype('datetime64[D]')},{h.astype(object).hour},{k}\n" for k, h in enumerate(hours)))
    np.testing.assert_array_equal(ds.read_dated_table(path, ["y"], unit="m").dates, hours)
    np.testing.assert_array_equal(ds.read_dated_table(path, ["y"]).dates,  # to the day
                                  hours.astype("datetime64[D]"))


def test_the_second_probe_of_the_date_readers(tmp_path):
    """Files that today's first rules misread or refused (2026-12-05)."""
    hours = np.arange("2020-01-01T00:00", "2020-01-05T00:00", 60, dtype="datetime64[m]")
    de = write(tmp_path, "de.csv", "Datum;Uhrzeit;Wert\n" + "".join(
        f"{h.astype(object):%d.%m.%Y;%H.%M};5,{k % 9}\n" for k, h in enumerate(hours)))
    with pytest.warns(UserWarning, match="or the time of day is in a column not read"):
        assert len(ds.read_dated_table(de, ["Wert"], unit="m").dates) == 96  # not refused
    quarters = np.arange("2020-01-01T00:00", "2020-01-02T00:00", 15, dtype="datetime64[m]")
    hm = write(tmp_path, "hm.csv", "Date,Hour,Minute,v\n" + "".join(
        f"{q.astype('datetime64[D]')},{q.astype(object).hour},{q.astype(object).minute},{k}\n"
        for k, q in enumerate(quarters)))
    np.testing.assert_array_equal(ds.read_dated_table(hm, ["v"], unit="m").dates, quarters)
    days = np.arange("2020-01-01", "2020-02-20", dtype="datetime64[D]")
    log = write(tmp_path, "log.csv", "Date,Time,Distance\n" + "".join(  # durations
        f"{d},{'25:10:00' if k == 40 else '0:47:00'},{k % 7 + 3}\n" for k, d in enumerate(days)))
    np.testing.assert_array_equal(ds.read_dated_table(log, ["Distance"], unit="m").dates,
                                  days.astype("datetime64[m]"))
    rows = [f"{h.astype(object):%Y-%m-%d %H:%M},{k}" for k, h in enumerate(hours)]
    rows[50], rows[51] = rows[51], rows[50]
    swap = write(tmp_path, "swap.csv", "Date,v\n" + "\n".join(rows) + "\n")
    with raises_at(swap, 53, "date 2020-01-03T02:00 is before 2020-01-03T03:00 on line 52"):
        ds.read_dated_table(swap, ["v"], unit="m")
    halves = np.arange("2020-10-24T00:00", "2020-10-27T00:00", 30, dtype="datetime64[m]")
    local = np.insert(halves, 54, halves[52:54])  # 02:00 and 02:30 twice, on October 25th
    newest = write(tmp_path, "new.csv", "Date,v\n" + "".join(
        f"{d},{k}\n" for k, d in reversed(list(enumerate(local)))))
    np.testing.assert_array_equal(ds.read_dated_table(newest, ["v"], unit="m").dates, local)
    serials = write(tmp_path, "xl.csv", "Date,v\n" + "".join(
        f"{43831 + k / 24!r},{k}\n" for k in range(30)))
    np.testing.assert_array_equal(
        ds.read_dated_table(serials, ["v"], date_format="excel", unit="m").dates,
        np.datetime64("2020-01-01T00:00") + np.arange(30) * np.timedelta64(60, "m"))
    named = write(tmp_path, "mn.csv", 'Date,v\n"Jan 01, 2020 12:00 AM",1\n'
                                      '"Jan 01, 2020 01:30 PM",2\n')
    np.testing.assert_array_equal(ds.read_dated_table(named, ["v"], unit="m").dates, np.array(
        ["2020-01-01T00:00", "2020-01-01T13:30"], "datetime64[m]"))
    counts = write(tmp_path, "n.csv", "time,v\n" + "".join(f"{1000 + k},{k}\n" for k in range(9)))
    assert ds.read_dated_table(counts, ["v"]).dates is None  # counts, not years
    flights = write(tmp_path, "f.csv", "year,month,passengers\n" + "".join(
        f"{1949 + k // 12},{'Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec'.split()[k % 12]},"
        f"{k}\n" for k in range(30)))
    table = ds.read_dated_table(flights, ["passengers"])
    assert table.dates[13] == np.datetime64("1950-02-01") and table.undated is None


def test_repeated_dates_stop_as_several_series_or_warn_as_duplicates(tmp_path):
    days = np.arange("2020-01-01", "2020-02-10", dtype="datetime64[D]")
    stacked = "".join(f"{d},{s},{k}\n" for k, d in enumerate(days) for s in "AB")
    path = write(tmp_path, "s.csv", "date,station,y\n" + stacked)
    with pytest.warns(UserWarning, match=r"s.csv:3: date 2020-01-01 repeats, as 40 of the 80 "
                                         r"rows' dates do: several series in one file\? keep "
                                         r"one; or the time of day is in a column not read"):
        ds.read_dated_table(path, ["y"], unit="m")  # a warning: the days may have hours
    hours = np.arange("2020-01-01T00:00", "2020-01-03T00:00", 60, dtype="datetime64[m]")
    stacked = "".join(f"{d},{s},{k}\n" for k, d in enumerate(hours) for s in "AB")
    path = write(tmp_path, "t.csv", "date,station,y\n" + stacked)
    with raises_at(path, 3, "date 2020-01-01T00:00 repeats, as 48 of the 96 rows",
                   "several series in one file"):
        ds.read_dated_table(path, ["y"], unit="m")
    once = "".join(f"{d},{k}\n" for k, d in enumerate(np.insert(days, 30, days[29])))
    path = write(tmp_path, "d.csv", "date,y\n" + once)
    with pytest.warns(UserWarning, match=r"d.csv:32: date 2020-01-30 repeats line 31 \(1 row "
                                         r"repeats the one before\)"):
        assert len(ds.read_dated_table(path, ["y"], unit="m").dates) == 41
    hours = np.arange("2020-10-24T00:00", "2020-10-27T00:00", 60, dtype="datetime64[m]")
    autumn = np.insert(hours, 27, hours[26])  # 02:00 twice, as local time on October 25th
    path = write(tmp_path, "h.csv", "date,y\n" + "".join(
        f"{d},{k}\n" for k, d in enumerate(autumn)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ds.read_dated_table(path, ["y"], unit="m").dates) == 73
    blocks = "".join(f"{d},{k}\n" for k, d in enumerate(np.r_[days, days]))
    path = write(tmp_path, "b.csv", "date,y\n" + blocks)
    with raises_at(path, 42, "is before", "several series one after another"):
        ds.read_dated_table(path, ["y"], unit="m")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_semicolon_and_tab_separated_files_are_read(sep, tmp_path):
    path = write(tmp_path, "x.csv", f"date{sep}y{sep}z\n2000-01-01{sep}1.5{sep}a,b\n"
                                    f"2000-01-02{sep}2.5{sep}c\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "y"), [1.5, 2.5])
    comma = write(tmp_path, "c.csv", "y,z\n1,2\n")  # a comma in the header: comma-separated
    assert ds.read_csv_table(comma).header == ["y", "z"]


@pytest.mark.parametrize("first_row", ["2019-03-01,17.25", "17.25", "1.7e1,3"])
def test_a_file_without_a_header_row_is_named_as_such(first_row, tmp_path):
    """The first row is read as the header, so a file without one loses a value; the error
    that follows (no such column) says that values stand where the names should."""
    path = write(tmp_path, "s.csv", first_row + "\n" + first_row + "\n")
    with raises_at(path, 1, "no column 'value'", "needs a header row"):
        ds.read_csv_series(path, "value")
    with raises_at(path, 1, "no date column", "needs a header row"):
        ds.read_price_csv(path)


def test_a_separator_ending_every_line_makes_no_column(tmp_path):
    """As some spreadsheets export: 'a,b,' on every line, or on the rows alone; a missing
    value in the last named column stays missing; an unnamed column some rows fill (notes)
    is a column; a value past the header's columns stops."""
    for head in ("t,v,", "t,v"):
        path = write(tmp_path, "s.csv", f"{head}\n0,1.5,\n1,2.5,\n2,,\n3,4,,\n")
        table = ds.read_csv_table(path)
        assert table.header == ["t", "v"] and table.rows[2] == ["2", ""]
        assert ds.read_csv_series(path, "v", missing="drop").tolist() == [1.5, 2.5, 4.0]
    notes = write(tmp_path, "n.csv", "t,v,\n0,1.5,\n1,2.5,holiday\n")  # an unnamed column
    assert ds.read_csv_table(notes).header == ["t", "v", ""]
    assert ds.read_csv_series(notes, "v").tolist() == [1.5, 2.5]
    path = write(tmp_path, "x.csv", "t,v\n0,1.5\n1,2.5,9\n")
    with raises_at(path, 3, "3 fields, but the header has 2"):
        ds.read_csv_table(path)
    path = write(tmp_path, "c.csv", "t,v\n0,1.5\n# the end\n")
    with raises_at(path, 3, "1 fields, but the header has 2",
                   "lines starting with # are notes only before the header"):
        ds.read_csv_table(path)


def test_a_quoted_field_after_a_space_is_unquoted(tmp_path):
    path = write(tmp_path, "q.csv", '"Date", "value"\n"2020-01-01", "1,234.5"\n'
                                    '"2020-01-02", "7"\n')
    values, dates = ds.read_dated_series(path, "value")
    assert values.tolist() == [1234.5, 7.0] and dates[0] == np.datetime64("2020-01-01")


def test_whole_numbers_and_words_in_a_header_are_names(tmp_path):
    path = write(tmp_path, "s.csv", "year,2019,total\n1,2,3\n4,5,6\n")
    np.testing.assert_array_equal(ds.read_csv_series(path, "2019"), [2, 5])
    with pytest.raises(ValueError) as e:
        ds.read_csv_series(path, "value")
    assert "header row" not in str(e.value)


def test_a_decimal_or_thousands_comma_is_named_as_the_problem(tmp_path):
    path = write(tmp_path, "e.csv", "date\ty\n2000-01-01\t1,5\n")  # tabs: 1,5 or 15?
    with raises_at(path, 2, "'1,5'", "decimal point"):
        ds.read_csv_series(path, "y")
    text = write(tmp_path, "t.csv", "y\nabc\n")
    with pytest.raises(ValueError, match=r"'abc' in column 'y'$"):
        ds.read_csv_series(text, "y")
