#!/usr/bin/env node
// The `taskmaster` command. In a source checkout (bin/cli.ts next to this file) it runs the TypeScript
// through tsx's CommonJS hook, so it works right after `npm ci`; the published package has no
// TypeScript sources and runs the compiled dist/bin/cli.js.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const source = path.join(__dirname, 'cli.ts');
let cli;
if (fs.existsSync(source)) {
  require('tsx/cjs');
  cli = require(source);
} else {
  cli = require(path.join(__dirname, '..', 'dist', 'bin', 'cli.js'));
}
cli.main(process.argv).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`taskmaster: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
