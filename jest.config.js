// Jest runs the TypeScript sources through swc (types are checked by `npm run typecheck`, not here).
// One database server serves the whole run: globalSetup starts it, every test file uses its own
// database on it (test/helpers/db.ts).
'use strict';

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': [
      '@swc/jest',
      {
        jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
        module: { type: 'commonjs' },
        sourceMaps: 'inline',
      },
    ],
  },
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  cacheDirectory: '<rootDir>/.cache/jest',
  testTimeout: 60_000,
  maxWorkers: 2,
};
