#!/usr/bin/python3
"""Checks the target lines that bench/run writes for the sink's rows against their flood of the same bytes:
a missed line names the flood's figure, and says "out of reach here" only when the flood itself moved less than
the line needs; a met line, or one without a flood, is left as it was. Runs no benchmark: the rows are made up.

    run_report.py BENCH_RUN_SCRIPT
"""
import sys
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

    if failures:
        sys.exit("bench/run's target lines:\n  " + "\n  ".join(failures))
    print("run_report: 5 target lines as expected")


if __name__ == "__main__":
    main()
