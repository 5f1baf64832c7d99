// Builds the dashboard into dashboard/dist: static files the master serves at `/`. Everything is
// bundled (no CDN), and asset URLs are relative so the page works under any path prefix.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root,
  base: './',
  logLevel: 'warn',
  // Preact through esbuild's automatic JSX runtime: no Babel preset needed.
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 400,
  },
});
