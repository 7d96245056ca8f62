#!/usr/bin/env python3
"""End-to-end tests of the gridflow command-line tool (issue 5).

Runs the built binary ($GRIDFLOW_CLI) against the server in $MONGODB_URI, or the dev server the ctest fixture
started ($GRIDFLOW_DEV_SERVER_DIR/uri). PyMongo checks what the tool stored, stores what the tool must read,
and damages files on purpose. Every test uses its own database, so tests never see each other's files.
"""

import hashlib
import itertools
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import gridfs
import pymongo
from bson import ObjectId

CLI = os.path.abspath(os.environ["GRIDFLOW_CLI"]) if os.environ.get("GRIDFLOW_CLI") else ""
_counter = itertools.count()


def server_uri():
    uri = os.environ.get("MONGODB_URI", "")
    if uri:
        return uri
    folder = os.environ.get("GRIDFLOW_DEV_SERVER_DIR", "")
    if folder and os.path.exists(os.path.join(folder, "uri")):
        with open(os.path.join(folder, "uri")) as f:
            return f.read().strip()
    raise RuntimeError("no server: set MONGODB_URI or run through ctest (GRIDFLOW_DEV_SERVER_DIR)")


URI = server_uri()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return sha256(f.read())


def tool_environment(extra=None):
    env = dict(os.environ)
    env["MONGODB_URI"] = URI
    # A sanitizer report must never pass for an expected failure (exit 1): give it its own status.
    for name in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env[name] = (env.get(name, "") + ":exitcode=86").lstrip(":")
    env.pop("TERM", None)
    if extra:
        env.update(extra)
    return env


class CliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = pymongo.MongoClient(URI, serverSelectionTimeoutMS=5000)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def setUp(self):
        # Database names are at most 63 bytes: the pid and a counter make them unique across runs.
        self.db_name = "cli_%d_%d_%s" % (os.getpid(), next(_counter), self._testMethodName[5:25])
        self.db = self.client[self.db_name]
        self.work = tempfile.TemporaryDirectory(prefix="gridflow-cli-")
        self.dir = self.work.name

    def tearDown(self):
        self.work.cleanup()

    # --- helpers -------------------------------------------------------------------------------------

    def run_cli(self, *args, stdin=None, cwd=None, env=None, db=True, timeout=60, preexec_fn=None):
        argv = [CLI] + list(args)
        if db:
            argv += ["-d", self.db_name]
        result = subprocess.run(argv, input=stdin, cwd=cwd or self.dir, env=tool_environment(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                                preexec_fn=preexec_fn)
        stderr = result.stderr.decode(errors="replace")
        self.assertNotIn("Sanitizer", stderr)
        self.assertNotIn("runtime error:", stderr)
        self.assertNotEqual(result.returncode, 86, stderr)
        result.err = stderr
        result.out = result.stdout.decode(errors="replace")
        return result

    def ok(self, *args, **kwargs):
        result = self.run_cli(*args, **kwargs)
        self.assertEqual(result.returncode, 0, "gridflow %s failed: %s" % (" ".join(args), result.err))
        return result

    def fails(self, status, *args, **kwargs):
        result = self.run_cli(*args, **kwargs)
        self.assertEqual(result.returncode, status, "gridflow %s: %s" % (" ".join(args), result.err))
        # One line naming the cause.
        lines = [line for line in result.err.splitlines() if line.startswith("gridflow: ")]
        self.assertGreaterEqual(len(lines), 1, result.err)
        return result

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def read(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def bucket(self, prefix="fs"):
        return gridfs.GridFSBucket(self.db, bucket_name=prefix)

    def files(self, prefix="fs"):
        return list(self.db[prefix + ".files"].find({}, sort=[("filename", 1), ("uploadDate", 1)]))

    # --- round trips and mongofiles output -----------------------------------------------------------

    def test_put_list_get_round_trip(self):
        contents = {
            "big.bin": os.urandom(1_500_000),
            "empty.bin": b"",
            "exact.bin": os.urandom(255 * 1024 * 2),
            "small.txt": b"hello gridflow\n",
        }
        for name, data in contents.items():
            self.write(name, data)
        put = self.ok("put", *sorted(contents))
        for name in contents:
            self.assertIn("added gridFile: " + name, put.err)
        listed = self.ok("list")
        expected = "".join("%s\t%d\n" % (name, len(contents[name])) for name in sorted(contents))
        self.assertEqual(listed.out, expected)
        for name in contents:
            os.remove(os.path.join(self.dir, name))
        self.ok("get", *sorted(contents))
        for name, data in contents.items():
            self.assertEqual(sha256_file(os.path.join(self.dir, name)), sha256(data), name)
        # No temporary files left behind.
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(contents))

    def test_list_prefix_search_and_json(self):
        for name in ("alpha.txt", "alphabet.txt", "beta.txt", "x.alpha", "a+b(c).txt"):
            self.write(name, name.encode())
        self.ok("put", "alpha.txt", "alphabet.txt", "beta.txt", "x.alpha", "a+b(c).txt")
        self.assertEqual(self.ok("list", "alpha").out, "alpha.txt\t9\nalphabet.txt\t12\n")
        self.assertEqual(self.ok("search", "pha").out, "alpha.txt\t9\nalphabet.txt\t12\nx.alpha\t7\n")
        # Regular expression characters are taken literally.
        self.assertEqual(self.ok("search", "+b(c)").out, "a+b(c).txt\t10\n")
        self.assertEqual(self.ok("list", "nothing").out, "")
        lines = self.ok("list", "--json").out.splitlines()
        self.assertEqual(len(lines), 5)
        docs = [json.loads(line) for line in lines]
        self.assertEqual([d["filename"] for d in docs], sorted(d["filename"] for d in docs))
        self.assertEqual({d["filename"]: d["length"] for d in docs}["beta.txt"], 8)
        self.assertIn("$oid", docs[0]["_id"])
        self.assertEqual(len(self.ok("search", "alpha", "--json").out.splitlines()), 3)

    def test_jobs_transfer_several_files_at_once(self):
        contents = {"f%d.bin" % i: os.urandom(300_000 + i * 7919) for i in range(6)}
        for name, data in contents.items():
            self.write(name, data)
        self.ok("put", "--jobs", "3", *sorted(contents))
        self.assertEqual(len(self.files()), 6)
        out = os.path.join(self.dir, "out")
        os.mkdir(out)
        self.ok("get", "-j", "4", *sorted(contents), cwd=out)
        for name, data in contents.items():
            self.assertEqual(sha256_file(os.path.join(out, name)), sha256(data))

    def test_local_option(self):
        data = os.urandom(70_000)
        self.write("source.bin", data)
        self.ok("put", "stored/name.bin", "--local", "source.bin")
        self.assertEqual(self.ok("list").out, "stored/name.bin\t70000\n")
        self.ok("get", "stored/name.bin", "-l", "copy.bin")
        self.assertEqual(self.read("copy.bin"), data)
        # Without --local, get writes under the GridFS name, creating the folder.
        self.ok("get", "stored/name.bin")
        self.assertEqual(self.read("stored/name.bin"), data)

    def test_stdin_stdout_and_cat(self):
        data = os.urandom(600_000)
        self.ok("put", "piped.bin", "--local", "-", stdin=data)
        self.assertEqual(self.ok("get", "piped.bin", "--local", "-").stdout, data)
        self.assertEqual(self.ok("cat", "piped.bin").stdout, data)
        self.write("second.txt", b"second\n")
        self.ok("put", "second.txt")
        self.assertEqual(self.ok("cat", "piped.bin", "second.txt").stdout, data + b"second\n")
        # cat of a missing file: the others are still written, the status says something failed.
        result = self.fails(1, "cat", "nothing.bin", "second.txt")
        self.assertEqual(result.stdout, b"second\n")
        self.assertIn("cat 'nothing.bin': no such file in GridFS", result.err)

    def test_type_is_stored_as_metadata_content_type(self):
        self.write("page.html", b"<p>hi</p>")
        self.ok("put", "page.html", "--type", "text/html")
        self.write("plain.txt", b"plain")
        self.ok("put", "plain.txt", "-t", "text/plain")
        docs = {d["filename"]: d for d in self.files()}
        self.assertEqual(docs["page.html"]["metadata"], {"contentType": "text/html"})
        self.assertEqual(docs["plain.txt"]["metadata"]["contentType"], "text/plain")
        self.assertNotIn("contentType", docs["page.html"])

    def test_replace(self):
        for version in (b"one", b"two"):
            self.write("doc.txt", version)
            self.ok("put", "doc.txt")
        self.assertEqual(len(self.files()), 2)
        self.write("doc.txt", b"three")
        self.ok("put", "doc.txt", "--replace")
        docs = self.files()
        self.assertEqual(len(docs), 1)
        self.assertEqual(self.bucket().open_download_stream(docs[0]["_id"]).read(), b"three")
        # A failed put with --replace leaves the existing file alone.
        self.fails(1, "put", "doc.txt", "-r", "--local", "missing.txt")
        self.assertEqual([d["_id"] for d in self.files()], [docs[0]["_id"]])
        # The chunks of the deleted revisions are gone too.
        self.assertEqual(self.db["fs.chunks"].count_documents({"files_id": {"$ne": docs[0]["_id"]}}), 0)
        # Other names are untouched.
        self.write("other.txt", b"other")
        self.ok("put", "other.txt")
        self.write("doc.txt", b"four")
        self.ok("put", "doc.txt", "-r")
        self.assertEqual(sorted(d["filename"] for d in self.files()), ["doc.txt", "other.txt"])

    def test_ids_in_extended_json(self):
        data = os.urandom(10_000)
        self.write("a.bin", data)
        oid = ObjectId()
        self.ok("put_id", "a.bin", '{"$oid": "%s"}' % oid)
        self.ok("put_id", "b.bin", "42", "--local", "a.bin")
        self.ok("put_id", "c.bin", '"text-id"', "--local", "a.bin")
        ids = {d["filename"]: d["_id"] for d in self.files()}
        self.assertEqual(ids, {"a.bin": oid, "b.bin": 42, "c.bin": "text-id"})
        os.remove(os.path.join(self.dir, "a.bin"))
        self.ok("get_id", 'ObjectId("%s")' % oid)
        self.assertEqual(self.read("a.bin"), data)
        self.ok("get_id", "42", "-l", "forty-two.bin")
        self.assertEqual(self.read("forty-two.bin"), data)
        self.ok("get_id", '"text-id"')
        self.assertEqual(self.read("c.bin"), data)
        # A duplicate id is refused and the first file stays.
        result = self.fails(1, "put_id", "d.bin", "42", "--local", "forty-two.bin")
        self.assertIn("already exists", result.err)
        self.ok("delete_id", "42")
        self.assertEqual(sorted(self.files()[i]["filename"] for i in range(2)), ["a.bin", "c.bin"])
        self.assertEqual(self.db["fs.chunks"].count_documents({"files_id": 42}), 0)
        result = self.fails(1, "delete_id", "42")
        self.assertIn("no such file in GridFS", result.err)

    def test_get_regex(self):
        for name in ("Report-1.pdf", "report-2.pdf", "notes.txt"):
            self.write(name, name.encode() * 100)
        self.ok("put", "Report-1.pdf", "report-2.pdf", "notes.txt")
        out = os.path.join(self.dir, "out")
        os.mkdir(out)
        self.ok("get_regex", "^report", cwd=out)
        self.assertEqual(os.listdir(out), ["report-2.pdf"])
        self.ok("get_regex", "^report", "--regexOptions", "i", "--jobs", "2", cwd=out)
        self.assertEqual(sorted(os.listdir(out)), ["Report-1.pdf", "report-2.pdf"])
        self.assertEqual(self.read("out/Report-1.pdf"), b"Report-1.pdf" * 100)

    def test_newest_revision_wins(self):
        for version in (b"old", b"new"):
            self.write("v.txt", version)
            self.ok("put", "v.txt")
        os.remove(os.path.join(self.dir, "v.txt"))
        self.ok("get", "v.txt")
        self.assertEqual(self.read("v.txt"), b"new")
        self.assertEqual(self.ok("cat", "v.txt").stdout, b"new")

    def test_delete_removes_every_revision(self):
        for version in (b"1", b"2", b"3"):
            self.write("gone.txt", version)
            self.ok("put", "gone.txt")
        self.write("kept.txt", b"kept")
        self.ok("put", "kept.txt")
        result = self.ok("delete", "gone.txt")
        self.assertIn("successfully deleted all instances of 'gone.txt' from GridFS", result.err)
        self.assertEqual(self.ok("list").out, "kept.txt\t4\n")
        self.assertEqual(self.db["fs.chunks"].count_documents({}), 1)
        result = self.fails(1, "delete", "gone.txt")
        self.assertIn("delete 'gone.txt': no such file in GridFS", result.err)

    def test_stat(self):
        data = os.urandom(5000)
        self.write("s.bin", data)
        self.ok("put", "s.bin", "-t", "application/octet-stream", "--chunk-size", "1K")
        doc = self.files()[0]
        pretty = self.ok("stat", "s.bin").out
        self.assertRegex(pretty, r"(?m)^filename:\s+s\.bin$")
        self.assertRegex(pretty, r"(?m)^length:\s+5000 \(4\.88 KiB\)$")
        self.assertRegex(pretty, r"(?m)^chunkSize:\s+1024$")
        self.assertIn(str(doc["_id"]), pretty)
        self.assertRegex(pretty, r"(?m)^uploadDate:\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        as_json = json.loads(self.ok("stat", "s.bin", "--json").out)
        self.assertEqual(as_json["length"], 5000)
        self.assertEqual(as_json["metadata"]["contentType"], "application/octet-stream")
        by_id = json.loads(self.ok("stat", "--id", '{"$oid": "%s"}' % doc["_id"], "--json").out)
        self.assertEqual(by_id["filename"], "s.bin")
        result = self.fails(1, "stat", "nothing")
        self.assertIn("no such file in GridFS", result.err)

    def test_chunk_size_window_and_prefix(self):
        data = os.urandom(10_000)
        self.write("c.bin", data)
        self.ok("put", "c.bin", "--chunk-size", "1024", "--window", "2", "--prefix", "media")
        self.assertEqual(self.files(), [])
        doc = self.files("media")[0]
        self.assertEqual(doc["chunkSize"], 1024)
        self.assertEqual(self.db["media.chunks"].count_documents({"files_id": doc["_id"]}), 10)
        self.assertEqual(self.bucket("media").open_download_stream(doc["_id"]).read(), data)
        self.assertEqual(self.ok("list", "--prefix", "media").out, "c.bin\t10000\n")
        self.assertEqual(self.ok("cat", "c.bin", "--prefix", "media", "--window", "1").stdout, data)

    def test_write_concern_and_read_preference(self):
        self.write("w.txt", b"w")
        self.ok("put", "w.txt", "--writeConcern", "1")
        self.ok("put", "w.txt", "--writeConcern", '{"w": 1, "j": false}')
        self.ok("put", "w.txt", "--writeConcern", "majority")
        self.assertEqual(len(self.files()), 3)
        self.assertEqual(self.ok("cat", "w.txt", "--readPreference", "primary").stdout, b"w")
        self.assertEqual(self.ok("list", "--readPreference", '{"mode": "primary"}').out.count("w.txt"), 3)
        self.assertIn("writeConcern", self.fails(2, "put", "w.txt", "--writeConcern", "{bad").err)
        self.assertIn("w: 0", self.fails(2, "put", "w.txt", "--writeConcern", "0").err)
        self.assertIn("readPreference", self.fails(2, "list", "--readPreference", "sometimes").err)

    def test_connection_options(self):
        host_port = URI.split("://", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        self.write("h.txt", b"h")
        env_less = {"MONGODB_URI": ""}
        self.ok("put", "h.txt", "--host", host, "--port", port, env=env_less)
        self.assertEqual(self.ok("list", "--host", "rs0/" + host_port, env=env_less).out, "h.txt\t1\n")
        self.assertEqual(self.ok("list", "--uri", URI, env={"MONGODB_URI": "mongodb://127.0.0.1:1/"}).out,
                         "h.txt\t1\n")
        # The database named in the URI, when --db is absent.
        with_db = "mongodb://%s/%s" % (host_port, self.db_name)
        self.assertEqual(self.ok("list", "--uri", with_db, db=False).out, "h.txt\t1\n")
        self.assertEqual(self.ok("list", db=False, env={"MONGODB_URI": with_db}).out, "h.txt\t1\n")
        # MONGODB_URI when nothing is given; mongodb://localhost:27017 when it is unset too.
        result = self.fails(1, "list", env={"MONGODB_URI": "mongodb://127.0.0.1:1/"})
        self.assertIn("cannot reach server 127.0.0.1:1", result.err)
        self.fails(2, "list", "--uri", URI, "--host", host)

    def test_verbose_and_quiet(self):
        self.write("q.txt", b"q")
        quiet = self.ok("put", "q.txt", "--quiet")
        self.assertEqual(quiet.err, "")
        verbose = self.ok("get", "q.txt", "-l", "q2.txt", "-v")
        self.assertIn("connected to: ", verbose.err)
        self.assertIn("finished writing to: q2.txt", verbose.err)
        self.assertRegex(verbose.err, r"\(1 B in \d+\.\d\d s, ")
        plain = self.ok("get", "q.txt", "-l", "q3.txt")
        self.assertEqual(plain.err, "finished writing to: q3.txt\n")
        # Not a terminal: no progress bar, no escape sequences.
        self.assertNotIn("\x1b", plain.err + verbose.err)

    def test_progress_bar_on_a_terminal(self):
        data = os.urandom(3_000_000)
        self.write("p.bin", data)

        def run_on_pty(*args):
            master, slave = pty.openpty()
            process = subprocess.Popen([CLI] + list(args) + ["-d", self.db_name], cwd=self.dir,
                                       env=tool_environment({"TERM": "xterm"}), stdout=subprocess.DEVNULL,
                                       stderr=slave)
            os.close(slave)
            output = b""
            while True:
                ready, _, _ = select.select([master], [], [], 30)
                if not ready:
                    break
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                output += chunk
            os.close(master)
            self.assertEqual(process.wait(timeout=30), 0, output)
            return output.decode(errors="replace")

        shown = run_on_pty("put", "p.bin", "--chunk-size", "64K")
        self.assertIn("%", shown)
        self.assertIn("/s", shown)
        self.assertIn("2.86 MiB", shown)
        self.assertIn("\x1b[", shown)
        self.assertIn("added gridFile: p.bin", shown)
        hidden = run_on_pty("get", "p.bin", "-l", "p2.bin", "--quiet")
        self.assertEqual(hidden, "")
        self.assertEqual(self.read("p2.bin"), data)

    # --- bad input: exit status and one clear line ---------------------------------------------------

    def test_usage_errors_exit_2(self):
        cases = [
            (["frobnicate"], "unknown command 'frobnicate'"),
            ([], "no command given"),
            (["list", "--bogus"], "unknown option --bogus"),
            (["put"], "usage: gridflow put"),
            (["put_id", "a"], "usage: gridflow put_id"),
            (["get_id", '{"$oid": "xyz"}'], "bad id"),
            (["delete_id", "{not json"], "bad id"),
            (["get_id", "1, \"x\": 2"], "bad id"),
            (["put", "a", "b", "--local", "c"], "--local names one local file"),
            (["put", "-"], "put <name> --local -"),
            (["put", "a", "--json"], "--json does not apply to put"),
            (["list", "--repair"], "--repair does not apply to list"),
            (["stat"], "stat takes a file name or --id"),
            (["list", "--jobs", "0"], "--jobs must be a whole number"),
            (["list", "--chunk-size", "-5"], "--chunk-size"),
            (["list", "--uri", "mongo://nowhere"], "bad URI"),
            (["list", "--port", "99999"], "--port"),
            (["get_regex", "x", "--local", "y"], "--local does not apply to get_regex"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                result = self.fails(2, *args, db=False)
                self.assertIn(message, result.err)
                self.assertEqual(result.err.count("\n"), 1, result.err)
        self.assertIn("usage: gridflow", self.ok("--help", db=False).out)
        self.assertRegex(self.ok("--version", db=False).out, r"^gridflow \d+\.\d+\.\d+\n$")

    def test_missing_local_file(self):
        result = self.fails(1, "put", "absent.bin")
        self.assertEqual(result.err,
                         "gridflow: put 'absent.bin': cannot read local file 'absent.bin': "
                         "No such file or directory\n")
        self.assertEqual(self.files(), [])
        os.mkdir(os.path.join(self.dir, "folder"))
        self.assertIn("Is a directory", self.fails(1, "put", "folder").err)
        # One bad file does not stop the others.
        self.write("present.bin", b"here")
        result = self.fails(1, "put", "absent.bin", "present.bin")
        self.assertEqual([d["filename"] for d in self.files()], ["present.bin"])

    def test_permission_denied_on_the_local_file(self):
        self.write("p.txt", b"p")
        self.ok("put", "p.txt")
        # Root ignores file modes: run the tool as nobody then, in a folder nobody may enter.
        as_nobody = None
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o777)
            as_nobody = lambda: (os.setgid(65534), os.setuid(65534))
        os.mkdir(os.path.join(self.dir, "locked"), 0o555)
        os.chmod(os.path.join(self.dir, "locked"), 0o555)
        result = self.fails(1, "get", "p.txt", "-l", "locked/p.txt", preexec_fn=as_nobody)
        self.assertEqual(result.err, "gridflow: get 'p.txt': cannot write local file 'locked/p.txt': "
                                     "Permission denied\n")
        self.assertEqual(os.listdir(os.path.join(self.dir, "locked")), [])
        path = self.write("secret.txt", b"s")
        os.chmod(path, 0)
        result = self.fails(1, "put", "secret.txt", preexec_fn=as_nobody)
        self.assertEqual(result.err, "gridflow: put 'secret.txt': cannot read local file 'secret.txt': "
                                     "Permission denied\n")

    def test_unreachable_server(self):
        refused = self.fails(1, "list", "--uri", "mongodb://127.0.0.1:1/", db=False)
        self.assertEqual(refused.err.count("\n"), 1)
        self.assertIn("cannot reach server 127.0.0.1:1", refused.err)
        # A server that accepts connections but never answers: the short connect timeout ends it.
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        try:
            self.write("x.bin", b"x")
            silent_uri = "mongodb://127.0.0.1:%d/" % port
            result = self.fails(1, "put", "x.bin", "--uri", silent_uri + "?connectTimeoutMS=300", timeout=20)
            self.assertIn("cannot reach server 127.0.0.1:%d (connectTimeoutMS 300)" % port, result.err)
            self.assertIn("timed out", result.err)
            result = self.fails(1, "list", "--uri", silent_uri + "?serverSelectionTimeoutMS=400", timeout=20)
            self.assertIn("(connectTimeoutMS 400)", result.err)
        finally:
            silent.close()

    def test_missing_gridfs_file(self):
        result = self.fails(1, "get", "nowhere.bin")
        self.assertEqual(result.err, "gridflow: get 'nowhere.bin': no such file in GridFS "
                                     "(database '%s', bucket 'fs')\n" % self.db_name)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "nowhere.bin")))
        self.assertIn("get_id '{ \"$oid\"", self.fails(1, "get_id", '{"$oid": "%s"}' % ObjectId()).err)

    def test_corrupt_file(self):
        data = os.urandom(10_000)
        self.write("c.bin", data)
        self.ok("put", "c.bin", "--chunk-size", "1K")
        doc = self.files()[0]
        self.db["fs.chunks"].delete_one({"files_id": doc["_id"], "n": 4})
        # An existing local file survives a failed download, and no partial file appears.
        self.write("c.bin", b"precious")
        result = self.fails(1, "get", "c.bin")
        self.assertIn("get 'c.bin': corrupt file: ", result.err)
        self.assertIn("n=4", result.err)
        self.assertEqual(self.read("c.bin"), b"precious")
        self.assertEqual(os.listdir(self.dir), ["c.bin"])
        result = self.fails(1, "get", "c.bin", "-l", "new.bin")
        self.assertFalse(os.path.exists(os.path.join(self.dir, "new.bin")))
        self.assertEqual(self.run_cli("cat", "c.bin").returncode, 1)

    def test_path_traversal_is_refused(self):
        self.bucket().upload_from_stream("../escape.txt", b"out")
        self.bucket().upload_from_stream("/tmp/gridflow-absolute-%d.txt" % os.getpid(), b"abs")
        inner = os.path.join(self.dir, "inner")
        os.mkdir(inner)
        result = self.fails(1, "get", "../escape.txt", cwd=inner)
        self.assertIn("refusing to write '../escape.txt' outside the current folder", result.err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "escape.txt")))
        self.fails(1, "get_regex", "escape", cwd=inner)
        self.fails(1, "get_regex", "absolute", cwd=inner)
        self.assertFalse(os.path.exists("/tmp/gridflow-absolute-%d.txt" % os.getpid()))
        # --local names the target explicitly: no check.
        self.ok("get", "../escape.txt", "-l", "here.txt", cwd=inner)
        self.ok("get", "../escape.txt", "--allowUnsafeTraversal", cwd=inner)
        self.assertEqual(self.read("escape.txt"), b"out")

    def test_interrupt_deletes_the_partial_upload(self):
        argv = [CLI, "put", "partial.bin", "--local", "-", "-d", self.db_name]
        process = subprocess.Popen(argv, cwd=self.dir, env=tool_environment(), stdin=subprocess.PIPE,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        # stdin never ends: the upload can only stop because of the interrupt.
        def feed():
            try:
                while True:
                    process.stdin.write(os.urandom(256 * 1024))
                    process.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            # More than one insert batch (4 MiB) is on the server: the upload is under way and unfinished.
            deadline = time.monotonic() + 30
            while self.db["fs.chunks"].count_documents({}) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertGreater(self.db["fs.chunks"].count_documents({}), 0)
            process.send_signal(signal.SIGINT)
            self.assertEqual(process.wait(timeout=30), 130)
        finally:
            if process.poll() is None:
                process.kill()
            feeder.join()
            process.stdin.close()
        stderr = process.stderr.read().decode()
        process.stderr.close()
        self.assertIn("gridflow: put 'partial.bin': interrupted\n", stderr)
        self.assertTrue(stderr.endswith("gridflow: interrupted\n"), stderr)
        self.assertEqual(self.files(), [])
        self.assertEqual(self.db["fs.chunks"].count_documents({}), 0)

    # --- fsck ----------------------------------------------------------------------------------------

    def test_fsck_clean(self):
        self.write("a.bin", os.urandom(3000))
        self.write("e.bin", b"")
        self.ok("put", "a.bin", "e.bin", "--chunk-size", "1K")
        result = self.ok("fsck")
        self.assertEqual(result.out,
                         "fsck: 2 file(s) checked, 0 corrupt, 0 orphan chunk(s) of 0 missing file(s)\n")

    def test_fsck_finds_and_repairs_orphans(self):
        self.write("a.bin", os.urandom(3000))
        self.ok("put", "a.bin", "--chunk-size", "1K")
        orphan = ObjectId()
        self.db["fs.chunks"].insert_many([{"files_id": orphan, "n": n, "data": b"x" * 10} for n in range(3)])
        result = self.fails(1, "fsck")
        self.assertIn("orphan chunks: 3 chunk(s) of files_id { \"$oid\" : \"%s\" }" % orphan, result.out)
        self.assertIn("3 orphan chunk(s) of 1 missing file(s)", result.out)
        result = self.ok("fsck", "--repair")
        self.assertIn("repaired: deleted 3 orphan chunk(s)", result.out)
        self.assertEqual(self.db["fs.chunks"].count_documents({"files_id": orphan}), 0)
        self.assertEqual(self.db["fs.chunks"].count_documents({}), 3)
        self.assertIn("0 orphan chunk(s)", self.ok("fsck").out)

    def test_fsck_reports_corrupt_files_and_never_repairs_them(self):
        self.write("missing.bin", os.urandom(5000))
        self.write("short.bin", os.urandom(5000))
        self.write("extra.bin", os.urandom(2048))
        self.write("fine.bin", os.urandom(5000))
        self.ok("put", "missing.bin", "short.bin", "extra.bin", "fine.bin", "--chunk-size", "1K")
        ids = {d["filename"]: d["_id"] for d in self.files()}
        chunks = self.db["fs.chunks"]
        chunks.delete_many({"files_id": ids["missing.bin"], "n": {"$in": [1, 2]}})
        chunks.update_one({"files_id": ids["short.bin"], "n": 0}, {"$set": {"data": b"tiny"}})
        chunks.insert_one({"files_id": ids["extra.bin"], "n": 2, "data": b"more"})
        before = chunks.count_documents({})
        result = self.fails(1, "fsck", "--repair")
        self.assertIn("corrupt file 'missing.bin' (_id { \"$oid\" : \"%s\" }): chunks n=1..2 missing"
                      % ids["missing.bin"], result.out)
        self.assertIn("corrupt file 'short.bin'", result.out)
        self.assertIn("chunk n=0 is short: 4 bytes, expected 1024", result.out)
        self.assertIn("corrupt file 'extra.bin'", result.out)
        self.assertIn("extra chunk n=2", result.out)
        self.assertNotIn("'fine.bin'", result.out)
        self.assertIn("4 file(s) checked, 3 corrupt", result.out)
        self.assertEqual(chunks.count_documents({}), before)

    # --- PyMongo interoperability --------------------------------------------------------------------

    def test_files_put_by_the_cli_read_by_pymongo(self):
        data = os.urandom(1_234_567)
        self.write("cli.bin", data)
        self.ok("put", "cli.bin")
        self.assertEqual(sha256(self.bucket().open_download_stream_by_name("cli.bin").read()), sha256(data))
        self.ok("put_id", "cli.bin", '"custom"', "--local", "cli.bin", "--prefix", "other")
        self.assertEqual(self.bucket("other").open_download_stream("custom").read(), data)

    def test_files_put_by_pymongo_read_by_the_cli(self):
        data = os.urandom(2_000_001)
        file_id = self.bucket().upload_from_stream("py.bin", data, chunk_size_bytes=100_000,
                                                   metadata={"contentType": "x/y"})
        self.bucket().upload_from_stream_with_id(7, "seven.bin", b"7" * 7)
        self.assertEqual(self.ok("list").out, "py.bin\t2000001\nseven.bin\t7\n")
        self.ok("get", "py.bin")
        self.assertEqual(sha256_file(os.path.join(self.dir, "py.bin")), sha256(data))
        self.assertEqual(self.ok("get_id", '{"$oid": "%s"}' % file_id, "-l", "-").stdout, data)
        self.assertEqual(self.ok("cat", "seven.bin").stdout, b"7" * 7)
        self.assertIn("0 corrupt", self.ok("fsck").out)

    def test_authentication_flags_never_print_the_password(self):
        secret = "Pa55-w0rd%secret"
        self.write("a.txt", b"a")
        # The dev server has no users: whatever it answers, the run fails and names the user, never the password.
        result = self.run_cli("put", "a.txt", "--username", "alice", "--password", secret,
                              "--authenticationDatabase", "admin", "--authenticationMechanism", "SCRAM-SHA-256")
        if result.returncode == 0:
            self.skipTest("the server accepted alice without such a user (MONGODB_URI has no auth?)")
        self.assertEqual(result.returncode, 1, result.err)
        self.assertIn("alice", result.err)
        self.assertNotIn(secret, result.err + result.out)
        self.assertNotIn("Pa55", result.err + result.out)
        # A password in --uri is masked in every message too.
        host_port = URI.split("://", 1)[1].split("/", 1)[0]
        result = self.fails(1, "list", "--uri", "mongodb://alice:%s@%s/" % ("Pa55w0rdInUri", host_port), "-v")
        self.assertNotIn("Pa55w0rdInUri", result.err + result.out)
        self.fails(2, "list", "--password", secret)
        self.fails(2, "list", "--username", "alice")
        self.fails(2, "list", "--username", "alice", "--password", "x", "--authenticationMechanism", "PLAIN2")

    def test_tls_flags_through_stunnel(self):
        stunnel = next((p for p in ("/usr/bin/stunnel4", "/usr/bin/stunnel") if os.access(p, os.X_OK)), None)
        if stunnel is None:
            self.fail("stunnel4 is missing: tools/bootstrap installs it")
        backend = URI.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        if "@" in backend or "tls=true" in URI or "ssl=true" in URI:
            self.skipTest("MONGODB_URI needs TLS or authentication itself; stunnel's plain connection cannot work")
        tls = os.path.join(self.dir, "tls")
        os.mkdir(tls)

        def sh(command):
            subprocess.run(command, shell=True, cwd=tls, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)

        ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1"
        sh("openssl req -x509 %s -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=cli-test-ca" % ec)
        sh("openssl req -x509 %s -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca" % ec)
        with open(os.path.join(tls, "server.ext"), "w") as ext:
            ext.write("subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n")
        sh("openssl req -new %s -nodes -keyout server.key -out server.csr -subj /CN=localhost" % ec)
        sh("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile server.ext -out server.pem")
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        with open(os.path.join(tls, "stunnel.conf"), "w") as conf:
            conf.write("foreground = yes\npid =\n[mongo]\naccept = 127.0.0.1:%d\nconnect = %s\n"
                       "cert = %s/server.pem\nkey = %s/server.key\n" % (port, backend, tls, tls))
        proc = subprocess.Popen([stunnel, os.path.join(tls, "stunnel.conf")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 15
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        self.fail("stunnel did not start")
                    time.sleep(0.05)
            data = os.urandom(700_001)
            self.write("secure.bin", data)
            flags = ["--host", "localhost", "--port", str(port), "--ssl", "--sslCAFile", os.path.join(tls, "ca.pem")]
            env = {"MONGODB_URI": ""}
            self.ok("put", "secure.bin", *flags, env=env)
            self.assertEqual(self.ok("list", *flags, env=env).out, "secure.bin\t700001\n")
            self.ok("get", "secure.bin", "-l", "back.bin", *flags, env=env)
            self.assertEqual(sha256_file(os.path.join(self.dir, "back.bin")), sha256(data))
            # The same through --uri options.
            uri = "mongodb://localhost:%d/?tls=true&tlsCAFile=%s" % (port, os.path.join(tls, "ca.pem"))
            self.assertEqual(self.ok("list", "--uri", uri, env=env).out, "secure.bin\t700001\n")
            # An unknown CA, and a host name the certificate does not name (unless allowed).
            other = ["--host", "localhost", "--port", str(port), "--ssl", "--sslCAFile",
                     os.path.join(tls, "other.pem")]
            self.assertIn("certificate verify failed", self.fails(1, "list", *other, env=env).err)
            by_ip = ["--host", "127.0.0.1", "--port", str(port), "--ssl", "--sslCAFile", os.path.join(tls, "ca.pem")]
            self.assertIn("mismatch", self.fails(1, "list", *by_ip, env=env).err)
            self.assertEqual(self.ok("list", *by_ip, "--sslAllowInvalidHostnames", env=env).out,
                             "secure.bin\t700001\n")
            self.assertEqual(self.ok("list", *other, "--sslAllowInvalidCertificates",
                                     "--sslAllowInvalidHostnames", env=env).out, "secure.bin\t700001\n")
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    if not CLI or not os.access(CLI, os.X_OK):
        sys.exit("GRIDFLOW_CLI must name the built gridflow binary")
    unittest.main(verbosity=2)
