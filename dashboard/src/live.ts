/**
 * The live side: one Socket.IO connection to the read-only `/dashboard` namespace. The overview
 * arrives whole (`dash:snapshot`, then `dash:tick` every second); task changes arrive one by one
 * (`dash:task`) and are kept by id so every open view can patch its rows and graph nodes in place.
 */
import { useEffect, useState } from 'preact/hooks';
import { io, type Socket } from 'socket.io-client';
import type { Overview, TaskView } from './types';

export type LinkState = 'connecting' | 'live' | 'down' | 'refused';

interface LiveState {
  link: LinkState;
  overview: Overview | null;
  /** Bumped on every task change, so views re-render and read `tasks`. */
  version: number;
}

let state: LiveState = { link: 'connecting', overview: null, version: 0 };
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

export function connect(token: string | null, onRefused: () => void): void {
  socket?.close();
  set({ link: 'connecting' });
  const s = io('/dashboard', { auth: token ? { token } : {}, transports: ['websocket'] });
  socket = s;
  s.on('connect', () => set({ link: 'live' }));
  s.on('disconnect', () => set({ link: 'down' }));
  s.on('connect_error', (err: Error & { data?: { code?: string } }) => {
    if (err.data?.code === 'EAUTH' || err.message.startsWith('EAUTH')) {
      set({ link: 'refused' });
      s.close();
      onRefused();
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
