/**
 * The page: asks for a token when the master wants one (once per session), finds out whether it may
 * act, opens the live connection, and shows the view the hash names.
 */
import { useEffect, useState } from 'preact/hooks';
import { ActContext } from './access';
import { ApiError, canAct, savedToken, saveToken } from './api';
import { connect, disconnect, useLive } from './live';
import { href, useRoute } from './router';
import { BatchPage, BatchesView } from './views/batches';
import { OverviewView } from './views/overview';
import { RunnersView } from './views/runners';
import { TaskPage } from './views/task-detail';
import { TasksView } from './views/tasks';

type Access = { phase: 'checking' } | { phase: 'login'; error?: string } | { phase: 'in'; act: boolean };

export function App() {
  const [access, setAccess] = useState<Access>({ phase: 'checking' });

  async function check(): Promise<void> {
    setAccess({ phase: 'checking' });
    // Until the master says otherwise, offer the actions: a refused one turns them off.
    let act = true;
    try {
      act = await canAct();
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        const had = savedToken() !== null;
        saveToken(null);
        return setAccess({ phase: 'login', error: had ? 'That token was refused.' : undefined });
      }
      // Anything else (master restarting, a network error): show the page; the live link says more.
    }
    connect(savedToken(), () => {
      saveToken(null);
      setAccess({ phase: 'login', error: 'The live connection refused that token.' });
    });
    setAccess({ phase: 'in', act });
  }

  useEffect(() => {
    void check();
    return disconnect;
  }, []);

  if (access.phase === 'checking') return <p class="center">Connecting…</p>;
  if (access.phase === 'login')
    return (
      <Login
        error={access.error}
        onToken={(t) => {
          saveToken(t);
          void check();
        }}
      />
    );
  return (
    <ActContext.Provider value={{ act: access.act, refused: () => setAccess({ phase: 'in', act: false }) }}>
      <Shell act={access.act} />
    </ActContext.Provider>
  );
}

function Login({ error, onToken }: { error?: string; onToken: (t: string) => void }) {
  const [value, setValue] = useState('');
  return (
    <form
      class="login"
      onSubmit={(e) => {
        e.preventDefault();
        if (value) onToken(value);
      }}
    >
      <h1>Taskmaster</h1>
      <p>This master needs a token. It is kept for this browser tab only.</p>
      <input
        type="password"
        name="token"
        placeholder="token"
        autocomplete="off"
        value={value}
        onInput={(e) => setValue(e.currentTarget.value)}
        autoFocus
      />
      <button type="submit">Open</button>
      {error && <p class="error">{error}</p>}
    </form>
  );
}

const TABS = [
  ['overview', 'Overview'],
  ['runners', 'Runners'],
  ['batches', 'Batches'],
  ['tasks', 'Tasks'],
] as const;

function Shell({ act }: { act: boolean }) {
  const route = useRoute();
  const live = useLive();
  const [top = 'overview', id] = route.path;
  return (
    <>
      <header>
        <strong>Taskmaster</strong>
        <nav>
          {TABS.map(([key, label]) => (
            <a key={key} href={href([key])} class={top === key ? 'active' : ''} data-testid={`tab-${key}`}>
              {label}
            </a>
          ))}
        </nav>
        <span class="spacer" />
        {!act && (
          <span class="readonly" data-testid="read-only">
            read-only
          </span>
        )}
        <span class={`link ${live.link}`} data-testid="link">
          {live.link}
        </span>
        {savedToken() && (
          <button
            class="quiet"
            onClick={() => {
              saveToken(null);
              location.reload();
            }}
          >
            forget token
          </button>
        )}
      </header>
      {live.link === 'standby' && (
        <div class="banner" data-testid="standby">
          {live.active ? (
            <>
              This master is a standby; the active master is at{' '}
              <a href={live.active} data-testid="active-master">
                {live.active}
              </a>
              .
            </>
          ) : (
            'This master is a standby, and no active master is known yet (an election is under way).'
          )}
        </div>
      )}
      <main>
        {top === 'overview' && <OverviewView />}
        {top === 'runners' && <RunnersView />}
        {top === 'batches' && (id ? <BatchPage id={id} /> : <BatchesView />)}
        {top === 'tasks' && (id ? <TaskPage id={id} /> : <TasksView query={route.query} />)}
      </main>
    </>
  );
}
