#!/usr/bin/env python3
"""PyMongo's side of the grid_fs interop test (tests/interop/gridfs/grid_fs_pymongo.cpp).

    grid_fs_peer.py get <uri> <database> <collection> <id as canonical Extended JSON>
        reads the file through gridfs.GridFS.get and prints its attributes, its extra fields and the
        SHA-256 of its content
    grid_fs_peer.py put <uri> <database> <collection>
        stores b"written by pymongo\\n" * 1000 through gridfs.GridFS.put with extra fields and prints its _id

Each mode prints one canonical Extended JSON object on stdout, so ids and numbers keep their BSON types.
"""

import hashlib
import sys

import gridfs
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo import MongoClient


def main():
    mode, uri, database, collection = sys.argv[1:5]
    fs = gridfs.GridFS(MongoClient(uri)[database], collection=collection)
    if mode == "get":
        file_id = json_util.loads(sys.argv[5])["_id"]
        out = fs.get(file_id)
        data = out.read()
        result = {
            "_id": out._id,
            "filename": out.filename,
            "content_type": out.content_type,
            "length": out.length,
            "chunk_size": out.chunk_size,
            "metadata": out.metadata,
            "aliases": out.aliases,
            "author": out.author,
            "rating": out.rating,
            "read_length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "second_read": len(out.read()),
        }
    elif mode == "put":
        file_id = fs.put(b"written by pymongo\n" * 1000, filename="from-python.txt",
                         content_type="text/plain", author="guido", rating=7, chunk_size=1000)
        result = {"_id": file_id}
    else:
        raise SystemExit("unknown mode " + mode)
    print(json_util.dumps(result, json_options=CANONICAL_JSON_OPTIONS))


if __name__ == "__main__":
    main()
