/**
 * The HTTP API as the page calls it: the session's token on every request, and errors turned into
 * `ApiError` with the master's stable code. The token lives in sessionStorage: asked once, kept until
 * the tab closes.
 */
import type { BatchGraph, BatchView, RunnerView, TaskDetail, TaskView } from './types';

const TOKEN_KEY = 'taskmaster.token';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function call<T>(method: 'GET' | 'POST', path: string): Promise<T> {
  const token = savedToken();
  const headers: Record<string, string> = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers });
  const body = (await res.json().catch(() => ({}))) as { error?: { code?: string; message?: string } };
  if (!res.ok) {
    throw new ApiError(
      res.status,
      body.error?.code ?? `HTTP${res.status}`,
      body.error?.message ?? `${method} ${path}: HTTP ${res.status}`,
    );
  }
  return body as T;
}

const enc = encodeURIComponent;

export interface TaskFilter {
  state?: string;
  batch?: string;
  module?: string;
  runner?: string;
  q?: string;
}

export const api = {
  tasks(filter: TaskFilter, cursor?: string | null, limit = 100) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(filter)) if (v) qs.set(k, v);
    if (cursor) qs.set('cursor', cursor);
    qs.set('limit', String(limit));
    return call<{ tasks: TaskView[]; next: string | null }>('GET', `/api/tasks?${qs}`);
  },
  task: (id: string) => call<{ task: TaskDetail }>('GET', `/api/tasks/${enc(id)}`),
  why: (id: string, runner: string) =>
    call<{ code: string; message: string }>('GET', `/api/tasks/${enc(id)}/why?runner=${enc(runner)}`),
  retry: (id: string) => call<{ task: TaskView }>('POST', `/api/tasks/${enc(id)}/retry`),
  cancel: (id: string) => call<{ cancelled: string[] }>('POST', `/api/tasks/${enc(id)}/cancel`),
  batches: () => call<{ batches: BatchView[] }>('GET', '/api/batches'),
  batch: (id: string) => call<{ batch: BatchView; graph: BatchGraph }>('GET', `/api/batches/${enc(id)}`),
  retryFailed: (id: string) => call<{ retried: string[] }>('POST', `/api/batches/${enc(id)}/retry-failed`),
  drain: (id: string, on: boolean) =>
    call<{ runner: RunnerView }>('POST', `/api/runners/${enc(id)}/${on ? 'drain' : 'undrain'}`),
  runners: () => call<{ runners: RunnerView[] }>('GET', '/api/runners'),
};

/** Whether the session's token may act (the full token) or only look (the read-only one). */
export async function canAct(): Promise<boolean> {
  const { act } = await call<{ act: boolean }>('GET', '/api/access');
  return act;
}
