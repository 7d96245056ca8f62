#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_op_msg_reply: a few well-formed OP_MSG replies of the shapes gridflow reads.

Run from anywhere; it rewrites tests/fuzz/corpus/op_msg_reply/. Only the standard library is used, so BSON
and CRC-32C are encoded by hand below.
"""
import pathlib
import struct

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "op_msg_reply"
OP_MSG = 2013
CHECKSUM_PRESENT = 1 << 0
EXHAUST_ALLOWED = 1 << 16


def cstring(s):
    return s.encode() + b"\0"


def element(key, value):
    """One BSON element; the Python type picks the BSON type (tuples tag the ambiguous ones)."""
    if isinstance(value, tuple):
        tag, payload = value
        if tag == "int64":
            return b"\x12" + cstring(key) + struct.pack("<q", payload)
        if tag == "oid":
            return b"\x07" + cstring(key) + payload
        if tag == "date":
            return b"\x09" + cstring(key) + struct.pack("<q", payload)
        if tag == "binary":
            return b"\x05" + cstring(key) + struct.pack("<i", len(payload)) + b"\x00" + payload
        raise ValueError(tag)
    if isinstance(value, bool):
        return b"\x08" + cstring(key) + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x10" + cstring(key) + struct.pack("<i", value)
    if isinstance(value, float):
        return b"\x01" + cstring(key) + struct.pack("<d", value)
    if isinstance(value, str):
        raw = value.encode()
        return b"\x02" + cstring(key) + struct.pack("<i", len(raw) + 1) + raw + b"\0"
    if value is None:
        return b"\x0a" + cstring(key)
    if isinstance(value, dict):
        return b"\x03" + cstring(key) + document(value)
    if isinstance(value, list):
        return b"\x04" + cstring(key) + document({str(i): v for i, v in enumerate(value)})
    raise TypeError(type(value))


def document(fields):
    body = b"".join(element(k, v) for k, v in fields.items()) + b"\0"
    return struct.pack("<i", len(body) + 4) + body


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def op_msg(body, sequences=(), flags=0, request_id=100, response_to=1):
    sections = b"\x00" + document(body)
    for identifier, docs in sequences:
        payload = cstring(identifier) + b"".join(document(d) for d in docs)
        sections += b"\x01" + struct.pack("<i", len(payload) + 4) + payload
    length = 16 + 4 + len(sections) + (4 if flags & CHECKSUM_PRESENT else 0)
    message = struct.pack("<iiiiI", length, request_id, response_to, OP_MSG, flags) + sections
    if flags & CHECKSUM_PRESENT:
        message += struct.pack("<I", crc32c(message))
    return message


def main():
    assert crc32c(b"123456789") == 0xE3069283
    oid = bytes(range(12))
    hello = {
        "isWritablePrimary": True, "helloOk": True, "topologyVersion": {"processId": ("oid", oid),
                                                                        "counter": ("int64", 0)},
        "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
        "localTime": ("date", 1700000000000), "logicalSessionTimeoutMinutes": 30, "connectionId": 7,
        "minWireVersion": 0, "maxWireVersion": 17, "readOnly": False, "ok": 1.0,
    }
    chunk = {"_id": ("oid", oid), "files_id": ("oid", oid), "n": 0, "data": ("binary", bytes(range(64)))}
    files_document = {
        "_id": ("oid", oid), "length": ("int64", 1048576), "chunkSize": 261120,
        "uploadDate": ("date", 1700000000000), "filename": "report.pdf", "metadata": {"tags": ["a", "ü"]},
        "contentType": None,
    }
    seeds = {
        "ok": op_msg({"ok": 1.0}),
        "hello": op_msg(hello),
        "find_chunks": op_msg({"cursor": {"firstBatch": [chunk, dict(chunk, n=1)], "id": ("int64", 0),
                                          "ns": "test.fs.chunks"}, "ok": 1.0}),
        "files_document": op_msg({"cursor": {"firstBatch": [files_document], "id": ("int64", 0),
                                             "ns": "test.fs.files"}, "ok": 1.0}),
        "write_error": op_msg({"n": 0, "writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000 dup"}],
                               "ok": 1.0}),
        "command_error": op_msg({"ok": 0.0, "errmsg": "no such command", "code": 59,
                                 "codeName": "CommandNotFound"}),
        "checksum": op_msg({"n": 2, "ok": 1.0}, flags=CHECKSUM_PRESENT),
        "sequences": op_msg({"ok": 1.0}, sequences=[("documents", [{"a": 1}, {"b": "x"}]), ("empty", [])],
                            flags=EXHAUST_ALLOWED | CHECKSUM_PRESENT),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    for name, message in seeds.items():
        (OUT / name).write_bytes(message)


if __name__ == "__main__":
    main()
