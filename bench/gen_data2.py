#!/usr/bin/env python3
"""Second bad-record generator, with an error mix unlike gen_data.py's, so the matching rules
are checked on more than one distribution.

It reuses gen_data.py's persons (the same People class and seed: run gen_data.py first for
people_<M>.csv) and vocabularies, and draws its errors from its own random stream, so
gen_data.py's outputs are unchanged by it. Every record independently gets:
  * a typo in each field with a per-field rate (names 12%, address 10%, city 8%, phone and ZIP
    one digit 6% / 5%);
  * each field blank with a per-field rate between 10% and 15%;
  * first and last name swapped (5%), a nickname (4%), a new surname (3%);
  * a birth date off (15%): by 1-30 days, by 1-3 months, or by a year (one each);
  * a move (8%: another street and town), a new phone (10%), sex unknown `U` (3%);
  * a non-US address (5%: a UK, Canadian or Mexican street, city and postcode; state empty).
15% of the records are persons who are not in the table.

Outputs, in --out (default /tmp/benchdata):
  bad_records2_<K>.csv        record_id,first_name,last_name,dob,sex,address,city,state,zip,phone
  bad_records2_<K>.truth.csv  record_id,true_person_id,variant,errors,fields_present
    variant: `in_table` or `not_in_table`; errors: `;`-separated error kinds (`none`);
    fields_present: how many of first name, last name, dob, address, phone the record carries.

Example:
  python gen_data2.py --people 1000000 --records 10000
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_data as g  # noqa: E402

TYPO_RATE = {"first": 0.12, "last": 0.12, "address": 0.10, "city": 0.08, "phone": 0.06, "zip": 0.05}
BLANK_RATE = {"first": 0.10, "last": 0.11, "dob": 0.10, "sex": 0.15, "address": 0.12,
              "city": 0.13, "zip": 0.14, "phone": 0.15}
FOREIGN = [  # (street, city, postcode) of the UK, Canada and Mexico
    ("10 DOWNING ST", "LONDON", "SW1A 2AA"), ("221B BAKER ST", "LONDON", "NW1 6XE"),
    ("1 PRINCES ST", "EDINBURGH", "EH2 2EQ"), ("45 DEANSGATE", "MANCHESTER", "M3 2AY"),
    ("1 RUE SAINT-PAUL", "MONTREAL", "H2Y 1G5"), ("100 QUEEN ST W", "TORONTO", "M5H 2N2"),
    ("800 ROBSON ST", "VANCOUVER", "V6Z 3B7"), ("9 RUE DU TRESOR", "QUEBEC", "G1R 4L9"),
    ("AV JUAREZ 12", "CIUDAD DE MEXICO", "06050"), ("CALLE 60 491", "MERIDA", "97000"),
    ("AV CHAPULTEPEC 480", "GUADALAJARA", "44100"), ("CALLE MORELOS 5", "OAXACA", "68000"),
]
IDENTIFYING = ["first", "last", "dob", "address", "phone"]


def digit_typo(rng, s):
    """One digit of s replaced by another."""
    pos = [i for i, c in enumerate(s) if c.isdigit()]
    if not pos:
        return s
    i = rng.choice(pos)
    return s[:i] + rng.choice([d for d in "0123456789" if d != s[i]]) + s[i + 1:]


def add_months(d, k):
    m = d.month - 1 + k
    y, m = d.year + m // 12, m % 12 + 1
    for day in (d.day, 30, 29, 28):
        try:
            return dt.date(y, m, day)
        except ValueError:
            continue
    return d


def dob_error(rng, d):
    """(kind, date): off by days, by months, or by a year."""
    r = rng.random()
    if r < 1 / 3:
        return "dob_days", d + dt.timedelta(days=rng.choice([-1, 1]) * rng.randint(1, 30))
    if r < 2 / 3:
        return "dob_months", add_months(d, rng.choice([-1, 1]) * rng.randint(1, 3))
    try:
        return "dob_year", d.replace(year=d.year + rng.choice([-1, 1]))
    except ValueError:
        return "dob_year", d + dt.timedelta(days=365)


def identity_errors(rng, p, errors):
    """Name and date errors (in place)."""
    if rng.random() < 0.05:
        p["first"], p["last"] = p["last"], p["first"]
        errors.append("swapped_names")
    if rng.random() < 0.04 and g.NICKNAMES.get(p["first"]):
        p["first"] = rng.choice(g.NICKNAMES[p["first"]])
        errors.append("nickname")
    if rng.random() < 0.03:
        p["last"] = g.LAST[rng.randrange(len(g.LAST))]
        errors.append("name_change")
    if rng.random() < 0.15:
        kind, p["dob"] = dob_error(rng, p["dob"])
        errors.append(kind)


def contact_errors(rng, p, errors):
    """Moves, phones, foreign addresses, sex unknown (in place)."""
    if rng.random() < 0.05:
        p["address"], p["city"], p["zip"] = rng.choice(FOREIGN)
        p["state"] = ""
        errors.append("foreign_address")
    elif rng.random() < 0.08:
        town, zips = g.TOWNS[rng.randrange(len(g.TOWNS))]
        p["address"] = (f"{rng.randrange(1, 1200)} {rng.choice(g.STREETS)} "
                        f"{rng.choice(g.SUFFIXES)}")
        p["city"], p["zip"] = town, rng.choice(zips)
        errors.append("moved")
    if rng.random() < 0.10:
        p["phone"] = f"{rng.choice(g.AREA_CODES)}{rng.randrange(2_000_000, 10_000_000):07d}"
        errors.append("new_phone")
    if rng.random() < 0.03:
        p["sex"] = "U"
        errors.append("sex_unknown")


def typos_and_blanks(rng, p, errors):
    for f, rate in TYPO_RATE.items():
        if p[f] and rng.random() < rate:
            p[f] = digit_typo(rng, p[f]) if f in ("phone", "zip") else g.typo(rng, p[f])
            errors.append(f"typo_{f}")
    for f, rate in BLANK_RATE.items():
        if rng.random() < rate:
            p[f] = None if f == "dob" else ""
            errors.append(f"blank_{f}")


def record(rng, people, m_table):
    """One bad record: (values, true person id or '', variant, errors)."""
    if rng.random() < 0.15:
        idx, truth, variant = m_table + 1 + rng.randrange(people.n - m_table), "", "not_in_table"
    else:
        idx = 1 + rng.randrange(m_table)
        truth, variant = str(g.person_id_of(idx)), "in_table"
    p = dict(people.get(idx))
    errors = []
    identity_errors(rng, p, errors)
    contact_errors(rng, p, errors)
    typos_and_blanks(rng, p, errors)
    return p, truth, variant, errors


def csv_field(v):
    v = "" if v is None else str(v)
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') else v


def write_records(people, m_table, k, seed, outdir):
    rng = random.Random(f"{seed}-gen2-{k}-{m_table}")
    path = os.path.join(outdir, f"bad_records2_{k}.csv")
    tpath = os.path.join(outdir, f"bad_records2_{k}.truth.csv")
    with open(path, "w") as f, open(tpath, "w") as t:
        f.write("record_id,first_name,last_name,dob,sex,address,city,state,zip,phone\n")
        t.write("record_id,true_person_id,variant,errors,fields_present\n")
        for r in range(1, k + 1):
            p, truth, variant, errors = record(rng, people, m_table)
            ph = p["phone"]
            ph = f"{ph[:3]}-{ph[3:6]}-{ph[6:]}" if ph and len(ph) == 10 else ph
            dob = p["dob"].isoformat() if p["dob"] else ""
            row = [f"C{r:07d}", p["first"], p["last"], dob, p["sex"], p["address"], p["city"],
                   p["state"], p["zip"], ph]
            f.write(",".join(csv_field(v) for v in row) + "\n")
            present = sum(1 for x in IDENTIFYING if p[x])
            t.write(f"C{r:07d},{truth},{variant},{';'.join(errors) or 'none'},{present}\n")
    return [path, tpath]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/benchdata")
    ap.add_argument("--seed", type=int, default=20240917, help="gen_data.py's seed (the same persons)")
    ap.add_argument("--people", type=int, default=1_000_000, help="persons in the county table")
    ap.add_argument("--records", type=int, nargs="*", default=[10_000])
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    people = g.People(a.seed, a.people + max(1000, a.people // 5))
    files = {}
    for k in a.records:
        for path in write_records(people, a.people, k, a.seed, a.out):
            with open(path, "rb") as f:
                files[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(a.out, f"manifest2_{a.people}.json"), "w") as f:
        json.dump({"seed": a.seed, "people": a.people, "files": files}, f, indent=1)
    print(json.dumps(files, indent=1))


if __name__ == "__main__":
    main()
