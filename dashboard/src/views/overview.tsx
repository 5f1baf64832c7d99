/** Tasks by state, throughput and failure rate, queue depth by priority, the database's backlog. */
import { useLive } from '../live';
import { Card, CountsBar, CountsList, duration } from '../ui';
import { perSecond, ThroughputChart } from './chart';

export function OverviewView() {
  const { overview: o } = useLive();
  if (!o) return <p class="muted">Waiting for the first snapshot…</p>;
  const maxReady = Math.max(1, ...o.queueByPriority.map((q) => q.ready));
  const series = perSecond(o.throughput, o.at);
  const last = series.slice(-10);
  const done = last.reduce((n, p) => n + p.done, 0);
  const failed = last.reduce((n, p) => n + p.failed, 0);
  return (
    <div class="grid">
      <Card title="Tasks by state" wide>
        <CountsBar counts={o.counts} />
        <CountsList counts={o.counts} />
      </Card>
      <Card title="Throughput (last 5 minutes)" wide>
        <p class="muted">
          last 10 s: <b data-testid="rate-done">{(done / 10).toFixed(1)}</b> done/s,{' '}
          <b>{(failed / 10).toFixed(1)}</b> failed/s, failure rate{' '}
          <b>{done + failed ? ((100 * failed) / (done + failed)).toFixed(1) : '0.0'} %</b>
        </p>
        <ThroughputChart points={series} />
      </Card>
      <Card title="Ready queue by priority">
        {(o.delayed ?? 0) > 0 && (
          <p class="muted" data-testid="delayed-count">
            <b>{o.delayed}</b> delayed (not before their runAt)
          </p>
        )}
        {o.queueByPriority.length === 0 ? (
          <p class="muted">empty</p>
        ) : (
          <table class="bars">
            <tbody>
              {o.queueByPriority.map((q) => (
                <tr key={q.priority}>
                  <th>{q.priority}</th>
                  <td>
                    <span class="hbar" style={{ width: `${(100 * q.ready) / maxReady}%` }} />
                  </td>
                  <td class="num">{q.ready}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Card>
      {o.master && (
        <Card title="Master">
          <dl class="kv">
            <dt>role</dt>
            <dd data-testid="master-role">{o.master.role}</dd>
            <dt>epoch</dt>
            <dd data-testid="master-epoch">{o.master.epoch}</dd>
            <dt>lease renewed</dt>
            <dd>
              {o.master.leaseAgeMs === null ? '-' : `${duration(o.master.leaseAgeMs)} ago`} (lease{' '}
              {duration(o.master.leaseMs)})
            </dd>
          </dl>
        </Card>
      )}
      <Card title="Database writes">
        <dl class="kv">
          <dt>write backlog</dt>
          <dd data-testid="write-backlog">{o.store.writeBacklog}</dd>
          <dt>retrying</dt>
          <dd>
            {typeof o.store.retrying === 'boolean' ? (o.store.retrying ? 'yes' : 'no') : o.store.retrying}
          </dd>
          <dt>fold backlog</dt>
          <dd>{o.store.foldBacklog}</dd>
          <dt>oldest change not in tasks</dt>
          <dd>{duration(o.store.oldestUnfoldedMs)}</dd>
        </dl>
      </Card>
      <Card title="Runners">
        <dl class="kv">
          <dt>connected</dt>
          <dd>{o.runners.filter((r) => r.connected).length}</dd>
          <dt>slots in use</dt>
          <dd>
            {o.runners.reduce((n, r) => n + r.inUse, 0)} / {o.runners.reduce((n, r) => n + r.slots, 0)}
          </dd>
          <dt>draining</dt>
          <dd>{o.runners.filter((r) => r.draining).length}</dd>
        </dl>
      </Card>
      <Card title="Newest batches">
        {o.batches.slice(0, 5).map((b) => (
          <div key={b.id} class="mini-batch" data-testid="mini-batch">
            <a href={`#/batches/${encodeURIComponent(b.id)}`} title={b.id}>
              {b.id}
            </a>
            <CountsBar counts={b.counts} total={b.total} />
          </div>
        ))}
        {o.batches.length === 0 && <p class="muted">none yet</p>}
      </Card>
    </div>
  );
}
