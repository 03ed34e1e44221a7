#!/usr/bin/env python3
"""Brings every seeded Apotheca tenant to the peer's shape, through the JSON API (so stock,
batches and the ledger stay in agreement): 50 medicines (the 22 of `seed-data` plus 28), and
one goods receipt giving each sellable medicine a batch of 1,000,000 units, so that bounded load
never runs out. Prints the ids of the medicines a sale may take (not prescription-only, active,
in stock), which must be the same in every tenant.

Usage: fill.py BASE_URL TOKEN N [DOMAIN]   (hosts t1.DOMAIN .. tN.DOMAIN, DOMAIN=localhost)
"""

import datetime
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

UNITS = 1_000_000
TOTAL_MEDICINES = 50


def call(base, host, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Host", host)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{host} {method} {path}: {e.code} {e.read()[:300]!r}")


def fill(base, token, host):
    medicines = call(base, host, token, "GET", "/api/v1/medicines?per_page=100")["items"]
    for n in range(len(medicines) + 1, TOTAL_MEDICINES + 1):
        call(base, host, token, "POST", "/api/v1/medicines", {
            "name": f"Bench medicine {n:02}", "generic_name": f"benchamine {n}",
            "dosage_form": "tablet", "strength": "10 mg", "sale_price": f"{n % 17 + 1}.50",
            "reorder_level": 10, "prescription_only": False,
        })
    medicines = call(base, host, token, "GET", "/api/v1/medicines?per_page=100")["items"]
    sellable = sorted(m["id"] for m in medicines if m["active"] and not m["prescription_only"])
    supplier = call(base, host, token, "GET", "/api/v1/suppliers")["items"][0]["id"]
    expires = datetime.date.today() + datetime.timedelta(days=720)
    call(base, host, token, "POST", "/api/v1/supplier-invoices", {
        "supplier_id": supplier, "invoice_no": "BENCH-1", "invoice_date": str(datetime.date.today()),
        "lines": [{"medicine_id": m, "batch_no": "BENCH", "expires_on": str(expires),
                   "quantity": UNITS, "unit_cost": "0.50"} for m in sellable],
    })
    return len(medicines), sellable


def main():
    base, token, n = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3])
    domain = sys.argv[4] if len(sys.argv) > 4 else "localhost"
    hosts = [f"t{i}.{domain}" for i in range(1, n + 1)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda h: fill(base, token, h), hosts))
    for host, (count, sellable) in zip(hosts, results):
        if count != TOTAL_MEDICINES or sellable != results[0][1]:
            raise SystemExit(f"{host}: {count} medicines, sellable {sellable} (t1: {results[0][1]})")
    print(",".join(map(str, results[0][1])))


if __name__ == "__main__":
    main()
