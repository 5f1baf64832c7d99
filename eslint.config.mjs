// Flat config. Beyond typescript-eslint's recommended rules, it guards the architecture: runner/ and
// feeder/ run on other machines and must never import master/, models/ or db/ (the database server
// the master and the tools start), nor may common/, which they share; protocol/ depends on none of the
// roles. Inside master/, the rooms keep their arrows one way: the scheduler reaches persistence only
// through the TaskStore interface (master/task-store.ts), the store knows nothing of the scheduler or
// of HTTP, and HTTP reads both but nothing reads HTTP except the composition at master/'s top.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

/** An import restriction that catches both `../master/x` and deeper relative paths to the folder. */
function forbid(folders, message) {
  return {
    group: folders.flatMap((f) => [`**/${f}`, `**/${f}/**`, `../${f}/*`, `./${f}/*`]),
    message,
  };
}

const SERVER_SIDE = forbid(
  ['master', 'models', 'db'],
  'runner/, feeder/ and common/ run on machines without the master: import protocol/ or common/ instead.',
);

/** The cron library is wrapped in one file, master/schedules/cron.ts. */
const SCHEDULES_ONLY_IN_CRON = [
  { name: 'croner', message: 'the cron library is wrapped by master/schedules/cron.ts: import that' },
];

export default defineConfig(
  {
    ignores: [
      'node_modules/',
      '.cache/',
      'coverage/',
      'dist/',
      'dashboard/dist/',
      'tools/',
      'test/fixtures/tasks/',
    ],
  },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    languageOptions: { globals: { ...globals.node } },
    rules: {
      'no-console': 'error',
      '@typescript-eslint/consistent-type-imports': [
        'error',
        { prefer: 'type-imports', fixStyle: 'inline-type-imports' },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs' },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    // The dashboard runs in the browser and talks to the master over HTTP and Socket.IO only.
    files: ['dashboard/src/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            forbid(
              ['master', 'models', 'db', 'runner', 'feeder', 'common'],
              'the dashboard is a browser page: it may share protocol/ types, nothing that runs on a server.',
            ),
          ],
        },
      ],
    },
  },
  {
    files: ['test/**'],
    languageOptions: { globals: { ...globals.jest } },
  },
  {
    files: ['bin/**', 'bench/**'],
    rules: { 'no-console': 'off' },
  },
  {
    files: ['runner/**', 'feeder/**', 'common/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: [SERVER_SIDE] }] },
  },
  {
    files: ['protocol/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            forbid(
              ['master', 'models', 'db', 'runner', 'feeder', 'common'],
              'protocol/ is the contract every role imports: types and pure functions, nothing of theirs.',
            ),
          ],
        },
      ],
    },
  },
  {
    // @typescript-eslint's form of the rule, whose allowTypeImports lets the scheduler name the
    // models' document types without loading them.
    files: ['master/scheduler/**'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              ...forbid(
                ['store', 'http'],
                'the scheduler reaches persistence through master/task-store.ts, and never HTTP.',
              ),
            },
            {
              ...forbid(
                ['models'],
                "the scheduler may name the models' types (`import type`), not load them.",
              ),
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  {
    files: ['master/store/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            forbid(
              ['scheduler', 'http'],
              'the store implements master/task-store.ts and knows nothing of the scheduler or HTTP.',
            ),
          ],
        },
      ],
    },
  },
  {
    // Schedules add their tasks through a function the composition gives them (the scheduler's add)
    // and write through the fenced collection it gives them; the cron library stays in cron.ts.
    files: ['master/schedules/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            forbid(
              ['scheduler', 'store', 'http'],
              'master/schedules/ gets the add path and its collection from master/master.ts.',
            ),
          ],
          paths: SCHEDULES_ONLY_IN_CRON,
        },
      ],
    },
  },
  {
    files: ['master/schedules/cron.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            forbid(
              ['scheduler', 'store', 'http'],
              'master/schedules/ gets the add path and its collection from master/master.ts.',
            ),
          ],
        },
      ],
    },
  },
  {
    files: ['master/*.ts'],
    ignores: ['master/master.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [forbid(['http'], 'HTTP is a room only the composition (master/master.ts) wires in.')] },
      ],
    },
  },
);
