#!/usr/bin/python3
"""usage: migrate.py --bin-dir DIR --workload dirty1024|kvstore --source SRC --destination DST
                  --out RESULT.json [--work DIR] [--tools DIR] [--guest DIR]
                  [--downtime-limit 300] [--converge-after 20] [--converge-downtime 2000]
                  [--timeout 150]

One live migration of a running TCG guest between two QEMU binaries over TCP on 127.0.0.1:
SRC and DST are `stock`, `codec`, `codec+cache` (page cache in set-associative mode),
`codec+cache:direct` (direct-mapped mode) or `stock-trace` (QEMU's own page cache, every
decision written to WORK/page-cache-trace.txt); DIR/<name>/qemu-system-x86_64 is run. Guest and
settings as in ../shared/qemu-streams: -machine pc-i440fx-7.2, -m 262136K (QEMU 7.2's TCG
dirty-tracking bug needs a RAM size that is not a multiple of 64 pages), XBZRLE with a 32 MiB
cache, 32 MiB/s, downtime limit 300 ms raised to --converge-downtime ms after
--converge-after s. Reuses guestlib.py and qmp.py from --tools (../shared/tools/guest).

While the migration runs, the CPU time of the source's migration thread (the thread named
`live_migration`) is sampled from /proc/PID/task/TID/stat every 20 ms; as the thread exits
when the migration ends, its full time is also taken from the process's exited-thread
account (/proc/PID/stat minus the live threads, before and after). After completion both
guests are paused: their RAM is compared page by page (pmemsave), then the destination is
resumed and must keep running the workload. Writes RESULT.json."""
import argparse, json, os, shlex, socket, subprocess, sys, threading, time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
WLARGS = {"dirty1024": "16,1024,2", "kvstore": "64,50000,0.99,8,5,1"}
RAM, RAM_BYTES = "262136K", 262136 << 10
FIRMWARE = ("-L", "/usr/share/seabios", "-L", "/usr/share/qemu")
THREAD_NAMES = ("-name", "debug-threads=on")  # QEMU names its threads (live_migration) only then
TICK = os.sysconf("SC_CLK_TCK")


def thread_times(pid):
    """{tid: (comm, utime + stime in ticks)} for the live threads, and the process total."""
    threads = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except FileNotFoundError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        threads[int(tid)] = (comm, int(fields[11]) + int(fields[12]))
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return threads, int(fields[11]) + int(fields[12])


def exited_ticks(pid):
    """CPU ticks of the threads of pid that have exited (process total minus live threads),
    the set of live thread ids, read as close together as /proc allows."""
    threads, total = thread_times(pid)
    return total - sum(t for _, t in threads.values()), set(threads)


class MigrationThreadSampler(threading.Thread):
    """Samples the `live_migration` thread's CPU ticks until stopped."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.ticks, self.tid, self.stop = pid, 0, None, threading.Event()
        self.seen = {}  # every thread seen: tid -> (name, last sampled ticks)

    def run(self):
        while not self.stop.is_set():
            try:
                for tid, (comm, ticks) in thread_times(self.pid)[0].items():
                    self.seen[tid] = (comm, ticks)
                    if comm == "live_migration":
                        self.tid, self.ticks = tid, max(self.ticks, ticks)
            except FileNotFoundError:
                return
            time.sleep(0.02)


def steady_state(samples):
    """QEMU's counters and the migration thread's CPU over the iterative phase after the first
    XBZRLE pass: from the first sample with dirty-sync-count >= 4 (the bulk pass ends at the
    second sync, the first XBZRLE pass, whose lookups all miss, at the third) to the last
    sample while still active. None when that window is shorter than 1 s."""
    active = [(t, q, ticks) for t, q, ticks in samples if q.get("status") == "active"]
    start = next((i for i, (_, q, _) in enumerate(active) if q["ram"]["dirty-sync-count"] >= 4), None)
    if start is None or active[-1][0] - active[start][0] < 1:
        return None
    (t0, a, c0), (t1, b, c1) = active[start], active[-1]
    d = lambda key, sub: b[sub][key] - a[sub][key]
    miss, hits = d("cache-miss", "xbzrle-cache"), d("pages", "xbzrle-cache")
    pages = d("normal", "ram") + d("duplicate", "ram") + hits
    return {"seconds": round(t1 - t0, 3), "syncs": [a["ram"]["dirty-sync-count"], b["ram"]["dirty-sync-count"]],
            "xbzrle_pages": hits, "cache_miss": miss, "raw_pages": d("normal", "ram"),
            "zero_pages": d("duplicate", "ram"),
            "misses_per_lookup": round(miss / (miss + hits), 4) if miss + hits else None,
            "thread_cpu_s": (c1 - c0) / TICK,
            "cpu_us_per_page": round((c1 - c0) / TICK * 1e6 / pages, 3) if pages else None}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cached_copies(path, pfns):
    """{pfn: page} from a XBZRLE_PAGE_CACHE_DUMP file, for the given page numbers."""
    import numpy as np
    record = np.dtype([("page", "<u8"), ("data", np.uint8, 4096)])
    if not path or not os.path.exists(path):
        return {}
    dump = np.fromfile(path, dtype=record)
    return {int(p): dump["data"][i] for i, p in enumerate(dump["page"]) if int(p) in pfns}


def compare_ram(qs, qd, work, cache_dump=None):
    """Compares the paused guests' RAM page by page; for each differing page (at most 8) lists
    the differing bytes and, when the source's page cache was dumped at the end of the
    migration, whether its copy equals the destination's page (the destination holds what
    the source believed it had sent: the source's RAM changed without the page being sent
    again, i.e. its dirty bit was lost) or the source's."""
    import numpy as np
    fs, fd = os.path.join(work, "src-ram.raw"), os.path.join(work, "dst-ram.raw")
    qs.cmd("pmemsave", val=0, size=RAM_BYTES, filename=fs)
    qd.cmd("pmemsave", val=0, size=RAM_BYTES, filename=fd)
    a = np.fromfile(fs, dtype=np.uint64).reshape(-1, 512)
    b = np.fromfile(fd, dtype=np.uint64).reshape(-1, 512)
    diff = np.flatnonzero((a != b).any(axis=1))
    details = []
    # The source's cache is dumped when the migration is cleaned up, just after it completes.
    time.sleep(1 if cache_dump and len(diff) else 0)
    cached = cached_copies(cache_dump, {int(p) for p in diff[:8]})
    for pfn in diff[:8]:  # which bytes differ: [offset, source value, destination value]
        x, y = a[pfn].view(np.uint8), b[pfn].view(np.uint8)
        at = np.flatnonzero(x != y)
        detail = {"pfn": hex(int(pfn)), "bytes": int(len(at)),
                  "first": [[int(i), int(x[i]), int(y[i])] for i in at[:16]]}
        if cache_dump:
            copy = cached.get(int(pfn))
            detail["source_cache_copy"] = ("not cached" if copy is None else
                                           "equals destination" if (copy == y).all() else
                                           "equals source" if (copy == x).all() else "equals neither")
        details.append(detail)
        np.concatenate([x, y]).tofile(os.path.join(work, f"differing-{int(pfn):x}.src+dst"))
    os.unlink(fs)
    os.unlink(fd)
    return {"pages": int(a.shape[0]), "differing_pages": int(len(diff)),
            "differing_pfns_first": [hex(int(x)) for x in diff[:20]], "differing_bytes": details}


def variant(spec, bin_dir):
    """(result label, binary, environment additions, page-cache mode) for a SRC/DST spec."""
    name, _, mode = spec.partition(":")
    if name not in ("stock", "codec", "codec+cache", "stock-trace") or (mode and mode != "direct"):
        sys.exit(f"unknown binary {spec!r}")
    env, cache = {}, "qemu"
    if name == "codec+cache":
        cache = "direct-mapped" if mode == "direct" else "set-associative"
        env["XBZRLE_PAGE_CACHE"] = cache
    return name, os.path.join(bin_dir, name, "qemu-system-x86_64"), env, cache


def main():
    ap = argparse.ArgumentParser(usage=__doc__.splitlines()[0][7:])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--workload", choices=sorted(WLARGS), required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--destination", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default=None, help="scratch folder (consoles, logs)")
    ap.add_argument("--tools", default=os.path.join(SHARED, "tools", "guest"))
    ap.add_argument("--guest", default=os.path.join(SHARED, "qemu-streams", "guest"))
    ap.add_argument("--downtime-limit", type=int, default=300,
                    help="initial downtime limit in ms (1 keeps a migration iterating until "
                         "--converge-after, for long steady-state measurements)")
    ap.add_argument("--converge-after", type=float, default=20)
    ap.add_argument("--converge-downtime", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=150)
    a = ap.parse_args()
    sys.path.insert(0, a.tools)
    from guestlib import qemu_cmd, wait_console
    from qmp import QMP

    src_label, src_bin, src_env, src_cache = variant(a.source, a.bin_dir)
    dst_label, dst_bin, dst_env, _ = variant(a.destination, a.bin_dir)
    work = os.path.abspath(a.work or os.path.splitext(a.out)[0] + ".work")
    os.makedirs(work, exist_ok=True)
    P = lambda n: os.path.join(work, n)
    for n in ("src.sock", "dst.sock", "src-console.log", "dst-console.log"):
        if os.path.exists(P(n)):
            os.unlink(P(n))
    kernel = next(os.path.join(a.guest, f) for f in sorted(os.listdir(a.guest)) if f.startswith("vmlinuz-"))
    common = dict(kernel=kernel, initrd=os.path.join(a.guest, "initramfs.cpio.gz"), mem_mib=0, ram=RAM,
                  workload=a.workload, wlargs=WLARGS[a.workload], machine="pc-i440fx-7.2")
    port = free_port()
    src_cmd = qemu_cmd(console=P("src-console.log"), qmp_sock=P("src.sock"), **common,
                       extra=FIRMWARE + THREAD_NAMES)
    dst_cmd = qemu_cmd(console=P("dst-console.log"), qmp_sock=P("dst.sock"), **common,
                       extra=FIRMWARE + THREAD_NAMES + ("-incoming", f"tcp:127.0.0.1:{port}", "-S"))
    src_cmd[0], dst_cmd[0] = src_bin, dst_bin
    cache_dump = P("cache-dump.bin") if src_label == "codec+cache" else None
    if cache_dump:
        src_env["XBZRLE_PAGE_CACHE_DUMP"] = cache_dump
        if os.path.exists(cache_dump):
            os.unlink(cache_dump)
    trace = P("page-cache-trace.txt") if src_label == "stock-trace" else None
    if trace:
        src_env["XBZRLE_PAGE_CACHE_TRACE"] = trace
    version = subprocess.run([src_bin, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result = {"source": src_label, "destination": dst_label, "workload": a.workload,
              "source_page_cache": src_cache, "qemu_version": version,
              "wlargs": WLARGS[a.workload],
              "settings": {"xbzrle-cache-size": 32 << 20, "max-bandwidth": 32 << 20,
                           "downtime-limit": a.downtime_limit,
                           "converge_after_s": a.converge_after, "converge_downtime_ms": a.converge_downtime},
              "src_env": src_env, "dst_env": dst_env,
              "src_cmd": shlex.join(src_cmd), "dst_cmd": shlex.join(dst_cmd), "actions": []}
    procs = []
    try:
        src = subprocess.Popen(src_cmd, env={**os.environ, **src_env},
                               stdout=open(P("src-qemu.out"), "wb"), stderr=subprocess.STDOUT)
        procs.append(src)
        dst = subprocess.Popen(dst_cmd, env={**os.environ, **dst_env},
                               stdout=open(P("dst-qemu.out"), "wb"), stderr=subprocess.STDOUT)
        procs.append(dst)
        qs, qd = QMP(P("src.sock")), QMP(P("dst.sock"))
        t_launch = time.monotonic()
        wait_console(P("src-console.log"), "WORKLOAD-READY", 600, src)
        time.sleep(3)
        caps = [{"capability": "xbzrle", "state": True}, {"capability": "events", "state": True}]
        qd.cmd("migrate-set-capabilities", capabilities=caps)
        qs.cmd("migrate-set-capabilities", capabilities=caps)
        qs.cmd("migrate-set-parameters", **{k: result["settings"][k] for k in
                                            ("xbzrle-cache-size", "max-bandwidth", "downtime-limit")})
        result["boot_to_migrate_s"] = round(time.monotonic() - t_launch, 2)
        exited_before = exited_ticks(src.pid)[0]
        sampler = MigrationThreadSampler(src.pid)
        sampler.start()
        t0 = time.monotonic()
        qs.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        raised = False
        samples = []  # (seconds, query-migrate, migration-thread ticks) every poll
        while True:
            r = qs.cmd("query-migrate")
            el = time.monotonic() - t0
            samples.append((round(el, 3), r, sampler.ticks))
            status = r.get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            if status == "active" and not raised and el > a.converge_after:
                qs.cmd("migrate-set-parameters", **{"downtime-limit": a.converge_downtime})
                result["actions"].append({"t": round(el, 2), "action": f"downtime-limit -> {a.converge_downtime} ms"})
                raised = True
            if el > a.timeout:
                result["actions"].append({"t": round(el, 2), "action": "migrate_cancel (timeout)"})
                qs.cmd("migrate_cancel")
            time.sleep(0.25)
        # Let the migration thread exit, then read the exited-thread account.
        deadline = time.monotonic() + 5
        while sampler.tid in exited_ticks(src.pid)[1] and time.monotonic() < deadline:
            time.sleep(0.02)
        sampler.stop.set()
        sampler.join()
        exited_after, threads_after = exited_ticks(src.pid)
        result["query_migrate"] = r
        result["completed"] = status == "completed"
        ram, xb = r.get("ram", {}), r.get("xbzrle-cache", {})
        pages = ram.get("normal", 0) + ram.get("duplicate", 0) + xb.get("pages", 0)
        others_gone = {f"{tid}:{comm}": ticks / TICK for tid, (comm, ticks) in sampler.seen.items()
                       if tid not in threads_after and tid != sampler.tid}
        cpu_s = (exited_after - exited_before) / TICK - sum(others_gone.values())
        result["migration_thread"] = {
            "tid": sampler.tid,
            "cpu_s": cpu_s,
            "cpu_s_last_sample": sampler.ticks / TICK,
            "other_threads_exited": others_gone,
            "pages": pages,
            "pages_note": "ram.normal + ram.duplicate + xbzrle-cache.pages (every page the thread handled)",
            "cpu_us_per_page": round(cpu_s * 1e6 / pages, 3) if pages else None,
            "method": "CPU ticks of the source's exited threads, after minus before the migration (the "
                      "live_migration thread exits when it ends), less the last samples of the other threads "
                      "that exited meanwhile (other_threads_exited, name: CPU s); cpu_s_last_sample is the "
                      "migration thread's last 20 ms sample",
        }
        result["steady_state"] = steady_state(samples)
        with open(P("progress.jsonl"), "w") as f:
            for t, q, ticks in samples:
                f.write(json.dumps({"t": t, "thread_ticks": ticks, "r": q}) + "\n")
        if result["completed"]:
            result["ram_compare"] = compare_ram(qs, qd, work, cache_dump)
            result["differing_pages"] = result["ram_compare"]["differing_pages"]
            off = os.path.getsize(P("dst-console.log"))
            qd.cmd("cont")
            time.sleep(6)
            result["dst_status_after"] = qd.cmd("query-status").get("status")
            with open(P("dst-console.log"), errors="replace") as f:
                f.seek(off)
                after = f.read()
                f.seek(0)
                whole = f.read()
            result["dst_workload_output_after_migration"] = f"{a.workload}: t=" in after
            result["dst_guest_panic"] = "Kernel panic" in whole
        for q in (qs, qd):
            try:
                q.cmd("quit")
            except Exception:
                pass
    finally:
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    with open(P("src-qemu.out"), errors="replace") as f:
        result["src_stderr"] = f.read().strip().splitlines()[-5:]
    if trace:
        result["page_cache_trace"] = trace
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    m = result["migration_thread"]
    print(f"{os.path.basename(a.out)}: {status}, differing pages {result.get('differing_pages')}, "
          f"miss rate {xb.get('cache-miss-rate')}, xbzrle pages {xb.get('pages')}, "
          f"total {r.get('total-time')} ms, downtime {r.get('downtime')} ms, "
          f"thread CPU {m['cpu_s']:.2f} s ({m['cpu_us_per_page']} us/page), dst running: "
          f"{result.get('dst_workload_output_after_migration')}", flush=True)


if __name__ == "__main__":
    main()
