/**
 * The runner's result outbox on its own, with a send function standing in for the connection: what
 * goes in one `task:results` message, and that an attempt's start can travel with its result.
 */
import { silentLogger } from '../../common/logger';
import type { AttemptRef, ResultsAck } from '../../protocol/events';
import type { AttemptResult } from '../../protocol/schemas';
import { ResultOutbox } from '../../runner/outbox';

interface Sent {
  results: AttemptResult[];
  started: AttemptRef[];
}

function outbox(opts: { threshold: number; maxBytes?: number }): { box: ResultOutbox; sent: Sent[] } {
  const sent: Sent[] = [];
  const box = new ResultOutbox({
    threshold: opts.threshold,
    delayMs: 60_000,
    logger: silentLogger(),
    ...(opts.maxBytes !== undefined ? { maxBytes: () => opts.maxBytes as number } : {}),
    send: (results, started): Promise<ResultsAck> => {
      sent.push({ results, started });
      return Promise.resolve({ ok: true, accepted: results.length, stale: 0 });
    },
  });
  box.setOnline(true);
  return { box, sent };
}

const result = (id: string): AttemptResult => ({ id, attempt: 1, ok: true, result: id });

describe('result outbox', () => {
  test('a result waiting to be sent carries its attempt start, and only its own', async () => {
    const { box, sent } = outbox({ threshold: 3 });
    box.push('a#1', result('a'));
    box.push('b#1', result('b'));
    expect(box.carryStarted('a#1')).toBe(true);
    // No result of c waits: its start must go on its own.
    expect(box.carryStarted('c#1')).toBe(false);
    box.push('d#1', result('d'));
    await box.idle();
    expect(sent).toHaveLength(1);
    expect(sent[0].results.map((r) => r.id)).toEqual(['a', 'b', 'd']);
    expect(sent[0].started).toEqual([{ id: 'a', attempt: 1 }]);
  });

  test('a start is not carried by a result already sent', async () => {
    const { box, sent } = outbox({ threshold: 1 });
    box.push('a#1', result('a'));
    box.flush();
    expect(box.carryStarted('a#1')).toBe(false);
    await box.idle();
    expect(sent.map((s) => s.started)).toEqual([[]]);
  });

  test('the starts a batch carries count against its byte limit', async () => {
    const one = Buffer.byteLength(JSON.stringify(result('a')));
    // Room for both results, not for both results and a start.
    const { box, sent } = outbox({ threshold: 2, maxBytes: 2 * one + 10 });
    box.push('a#1', result('a'));
    expect(box.carryStarted('a#1')).toBe(true);
    box.push('b#1', result('b'));
    await box.idle();
    expect(sent.map((s) => s.results.map((r) => r.id))).toEqual([['a'], ['b']]);
    expect(sent[0].started).toEqual([{ id: 'a', attempt: 1 }]);
  });
});
