#!/usr/bin/env node
// Uploads a file to ferry with tus-js-client (the tus project's JavaScript client) under node and prints the
// stored file's id. CHUNK_BYTES 0 sends the whole file in one PATCH.
//
//   NODE_PATH=node_modules node tusjs_upload.cjs http://127.0.0.1:8000/files/tus/ FILE CHUNK_BYTES
"use strict";
const fs = require("node:fs");
const tus = require("tus-js-client");

const [url, path, chunk] = process.argv.slice(2);
const file = fs.readFileSync(path);
const upload = new tus.Upload(file, {
  endpoint: url,
  chunkSize: Number(chunk) || Infinity,
  retryDelays: Array(60).fill(1000),
  metadata: { filename: "tusjs.bin", filetype: "application/octet-stream" },
  onError(err) {
    console.error(`tus-js-client failed: ${err}`);
    process.exit(1);
  },
  onSuccess(payload) {
    console.log(payload.lastResponse.getHeader("Ferry-File-Id"));
  },
});
upload.start();
