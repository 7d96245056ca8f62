#!/usr/bin/python3
"""Checks bench/sink-server with PyMongo, as the peer clients of bench/run use it: the handshake, GridFS uploads
acknowledged, files documents kept and found, chunks served for the whole file (deterministic content, the same
on every read), a real server's batch limits (101 documents or 16 MiB in a first batch, then getMore), and
request buffers passed on between connections (a large request on one connection, then small ones on the next
connection that reuses its buffer).

    sink_server.py SINK_SERVER_BINARY
"""
import subprocess
import sys

import gridfs
import pymongo

CHUNK = 255 * 1024
MIB = 1024 * 1024


def start_sink(binary):
    sink = subprocess.Popen([binary], stdout=subprocess.PIPE, text=True)
    line = sink.stdout.readline().strip()
    if not line.startswith("SINK_URI="):
        sink.kill()
        sys.exit("sink-server printed %r instead of SINK_URI=..." % line)
    return sink, line.split("=", 1)[1]


def check_transfers(uri, failures):
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        bucket = gridfs.GridFSBucket(client.sinkcheck)
        size = 3 * MIB + 7
        bucket.upload_from_stream_with_id("small", "small.bin", b"\x5a" * size)
        first = bucket.open_download_stream("small").read()
        by_name = bucket.open_download_stream_by_name("small.bin").read()
        if len(first) != size:
            failures.append("a %d-byte file came back with %d bytes" % (size, len(first)))
        if first != by_name:
            failures.append("two reads of one file gave different bytes")
        chunks = list(client.sinkcheck["fs.chunks"].find({"files_id": "small"}).batch_size(2))
        if [c["n"] for c in chunks] != list(range(13)) or any(len(c["data"]) != CHUNK for c in chunks[:-1]):
            failures.append("chunks of a 13-chunk file read 2 at a time: %r" % [c["n"] for c in chunks])

        # 40 MiB is 161 chunks: 64 of them fill 16 MiB, fewer than the default 101 of a first batch.
        bucket.upload_from_stream_with_id("large", "large.bin", b"\xa5" * (40 * MIB))
        reply = client.sinkcheck.command("find", "fs.chunks", filter={"files_id": "large"})
        batch = reply["cursor"]["firstBatch"]
        batch_bytes = sum(len(c["data"]) for c in batch)
        if len(batch) != 16 * MIB // CHUNK or batch_bytes > 16 * MIB or reply["cursor"]["id"] == 0:
            failures.append("first batch of a 161-chunk file: %d chunks, %d bytes, cursor %d" %
                            (len(batch), batch_bytes, reply["cursor"]["id"]))
        served = len(batch)
        cursor_id = reply["cursor"]["id"]
        while cursor_id != 0:
            more = client.sinkcheck.command("getMore", cursor_id, collection="fs.chunks")["cursor"]
            served += len(more["nextBatch"])
            cursor_id = more["id"]
        if served != 161:
            failures.append("getMore served %d of the 161 chunks" % served)

        # An 8 MiB insert command, then a small command on the same connection.
        documents = [{"files_id": "raw", "n": i, "data": b"\x00" * CHUNK} for i in range(32)]
        inserted = client.sinkcheck["fs.chunks"].insert_many(documents).inserted_ids
        if len(inserted) != 32:
            failures.append("an insert of 32 chunks acknowledged %d" % len(inserted))
        if client.admin.command("ping").get("ok") != 1:
            failures.append("ping after a large insert was not ok")


def check_reused_buffers(uri, failures):
    # New connections take the buffers the closed ones grew: small requests must still read as themselves.
    for _ in range(2):
        with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
            if client.admin.command("ping").get("ok") != 1:
                failures.append("ping on a later connection was not ok")
            found = client.sinkcheck["fs.files"].find_one({"_id": "small"})
            if found is None or found["length"] != 3 * MIB + 7:
                failures.append("files find on a later connection: %r" % found)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sink, uri = start_sink(sys.argv[1])
    failures = []
    try:
        check_transfers(uri, failures)
        check_reused_buffers(uri, failures)
        if sink.poll() is not None:
            failures.append("sink-server exited with status %d" % sink.returncode)
    finally:
        sink.terminate()
        sink.wait()
    if failures:
        sys.exit("sink-server: " + "; ".join(failures))
    print("sink-server: uploads, downloads, batch limits and getMore as a server's; later connections reuse "
          "request buffers")


if __name__ == "__main__":
    main()
