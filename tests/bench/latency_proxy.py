#!/usr/bin/python3
"""Checks bench/latency-proxy against a local echo server: every byte comes back, in order, on several
connections at once; the end of a stream goes through; and nothing comes back before the delay has been paid
twice (once each way). A lower bound only: how much later it comes is the machine's business, not asserted.
Once it says it listens, its 64 MiB of buffers are resident (prefilled, so that runs do not pay for new pages).
Then its --log against a server that answers wire-protocol requests: one line per message and direction with
the header's fields and the command, a last line for a stream that is not the wire protocol, and
bench/proxy-log pairing the requests with their replies.

    latency_proxy.py PROXY_BINARY
"""
import os
import random
import struct
import socket
import subprocess
import sys
import tempfile
import threading
import time

DELAY_MS = 2
STREAM_BYTES = 8 * 1024 * 1024
CONNECTIONS = 3


def start_server(handle):
    """Listens on loopback and runs handle(conn) for each connection on a thread of its own; returns the port."""
    listener = socket.create_server(("127.0.0.1", 0))

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def echo_server():
    def echo(conn):
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    return start_server(echo)


def start_proxy(binary, target_port, *extra):
    proxy = subprocess.Popen([binary, str(target_port), str(DELAY_MS), *extra], stdout=subprocess.PIPE, text=True)
    line = proxy.stdout.readline().strip()
    if not line.startswith("PROXY_PORT="):
        proxy.kill()
        sys.exit("latency-proxy printed %r instead of PROXY_PORT=..." % line)
    return proxy, int(line.split("=", 1)[1])


PREFILLED_MIB = 64


def prefill_failure(proxy):
    """The proxy's anonymous resident memory once it listens, against the blocks it prefills (Linux /proc)."""
    try:
        with open("/proc/%d/status" % proxy.pid) as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None
    if "RssAnon" not in fields:
        return None
    resident_mib = int(fields["RssAnon"].split()[0]) / 1024
    if resident_mib < PREFILLED_MIB:
        return "latency-proxy listened with %.1f MiB resident, not the %d MiB it prefills" % (
            resident_mib, PREFILLED_MIB)
    return None


def receive_all(sock):
    parts = []
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return b"".join(parts)
        parts.append(data)


def round_trip_of_one_byte(port):
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        started = time.monotonic()
        sock.sendall(b"x")
        reply = sock.recv(1)
        elapsed = time.monotonic() - started
        sock.shutdown(socket.SHUT_WR)
        rest = receive_all(sock)
    if reply + rest != b"x":
        return "one byte came back as %r" % (reply + rest)
    if elapsed < 2 * DELAY_MS / 1000:
        return "one byte came back after %.2f ms, before the %d ms the two delays add up to" % (
            elapsed * 1000, 2 * DELAY_MS)
    return None


def stream(port, seed, failures):
    rng = random.Random(seed)
    payload = rng.randbytes(STREAM_BYTES)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        received = []

        def send():
            at = 0
            while at < len(payload):
                n = rng.randint(1, 300 * 1024)
                sock.sendall(payload[at:at + n])
                at += n
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received.append(receive_all(sock))
        sender.join()
    if received[0] != payload:
        same = next((i for i, (a, b) in enumerate(zip(received[0], payload)) if a != b),
                    min(len(received[0]), len(payload)))
        failures.append("connection %d: %d of %d bytes came back, the first difference at byte %d" % (
            seed, len(received[0]), len(payload), same))


def op_msg(request_id, response_to, body):
    """An OP_MSG with one kind 0 section holding `body`, a BSON document given as its elements' bytes."""
    document = struct.pack("<i", 4 + len(body) + 1) + body + b"\0"
    payload = struct.pack("<iB", 0, 0) + document
    return struct.pack("<iiii", 16 + len(payload), request_id, response_to, 2013) + payload


def receive_exactly(sock, n):
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError("the stream ended %d bytes early" % (n - len(data)))
        data += more
    return data


def receive_message(sock):
    length, request_id = struct.unpack("<ii", receive_exactly(sock, 16)[:8])
    if length < 16:
        raise EOFError("not the wire protocol")
    receive_exactly(sock, length - 16)
    return request_id


REPLY_PAD = 100 * 1024


def wire_server():
    """Answers every message with {ok: 1.0, pad: <100 KiB>}, responseTo set; closes on anything else."""
    def serve(conn):
        with conn:
            try:
                while True:
                    request_id = receive_message(conn)
                    pad = b"\5pad\0" + struct.pack("<iB", REPLY_PAD, 0) + bytes(REPLY_PAD)
                    conn.sendall(op_msg(1000 + request_id, request_id, b"\1ok\0" + struct.pack("<d", 1.0) + pad))
            except (OSError, EOFError):
                pass

    return start_server(serve)


def check_log(binary, log_path):
    failures = []
    proxy, port = start_proxy(binary, wire_server(), "--log", log_path)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for request_id in (7, 8):
                ping = b"\x10ping\0" + struct.pack("<i", 1)
                # The request in two writes, split inside its header: the log must still see one message.
                message = op_msg(request_id, 0, ping)
                sock.sendall(message[:5])
                time.sleep(0.01)
                sock.sendall(message[5:])
                receive_message(sock)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"\3\0\0\0 not the wire protocol")
            sock.shutdown(socket.SHUT_WR)
            receive_all(sock)
    finally:
        proxy.terminate()
        proxy.wait()
    lines = [line.split() for line in open(log_path)]
    requests = [f for f in lines if f[0] == ">" and f[1] == "0"]
    replies = [f for f in lines if f[0] == "<" and f[1] == "0"]
    reply_length = 16 + 5 + 4 + (1 + 3 + 8) + (1 + 4 + 4 + 1 + REPLY_PAD) + 1
    if [(f[2], f[3], f[4], f[7]) for f in requests] != [("7", "0", "36", "ping"), ("8", "0", "36", "ping")]:
        failures.append("--log: the requests were logged as %r" % requests)
    if [(f[2], f[3], f[4], f[7]) for f in replies] != [("1007", "7", str(reply_length), "ok"),
                                                       ("1008", "8", str(reply_length), "ok")]:
        failures.append("--log: the replies were logged as %r" % replies)
    if not any(f[0] == ">" and f[1] == "1" and f[4] == "-1" for f in lines):
        failures.append("--log: a stream that is not the wire protocol got no end line: %r" % lines)
    summary = subprocess.run([os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench",
                                           "proxy-log"), log_path, str(DELAY_MS), "--timeline"],
                             capture_output=True, text=True)
    if summary.returncode != 0 or "2 requests (ping 2)" not in summary.stdout:
        failures.append("bench/proxy-log: status %d, printed %r %r" % (summary.returncode, summary.stdout,
                                                                         summary.stderr))
    return failures


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    proxy, port = start_proxy(sys.argv[1], echo_server())
    try:
        failures = []
        unfilled = prefill_failure(proxy)
        if unfilled:
            failures.append(unfilled)
        late = round_trip_of_one_byte(port)
        if late:
            failures.append(late)
        # A connection closed at once: its end goes through both ways with nothing before it.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.shutdown(socket.SHUT_WR)
            if receive_all(sock) != b"":
                failures.append("an empty stream came back with bytes")
        threads = [threading.Thread(target=stream, args=(port, i, failures)) for i in range(CONNECTIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if proxy.poll() is not None:
            failures.append("latency-proxy exited with status %d" % proxy.returncode)
    finally:
        proxy.terminate()
        proxy.wait()
    with tempfile.TemporaryDirectory() as scratch:
        failures += check_log(sys.argv[1], os.path.join(scratch, "messages.log"))
    if failures:
        sys.exit("latency-proxy: " + "; ".join(failures))
    print("latency-proxy: %d streams of %d bytes echoed intact, one byte back after two delays; --log and "
          "bench/proxy-log as expected; %d MiB prefilled" % (CONNECTIONS, STREAM_BYTES, PREFILLED_MIB))


if __name__ == "__main__":
    main()
