#!/usr/bin/python3
"""A fault-injecting TCP proxy for the MongoDB wire protocol (issue 22).

It sits between a client and a server, reads whole wire messages (16-byte header: messageLength, requestID,
responseTo, opCode) in both directions and, per request/reply pair, lets a seeded random.Random choose nothing
(most of the time) or one fault:

  hangup      close both sockets before the request is forwarded
  reset       close the client's socket with SO_LINGER 0 (a TCP RST), before the request is forwarded or
              once its reply came back (the server applied the request)
  stall       delay the reply by a random time, sometimes past the client's socket timeout
  truncate    forward part of the reply, then close
  corrupt     break the reply's structure: messageLength, opCode, responseTo, OP_MSG flag bits, the section
              kind, the body document's length, its first element's type byte or its terminator. Never a
              byte that a parser could accept as different data: a chunk's bytes cannot change silently.
  drop_reply  forward the request, throw the server's reply away (the write was applied), then close or go
              silent; preferred at commit points: inserts into a *.files collection, deletes and updates
  blackhole   stop forwarding in both directions but keep the sockets open until the client gives up

Replay: the decisions depend only on the seed, the operation number the driver announces
(begin_operation), the order in which that operation's connections were accepted and the order of the
requests on each connection. Every request draws the same number of random values whatever is chosen, so a
request's fate does not depend on what happened to earlier requests of its connection. Connections opened at
the same moment (a pool filling up) may be accepted in another order on a replay; that is the limit.

Standalone use (the chaos driver imports it instead):
  fault_proxy.py --upstream 127.0.0.1:27017 [--listen 127.0.0.1:0] [--seed N] [--fault-rate 0.04]
"""

import argparse
import asyncio
import json
import random
import socket
import struct
import threading
import time

import bson

OP_REPLY = 1
OP_QUERY = 2004
OP_COMPRESSED = 2012
OP_MSG = 2013
HEADER = struct.Struct("<iiii")
# The server's maxMessageSizeBytes is 48 MB; anything longer is not a message we could buffer.
MAX_MESSAGE = 48_000_000 + 16 * 1024 * 1024

FAULTS = ("hangup", "reset", "stall", "truncate", "corrupt", "drop_reply", "blackhole")
# Relative weights of the faults at an ordinary request, and at a commit point (a write whose lost
# acknowledgement is what loses data when the engine gets it wrong).
ORDINARY_WEIGHTS = {"hangup": 14, "reset": 14, "stall": 20, "truncate": 14, "corrupt": 14,
                    "drop_reply": 12, "blackhole": 12}
COMMIT_WEIGHTS = {"hangup": 8, "reset": 10, "stall": 12, "truncate": 8, "corrupt": 8,
                  "drop_reply": 46, "blackhole": 8}
CORRUPTIONS = ("length_small", "length_huge", "opcode", "response_to", "flag_bits", "section_kind",
               "bson_length", "bson_type", "bson_terminator")
# BSON type bytes that no parser may accept: 0x14..0x7e are unassigned (0x7f is MaxKey, 0xff MinKey).
INVALID_BSON_TYPES = list(range(0x14, 0x7F))


def describe_request(op_code, body):
    """(command name, collection, is commit point, expects a reply) of one request message body."""
    try:
        if op_code == OP_MSG:
            flags = struct.unpack_from("<I", body, 0)[0]
            more_to_come = bool(flags & 2)
            pos = 4
            end = len(body) - (4 if flags & 1 else 0)
            command = None
            while pos < end:
                kind = body[pos]
                pos += 1
                if kind == 0:
                    size = struct.unpack_from("<i", body, pos)[0]
                    command = bson.decode(body[pos:pos + size])
                    pos += size
                elif kind == 1:
                    size = struct.unpack_from("<i", body, pos)[0]
                    pos += size
                else:
                    break
            if command is None:
                return "?", "", False, not more_to_come
            name = next(iter(command), "?")
            value = command.get(name)
            collection = value if isinstance(value, str) else command.get("collection", "")
            if not isinstance(collection, str):
                collection = ""
            commit = ((name == "insert" and collection.endswith(".files"))
                      or name in ("delete", "update", "findAndModify", "findandmodify"))
            return name, collection, commit, not more_to_come
        if op_code == OP_QUERY:
            pos = 4
            nul = body.index(b"\0", pos)
            full_name = body[pos:nul].decode(errors="replace")
            pos = nul + 1 + 8
            size = struct.unpack_from("<i", body, pos)[0]
            query = bson.decode(body[pos:pos + size])
            name = next(iter(query), "?")
            if name in ("$query", "query") and isinstance(query.get(name), dict):
                name = next(iter(query[name]), "?")
            return name, full_name, False, True
        if op_code == OP_COMPRESSED:
            return "compressed", "", False, True
    except Exception:  # A request we cannot read is still forwarded: the proxy is not the client's judge.
        pass
    return "op%d" % op_code, "", False, True


def corrupt_reply(message, variant, rng_value):
    """The reply with its structure broken as variant says; rng_value in [0, 1) picks the details."""
    data = bytearray(message)
    length, request_id, response_to, op_code = HEADER.unpack_from(data, 0)
    if op_code != OP_MSG and variant not in ("length_small", "length_huge", "opcode", "response_to"):
        variant = "opcode"  # OP_REPLY (a legacy handshake): only the header is ours to break.
    # A body shorter than one section with a document cannot have its document broken: break the header.
    if op_code == OP_MSG and len(data) < 16 + 4 + 1 + 5 and variant.startswith(("section", "bson")):
        variant = "length_small"
    if variant == "length_small":
        struct.pack_into("<i", data, 0, (0, 5, 15, -1)[int(rng_value * 4)])
    elif variant == "length_huge":
        struct.pack_into("<i", data, 0, 0x7FFFFFF0)
    elif variant == "opcode":
        struct.pack_into("<i", data, 12, 4242)
    elif variant == "response_to":
        struct.pack_into("<i", data, 8, response_to ^ 0x40000000)
    elif variant == "flag_bits":
        # Bits 0..15 are required: checksumPresent without a checksum, moreToCome in a reply, or an
        # unknown bit must each make the client drop the reply.
        bit = (0, 1, 2, 3, 7, 15)[int(rng_value * 6)]
        flags = struct.unpack_from("<I", data, 16)[0]
        struct.pack_into("<I", data, 16, flags | (1 << bit))
    elif variant == "section_kind":
        data[20] = (2, 7, 0xFF)[int(rng_value * 3)]
    elif variant == "bson_length":
        doc_length = struct.unpack_from("<i", data, 21)[0]
        room = len(data) - 21
        bad = (0, 4, room + 1, room + 1000, 0x7FFFFFF0)[int(rng_value * 5)]
        if bad == doc_length:
            bad = room + 1
        struct.pack_into("<i", data, 21, bad)
    elif variant == "bson_type":
        doc_length = struct.unpack_from("<i", data, 21)[0]
        if doc_length > 5:
            data[25] = INVALID_BSON_TYPES[int(rng_value * len(INVALID_BSON_TYPES))]
        else:
            struct.pack_into("<i", data, 21, 0)
    elif variant == "bson_terminator":
        doc_length = struct.unpack_from("<i", data, 21)[0]
        end = 21 + doc_length - 1
        if 25 <= end < len(data) and data[end] == 0:
            data[end] = 1 + int(rng_value * 0x7E)
        else:
            struct.pack_into("<i", data, 21, 0)
    return bytes(data), variant


def weighted_choice(weights, value):
    total = sum(weights.values())
    point = value * total
    for name, weight in weights.items():
        if point < weight:
            return name
        point -= weight
    return name


class Decision:
    """The fault chosen for one request (kind None: no fault) and the values that parameterise it."""

    __slots__ = ("kind", "variant", "delay", "fraction", "value", "command", "collection", "index")

    def __init__(self):
        self.kind = None
        self.variant = ""
        self.delay = 0.0
        self.fraction = 0.0
        self.value = 0.0
        self.command = ""
        self.collection = ""
        self.index = 0


class FaultProxy:
    """The proxy. Runs on its own asyncio loop; start() and the other public methods are thread-safe."""

    def __init__(self, upstream_host, upstream_port, seed, fault_rate=0.04, commit_rate=None,
                 stall_max=3.0, listen_host="127.0.0.1", listen_port=0, log=None, enabled=True):
        self.upstream = (upstream_host, upstream_port)
        self.seed = seed
        self.fault_rate = fault_rate
        self.commit_rate = commit_rate if commit_rate is not None else min(1.0, fault_rate * 5)
        # The client's socket timeout: a stall is drawn either under it or past it.
        self.stall_max = stall_max
        self.listen = (listen_host, listen_port)
        self.log = log  # a callable taking one fault record (dict), or None
        self.enabled = enabled
        self.port = None
        self._loop = None
        self._thread = None
        self._server = None
        self._lock = threading.Lock()
        self._operation = 0
        self._accepted = {}  # operation -> connections accepted during it
        self._open = {}  # operation -> connections still open
        self._writers = set()
        self.faults = []  # every fault applied, in order

    # --- control (any thread) ------------------------------------------------------------------------

    def start(self):
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, self.listen[0], self.listen[1], reuse_address=True))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        return self.port

    def stop(self):
        if self._loop is None:
            return

        async def shutdown():
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def begin_operation(self, number, enabled=True):
        """Connections accepted from now on belong to operation number and draw from its random streams."""
        with self._lock:
            self._operation = number
            self.enabled = enabled

    def open_connections(self, number):
        with self._lock:
            return self._open.get(number, 0)

    def wait_closed(self, number, timeout):
        """Waits until every connection of operation number is closed; False if some are still open."""
        deadline = time.monotonic() + timeout
        while self.open_connections(number) > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def faults_of(self, number):
        with self._lock:
            return [f for f in self.faults if f["op"] == number]

    # --- the proxy (event loop) ----------------------------------------------------------------------

    def _record(self, conn, decision, **extra):
        record = {"op": conn.operation, "conn": conn.index, "req": decision.index, "fault": decision.kind,
                  "variant": decision.variant, "command": decision.command, "collection": decision.collection,
                  "time": round(time.time(), 3)}
        record.update(extra)
        with self._lock:
            self.faults.append(record)
        if self.log:
            self.log(record)

    async def _accept(self, client_reader, client_writer):
        with self._lock:
            operation = self._operation
            index = self._accepted.get(operation, 0)
            self._accepted[operation] = index + 1
            self._open[operation] = self._open.get(operation, 0) + 1
            enabled = self.enabled
        conn = _Connection(self, operation, index, enabled, client_reader, client_writer)
        try:
            await conn.run()
        finally:
            with self._lock:
                self._open[operation] -= 1


class _Connection:
    def __init__(self, proxy, operation, index, enabled, client_reader, client_writer):
        self.proxy = proxy
        self.operation = operation
        self.index = index
        self.enabled = enabled
        # A string seed is hashed (SHA-512) by random.Random: the same on every run and platform.
        self.rng = random.Random("%s/%d/%d" % (proxy.seed, operation, index))
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.server_reader = None
        self.server_writer = None
        self.pending = {}  # requestID -> Decision of a request whose reply is awaited
        self.requests = 0
        self.closed = False
        self.black_hole = False

    async def run(self):
        self.proxy._writers.add(self.client_writer)
        try:
            try:
                self.server_reader, self.server_writer = await asyncio.open_connection(*self.proxy.upstream)
            except OSError:
                self.client_writer.transport.abort()
                return
            self.proxy._writers.add(self.server_writer)
            upstream = asyncio.ensure_future(self._requests())
            downstream = asyncio.ensure_future(self._replies())
            await asyncio.wait([upstream, downstream], return_when=asyncio.FIRST_COMPLETED)
            # In a black hole both sockets stay open until the client gives up (its side ends).
            if self.black_hole and not self.closed and not upstream.done():
                await upstream
            self.close()
            for task in (upstream, downstream):
                task.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
        finally:
            self.close()
            self.proxy._writers.discard(self.client_writer)
            if self.server_writer is not None:
                self.proxy._writers.discard(self.server_writer)

    def close(self, reset=False):
        if self.closed:
            return
        self.closed = True
        if reset:
            sock = self.client_writer.get_extra_info("socket")
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            self.client_writer.transport.abort()
        else:
            self.client_writer.close()
        if self.server_writer is not None:
            self.server_writer.close()

    @staticmethod
    async def _read_message(reader):
        header = await reader.readexactly(16)
        length = HEADER.unpack(header)[0]
        if length < 16 or length > MAX_MESSAGE:
            raise ConnectionError("unreadable message length %d" % length)
        return header + await reader.readexactly(length - 16)

    def _decide(self, message):
        decision = Decision()
        decision.index = self.requests
        self.requests += 1
        # Always five draws, whatever is chosen: request n's fate depends only on n.
        draws = [self.rng.random() for _ in range(5)]
        roll, kind_value, decision.fraction, decision.value, delay_value = draws
        op_code = HEADER.unpack_from(message, 0)[3]
        decision.command, decision.collection, commit, expects_reply = describe_request(op_code, message[16:])
        if not self.enabled:
            return decision, expects_reply
        rate = self.proxy.commit_rate if commit else self.proxy.fault_rate
        if roll >= rate:
            return decision, expects_reply
        decision.kind = weighted_choice(COMMIT_WEIGHTS if commit else ORDINARY_WEIGHTS, kind_value)
        if not expects_reply and decision.kind in ("stall", "truncate", "corrupt", "drop_reply"):
            decision.kind = "hangup"
        if decision.kind == "stall":
            if delay_value < 0.3:  # past the client's socket timeout
                decision.delay = self.proxy.stall_max * (1.1 + delay_value)
            else:
                decision.delay = 0.05 + self.proxy.stall_max * 0.8 * (delay_value - 0.3) / 0.7
            decision.variant = "%.2fs" % decision.delay
        elif decision.kind == "reset":
            decision.variant = "before_request" if decision.fraction < 0.5 else "after_reply"
        elif decision.kind == "drop_reply":
            decision.variant = "then_close" if decision.fraction < 0.5 else "then_silence"
        elif decision.kind == "corrupt":
            decision.variant = CORRUPTIONS[int(decision.fraction * len(CORRUPTIONS))]
        return decision, expects_reply

    async def _requests(self):
        try:
            while not self.closed:
                if self.black_hole:
                    if not await self.client_reader.read(65536):
                        return
                    continue
                message = await self._read_message(self.client_reader)
                if self.black_hole:  # went silent while this request was on its way
                    continue
                decision, expects_reply = self._decide(message)
                request_id = HEADER.unpack_from(message, 0)[1]
                if decision.kind == "hangup":
                    self.proxy._record(self, decision)
                    self.close()
                    return
                if decision.kind == "reset" and decision.variant == "before_request":
                    self.proxy._record(self, decision)
                    self.close(reset=True)
                    return
                if decision.kind == "blackhole":
                    self.proxy._record(self, decision)
                    self.black_hole = True
                    continue
                if expects_reply:
                    self.pending[request_id] = decision
                self.server_writer.write(message)
                await self.server_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return

    async def _replies(self):
        try:
            while not self.closed:
                if self.black_hole:
                    if not await self.server_reader.read(65536):
                        return
                    continue
                message = await self._read_message(self.server_reader)
                if self.black_hole:
                    continue
                response_to = HEADER.unpack_from(message, 0)[2]
                decision = self.pending.pop(response_to, None)
                kind = decision.kind if decision else None
                if kind == "stall":
                    self.proxy._record(self, decision)
                    await asyncio.sleep(decision.delay)
                    if self.closed or self.black_hole:
                        return
                elif kind == "reset":
                    self.proxy._record(self, decision)
                    self.close(reset=True)
                    return
                elif kind == "truncate":
                    keep = 1 + int(decision.fraction * (len(message) - 1))
                    self.proxy._record(self, decision, kept=keep, length=len(message))
                    self.client_writer.write(message[:keep])
                    await self.client_writer.drain()
                    self.close()
                    return
                elif kind == "corrupt":
                    message, decision.variant = corrupt_reply(message, decision.variant, decision.value)
                    self.proxy._record(self, decision)
                elif kind == "drop_reply":
                    self.proxy._record(self, decision)
                    if decision.variant == "then_close":
                        self.close()
                        return
                    self.black_hole = True
                    continue
                self.client_writer.write(message)
                await self.client_writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            return


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="host:port of the server")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (port 0: any)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fault-rate", type=float, default=0.04, help="fault probability per request")
    parser.add_argument("--stall-max", type=float, default=3.0, help="the client's socket timeout, seconds")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    print("fault_proxy: seed %d" % seed, flush=True)
    up_host, up_port = args.upstream.rsplit(":", 1)
    listen_host, listen_port = args.listen.rsplit(":", 1)
    proxy = FaultProxy(up_host, int(up_port), seed, fault_rate=args.fault_rate, stall_max=args.stall_max,
                       listen_host=listen_host, listen_port=int(listen_port),
                       log=lambda record: print("fault_proxy: " + json.dumps(record), flush=True))
    port = proxy.start()
    print("fault_proxy: listening on %s:%d, forwarding to %s" % (listen_host, port, args.upstream),
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    main()
