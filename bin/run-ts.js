#!/usr/bin/env node
// Runs a TypeScript file (bench scripts, test helpers' child processes) through tsx's CommonJS hook.
'use strict';
require('tsx/cjs');
const path = require('node:path');
const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: run-ts FILE [ARGS...]\n');
  process.exit(2);
}
process.argv.splice(1, 1);
require(path.resolve(file));
