/** Whether the session may act, and one way to run an action and show its outcome. */
import { createContext } from 'preact';
import { useContext, useState } from 'preact/hooks';
import { ApiError } from './api';

export const ActContext = createContext<{ act: boolean; refused: () => void }>({
  act: false,
  refused: () => {},
});

/**
 * `run(label, fn)` calls an action; the message says what came of it. A 401/403 means the token may
 * only read: the buttons turn off for the rest of the session.
 */
export function useAction() {
  const { act, refused } = useContext(ActContext);
  const [message, setMessage] = useState<{ text: string; error: boolean } | null>(null);
  const [busy, setBusy] = useState(false);
  async function run(label: string, fn: () => Promise<unknown>, done?: (r: unknown) => string) {
    setBusy(true);
    try {
      const r = await fn();
      setMessage({ text: done ? done(r) : `${label}: ok`, error: false });
    } catch (err) {
      if (err instanceof ApiError && (err.status === 401 || err.status === 403)) refused();
      const text = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
      setMessage({ text: `${label} refused — ${text}`, error: true });
    } finally {
      setBusy(false);
    }
  }
  const note = message && (
    <p class={message.error ? 'note error' : 'note'} data-testid="action-note">
      {message.text}
    </p>
  );
  return { act, busy, run, note };
}
