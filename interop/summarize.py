#!/usr/bin/python3
"""usage: summarize.py RESULT.json ...

Prints the results of interop/migrate.py side by side as a Markdown table (the one in
interop/README.md), one row per configuration: the median over its runs, with the range when
there are several. Columns:
 - cache-miss-rate: QEMU's, from the final query-migrate (its last rate period);
 - steady misses/lookup, steady µs/page: cache-miss / (cache-miss + xbzrle pages) and the
   migration thread's CPU per page handled, over the iterative phase after the first XBZRLE
   pass (migrate.py's steady_state);
 - XBZRLE pages, transferred, total time, downtime: QEMU's final figures;
 - thread CPU µs/page: the migration thread's whole CPU time / every page it handled
   (raw + zero + XBZRLE)."""
import json
import statistics
import sys

COLUMNS = ["run", "completed", "differing pages", "destination runs", "cache-miss-rate",
           "steady misses/lookup", "XBZRLE pages", "transferred MB", "total ms", "downtime ms",
           "thread CPU µs/page", "steady µs/page"]
SOURCE_ORDER = ["stock", "codec", "codec+cache (direct-mapped)", "codec+cache (set-associative)"]


def figures(r):
    q = r.get("query_migrate", {})
    ram, xb, m = q.get("ram", {}), q.get("xbzrle-cache", {}), r["migration_thread"]
    steady = r.get("steady_state") or {}
    return [xb.get("cache-miss-rate"), steady.get("misses_per_lookup"), xb.get("pages"),
            ram.get("transferred", 0) / 1e6, q.get("total-time"), q.get("downtime"),
            m.get("cpu_us_per_page"), steady.get("cpu_us_per_page")]


FORMATS = ["{:.3f}", "{:.3f}", "{:,.0f}", "{:.0f}", "{:,.0f}", "{:.0f}", "{:.2f}", "{:.2f}"]


def cell(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    text = fmt.format(statistics.median(values))
    if len(values) > 1 and min(values) != max(values):
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def main(paths):
    if not paths:
        sys.exit(__doc__)
    groups = {}
    for path in paths:
        r = json.load(open(path))
        source = r["source"] + (f" ({r['source_page_cache']})" if r["source"] == "codec+cache" else "")
        groups.setdefault((r["workload"], source, r["destination"]), []).append(r)
    key = lambda k: (k[0], SOURCE_ORDER.index(k[1]) if k[1] in SOURCE_ORDER else 9, k[2] != "stock", k[2])
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for k in sorted(groups, key=key):
        runs = groups[k]
        done = sum(bool(r.get("completed")) for r in runs)
        differing = sum(r.get("differing_pages", 0) for r in runs)
        running = sum(bool(r.get("dst_workload_output_after_migration")) and not r.get("dst_guest_panic")
                      for r in runs)
        cells = [cell([figures(r)[i] for r in runs], f) for i, f in enumerate(FORMATS)]
        print("| " + " | ".join([f"{k[0]}: {k[1]} → {k[2]}", f"{done}/{len(runs)}", str(differing),
                                 f"{running}/{len(runs)}"] + cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
