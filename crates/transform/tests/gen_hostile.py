#!/usr/bin/env python3
"""Writes the binary hostile inputs checked in under crates/transform/tests/data/ (compressed
ones; the text ones are built inside the tests). Deterministic: run it again to get the same bytes.

    python3 crates/transform/tests/gen_hostile.py crates/transform/tests/data

far_cell.xlsx (a 5 KB workbook whose used range reaches XFD1048576) was written with openpyxl:
    wb = openpyxl.Workbook(); ws = wb.active; ws.title = "Visits"; ws["A1"] = "title"
    ws["A2"], ws["B2"] = "Visit ID", "MRN"; ws["XFD1048576"] = "x"; wb.save("far_cell.xlsx")
"""
import gzip
import io
import sys
import zipfile
from pathlib import Path

ROW = b"DV1001   HL1001  DOE            JANE        19840307F1234567890110120240102E119               12.50     \r\n"


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def zipped(entries, method=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method
            z.writestr(info, data)
    return b.getvalue()


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    zeros = b"\0" * (24 << 20)
    (out / "bomb.dat.gz").write_bytes(gz(zeros))
    (out / "bomb.zip").write_bytes(zipped([("bomb.dat", zeros)]))
    good = gz(ROW * 2000)
    (out / "truncated.dat.gz").write_bytes(good[: len(good) // 2])
    (out / "slip.zip").write_bytes(zipped([("../../etc/cron.d/evil.dat", ROW)]))
    (out / "absolute.zip").write_bytes(zipped([("/tmp/evil.dat", ROW)]))
    (out / "two_files.zip").write_bytes(zipped([("a.dat", ROW), ("b.dat", ROW)]))
    # a zip bomb dressed as a workbook: one 24 MiB sheet of zeros
    (out / "bomb.xlsx").write_bytes(zipped([("[Content_Types].xml", b"<Types/>"), ("xl/worksheets/sheet1.xml", zeros)]))


if __name__ == "__main__":
    main()
