#!/usr/bin/python3
"""Chaos test of the gridflow command-line tool (issue 22).

A seeded random sequence of `gridflow` put, get, cat, delete and list runs, one at a time, each through
fault_proxy.py (lost, late, cut, corrupted and silent replies between the tool and the server) and sometimes
interrupted with SIGINT. After every run PyMongo looks at the server directly (not through the proxy) and
checks what must survive any fault:

  BROKEN VISIBLE FILE       a files document whose chunks n = 0..N-1 are missing, duplicated, extra or of
                            the wrong size, or whose bytes do not hash to the sha256 of the put that made it
                            (each put stores a tag chaos/op-<n> as its content type, which names that put)
  DESTROYED COMMITTED FILE  a put exited 0 and its file is gone, though no delete or put --replace of that
                            name ran since (even a failed one, which may have been applied)
  WRONG BYTES               a get or cat exited 0 with bytes that are no revision of that name that could
                            be visible (visible before the get, or committed by a put that exited 0)
  PARTIAL DOWNLOAD          a get to a file failed and left a file behind (--help: "a download leaves no
                            partial file")
  CRASH                     an end other than exit 0, or 1 (130 after SIGINT) with a "gridflow: " line on
                            stderr: a signal, a sanitizer report (status 86, leaks included), no message
  HANG                      the run outlived --op-timeout (its connect and socket timeouts are 2 s and 3 s)

A put that exits non-zero may or may not have committed: neither is a finding. A get that fails is never
WRONG BYTES.

Short run (what ctest runs as chaos_short, fixed seed, against the fixture's dev server):
    ctest --test-dir build/test -L chaos --output-on-failure
By hand, against a dev server of your own:
    tools/dev-server start /tmp/chaos-dev
    GRIDFLOW_CLI=build/test/tools/cli/gridflow GRIDFLOW_DEV_SERVER_DIR=/tmp/chaos-dev \\
        /usr/bin/python3 tests/chaos/chaos.py --duration 60
    tools/dev-server stop /tmp/chaos-dev
(or MONGODB_URI=mongodb://host:port/ instead of GRIDFLOW_DEV_SERVER_DIR: one server, plain TCP, since the
proxy reads the wire messages; never a database in use: each run writes to a new database chaos_<seed>_...)

Long run, 30 minutes, by hand (same environment):
    /usr/bin/python3 tests/chaos/chaos.py --duration 1800 --out /tmp/chaos-long

Replay: the run prints its seed at the start and, at the end, the command line that replays it:
    /usr/bin/python3 tests/chaos/chaos.py --seed 1234 --ops 87
--ops fixes the number of operations, so the replay does not depend on how fast the machine is (the printed
command also repeats any rate that is not the default). The operations, file sizes and contents and the
proxy's fault decisions follow from the seed; what timing decides can differ on a replay: how far a run got
when SIGINT arrives, a stall's length relative to the tool's timeouts, and which of two connections opened at
the same moment the proxy accepted first (each draws from its own stream).

Output (--out, default a new temporary folder): ops.jsonl (every run: argv, status, duration, faults,
stderr's tail), faults.jsonl (every fault the proxy applied), findings.jsonl (one JSON object per finding,
with the operation and the faults injected during it) and hang-<n>.txt (the threads' stacks of a hung run,
when gdb can attach). Exit status: 0 no finding, 1 findings, 2 the harness itself could not run.
"""

import argparse
import collections
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import parse_qsl, urlencode

import pymongo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_proxy  # noqa: E402

FINDING_KINDS = ("BROKEN VISIBLE FILE", "DESTROYED COMMITTED FILE", "WRONG BYTES", "PARTIAL DOWNLOAD",
                 "CRASH", "HANG")
NAMES = ("alpha.bin", "beta.bin", "gamma.txt", "delta.dat", "epsilon")
CHUNK_SIZES = (4096, 16384, 65536, 261120)
CONNECT_TIMEOUT_MS = 2000
SOCKET_TIMEOUT_MS = 3000
SERVER_SELECTION_TIMEOUT_MS = 5000


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def server_uri(explicit):
    if explicit:
        return explicit
    uri = os.environ.get("MONGODB_URI", "")
    if uri:
        return uri
    folder = os.environ.get("GRIDFLOW_DEV_SERVER_DIR", "")
    if folder and os.path.exists(os.path.join(folder, "uri")):
        with open(os.path.join(folder, "uri")) as f:
            return f.read().strip()
    raise SystemExit("chaos: no server: set MONGODB_URI or GRIDFLOW_DEV_SERVER_DIR (ctest does)")


def split_uri(uri):
    """(credentials@ or "", host, port, options) of a one-host mongodb:// URI."""
    if not uri.startswith("mongodb://"):
        raise SystemExit("chaos: needs a mongodb:// URI of one server, not %s" % uri)
    rest = uri[len("mongodb://"):]
    authority, _, tail = rest.partition("/")
    if "?" in authority:
        authority, _, query = authority.partition("?")
    else:
        query = tail.partition("?")[2]
    credentials, at, hosts = authority.rpartition("@")
    if "," in hosts:
        raise SystemExit("chaos: the proxy stands in front of one server; %s names several" % hosts)
    host, _, port = hosts.rpartition(":") if hosts.rfind(":") > hosts.rfind("]") else (hosts, "", "27017")
    return (credentials + at), host.strip("[]"), int(port), parse_qsl(query, keep_blank_values=True)


def proxied_uri(uri, proxy_port):
    credentials, _, _, options = split_uri(uri)
    present = {key.lower() for key, _ in options}
    ours = [("directConnection", "true"), ("connectTimeoutMS", str(CONNECT_TIMEOUT_MS)),
            ("socketTimeoutMS", str(SOCKET_TIMEOUT_MS)),
            ("serverSelectionTimeoutMS", str(SERVER_SELECTION_TIMEOUT_MS))]
    options = options + [(k, v) for k, v in ours if k.lower() not in present]
    return "mongodb://%s127.0.0.1:%d/?%s" % (credentials, proxy_port, urlencode(options))


def tool_environment(uri):
    env = dict(os.environ)
    env["MONGODB_URI"] = uri
    # A sanitizer report must never pass for an expected failure (exit 1): give it its own status.
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[name] = (env.get(name, "") + ":exitcode=86").lstrip(":")
    env.pop("TERM", None)
    return env


class Put:
    __slots__ = ("tag", "op", "name", "size", "chunk_size", "sha256", "status")

    def __init__(self, tag, op, name, size, chunk_size, digest):
        self.tag, self.op, self.name, self.size = tag, op, name, size
        self.chunk_size, self.sha256, self.status = chunk_size, digest, None


class Chaos:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.uri = server_uri(args.uri)
        self.cli = os.path.abspath(args.cli)
        self.out = args.out
        self.work = os.path.join(self.out, "work")
        # What an earlier run with the same --out left (the stderr of its findings) would mislead.
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        for name in os.listdir(self.out):
            if name.startswith("hang-") and name.endswith(".txt"):
                os.remove(os.path.join(self.out, name))
        # jongodb has no drop or dropDatabase: a database of its own per run, never reused.
        self.db_name = "chaos_%d_%d_%d" % (self.seed % 10 ** 9, os.getpid(), int(time.time()) % 10 ** 6)
        self.client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=10000, directConnection=True)
        self.db = self.client[self.db_name]
        self.files = self.db["fs.files"]
        self.chunks = self.db["fs.chunks"]
        self.puts = {}  # tag -> Put
        self.committed = collections.defaultdict(set)  # name -> tags of puts that exited 0, not since at risk
        self.visible = {}  # files _id -> (name, tag) at the last inspection
        self.verified = {}  # files _id -> chunk signature whose bytes were checked
        self.reported = set()  # (kind, key) of findings already written: a broken file is reported once
        self.findings = collections.Counter()
        self.operations = collections.Counter()
        self.statuses = collections.Counter()
        self.fault_counts = collections.Counter()
        self.op_number = 0
        self.sigints = 0
        self.durations = collections.defaultdict(list)  # operation kind -> elapsed seconds of its runs
        self.findings_of_op = 0
        self.last_stderr_path = None
        self.current_op = None
        self.orphans = 0
        self.ops_log = open(os.path.join(self.out, "ops.jsonl"), "w")
        self.faults_log = open(os.path.join(self.out, "faults.jsonl"), "w")
        self.findings_log = open(os.path.join(self.out, "findings.jsonl"), "w")
        _, host, port, _ = split_uri(self.uri)
        self.proxy = fault_proxy.FaultProxy(host, port, self.seed, fault_rate=args.fault_rate,
                                            commit_rate=args.commit_fault_rate,
                                            stall_max=SOCKET_TIMEOUT_MS / 1000.0, log=self._log_fault)
        self.proxy_uri = None

    # --- logging -------------------------------------------------------------------------------------

    def _log_fault(self, record):
        # Called on the proxy's thread; one write of one line is atomic enough for a log.
        self.faults_log.write(json.dumps(record) + "\n")
        self.faults_log.flush()

    def say(self, text):
        print(text, flush=True)

    def finding(self, kind, key, detail, op=None):
        if (kind, key) in self.reported:
            return
        self.reported.add((kind, key))
        self.findings[kind] += 1
        self.findings_of_op += 1
        op = op or self.current_op or {}
        record = {"kind": kind, "detail": detail, "seed": self.seed, "op": op.get("op"),
                  "argv": op.get("argv"), "status": op.get("status"), "faults": op.get("faults", []),
                  "database": self.db_name}
        self.findings_log.write(json.dumps(record, default=str) + "\n")
        self.findings_log.flush()
        self.say("  FINDING %s: %s" % (kind, detail))

    # --- one operation -------------------------------------------------------------------------------

    def choose(self):
        """The next operation: the same sequence for the same seed, whatever happened to the earlier ones."""
        r = self.rng
        # A fixed number of draws per operation keeps the sequence independent of the choices made.
        (kind_value, name_value, size_value, size_fine, chunk_value, how, sigint_value, sigint_delay,
         window) = [r.random() for _ in range(9)]
        name = NAMES[int(name_value * len(NAMES))]
        kinds = (("put", 36), ("put_replace", 14), ("get_file", 12), ("get_name", 5), ("get_stdout", 6),
                 ("cat", 6), ("delete", 11), ("list", 10))
        point = kind_value * sum(w for _, w in kinds)
        for kind, weight in kinds:
            if point < weight:
                break
            point -= weight
        if size_value < 0.06:
            size = 0
        elif size_value < 0.2:
            size = 1 + int(size_fine * 2000)
        elif size_value < 0.6:
            size = 2000 + int(size_fine * 300_000)
        else:
            size = 300_000 + int(size_fine * (self.args.max_size - 300_000))
        if chunk_value < 0.8:
            chunk_size = CHUNK_SIZES[int(chunk_value / 0.8 * len(CHUNK_SIZES))]
        else:
            chunk_size = 1024 + int((chunk_value - 0.8) / 0.2 * 200_000)
        sigint = None
        if kind.startswith(("put", "get", "cat")) and sigint_value < self.args.sigint_rate:
            # A share of a typical run of that kind (see sigint_delay), or late, in the long runs that
            # faults make.
            if sigint_delay < 0.8:
                sigint = ("share", sigint_delay / 0.8)
            else:
                sigint = ("late", 0.3 + (sigint_delay - 0.8) * 15)
        return {"kind": kind, "name": name, "size": size, "chunk_size": chunk_size, "how": how,
                "sigint": sigint, "window": 1 + int(window * 8)}

    def sigint_delay(self, kind, plan):
        """Seconds after the start to send SIGINT, or None. Runs take a few tenths of a second, most of it
        start-up, and their length depends on the machine: a share of the median of the last clean runs of
        that kind puts the interrupt anywhere in a run, before the tool's handler is installed too."""
        if plan is None:
            return None
        how, value = plan
        if how == "late":
            return value
        recent = sorted(self.durations[kind][-15:]) or [0.2]
        return 0.01 + value * 0.9 * recent[len(recent) // 2]

    def run_tool(self, number, argv, cwd, stdin_path=None, sigint=None):
        stdout_path = os.path.join(self.work, "op-%d.stdout" % number)
        stderr_path = os.path.join(self.work, "op-%d.stderr" % number)
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        sigint_sent = False
        hung = False
        started = time.monotonic()
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            process = subprocess.Popen([self.cli] + argv, cwd=cwd, stdin=stdin, stdout=out, stderr=err,
                                       env=tool_environment(self.proxy_uri))
            try:
                if sigint is not None:
                    try:
                        process.wait(timeout=sigint)
                    except subprocess.TimeoutExpired:
                        process.send_signal(signal.SIGINT)
                        sigint_sent = True
                remaining = self.args.op_timeout - (time.monotonic() - started)
                process.wait(timeout=max(remaining, 0.01))
            except subprocess.TimeoutExpired:
                hung = True
                self.dump_stacks(process.pid, number)
                process.kill()
                process.wait()
        if stdin_path:
            stdin.close()
        elapsed = time.monotonic() - started
        with open(stderr_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        # Kept when the run is a finding (a sanitizer report is longer than what ops.jsonl keeps).
        self.last_stderr_path = stderr_path
        return process.returncode, stdout_path, stderr, sigint_sent, hung, elapsed

    def dump_stacks(self, pid, number):
        gdb = shutil.which("gdb")
        if not gdb:
            return
        path = os.path.join(self.out, "hang-%d.txt" % number)
        try:
            with open(path, "wb") as f:
                subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-ex", "thread apply all bt"],
                               stdout=f, stderr=subprocess.STDOUT, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            pass

    def step(self):
        number = self.op_number = self.op_number + 1
        plan = self.choose()
        kind, name = plan["kind"], plan["name"]
        cwd = os.path.join(self.work, "op-%d" % number)
        os.mkdir(cwd)
        argv = []
        stdin_path = None
        put = None
        expect_file = None  # where a get writes, relative to cwd
        data_rng = random.Random("%d/data/%d" % (self.seed, number))
        if kind in ("put", "put_replace"):
            data = data_rng.randbytes(plan["size"])
            tag = "chaos/op-%d" % number
            put = Put(tag, number, name, len(data), plan["chunk_size"], sha256(data))
            self.puts[tag] = put
            argv = ["put", name]
            if plan["how"] < 0.6:
                source = os.path.join(cwd, name)
            elif plan["how"] < 0.85:
                source = os.path.join(cwd, "source-%d" % number)
                argv += ["--local", os.path.basename(source)]
            else:
                source = os.path.join(cwd, "stdin-%d" % number)
                stdin_path = source
                argv += ["--local", "-"]
            with open(source, "wb") as f:
                f.write(data)
            del data
            argv += ["--chunk-size", str(plan["chunk_size"]), "-t", tag, "--window", str(plan["window"])]
            if kind == "put_replace":
                argv.append("--replace")
                # Whatever its outcome, a put --replace may delete the other revisions of its name.
                self.committed[name].clear()
        elif kind.startswith("get") or kind == "cat":
            argv = ["cat", name] if kind == "cat" else ["get", name]
            if kind == "get_file":
                expect_file = "copy-%d" % number
                argv += ["--local", expect_file]
            elif kind == "get_name":
                expect_file = name
            elif kind == "get_stdout":
                argv += ["--local", "-"]
            argv += ["--window", str(plan["window"])]
        elif kind == "delete":
            argv = ["delete", name]
            self.committed[name].clear()
        else:
            argv = ["list"]
        argv += ["-d", self.db_name]
        acceptable = self.acceptable_hashes(name)
        self.proxy.begin_operation(number)
        sigint_at = self.sigint_delay(kind, plan["sigint"])
        status, stdout_path, stderr, sigint_sent, hung, elapsed = self.run_tool(
            number, argv, cwd, stdin_path, sigint_at)
        if not hung:
            self.durations[kind].append(elapsed)
        # Every request the tool sent has been written to the server once its connections are closed; a
        # moment more lets the server apply the last of them before PyMongo looks.
        closed = self.proxy.wait_closed(number, 5.0)
        time.sleep(0.02)
        op = {"op": number, "kind": kind, "argv": argv, "status": status, "sigint": sigint_sent, "hung": hung,
              "elapsed": round(elapsed, 3), "sigint_at": sigint_at, "faults": self.proxy.faults_of(number),
              "stderr": stderr[-1500:], "proxy_connections_closed": closed}
        if put:
            op.update(size=put.size, chunk_size=put.chunk_size, sha256=put.sha256)
        self.current_op = op
        self.findings_of_op = 0
        for fault in op["faults"]:
            self.fault_counts[fault["fault"]] += 1
        self.operations[kind] += 1
        self.sigints += sigint_sent
        self.statuses["hang" if hung else status] += 1
        self.ops_log.write(json.dumps(op) + "\n")
        self.ops_log.flush()
        self.say("#%d %s%s -> %s%s (%.1fs)%s" % (
            number, " ".join(argv[:-2]),
            " [%d B]" % put.size if put else "",
            "HANG" if hung else status, " after SIGINT" if sigint_sent else "", elapsed,
            "".join("  <%s %s%s %s>" % (f["fault"], f["variant"] + " " if f["variant"] else "", f["command"],
                                        f["collection"]) for f in op["faults"])))

        self.check_status(op, status, stderr, sigint_sent, hung)
        if put:
            put.status = status
            if status == 0 and not hung:
                if kind == "put_replace":
                    self.committed[name] = {put.tag}
                else:
                    self.committed[name].add(put.tag)
        if kind.startswith("get") or kind == "cat":
            self.check_download(op, kind, name, cwd, expect_file, stdout_path, acceptable, status, hung)
        os.remove(stdout_path)
        shutil.rmtree(cwd, ignore_errors=True)
        self.inspect(full=number % 25 == 0)
        if not self.findings_of_op:
            os.remove(self.last_stderr_path)

    def check_status(self, op, status, stderr, sigint_sent, hung):
        """(d) and (e): True if the run ended as the tool promises (0, or 1/130 with a message)."""
        key = "op-%d" % op["op"]
        if hung:
            stacks = os.path.join(self.out, "hang-%d.txt" % op["op"])
            self.finding("HANG", key, "%s still running after %ds (killed; threads' stacks: %s)"
                         % (" ".join(op["argv"]), self.args.op_timeout,
                            stacks if os.path.exists(stacks) else "gdb could not attach"))
            return False
        sanitizer = "Sanitizer" in stderr or "runtime error:" in stderr
        if status == 86 or sanitizer:
            report = [line.strip() for line in stderr.splitlines()
                      if "ERROR: " in line or "SUMMARY: " in line or "runtime error:" in line]
            self.finding("CRASH", key, "sanitizer report (status %d): %s (whole report: %s)"
                         % (status, " | ".join(report[:4]) or stderr[-400:], self.kept_stderr(op["op"])))
            return False
        if status < 0:
            # SIGINT before the tool installed its handler (the sanitized build starts slowly) or after it
            # put the default back on the way out ends it by the signal: an interrupt, not a crash.
            if status == -signal.SIGINT and sigint_sent:
                return True
            self.finding("CRASH", key, "killed by signal %d; stderr: %s (%s)"
                         % (-status, stderr[-400:], self.kept_stderr(op["op"])))
            return False
        if status == 0:
            return True
        if status == 1 or (status == 130 and sigint_sent):
            if any(line.startswith("gridflow: ") for line in stderr.splitlines()):
                return True
            self.finding("CRASH", key, "status %d without a 'gridflow: ' message; stderr: %r"
                         % (status, stderr[-800:]))
            return False
        self.finding("CRASH", key, "unexpected status %d; stderr: %s" % (status, stderr[-800:]))
        return False

    def kept_stderr(self, number):
        return os.path.join(self.work, "op-%d.stderr" % number)

    def acceptable_hashes(self, name):
        """What a get of name may return: a revision visible now, or committed by a put that exited 0."""
        tags = {tag for (file_name, tag) in self.visible.values() if file_name == name}
        tags |= self.committed[name]
        return {self.puts[tag].sha256 for tag in tags if tag in self.puts}

    def check_download(self, op, kind, name, cwd, expect_file, stdout_path, acceptable, status, hung):
        key = "op-%d" % op["op"]
        if status == 0 and not hung:
            if expect_file is None:
                path = stdout_path
            else:
                path = os.path.join(cwd, expect_file)
            if not os.path.exists(path):
                self.finding("WRONG BYTES", key, "%s exited 0 but wrote no %s" % (kind, expect_file))
                return
            with open(path, "rb") as f:
                data = f.read()
            if sha256(data) not in acceptable:
                sizes = sorted({self.puts[t].size for (n, t) in self.visible.values() if n == name})
                self.finding("WRONG BYTES", key, "%s of %r exited 0 with %d bytes (sha256 %s) that are no "
                             "revision of it (%d candidate(s), sizes %s)"
                             % (kind, name, len(data), sha256(data)[:16], len(acceptable), sizes))
        elif expect_file is not None and status > 0 and not hung:
            left = sorted(os.listdir(cwd))
            if left:
                self.finding("PARTIAL DOWNLOAD", key, "get of %r failed (status %d) and left %s"
                             % (name, status, left))

    # --- the invariants, straight from the server ----------------------------------------------------

    def inspect(self, full=False):
        """(a) and (b) on what the server holds now. A file whose chunks (their _id and n) are those already
        checked is not read again unless full: the engine never rewrites a chunk in place."""
        docs = list(self.files.find({}))
        signatures = collections.defaultdict(list)
        for chunk in self.chunks.aggregate([{"$project": {"files_id": 1, "n": 1}}]):
            signatures[chunk.get("files_id")].append((chunk.get("n"), chunk["_id"]))
        visible = {}
        for doc in docs:
            file_id = doc["_id"]
            metadata = doc.get("metadata") or {}
            tag = metadata.get("contentType") if isinstance(metadata, dict) else None
            put = self.puts.get(tag)
            key = repr(file_id)
            if put is None:
                self.finding("BROKEN VISIBLE FILE", key, "files document %s (%r) was made by no put of this "
                             "run" % (file_id, doc.get("filename")))
                continue
            visible[file_id] = (put.name, tag)
            signature = sorted(signatures.get(file_id, []),
                               key=lambda c: (c[0] if isinstance(c[0], int) else -1, str(c[1])))
            if not full and self.verified.get(file_id) == signature:
                continue
            problem = self.check_file(doc, put, signature)
            if problem:
                self.finding("BROKEN VISIBLE FILE", key,
                             "%r (_id %s, put at op %d, exit %s, %d B, chunkSize %d): %s"
                             % (put.name, file_id, put.op, put.status, put.size, put.chunk_size, problem))
            else:
                self.verified[file_id] = signature
        self.visible = visible
        present = {tag for (_, tag) in visible.values()}
        for name, tags in self.committed.items():
            for tag in sorted(tags - present):
                put = self.puts[tag]
                self.finding("DESTROYED COMMITTED FILE", tag,
                             "%r of op %d (put exited 0, %d B) is gone, with no delete or --replace of %r "
                             "since"
                             % (name, put.op, put.size, name))
                tags.discard(tag)
        file_ids = {doc["_id"] for doc in docs}
        self.orphans = sum(len(c) for file_id, c in signatures.items() if file_id not in file_ids)

    def check_file(self, doc, put, signature):
        """None if the file is whole and holds the put's bytes, else what is wrong."""
        if doc.get("filename") != put.name:
            return "filename %r, the put stored %r" % (doc.get("filename"), put.name)
        length, chunk_size = doc.get("length"), doc.get("chunkSize")
        if length != put.size:
            return "length %r, the put's file has %d bytes" % (length, put.size)
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            return "chunkSize %r" % chunk_size
        expected = math.ceil(length / chunk_size)
        numbers = [n for n, _ in signature]
        if numbers != list(range(expected)):
            have = collections.Counter(numbers)
            missing = [n for n in range(expected) if n not in have]
            extra = sorted(n for n in have if not isinstance(n, int) or n >= expected or n < 0)
            duplicated = sorted(n for n, c in have.items() if c > 1)
            parts = []
            if missing:
                parts.append("chunks missing: %d of %d (first n=%s)" % (len(missing), expected, missing[:5]))
            if extra:
                parts.append("extra chunks n=%s" % extra[:5])
            if duplicated:
                parts.append("duplicated chunks n=%s" % duplicated[:5])
            return "; ".join(parts) or "chunk numbers out of order"
        digest = hashlib.sha256()
        n = 0
        for chunk in self.chunks.find({"files_id": doc["_id"]}, sort=[("n", 1)]):
            data = bytes(chunk.get("data") or b"")
            want = chunk_size if n < expected - 1 else length - chunk_size * (expected - 1)
            if chunk.get("n") != n:
                return "chunks changed while being read (n=%r where %d was expected)" % (chunk.get("n"), n)
            if len(data) != want:
                return "chunk n=%d has %d bytes, expected %d" % (n, len(data), want)
            digest.update(data)
            n += 1
        if n != expected:
            return "chunks changed while being read (%d of %d)" % (n, expected)
        if digest.hexdigest() != put.sha256:
            return "bytes differ from the put's (sha256 %s, expected %s)" % (digest.hexdigest()[:16],
                                                                          put.sha256[:16])
        return None

    # --- the run -------------------------------------------------------------------------------------

    def run(self):
        a = self.args
        try:
            version = subprocess.run([self.cli, "--version"], capture_output=True, timeout=30).stdout
            version = version.decode(errors="replace").strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            version = "?"
        built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(self.cli)))
        self.tool = "%s (%s, built %s)" % (self.cli, version, built)
        self.say("chaos: tool %s" % self.tool)
        self.say("chaos: server %s, database %s, output %s" % (self.uri, self.db_name, self.out))
        self.client.admin.command("ping")
        port = self.proxy.start()
        self.proxy_uri = proxied_uri(self.uri, port)
        self.say("chaos: proxy on 127.0.0.1:%d, the tool uses %s" % (port, self.proxy_uri))
        started = time.monotonic()
        try:
            while True:
                if a.ops is not None:
                    if self.op_number >= a.ops:
                        break
                elif time.monotonic() - started >= a.duration:
                    break
                self.step()
        except KeyboardInterrupt:
            self.say("chaos: interrupted after %d operations" % self.op_number)
        finally:
            self.proxy.stop()
        self.current_op = {"op": "end of run"}
        self.inspect(full=True)
        elapsed = time.monotonic() - started
        self.summary(elapsed)
        return 1 if sum(self.findings.values()) else 0

    def replay_command(self):
        argv = ["/usr/bin/python3", os.path.abspath(__file__), "--seed", str(self.seed),
                "--ops", str(self.op_number)]
        defaults = build_parser().parse_args([])
        for option in ("fault_rate", "commit_fault_rate", "sigint_rate", "max_size", "op_timeout"):
            if getattr(self.args, option) != getattr(defaults, option):
                argv += ["--" + option.replace("_", "-"), str(getattr(self.args, option))]
        return " ".join(shlex.quote(x) for x in argv)

    def summary(self, elapsed):
        out = self.say
        out("")
        out("chaos summary: seed %d, %d operations in %.0f s, tool %s"
            % (self.seed, self.op_number, elapsed, self.tool))
        out("  operations: " + ", ".join("%s %d" % kv for kv in sorted(self.operations.items())))
        out("  exit statuses: " + ", ".join("%s: %d" % (k, v) for k, v in
                                            sorted(self.statuses.items(), key=lambda kv: str(kv[0]))))
        total = sum(self.fault_counts.values())
        by_kind = ", ".join("%s %d" % (kind, self.fault_counts[kind])
                            for kind in fault_proxy.FAULTS if self.fault_counts[kind])
        out("  faults injected by the proxy: %d (%s); SIGINT sent by the driver: %d"
            % (total, by_kind, self.sigints))
        out("  files at the end: %d visible, %d orphan chunk(s) (not a finding)"
            % (len(self.visible), self.orphans))
        out("  findings: " + ", ".join("%s %d" % (kind, self.findings[kind]) for kind in FINDING_KINDS))
        out("  logs: %s (findings.jsonl, ops.jsonl, faults.jsonl)" % self.out)
        out("  replay: GRIDFLOW_CLI=%s MONGODB_URI=%s %s" % (shlex.quote(self.cli), shlex.quote(self.uri),
                                                             self.replay_command()))
        for log in (self.ops_log, self.faults_log, self.findings_log):
            log.close()


def build_parser():
    parser = argparse.ArgumentParser(description="Chaos test of the gridflow CLI through a fault proxy.",
                                     epilog="See the docstring at the top of chaos.py.")
    parser.add_argument("--duration", type=float, default=60, help="seconds to run (default 60)")
    parser.add_argument("--ops", type=int, default=None, help="run exactly this many operations (replays)")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--out", default=None, help="folder for the logs (default: a new temporary folder)")
    parser.add_argument("--uri", default=None, help="server (default $MONGODB_URI, else the dev server's)")
    parser.add_argument("--cli", default=os.environ.get("GRIDFLOW_CLI", ""), help="default $GRIDFLOW_CLI")
    parser.add_argument("--fault-rate", type=float, default=0.04,
                        help="fault probability per request (default 0.04)")
    parser.add_argument("--commit-fault-rate", type=float, default=0.25,
                        help="fault probability at a commit point: an insert into fs.files, a delete or an "
                             "update (default 0.25)")
    parser.add_argument("--sigint-rate", type=float, default=0.15,
                        help="share of puts and gets sent SIGINT (default 0.15)")
    parser.add_argument("--max-size", type=int, default=3_000_000, help="largest file put (default 3 MB)")
    parser.add_argument("--op-timeout", type=int, default=45,
                        help="seconds a run may take before it is a HANG (default 45)")
    return parser


def main():
    args = build_parser().parse_args()
    if not args.cli or not os.access(args.cli, os.X_OK):
        print("chaos: GRIDFLOW_CLI (or --cli) must name the built gridflow binary", file=sys.stderr)
        return 2
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2 ** 32)
    print("chaos: seed %d" % args.seed, flush=True)
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="gridflow-chaos-%d-" % args.seed)
    os.makedirs(args.out, exist_ok=True)
    try:
        return Chaos(args).run()
    except pymongo.errors.PyMongoError as e:
        print("chaos: the server cannot be checked directly: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
