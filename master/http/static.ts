/**
 * The dashboard's built files (`dashboard/dist/` in the package), served at `/`. Paths are resolved
 * inside that folder and checked to stay there (no `..`, no absolute paths, no symlinks out of it);
 * content types come from mime-types. Without a build, `/` answers a short page saying so.
 */
import fs from 'node:fs';
import type http from 'node:http';
import path from 'node:path';
import mime from 'mime-types';
import { packageRoot } from '../../common/package-root';
import { noRoute, type HttpRoutes, type HttpView } from './server';

export function dashboardDir(): string {
  return path.join(packageRoot(__dirname), 'dashboard', 'dist');
}

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Taskmaster</title></head>
<body><h1>Taskmaster</h1>
<p>The dashboard is not built: run <code>npm run build</code> in the package (it writes <code>dashboard/dist/</code>).
The API is here all the same: <a href="/api/status">/api/status</a>, <a href="/metrics">/metrics</a>.</p>
</body></html>
`;

export function staticRoutes<V extends HttpView>(routes: HttpRoutes<V>, dir = dashboardDir()): HttpRoutes<V> {
  const serve = (req: http.IncomingMessage, res: http.ServerResponse, rel: string) => {
    const root = realDir(dir);
    if (!root) {
      if (rel !== '' && rel !== 'index.html') throw noRoute(req.method, `/${rel}`);
      return send(res, 200, 'text/html; charset=utf-8', NOT_BUILT, req.method === 'HEAD');
    }
    const file = resolveInside(root, rel === '' ? 'index.html' : rel);
    if (!file) throw noRoute(req.method, `/${rel}`);
    const type = mime.contentType(path.extname(file)) || 'application/octet-stream';
    const body = fs.readFileSync(file);
    // Built assets carry a content hash in their names; index.html must be fetched afresh.
    const cache = rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache';
    res.writeHead(200, {
      'content-type': type,
      'content-length': body.length,
      'cache-control': cache,
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  return routes
    .on('GET', '/', ({ req, res }) => serve(req, res, ''), { open: true })
    .on(
      'GET',
      '/*',
      ({ req, res, params }) => {
        const rel = params['*'] ?? '';
        // The API's own paths are never files: an unknown one is an unknown route.
        if (rel.startsWith('api/')) throw noRoute(req.method, `/${rel}`);
        serve(req, res, rel);
      },
      { open: true },
    );
}

function realDir(dir: string): string | null {
  try {
    return fs.statSync(dir).isDirectory() ? fs.realpathSync(dir) : null;
  } catch {
    return null;
  }
}

/** The file `rel` names inside `root`, or null when it is not a regular file there. */
function resolveInside(root: string, rel: string): string | null {
  if (rel.includes('\0')) return null;
  const candidate = path.resolve(root, rel);
  if (candidate !== root && !candidate.startsWith(root + path.sep)) return null;
  try {
    const real = fs.realpathSync(candidate);
    if (!real.startsWith(root + path.sep) || !fs.statSync(real).isFile()) return null;
    return real;
  } catch {
    return null;
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string, head: boolean): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(head ? undefined : body);
}
