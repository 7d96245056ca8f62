#!/usr/bin/env python3
"""PyMongo's side of the GridFS interop test (tests/interop/gridfs/pymongo.cpp).

    interop_peer.py read  <uri> <database> <bucket>   reads every file of the bucket through
                                                       gridfs.GridFSBucket and gridfs.GridFS
    interop_peer.py write <uri> <database> <bucket>   uploads a fixed set of files through both APIs

The URI may also come from MONGODB_URI (pass "-" as <uri>). Each mode prints one JSON object (canonical
Extended JSON, so ids and numbers keep their BSON types) on stdout; the C++ test compares it with what
gridflow wrote or reads. Content is compared by SHA-256 and length, so large files need not cross the pipe.

Named interop_peer.py, not pymongo.py or gridfs.py: the script's folder comes first on sys.path, and those
names would shadow the very modules under test.
"""

import datetime
import hashlib
import io
import os
import random
import sys

import gridfs
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo import MongoClient


def content(seed, size):
    """The same pseudo-random bytes for the same seed, on any run."""
    rng = random.Random(seed)
    return rng.randbytes(size)


def read_mode(db, bucket_name):
    bucket = gridfs.GridFSBucket(db, bucket_name=bucket_name)
    legacy = gridfs.GridFS(db, collection=bucket_name)
    files = []
    for grid_out in bucket.find({}).sort("_id", 1):
        file_id = grid_out._id
        through_bucket = bucket.open_download_stream(file_id).read()
        old = legacy.get(file_id)
        through_legacy = old.read()
        files.append({
            "id": file_id,
            "filename": grid_out.filename,
            "length": grid_out.length,
            "chunkSize": grid_out.chunk_size,
            "uploadDate": grid_out.upload_date,
            "uploadDateIsDatetime": isinstance(grid_out.upload_date, datetime.datetime),
            "metadata": grid_out.metadata,
            "bucketSha256": hashlib.sha256(through_bucket).hexdigest(),
            "bucketBytes": len(through_bucket),
            # gridflow's own checksum field, which PyMongo passes through as an extra field.
            "storedSha256": grid_out._file.get("sha256"),
            "legacy": {
                "sha256": hashlib.sha256(through_legacy).hexdigest(),
                "bytes": len(through_legacy),
                "length": old.length,
                "chunkSize": old.chunk_size,
                "uploadDate": old.upload_date,
                "uploadDateIsDatetime": isinstance(old.upload_date, datetime.datetime),
                "filename": old.filename,
                "metadata": old.metadata,
                "contentType": old.content_type,
                "aliases": old.aliases,
                "md5": old.md5,
                "md5OfContent": hashlib.md5(through_legacy).hexdigest(),
            },
        })
    return {"files": files}


def write_mode(db, bucket_name):
    bucket = gridfs.GridFSBucket(db, bucket_name=bucket_name)
    legacy = gridfs.GridFS(db, collection=bucket_name)
    default_chunk = 255 * 1024
    # (filename, size, chunk size or None, custom id or None, metadata or None)
    plan = [
        ("py-empty", 0, None, None, None),
        ("py-one-byte", 1, None, None, None),
        ("py-exact-chunk", default_chunk, None, None, None),
        ("py-multi-chunk", 3 * default_chunk + 17, None, None, {"origin": "pymongo", "n": 3}),
        ("py-small-chunks", 10007, 1000, None, None),
        ("py-tiny-chunks", 37, 4, "py-string-id", None),
        ("py-int-id", 5000, 777, 424242, {"nested": {"list": [1, "two", 3.5]}}),
    ]
    files = []
    for seed, (filename, size, chunk_size, file_id, metadata) in enumerate(plan, start=1):
        data = content(seed, size)
        kwargs = {}
        if chunk_size is not None:
            kwargs["chunk_size_bytes"] = chunk_size
        if metadata is not None:
            kwargs["metadata"] = metadata
        if file_id is None:
            file_id = bucket.upload_from_stream(filename, io.BytesIO(data), **kwargs)
        else:
            bucket.upload_from_stream_with_id(file_id, filename, io.BytesIO(data), **kwargs)
        files.append({"id": file_id, "filename": filename, "length": size,
                      "chunkSize": chunk_size or default_chunk, "metadata": metadata,
                      "sha256": hashlib.sha256(data).hexdigest()})

    # The legacy API, with the deprecated fields that only it still writes.
    data = content(100, 4099)
    file_id = legacy.put(data, filename="py-legacy", contentType="text/plain", aliases=["a1", "a2"],
                         chunkSize=1024, metadata={"legacy": True})
    files.append({"id": file_id, "filename": "py-legacy", "length": len(data), "chunkSize": 1024,
                  "metadata": {"legacy": True}, "contentType": "text/plain", "aliases": ["a1", "a2"],
                  "sha256": hashlib.sha256(data).hexdigest()})
    return {"files": files}


def main(argv):
    if len(argv) != 5 or argv[1] not in ("read", "write"):
        sys.stderr.write(__doc__)
        return 2
    mode, uri, database, bucket_name = argv[1:]
    if uri == "-":
        uri = os.environ["MONGODB_URI"]
    client = MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        db = client[database]
        result = read_mode(db, bucket_name) if mode == "read" else write_mode(db, bucket_name)
    finally:
        client.close()
    sys.stdout.write(json_util.dumps(result, json_options=CANONICAL_JSON_OPTIONS))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
