#!/usr/bin/python3
"""Checks the target lines that bench/run writes for the sink's rows against their flood of the same bytes:
a missed line names the flood's figure, and says "out of reach here" only when the flood itself moved less than
the line needs; a met line, or one without a flood, is left as it was. A missed dev line against the ceiling
names the server's idle time during gridflow's transfer and the flood's share of the ceiling; the idle time is
read from a made-up proxy log as bench/run reads the real ones, and a row's figure is the median of its runs.
Runs no benchmark: the rows are made up.

    run_report.py BENCH_RUN_SCRIPT
"""
import os
import sys
import tempfile
from importlib.machinery import SourceFileLoader


def row(client, op, mb_per_s, scenario="large"):
    return {"client": client, "server": "sink", "scenario": scenario, "op": op, "delay_ms": 5, "status": "ok",
            "mb_per_s": mb_per_s, "cpu_s_per_gib": 1.0, "peak_rss_mib": 10}


def line_for(lines, text):
    found = [l for l in lines if l.startswith("- " + text + ":")]
    if len(found) != 1:
        sys.exit("expected one line with %r, got %r" % (text, found))
    return found[0]


def main():
    sys.dont_write_bytecode = True  # no __pycache__ beside bench/run
    bench_run = SourceFileLoader("bench_run", sys.argv[1]).load_module()
    failures = []

    def expect(condition, what):
        if not condition:
            failures.append(what)

    rows = [
        # Download: gridflow misses both lines; its flood is under both (1,000 MB/s and 3 x 300).
        row("gridflow", "download", 700), row("libmongoc", "download", 300), row("flood", "download", 800),
        # Upload: gridflow misses 1 GB/s, meets 3x libmongoc; its flood is over the line.
        row("gridflow", "upload", 600), row("libmongoc", "upload", 100), row("flood", "upload", 1200),
        # A row whose made-up rows have no flood.
        row("gridflow", "download", 900, "huge"), row("libmongoc", "download", 400, "huge"),
    ]
    lines = bench_run.targets(rows)

    download_gb = line_for(lines, "sink large download at 5 ms, gridflow / 1000 MB/s")
    expect(download_gb.endswith("MISSED (the flood of the same bytes: 800 MB/s, under the 1000 MB/s needed: "
                                "out of reach here)"), "download / 1 GB/s: " + download_gb)
    download_peer = line_for(lines, "sink large download at 5 ms, gridflow / libmongoc")
    expect(download_peer.endswith("MISSED (the flood of the same bytes: 800 MB/s, under the 900 MB/s needed: "
                                  "out of reach here)"), "download / libmongoc: " + download_peer)
    upload_gb = line_for(lines, "sink large upload at 5 ms, gridflow / 1000 MB/s")
    expect(upload_gb.endswith("MISSED (the flood of the same bytes: 1200 MB/s)"), "upload / 1 GB/s: " + upload_gb)
    upload_peer = line_for(lines, "sink large upload at 5 ms, gridflow / libmongoc")
    expect(upload_peer.endswith(": met"), "upload / libmongoc: " + upload_peer)
    huge = line_for(lines, "sink huge download at 5 ms, gridflow / 1000 MB/s")
    expect(huge.endswith("MISSED"), "no flood row: " + huge)

    def dev(client, op, mb_per_s, **more):
        return dict(row(client, op, mb_per_s, "dev32"), server="dev", **more)

    dev_rows = [
        dev("gridflow", "download", 170, server_idle_share=0.001, server_idle_ms=0.25, server_timed_runs=5),
        dev("flood", "download", 210), dev("ceiling", "download", 200, scenario="ceiling"),
        dev("gridflow", "upload", 190, server_idle_share=0.0, server_idle_ms=0.0, server_timed_runs=5),
        dev("ceiling", "upload", 200, scenario="ceiling"),
    ]
    lines = bench_run.targets(dev_rows)
    dev_download = line_for(lines, "dev dev32 download at 5 ms, gridflow / ceiling")
    expect(dev_download.endswith("MISSED (the server was idle 0.1% of gridflow's transfer (0.2 ms), median of 5 "
                                 "runs; the flood of the same bytes: 1.05 of the ceiling)"),
           "dev download / ceiling: " + dev_download)
    dev_upload = line_for(lines, "dev dev32 upload at 5 ms, gridflow / ceiling")
    expect(dev_upload.endswith(": met"), "dev upload / ceiling: " + dev_upload)

    # Two 200,000-byte replies on two connections, at a one-way delay of 1 ms (times in microseconds): the
    # first request reaches the server at 3,000 and is answered by 6,000, the second reaches it at 8,000 and
    # is answered by 10,000, so the server waited 2 of the transfer's 7 ms. The small request before (the
    # warm-up, answered by 1,500) is outside the transfer.
    log = tempfile.NamedTemporaryFile("w", suffix=".log", delete=False)
    log.write("> 0 1 0 60 0 0 insert\n< 0 7 1 45 1500 1500 insert\n"
              "> 0 2 0 100 2000 2000 find\n< 0 8 2 200000 5000 6000 find\n"
              "> 1 3 0 100 7000 7000 find\n< 1 9 3 200000 9000 10000 find\n")
    log.close()
    timed = bench_run.server_time(log.name, 1)
    os.remove(log.name)
    expect(abs(timed.get("server_window_ms", 0) - 7.0) < 1e-9 and abs(timed["server_idle_ms"] - 2.0) < 1e-9
           and abs(timed["server_idle_share"] - 2 / 7) < 1e-9, "server_time of the made-up log: %r" % timed)

    runs = [{"mb_per_s": m, "files_per_s": 1.0, "seconds": 1.0, "cpu_s_per_gib": 1.0, "peak_rss_mib": 10,
             "server_idle_share": share, "server_idle_ms": ms} for m, share, ms in
            ((100, 0.0, 0.0), (110, 0.2, 4.0), (120, 0.01, 0.5))]
    summary = bench_run.summarize({"runs": runs, "cap_s": 10}, 3)
    expect(summary.get("server_idle_share") == 0.01 and summary.get("server_idle_share_max") == 0.2
           and summary.get("server_idle_ms") == 0.5 and summary.get("server_timed_runs") == 3,
           "summarize's server time: %r" % summary)

    if failures:
        sys.exit("bench/run's target lines:\n  " + "\n  ".join(failures))
    print("run_report: 7 target lines, the server time of a made-up log and its median as expected")


if __name__ == "__main__":
    main()
