#!/usr/bin/python3
"""Checks bench/latency-proxy against a local echo server: every byte comes back, in order, on several
connections at once; the end of a stream goes through; and nothing comes back before the delay has been paid
twice (once each way). A lower bound only: how much later it comes is the machine's business, not asserted.

    latency_proxy.py PROXY_BINARY
"""
import os
import random
import socket
import subprocess
import sys
import threading
import time

DELAY_MS = 2
STREAM_BYTES = 8 * 1024 * 1024
CONNECTIONS = 3


def echo_server():
    listener = socket.create_server(("127.0.0.1", 0))

    def echo(conn):
        with conn:
            while True:
                data = conn.recv(1 << 20)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1]


def start_proxy(binary, target_port):
    proxy = subprocess.Popen([binary, str(target_port), str(DELAY_MS)], stdout=subprocess.PIPE, text=True)
    line = proxy.stdout.readline().strip()
    if not line.startswith("PROXY_PORT="):
        proxy.kill()
        sys.exit("latency-proxy printed %r instead of PROXY_PORT=..." % line)
    return proxy, int(line.split("=", 1)[1])


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


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    proxy, port = start_proxy(sys.argv[1], echo_server())
    try:
        failures = []
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
    if failures:
        sys.exit("latency-proxy: " + "; ".join(failures))
    print("latency-proxy: %d streams of %d bytes echoed intact, one byte back after two delays" % (
        CONNECTIONS, STREAM_BYTES))


if __name__ == "__main__":
    main()
