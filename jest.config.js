// Jest runs the TypeScript sources through ts-jest, transpiling only.
// One database server serves the whole run: globalSetup starts it, every test file uses databases
// of its own on it (test/helpers/db.ts), which its environment drops when the file ends, except those
// of failed tests (test/helpers/environment.ts); globalTeardown checks nothing else is left.
'use strict';

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: '<rootDir>/test/helpers/environment.ts',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // The pack-and-install check runs on its own (`npm run test:package`, a step of .ci/run).
  testPathIgnorePatterns: [
    '/node_modules/',
    ...(process.env.TASKMASTER_PACKAGE_TEST ? [] : ['<rootDir>/test/package/']),
  ],
  transform: {
    // Transpile only (tsconfig's isolatedModules): types are checked by `npm run typecheck`, not here.
    '^.+\\.ts$': ['ts-jest', { diagnostics: false }],
  },
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  cacheDirectory: '<rootDir>/.cache/jest',
  testTimeout: 60_000,
  maxWorkers: 2,
};
