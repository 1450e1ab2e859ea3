"""Rebuild the suite's CSV files from the packages that ship the data (see PROVENANCE.md).

    pip download --no-deps aeon==1.6.0 pmdarima==2.1.1 statsmodels==0.15.0 \
        bokeh-sampledata==2026.1 -d wheels
    for w in wheels/*.whl; do unzip -oq "$w" -d unpacked; done
    python bench/data/forecast/make_data.py unpacked

Run once by hand; nothing reads the packages at run time.
"""
import ast
import csv
import datetime as dt
import gzip
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent


def write(name, header, rows):
    with open(HERE / name, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def main(root):
    root = Path(root)
    aeon = root / "aeon/datasets/data"
    rows = read_csv(aeon / "Airline/Airline.csv")[1:]
    write("airline.csv", ["month", "passengers"], rows)
    rows = read_csv(aeon / "Lynx/Lynx.csv")[1:]
    write("lynx.csv", ["year", "trappings"], rows)

    sm = root / "statsmodels/datasets"
    write("nile.csv", ["year", "volume"], read_csv(sm / "nile/nile.csv")[1:])
    macro = read_csv(sm / "macrodata/macrodata.csv")[1:]
    quarter_month = {"1": "01", "2": "04", "3": "07", "4": "10"}
    write("realgdp.csv", ["quarter", "realgdp"],
          [[f"{int(float(r[0]))}-{quarter_month[r[1].split('.')[0]]}-01", r[2]] for r in macro])

    # pmdarima keeps the Taylor series as a literal in the loader's source.
    source = (root / "pmdarima/datasets/taylor.py").read_text()
    start = source.index("np.array([") + len("np.array(")
    values = ast.literal_eval(source[start:source.index("])", start) + 1])
    t0 = dt.datetime(2000, 6, 5)
    write("taylor.csv", ["time", "demand_mw"],
          [[(t0 + dt.timedelta(minutes=30 * i)).isoformat(sep=" "), v]
           for i, v in enumerate(values)])

    bokeh = root / "bokeh_sampledata/_data"
    table = read_csv(bokeh / "unemployment1948.csv")
    write("unemployment.csv", ["month", "rate"],
          [[f"{r[0]}-{m:02d}", r[m]] for r in table[1:] for m in range(1, 13) if r[m]])
    with gzip.open(bokeh / "commits.txt.gz", "rt") as f:
        days = Counter(dt.datetime.strptime(line.strip(), "%a, %d %b %Y %H:%M:%S %z").date()
                       for line in f if line.strip())
    first, last = min(days), max(days)
    write("commits.csv", ["day", "commits"],
          [[first + dt.timedelta(d), days.get(first + dt.timedelta(d), 0)]
           for d in range((last - first).days + 1)])


if __name__ == "__main__":
    main(sys.argv[1])
