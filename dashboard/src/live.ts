/**
 * The live side: one Socket.IO connection to the read-only `/dashboard` namespace. The overview
 * arrives whole (`dash:snapshot`, then `dash:tick` every second); task changes arrive one by one
 * (`dash:task`) and are kept by id so every open view can patch its rows and graph nodes in place.
 *
 * A standby master serves the dashboard's pages but refuses the live connection (ESTANDBY, naming
 * the active master): the page says so and links to the active one, and asks again every few
 * seconds, so it goes live by itself when this master takes over.
 */
import { useEffect, useState } from 'preact/hooks';
import { io, type Socket } from 'socket.io-client';
import type { Overview, TaskView } from './types';

export type LinkState = 'connecting' | 'live' | 'down' | 'refused' | 'standby';

interface LiveState {
  link: LinkState;
  /** With `link: 'standby'`: the active master's URL, null while none is known (an election). */
  active: string | null;
  overview: Overview | null;
  /** Bumped on every task change, so views re-render and read `tasks`. */
  version: number;
}

let state: LiveState = { link: 'connecting', active: null, overview: null, version: 0 };
/** How often a standby is asked again whether it took over. */
const STANDBY_RETRY_MS = 5000;
let standbyTimer: ReturnType<typeof setTimeout> | null = null;
/** The latest change of each task heard since the page opened, with when it was heard. */
const liveTasks = new Map<string, { task: TaskView; heard: number }>();
const listeners = new Set<() => void>();
const taskListeners = new Set<(t: TaskView) => void>();
let socket: Socket | null = null;
let pending = false;

function set(patch: Partial<LiveState>): void {
  state = { ...state, ...patch };
  // Many task events can arrive in one burst: render once per frame.
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    for (const l of listeners) l();
  });
}

/** The active master's URL from a standby's refusal, if it is an http(s) URL (it becomes a link). */
function activeUrl(active: unknown): string | null {
  if (typeof active !== 'string') return null;
  try {
    const url = new URL(active);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

export function connect(token: string | null, onRefused: () => void): void {
  socket?.close();
  if (standbyTimer) clearTimeout(standbyTimer);
  set({ link: 'connecting' });
  const s = io('/dashboard', { auth: token ? { token } : {}, transports: ['websocket'] });
  socket = s;
  s.on('connect', () => set({ link: 'live', active: null }));
  s.on('disconnect', () => set({ link: 'down' }));
  s.on('connect_error', (err: Error & { data?: { code?: string; active?: unknown } }) => {
    if (err.data?.code === 'EAUTH' || err.message.startsWith('EAUTH')) {
      set({ link: 'refused' });
      s.close();
      onRefused();
    } else if (err.data?.code === 'ESTANDBY') {
      set({ link: 'standby', active: activeUrl(err.data.active) });
      // A refusal stops Socket.IO's reconnecting: ask again later, in case this master took over.
      standbyTimer = setTimeout(() => {
        standbyTimer = null;
        if (socket === s) s.connect();
      }, STANDBY_RETRY_MS);
    } else set({ link: 'down' });
  });
  s.on('dash:snapshot', (o: Overview) => set({ overview: o }));
  s.on('dash:tick', (o: Overview) => set({ overview: o }));
  s.on('dash:task', (t: TaskView) => {
    liveTasks.set(t.id, { task: t, heard: performance.now() });
    for (const l of taskListeners) l(t);
    set({ version: state.version + 1 });
  });
}

export function disconnect(): void {
  if (standbyTimer) clearTimeout(standbyTimer);
  socket?.close();
  socket = null;
}

/** The live state; the component re-renders when it changes. */
export function useLive(): LiveState {
  const [, rerender] = useState(0);
  useEffect(() => {
    const l = () => rerender((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  return state;
}

/** Calls `on` for each task change while the component is mounted. */
export function useTaskEvents(on: (t: TaskView) => void): void {
  useEffect(() => {
    taskListeners.add(on);
    return () => void taskListeners.delete(on);
  }, [on]);
}

/**
 * A row fetched at `since` (performance.now()), patched with the change heard for it after that. A
 * change heard before the fetch is older than the row and must not undo it.
 */
export function fresh<T extends { id: string }>(t: T, since: number): T {
  const l = liveTasks.get(t.id);
  if (!l || l.heard < since) return t;
  return { ...t, ...l.task };
}
