#!/usr/bin/python3
"""pymongo-bench: the PyMongo peer client of bench/run (issue 6): Debian's python3-pymongo and its
gridfs.GridFSBucket, used as its documentation shows.

    pymongo_bench.py URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE

OP upload: COUNT files of SIZE bytes named "<SCENARIO>-<i>" (files under 1 MiB are read from FILE into memory
before the clock starts; larger ones are streamed from FILE by upload_from_stream). OP download: the files with
string _id "<SCENARIO>-<i>", written chunk by chunk to a sink that drops them (download_to_stream). One file at
a time. Prints one JSON line like every client of bench/run; exit status 1 on failure.

Warm-up, outside the clock and the same in every client of bench/run, for both operations: after the client and
bucket exist, one 1-byte file named "warmup" is uploaded through the same bucket (as the MongoDB driver
benchmarking spec does before its GridFS tasks), so that connecting, the handshake and the bucket's index check
are done before the clock starts.
"""
import json
import sys
import time

import gridfs
import pymongo


class Discard:
    """A write-only file object that counts and drops what it is given."""

    def __init__(self):
        self.bytes = 0

    def write(self, data):
        self.bytes += len(data)


def main():
    if len(sys.argv) != 9:
        sys.exit("usage: pymongo_bench.py URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE")
    uri, op, scenario, server, delay, size, count, path = sys.argv[1:]
    size, count = int(size), int(count)
    client = pymongo.MongoClient(uri)
    bucket = gridfs.GridFSBucket(client["bench"])
    data = None
    if op == "upload" and size < 1024 * 1024:
        with open(path, "rb") as f:
            data = f.read(size)
    bucket.upload_from_stream("warmup", b"\0")  # the warm-up (see the docstring)
    total = 0
    started = time.perf_counter()
    for i in range(count):
        name = "%s-%d" % (scenario, i)
        if op == "upload":
            if data is not None:
                bucket.upload_from_stream(name, data)
            else:
                with open(path, "rb") as f:
                    bucket.upload_from_stream(name, f)
            total += size
        elif op == "download":
            sink = Discard()
            bucket.download_to_stream(name, sink)
            if sink.bytes != size:
                sys.exit("pymongo-bench: %s: read %d bytes, expected %d" % (name, sink.bytes, size))
            total += sink.bytes
        else:
            sys.exit("pymongo-bench: unknown operation %r" % op)
    seconds = time.perf_counter() - started
    client.close()
    print(json.dumps({"client": "pymongo", "server": server, "scenario": scenario, "op": op, "bytes": total,
                      "files": count, "delay_ms": float(delay), "seconds": seconds,
                      "mb_per_s": total / 1e6 / seconds if seconds > 0 else 0,
                      "files_per_s": count / seconds if seconds > 0 else 0}))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # every failure becomes a message and status 1 for the harness's failed row
        print("pymongo-bench: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
