#!/usr/bin/env python3
"""Writes fake (no real PHI) files in every format a contract can declare, for samples and throughput runs.

    python3 crates/transform/tests/gen_formats.py OUT_DIR [N]
    python3 crates/transform/tests/gen_formats.py OUT_DIR N --workbooks   # needs openpyxl odfpy xlwt

OUT_DIR gets harbor_lab.hl7 (HL7 v2 ADT/ORU), old_mill.dat (fixed-width, windows-1252),
riverside_fhir.json (FHIR R4 Bundle) and riverside_fhir.xml (the same Bundle in FHIR XML),
riverside_patient.json (a single resource), riverside_patients.ndjson
(Patients only), lakeside_fhir_stu3.xml (the STU3 sample in FHIR XML),
ridgeline_bulk/ (the same resources as a FHIR Bulk Data export: manifest.json, one NDJSON file
per type, Condition gzipped, plus Observations the contract does not read), lakeview_xml.xml
(XML export), each with N encounters (default 12); with --workbooks, brookside.xlsx/.xls/.ods instead. The first records are fixed (tests assert their values); the rest are drawn from
a seeded generator, so the same N always gives the same bytes.
"""
import gzip
import json
import random
import sys
from pathlib import Path

LAST = ["SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "LOPEZ", "WILSON"]
FIRST = ["JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA", "DAVID", "ELIZABETH"]
CITIES = [("SPRINGFIELD", "MA", "01101"), ("WORCESTER", "MA", "01608"), ("LOWELL", "MA", "01852")]
DX = ["E119", "I10", "J45909", "E785", "F329", "M545", "K219", "N390"]


def people(n):
    rnd = random.Random(4)
    fixed = [
        dict(mrn="HL1001", last="O'BRIEN", first="MARY", mid="Q", dob="19840307", sex="F", ssn="123456789",
             street="12 ELM ST & 3RD AVE", city="SPRINGFIELD", state="MA", zip="01101", phone="6175551234",
             enc="V1001", date="20240102103000", dx=["E119", "I10"], chg="120.50"),
        dict(mrn="HL1002", last="MÜLLER", first="JOSÉ", mid="", dob="19700115", sex="M", ssn="321540987",
             street="9 OAK AVE", city="LOWELL", state="MA", zip="01852", phone="9785550000",
             enc="V1002", date="20240103080000", dx=["J45909"], chg="75.00"),
        # an invalid SSN (area 000): a bad row, quarantined with `missing_fields = ssn`
        dict(mrn="HL1003", last="LEE", first="ANN", mid="", dob="19991231", sex="F", ssn="000112222",
             street="1 PIER RD", city="WORCESTER", state="MA", zip="01608", phone="5085550101",
             enc="V1003", date="20240104120000", dx=[], chg="0.00"),
    ]
    out = fixed[:n]
    for i in range(len(out), n):
        c = rnd.choice(CITIES)
        out.append(dict(
            mrn=f"HL{1001 + i}", last=rnd.choice(LAST), first=rnd.choice(FIRST), mid=rnd.choice("ABC "),
            dob=f"{rnd.randint(1930, 2020)}{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}",
            sex=rnd.choice("MF"), ssn=f"{rnd.randint(100, 899)}{rnd.randint(10, 99)}{rnd.randint(1000, 9999)}",
            street=f"{rnd.randint(1, 999)} MAIN ST", city=c[0], state=c[1], zip=c[2],
            phone=f"617555{rnd.randint(1000, 9999)}", enc=f"V{1001 + i}",
            date=f"2024{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(0, 23):02d}0000",
            dx=rnd.sample(DX, rnd.randint(0, 3)), chg=f"{rnd.randint(10, 5000)}.{rnd.randint(0, 99):02d}"))
    return [p for p in out if p["mid"] is not None]


def hl7_escape(s):
    return s.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\").replace("~", "\\R\\")


def hl7(ps):
    msgs = ["FHS|^~\\&|HARBORLAB|HARBOR|LAKE|COUNTY|20240104", "BHS|^~\\&|HARBORLAB|HARBOR"]
    for k, p in enumerate(ps):
        kind = "ORU^R01" if k % 3 == 2 else "ADT^A01"
        pv1 = ["PV1", "1", "I"] + [""] * 16 + [p["enc"]] + [""] * 24 + [p["date"]]
        segs = [
            f"MSH|^~\\&|HARBORLAB|HARBOR|LAKE|COUNTY|{p['date']}||{kind}|MSG{k:06d}|P|2.5.1",
            f"EVN|A01|{p['date']}",
            f"PID|1||{p['mrn']}^^^HARBOR^MR||{hl7_escape(p['last'])}^{p['first']}^{p['mid'].strip()}||{p['dob']}|{p['sex']}"
            f"|||{hl7_escape(p['street'])}^^{p['city']}^{p['state']}^{p['zip']}||{p['phone']}||||||{p['ssn'][:3]}-{p['ssn'][3:5]}-{p['ssn'][5:]}",
            "|".join(pv1),
        ]
        segs += [f"DG1|{i + 1}||{d}^^I10" for i, d in enumerate(p["dx"])]
        if kind.startswith("ORU"):
            segs += ["OBR|1|||GLU^Glucose", "OBX|1|NM|GLU^Glucose||105|mg/dL"]
        sep = "\r\n" if k % 2 else "\r"
        msgs.append(sep.join(segs))
    msgs += [f"BTS|{len(ps)}", "FTS|1"]
    return ("\r".join(msgs) + "\r").encode("utf-8")


WIDTHS = [("ENC_NO", 8), ("MRN", 8), ("LNAME", 15), ("FNAME", 12), ("DOB", 8), ("SEX", 1), ("SSN", 9),
          ("ZIP", 5), ("VISIT_DT", 8), ("DX", 20), ("CHARGE", 10)]


def fixed(ps):
    lines = ["H" + "20240104OLD MILL CLINIC EXTRACT".ljust(104)]
    for p in ps:
        vals = dict(ENC_NO=p["enc"], MRN=p["mrn"], LNAME=p["last"], FNAME=p["first"], DOB=p["dob"], SEX=p["sex"],
                    SSN=p["ssn"], ZIP=p["zip"], VISIT_DT=p["date"][:8], DX=";".join(p["dx"]), CHARGE=p["chg"])
        lines.append("D" + "".join(str(vals[n])[:w].ljust(w) for n, w in WIDTHS))
    lines.append("T" + f"{len(ps):08d}".ljust(104))
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def fhir(ps):
    body = ",\n".join(json.dumps(e, ensure_ascii=False) for e in fhir_entries(ps))
    return ('{"resourceType": "Bundle", "type": "collection", "entry": [\n' + body + "\n]}\n").encode("utf-8")


def fhir_entries(ps):
    entries = []
    for k, p in enumerate(ps):
        pid, eid = f"urn:uuid:pat-{k}", f"enc-{k}"
        entries.append({"fullUrl": pid, "resource": {
            "resourceType": "Patient", "id": f"pat-{k}",
            "identifier": [{"system": "urn:riverside:mrn", "value": p["mrn"]},
                           {"system": "http://hl7.org/fhir/sid/us-ssn", "value": p["ssn"]}],
            "name": [{"family": p["last"].title(), "given": [p["first"].title()]}],
            "gender": {"M": "male", "F": "female"}[p["sex"]],
            "birthDate": f"{p['dob'][:4]}-{p['dob'][4:6]}-{p['dob'][6:]}",
            "address": [{"line": [p["street"].title()], "city": p["city"].title(), "state": p["state"],
                         "postalCode": p["zip"]}],
            "telecom": [{"system": "phone", "value": p["phone"]}]}})
        d = p["date"]
        entries.append({"fullUrl": f"https://riverside.example/fhir/Encounter/{eid}", "resource": {
            "resourceType": "Encounter", "id": eid, "status": "finished",
            "subject": {"reference": pid},
            "serviceProvider": {"display": "Riverside Medical Center"},
            "period": {"start": f"{d[:4]}-{d[4:6]}-{d[6:8]}T{d[8:10]}:{d[10:12]}:00-05:00"}}})
        for i, dx in enumerate(p["dx"]):
            entries.append({"fullUrl": f"urn:uuid:cond-{k}-{i}", "resource": {
                "resourceType": "Condition", "id": f"cond-{k}-{i}",
                "encounter": {"reference": f"Encounter/{eid}"}, "subject": {"reference": pid},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": dx}]}}})
    entries.append({"resource": {"resourceType": "Organization", "id": "org-1", "name": "Riverside"}})
    return entries


def xml_attr(s):
    return xml_escape(s).replace('"', "&quot;")


def fhir_xml_value(name, v, out, pad, under=None):
    """One JSON member as FHIR XML elements (an array repeats the element)."""
    items = v if isinstance(v, list) else [v]
    unders = under if isinstance(under, list) else [under] * len(items)
    for item, u in zip(items, unders):
        if isinstance(item, dict) and "resourceType" in item:
            out.append(f"{pad}<{name}>")
            fhir_xml_resource(item, out, pad + "  ", root=False)
            out.append(f"{pad}</{name}>")
        elif isinstance(item, dict):
            attrs = "".join(f' {a}="{xml_attr(item[a])}"' for a in ("id", "url") if a in item)
            out.append(f"{pad}<{name}{attrs}>")
            fhir_xml_members({k: x for k, x in item.items() if k not in ("id", "url")}, out, pad + "  ")
            out.append(f"{pad}</{name}>")
        elif name == "div":
            out.append(pad + item)
        else:
            val = "true" if item is True else "false" if item is False else str(item)
            attrs = f' id="{xml_attr(u["id"])}"' if u and "id" in u else ""
            ext = (u or {}).get("extension", [])
            if ext:
                out.append(f'{pad}<{name}{attrs} value="{xml_attr(val)}">')
                fhir_xml_value("extension", ext, out, pad + "  ")
                out.append(f"{pad}</{name}>")
            else:
                out.append(f'{pad}<{name}{attrs} value="{xml_attr(val)}"/>')


def fhir_xml_members(obj, out, pad):
    for k, v in obj.items():
        if not k.startswith("_"):
            fhir_xml_value(k, v, out, pad, obj.get("_" + k))


def fhir_xml_resource(res, out, pad, root=True):
    ns = ' xmlns="http://hl7.org/fhir"' if root else ""
    out.append(f'{pad}<{res["resourceType"]}{ns}>')
    fhir_xml_members({k: v for k, v in res.items() if k != "resourceType"}, out, pad + "  ")
    out.append(f'{pad}</{res["resourceType"]}>')


def fhir_xml(doc):
    """A FHIR JSON document (Bundle or resource) in FHIR XML, by FHIR's XML rules."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>']
    fhir_xml_resource(doc, out, "")
    return ("\n".join(out) + "\n").encode("utf-8")


def bulk(ps, out):
    """The resources of fhir(ps) as a FHIR Bulk Data export folder (references as Type/id)."""
    by_type = {}
    for e in fhir_entries(ps):
        r = json.loads(json.dumps(e["resource"]).replace('"urn:uuid:pat-', '"Patient/pat-'))
        by_type.setdefault(r["resourceType"], []).append(r)
    obs = [{"resourceType": "Observation", "id": f"obs-{k}", "status": "final", "subject": {"reference": f"Patient/pat-{k}"},
            "code": {"text": "glucose"}, "valueQuantity": {"value": 105, "unit": "mg/dL"}} for k in range(3)]
    files = [("Patient", "Patient.ndjson"), ("Encounter", "Encounter.ndjson"), ("Condition", "Condition.ndjson.gz"),
             ("Observation", "Observation.ndjson")]
    by_type["Observation"] = obs
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"transactionTime": "2026-12-01T06:00:00Z",
                "request": "https://ridgeline.example/fhir/Group/county/$export?_type=Patient,Encounter,Condition,Observation",
                "requiresAccessToken": True, "output": [], "error": []}
    for t, name in files:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in by_type[t]).encode("utf-8")
        data = gzip.compress(text, mtime=0) if name.endswith(".gz") else text
        (out / name).write_bytes(data)
        manifest["output"].append({"type": t, "url": f"https://ridgeline.example/bulk/export-1/{name}",
                                   "count": len(by_type[t])})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


def xml(ps):
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<Export xmlns="urn:lakeview:export" facility="Lakeview Clinic">']
    for p in ps:
        d = p["dob"]
        out.append(f'  <Patient mrn="{p["mrn"]}">')
        out.append(f'    <Name><Family>{xml_escape(p["last"])}</Family><Given>{xml_escape(p["first"])}</Given></Name>')
        out.append(f'    <BirthDate>{d[:4]}-{d[4:6]}-{d[6:]}</BirthDate><Sex>{p["sex"]}</Sex><SSN>{p["ssn"]}</SSN>')
        out.append(f'    <Address><Line>{xml_escape(p["street"])}</Line><City>{p["city"]}</City><State>{p["state"]}</State>'
                   f'<Zip>{p["zip"]}</Zip></Address>')
        e = p["date"]
        dx = "".join(f"<Dx><Code>{c}</Code></Dx>" for c in p["dx"])
        out.append(f'    <Encounter id="{p["enc"]}"><Date>{e[:4]}-{e[4:6]}-{e[6:8]}</Date>{dx}'
                   f'<Charges>{p["chg"]}</Charges></Encounter>')
        out.append('  </Patient>')
    out.append('</Export>')
    return ("\n".join(out) + "\n").encode("utf-8")


def main():
    out = Path(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    out.mkdir(parents=True, exist_ok=True)
    ps = people(n)
    (out / "harbor_lab.hl7").write_bytes(hl7(ps))
    (out / "old_mill.dat").write_bytes(fixed(ps))
    (out / "riverside_fhir.json").write_bytes(fhir(ps))
    doc = json.loads(fhir(ps))
    # as XML senders do: a narrative on the first patient, its xhtml kept as text
    doc["entry"][0]["resource"]["text"] = {
        "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Mary O&apos;Brien &amp; family</p></div>'}
    (out / "riverside_fhir.xml").write_bytes(fhir_xml(doc))
    bulk(ps, out / "ridgeline_bulk")
    # a single resource, pretty, and an NDJSON of patients only (no rows: every one is skipped)
    res = [e["resource"] for e in fhir_entries(ps)]
    (out / "riverside_patient.json").write_text(json.dumps(res[0], indent=2, ensure_ascii=False) + "\n")
    pats = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in res if r["resourceType"] == "Patient")
    (out / "riverside_patients.ndjson").write_text(pats)
    if (Path(__file__).parent / "../../../samples/lakeside_fhir/lakeside_fhir_stu3.json").exists():
        stu3 = json.loads((Path(__file__).parent / "../../../samples/lakeside_fhir/lakeside_fhir_stu3.json").read_text())
        (out / "lakeside_fhir_stu3.xml").write_bytes(fhir_xml(stu3))
    (out / "lakeview_xml.xml").write_bytes(xml(ps))



def workbooks(out, ps):
    """brookside.xlsx / .ods / .xls: a notes sheet first, then `Visits` with a title row, the
    header on row 2, dates as date cells, SSN and ZIP as numbers (the leading zero lost).
    Needs openpyxl, odfpy and xlwt (pip)."""
    import datetime as dt
    header = ["Visit ID", "MRN", "Last Name", "First Name", "DOB", "Sex", "SSN", "Zip", "Visit Date", "Dx",
              "Charge", "Notes", "Room"]
    rows = []
    for p in ps:
        d, e = p["dob"], p["date"]
        rows.append([p["enc"], p["mrn"], p["last"].title(), p["first"].title(),
                     dt.date(int(d[:4]), int(d[4:6]), int(d[6:])), p["sex"], int(p["ssn"]), int(p["zip"]),
                     dt.datetime(int(e[:4]), int(e[4:6]), int(e[6:8]), int(e[8:10])), ";".join(p["dx"]),
                     float(p["chg"]), "", "2B"])
    import openpyxl
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active["A1"] = "Exported by Brookside EHR"
    ws = wb.create_sheet("Visits")
    ws.append(["Brookside Clinic visit export"])
    ws.append(header)
    for r in rows:
        ws.append(r)
    for row in ws.iter_rows(min_row=3):
        row[4].number_format = "yyyy-mm-dd"
        row[8].number_format = "yyyy-mm-dd hh:mm"
    wb.save(out / "brookside.xlsx")

    import xlwt
    book = xlwt.Workbook()
    book.add_sheet("Notes").write(0, 0, "Exported by Brookside EHR")
    sh = book.add_sheet("Visits")
    date_fmt = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    sh.write(0, 0, "Brookside Clinic visit export")
    for j, h in enumerate(header):
        sh.write(1, j, h)
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            if isinstance(v, (dt.date, dt.datetime)):
                sh.write(i + 2, j, v, date_fmt)
            else:
                sh.write(i + 2, j, v)
    book.save(str(out / "brookside.xls"))

    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableRow, TableCell
    from odf.text import P
    doc = OpenDocumentSpreadsheet()

    def cell(v):
        if isinstance(v, dt.datetime):
            c = TableCell(valuetype="date", datevalue=v.strftime("%Y-%m-%dT%H:%M:%S"))
        elif isinstance(v, dt.date):
            c = TableCell(valuetype="date", datevalue=v.isoformat())
        elif isinstance(v, (int, float)):
            c = TableCell(valuetype="float", value=v)
        else:
            c = TableCell(valuetype="string")
        c.addElement(P(text=str(v)))
        return c

    for title, table_rows in [("Notes", [["Exported by Brookside EHR"]]),
                              ("Visits", [["Brookside Clinic visit export"], header] + rows)]:
        t = Table(name=title)
        for r in table_rows:
            tr = TableRow()
            for v in r:
                tr.addElement(cell(v))
            t.addElement(tr)
        doc.spreadsheet.addElement(t)
    doc.save(str(out / "brookside.ods"))


if __name__ == "__main__":
    if "--workbooks" in sys.argv:
        Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
        workbooks(Path(sys.argv[1]), people(int(sys.argv[2])))
    else:
        main()
