/** For a queued task: pick a runner, see why that runner does not take it (`GET /api/tasks/ID/why?runner=`). */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import type { RunnerView } from '../types';

export function WhyNotRunner({ taskId }: { taskId: string }) {
  const [runners, setRunners] = useState<RunnerView[]>([]);
  const [runner, setRunner] = useState('');
  const [answer, setAnswer] = useState<string | null>(null);

  useEffect(() => {
    api.runners().then(
      (r) => setRunners(r.runners),
      () => setRunners([]),
    );
  }, [taskId]);
  useEffect(() => {
    if (!runner) return setAnswer(null);
    api.why(taskId, runner).then(
      (r) => setAnswer(`${r.code}: ${r.message}`),
      (err: unknown) => setAnswer(err instanceof ApiError ? `${err.code}: ${err.message}` : String(err)),
    );
  }, [taskId, runner]);

  if (runners.length === 0) return null;
  return (
    <p class="note" data-testid="why-runner">
      Why not on{' '}
      <select value={runner} onChange={(e) => setRunner((e.target as HTMLSelectElement).value)}>
        <option value="">a runner…</option>
        {runners.map((r) => (
          <option key={r.id} value={r.id}>
            {r.id}
          </option>
        ))}
      </select>{' '}
      <span data-testid="why-runner-answer">{answer}</span>
    </p>
  );
}
