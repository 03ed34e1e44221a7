#!/usr/bin/env python3
"""The Markdown table of a bench/compare/run.sh run: reads its JSON lines, prints the table.
Ratios are Apotheca ÷ peer for throughput, peer ÷ Apotheca for times and memory (so > 1 always
means Apotheca does better). Usage: table.py FIGURES.jsonl
"""

import json
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ratio(a, b):
    if not a or not b:
        return "–"
    return f"{a / b:.1f}×"


def main():
    rows = load(sys.argv[1])
    machine = next((r for r in rows if r.get("step") == "machine"), {})
    print(f"Run of {machine.get('utc', '?')} at commit {machine.get('commit', '?')}: "
          f"{machine.get('cores', '?')} cores ({machine.get('cpu', '?')}), {machine.get('memory', '?')}, "
          f"{machine.get('os', '?')}, kernel {machine.get('kernel', '?')}; peer with "
          f"{machine.get('peer_workers', '?')} gunicorn workers; {machine.get('duration_s', '?')} s per row.\n")
    runs = {}
    for r in rows:
        if "scenario" in r and "rps" in r:
            runs[(r["n"], r["scenario"], r["conns"], r["system"])] = r
    print("| tenants | request | conns | Apotheca req/s | peer req/s | A ÷ peer | p50 ms A / peer "
          "| p99 ms A / peer | errors A / peer | CPU ms/req A / peer |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {s: i for i, s in enumerate(["list", "detail", "sale", "mix"])}
    keys = sorted({k[:3] for k in runs}, key=lambda k: (k[0], order.get(k[1], len(order)), k[2]))
    for n, scenario, conns in keys:
        a = runs.get((n, scenario, conns, "apotheca"), {})
        p = runs.get((n, scenario, conns, "peer"), {})
        print(f"| {n} | {scenario} | {conns} | {a.get('rps', '–')} | {p.get('rps', '–')} | "
              f"{ratio(a.get('rps'), p.get('rps'))} | {a.get('p50_ms', '–')} / {p.get('p50_ms', '–')} | "
              f"{a.get('p99_ms', '–')} / {p.get('p99_ms', '–')} | {a.get('errors', '–')} / {p.get('errors', '–')} | "
              f"{a.get('cpu_ms_per_req', '–')} / {p.get('cpu_ms_per_req', '–')} |")

    def step(system, n, name, **match):
        for r in rows:
            if r.get("system") == system and r.get("n") == n and r.get("step") == name and all(
                    r.get(k) == v for k, v in match.items()):
                return r
        return {}

    print("\n| tenants | figure | Apotheca | peer | peer ÷ A |")
    print("|---|---|---|---|---|")
    for n in sorted({r["n"] for r in rows if "n" in r}):
        for when, label in (("after_load", "after the loads"), ("idle", "idle 45 s later")):
            am, pm = step("apotheca", n, "memory", when=when), step("peer", n, "memory", when=when)
            if am and pm:
                print(f"| {n} | memory {label}, PSS MiB (processes) | {am['pss_mib']} ({am['processes']}) | "
                      f"{pm['pss_mib']} ({pm['processes']}) | {ratio(pm['pss_mib'], am['pss_mib'])} |")
        ac, pc = step("apotheca", n, "create_tenants"), step("peer", n, "create_tenants")
        if ac and pc:
            print(f"| {n} | create one tenant, mean ms | {ac['per_tenant_ms_mean']} | {pc.get('per_tenant_ms_mean')} | "
                  f"{ratio(pc.get('per_tenant_ms_mean'), ac['per_tenant_ms_mean'])} |")
        amg = step("apotheca", n, "migrate_all")
        for label, akey, executor, pstep in (
                ("migrate all, nothing to apply, s", "noop_s", "standard", "migrate_all_noop"),
                ("migrate all, one ADD COLUMN everywhere, s", "apply_s", "standard", "migrate_all_apply"),
                ("… peer with its 2-process executor, s", "apply_s", "multiprocessing", "migrate_all_apply")):
            pmg = step("peer", n, pstep, executor=executor)
            if amg and pmg:
                print(f"| {n} | {label} | {amg[akey]:.2f} | {pmg['total_s']:.2f} | {ratio(pmg['total_s'], amg[akey])} |")
    floors = [r for r in rows if r.get("step") == "floor"]
    if floors:
        cores = machine.get("cores", 2)
        print(f"\nOne two-line sale per transaction from pgbench, no application (FLOOR=1, floor.sh): "
              f"PostgreSQL's CPU per sale, and the sales/s its {cores} cores could give if PostgreSQL "
              "had them all, against ten times the peer's sales at that N.\n")
        print("| tenants | variant | pgbench sales/s | PostgreSQL CPU ms/sale | whole box ms/sale "
              "| ceiling, PostgreSQL alone | 10 × peer's sales/s |")
        print("|---|---|---|---|---|---|---|")
        labels = {"apotheca": "Apotheca's sale (the worker's statements)",
                  "apotheca_stripped": "the same rows, no CHECK, FK, unique or index but primary keys",
                  "peer_rows": "the peer's rows (bill, items, stock), fewest statements"}
        for r in floors:
            peer_sales = [x["rps"] for (n, sc, _, sysname), x in runs.items()
                          if n == r["n"] and sc == "sale" and sysname == "peer"]
            target = f"{10 * max(peer_sales):,.0f}" if peer_sales else "–"
            print(f"| {r['n']} | {labels.get(r['variant'], r['variant'])} | {r['tps']:,} | "
                  f"{r['pg_ms_per_sale']} | {r['box_ms_per_sale']} | "
                  f"{cores * 1000 / r['pg_ms_per_sale']:,.0f} | {target} |")
    variant_rows(rows)
    for r in rows:
        if r.get("step") == "books":
            print(f"\nBooks after the loads at N={r['n']}: peer verify_stock "
                  f"{'passed' if r['peer_failed'] == 0 else 'FAILED'}, Apotheca {r['apotheca_mismatches']} "
                  "batches or lines disagreeing with the ledger.")


def variant_rows(rows):
    """VARIANT=DIR: each row's peer, this build and the variant, measured back to back."""
    groups, group = [], None
    for r in rows:
        if "scenario" not in r or "rps" not in r:
            continue
        if r["system"] == "peer":
            group = {"peer": r}
            groups.append(group)
        elif group is not None:
            group[r["system"]] = r
    groups = [g for g in groups if "variant" in g and "apotheca" in g]
    if not groups:
        return
    print("\nThis build against VARIANT, each row measured back to back (the order of the two builds "
          "swaps every row; first = the one measured right after the peer):\n")
    print("| tenants | request | conns | first | peer req/s | this build req/s (÷ peer) "
          "| variant req/s (÷ peer) | variant ÷ this | p99 ms this / variant |")
    print("|---|---|---|---|---|---|---|---|---|")
    by_row = {}
    for g in groups:
        p, a, v = g["peer"], g["apotheca"], g["variant"]
        first = "this" if a["started"] < v["started"] else "variant"
        q = v["rps"] / a["rps"] if a["rps"] else None
        by_row.setdefault((p["n"], p["scenario"], p["conns"]), []).append(q)
        print(f"| {p['n']} | {p['scenario']} | {p['conns']} | {first} | {p['rps']} | "
              f"{a['rps']} ({ratio(a['rps'], p['rps'])}) | {v['rps']} ({ratio(v['rps'], p['rps'])}) | "
              f"{'–' if q is None else f'{q:.3f}'} | {a['p99_ms']} / {v['p99_ms']} |")
    for (n, scenario, conns), qs in sorted(by_row.items()):
        qs = sorted(q for q in qs if q)
        if qs:
            mid = qs[len(qs) // 2] if len(qs) % 2 else (qs[len(qs) // 2 - 1] + qs[len(qs) // 2]) / 2
            print(f"\nN={n} {scenario} c{conns}: variant ÷ this build, median {mid:.3f} "
                  f"over {len(qs)} rows ({qs[0]:.3f}–{qs[-1]:.3f}).")


if __name__ == "__main__":
    main()
