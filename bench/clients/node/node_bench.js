// node-bench: the Node.js driver peer client of bench/run (issue 6): npm `mongodb` (pinned in package-lock.json)
// and its GridFSBucket, used as its documentation shows.
//
//   node node_bench.js URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE
//
// OP upload: COUNT files of SIZE bytes named "<SCENARIO>-<i>" (files under 1 MiB are read from FILE into memory
// before the clock starts and written with end(); larger ones are piped from fs.createReadStream). OP download:
// the files with string _id "<SCENARIO>-<i>", consumed and dropped. One file at a time. Prints one JSON line like
// every client of bench/run; exit status 1 on failure.
//
// Warm-up, outside the clock and the same in every client of bench/run, for both operations: after the client and
// bucket exist, one 1-byte file named "warmup" is uploaded through the same bucket (as the MongoDB driver
// benchmarking spec does before its GridFS tasks), so that connecting, the handshake and the bucket's index check
// are done before the clock starts.
'use strict';
const fs = require('fs');
const { pipeline } = require('stream/promises');
const { Writable } = require('stream');
const { MongoClient, GridFSBucket } = require('mongodb');

function uploadBuffer(bucket, name, data) {
  const up = bucket.openUploadStream(name);
  return new Promise((resolve, reject) => {
    up.once('finish', resolve);
    up.once('error', reject);
    up.end(data);
  });
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length !== 8) throw new Error('usage: node_bench.js URI OP SCENARIO SERVER DELAY_MS SIZE COUNT FILE');
  const [uri, op, scenario, server, delay, sizeText, countText, path] = args;
  const size = Number(sizeText);
  const count = Number(countText);
  const client = new MongoClient(uri);
  await client.connect();
  const bucket = new GridFSBucket(client.db('bench'));
  const data = op === 'upload' && size < 1024 * 1024 ? fs.readFileSync(path).subarray(0, size) : null;
  await uploadBuffer(bucket, 'warmup', Buffer.alloc(1)); // the warm-up (see the header)
  let total = 0;
  const started = process.hrtime.bigint();
  for (let i = 0; i < count; ++i) {
    const name = `${scenario}-${i}`;
    if (op === 'upload') {
      if (data) {
        await uploadBuffer(bucket, name, data);
      } else {
        await pipeline(fs.createReadStream(path), bucket.openUploadStream(name));
      }
      total += size;
    } else if (op === 'download') {
      let got = 0;
      const sink = new Writable({
        write(chunk, encoding, callback) {
          got += chunk.length;
          callback();
        },
      });
      await pipeline(bucket.openDownloadStream(name), sink);
      if (got !== size) throw new Error(`${name}: read ${got} bytes, expected ${size}`);
      total += got;
    } else {
      throw new Error(`unknown operation '${op}'`);
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await client.close();
  console.log(JSON.stringify({
    client: 'node', server, scenario, op, bytes: total, files: count, delay_ms: Number(delay), seconds,
    mb_per_s: seconds > 0 ? total / 1e6 / seconds : 0, files_per_s: seconds > 0 ? count / seconds : 0,
  }));
}

main().catch((e) => {
  console.error(`node-bench: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
