/** Every runner the master knows: host, slots, modules and their hashes, workers; drain and undrain. */
import { api } from '../api';
import { useAction } from '../access';
import { useLive } from '../live';
import type { RunnerView } from '../types';

export function RunnersView() {
  const { overview } = useLive();
  const action = useAction();
  const runners = overview?.runners ?? [];
  return (
    <section class="card wide">
      <h2>Runners ({runners.length})</h2>
      {action.note}
      <table class="list" data-testid="runners">
        <thead>
          <tr>
            <th>id</th>
            <th>host and data</th>
            <th>slots in use</th>
            <th>priority slots</th>
            <th>modules</th>
            <th>workers</th>
            <th>state</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {runners.map((r) => (
            <Row key={r.id} r={r} action={action} />
          ))}
        </tbody>
      </table>
      {runners.length === 0 && <p class="muted">No runner has connected.</p>}
    </section>
  );
}

function Row({ r, action }: { r: RunnerView; action: ReturnType<typeof useAction> }) {
  return (
    <tr data-testid="runner-row" data-runner={r.id}>
      <td>
        <a href={`#/tasks?runner=${encodeURIComponent(r.id)}`}>{r.id}</a>
      </td>
      <td>
        <div>{r.hostname ?? '—'}</div>
        {r.data && Object.keys(r.data).length > 0 && <code class="small">{JSON.stringify(r.data)}</code>}
      </td>
      <td>
        <span class="meter">
          <span style={{ width: `${r.slots ? (100 * r.inUse) / r.slots : 0}%` }} />
        </span>{' '}
        {r.inUse} / {r.slots}
      </td>
      <td>
        <code class="small">{r.prioritySlots == null ? '—' : JSON.stringify(r.prioritySlots)}</code>
      </td>
      <td>
        <ul class="modules">
          {(r.modules ?? []).map((m) => (
            <li key={m.name}>
              {m.name} <code title={m.hash}>{m.hash.slice(0, 10)}</code>
            </li>
          ))}
        </ul>
      </td>
      <td class="num">{r.workers ?? '—'}</td>
      <td>
        {!r.connected ? (
          'disconnected'
        ) : r.draining ? (
          <b class="warn">draining</b>
        ) : r.idle ? (
          'idle'
        ) : (
          'working'
        )}
      </td>
      <td>
        <button
          disabled={!action.act || action.busy}
          data-testid={r.draining ? 'undrain' : 'drain'}
          onClick={() => action.run(r.draining ? 'undrain' : 'drain', () => api.drain(r.id, !r.draining))}
        >
          {r.draining ? 'Undrain' : 'Drain'}
        </button>
      </td>
    </tr>
  );
}
