#!/usr/bin/env python3
"""Writes the pgbench scripts of bench/compare/floor.sh: one two-line sale per transaction, sent
the way a worker sends it (BEGIN with the reads in one round trip, the write with COMMIT in a
second), with no application in the path.

  apotheca  the statements a worker runs for a sale, taken from the source (the reads in
            worker/src/domain/sale/batch.rs, WRITE_SALES in write.rs) with their parameters
            written as pgbench variables: m1, m2 the medicines, b1 = m1 + off and b2 = m2 + off
            their batches (floor.sh checks that mapping in every tenant), one unit of each
  peer      the rows the peer's sale writes (the two medicines locked and updated, the bill and
            its two items), in the fewest statements: what any application writing those rows
            would at least cost the database

Usage: floor.py apotheca|peer > script.sql
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SALE = ROOT / "worker/src/domain/sale"


def literal(source, marker):
    """The Rust string literal of `source` that contains `marker`, as SQL on one line."""
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"', source, re.S):
        if marker in m.group(1):
            return " ".join(m.group(1).split())
    sys.exit(f"floor.py: no statement with {marker!r} in the worker's source: update floor.py")


def apotheca():
    batch = (SALE / "batch.rs").read_text()
    write = (SALE / "write.rs").read_text()
    medicines = ["ARRAY[:m1, :m2]::bigint[]"]
    reads = [
        literal(batch, "FROM medicines WHERE id = ANY($1)"),
        literal(batch, "SELECT tax_rate FROM settings"),
        literal(batch, "FROM batches WHERE medicine_id = ANY($1)"),
    ]
    # WRITE_SALES's parameters for one sale (card, no customer, no key, tax 0) of two lines,
    # each taking one unit from one batch.
    params = {
        1: "ARRAY[NULL]::bigint[]", 2: "ARRAY['floor customer']", 3: "ARRAY[NULL]::text[]",
        4: "ARRAY[:user]::bigint[]", 5: "ARRAY['card']", 6: "ARRAY[20.00]", 7: "ARRAY[0.00]",
        8: "0::numeric", 9: "ARRAY[0.00]", 10: "ARRAY[20.00]", 11: "ARRAY[20.00]",
        12: "ARRAY[0.00]", 13: "ARRAY[NULL]::text[]", 14: "ARRAY[NULL]::bytea[]",
        15: "ARRAY[1, 1]", 16: "ARRAY[1, 2]", 17: "ARRAY[:m1, :m2]::bigint[]",
        18: "ARRAY['floor a', 'floor b']", 19: "ARRAY[1, 1]", 20: "ARRAY[10.00, 10.00]",
        21: "ARRAY[10.00, 10.00]", 22: "ARRAY[1, 2]", 23: "ARRAY[:b1, :b2]::bigint[]",
        24: "ARRAY[1, 1]", 25: "ARRAY[:user, :user]::bigint[]", 26: "ARRAY[:b1, :b2]::bigint[]",
        27: "ARRAY[1, 1]",
    }
    sql = " ".join(literal(write, "WITH ids AS MATERIALIZED").split())
    used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    if used != set(params):
        sys.exit(f"floor.py: WRITE_SALES takes ${sorted(used)}, floor.py fills ${sorted(params)}: update floor.py")
    sql = re.sub(r"\$(\d+)", lambda m: f"({params[int(m.group(1))]})", sql)
    reads = [re.sub(r"\$1", medicines[0], r) for r in reads]
    print("\\set m1 random(:lo, :lo + :half - 1)")
    print("\\set m2 :m1 + :half")
    print("\\set b1 :m1 + :off")
    print("\\set b2 :m2 + :off")
    print("\\startpipeline")
    print("BEGIN;")
    for r in reads:
        print(r + ";")
    print("\\endpipeline")
    print("\\startpipeline")
    print(sql + ";")
    print("COMMIT;")
    print("\\endpipeline")


def peer():
    print("""\\set m1 random(1, 25)
\\set m2 :m1 + 25
\\startpipeline
BEGIN;
SELECT id, stock, unit_price FROM pharmacy_medicine WHERE id IN (:m1, :m2) ORDER BY id FOR UPDATE;
\\endpipeline
\\startpipeline
UPDATE pharmacy_medicine SET stock = stock - 1 WHERE id = :m1;
UPDATE pharmacy_medicine SET stock = stock - 1 WHERE id = :m2;
WITH b AS (INSERT INTO pharmacy_bill (customer_name, created_at, total) VALUES ('floor', now(), 20.00) RETURNING id) INSERT INTO pharmacy_billitem (bill_id, medicine_id, qty, unit_price) SELECT b.id, m, 1, 10.00 FROM b, (VALUES (:m1::bigint), (:m2::bigint)) v(m);
COMMIT;
\\endpipeline""")


if __name__ == "__main__":
    {"apotheca": apotheca, "peer": peer}[sys.argv[1]]()
