#!/usr/bin/env python3
"""PyMongo's side of the grid_fs interop test (tests/interop/gridfs/grid_fs_pymongo.cpp).

    grid_fs_peer.py get <uri> <database> <collection> <id as canonical Extended JSON>
        reads the file through gridfs.GridFS.get and prints its attributes, its extra fields and the
        SHA-256 of its content
    grid_fs_peer.py put <uri> <database> <collection>
        stores b"written by pymongo\\n" * 1000 through gridfs.GridFS.put with extra fields and prints its _id
    grid_fs_peer.py put_text <uri> <database> <collection>
        stores str through GridFS.put(text, encoding=...) and GridIn.write in several encodings and prints
        their ids
    grid_fs_peer.py get_text <uri> <database> <collection> <id as canonical Extended JSON>
        reads the file's bytes and decodes them with its encoding field, as a PyMongo user would
    grid_fs_peer.py readlines <uri> <database> <collection> <id as canonical Extended JSON>
        every GridOut.readline() of the file, until the empty one

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
    elif mode == "put_text":
        utf16 = fs.new_file(encoding="utf-16", chunk_size=3)
        utf16.write("h\u00e9")  # Python writes a byte order mark on every encode: two here
        utf16.write("!")
        utf16.close()
        result = {
            "latin1": fs.put("\u00e9t\u00e9", encoding="latin-1"),
            "utf16le": fs.put("h\u00e9", encoding="utf-16-le"),
            "utf16": utf16._id,
            "shift_jis": fs.put("\u65e5\u672c", encoding="shift_jis"),
            "cp1252": fs.put("\u20ac", encoding="cp1252"),
        }
    elif mode in ("get_text", "readlines"):
        out = fs.get(json_util.loads(sys.argv[5])["_id"])
        if mode == "get_text":
            data = out.read()
            result = {"encoding": out.encoding, "data": data, "text": data.decode(out.encoding)}
        else:
            lines = []
            for line in iter(out.readline, b""):
                lines.append(line)
            result = {"lines": lines}
    else:
        raise SystemExit("unknown mode " + mode)
    print(json_util.dumps(result, json_options=CANONICAL_JSON_OPTIONS))


if __name__ == "__main__":
    main()
