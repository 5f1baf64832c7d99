#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's CommonJS hook, so `npx taskmaster` works right after `npm ci`.
'use strict';
require('tsx/cjs');
require('./cli.ts')
  .main(process.argv)
  .then(
    (code) => {
      if (typeof code === 'number') process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`taskmaster: ${err && err.message ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
