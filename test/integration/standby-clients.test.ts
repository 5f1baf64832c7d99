/**
 * Clients of an active master and its standby, all real: two masters on one database (the second
 * is a standby), runners and feeders given several URLs. A client given the standby first, or only
 * the standby, reaches the active master; a feeder whose add lost its answer sends the same add
 * again and gets it acknowledged once; a runner refuses work from a master of an older epoch.
 */
import type { Socket } from 'socket.io-client';
import type { Feeder } from '../../feeder/feeder';
import { startFeeder } from '../helpers/clients';
import { startMaster } from '../helpers/cluster';
import { testDbName } from '../helpers/db';

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** The feeder's Socket.IO connection, to cut its transport as a network would. */
function connectionOf(feeder: Feeder): Socket {
  return (feeder as unknown as { socket: Socket }).socket;
}

describe('a feeder whose add lost its answer', () => {
  test('sends the same add again once reconnected, and the master acknowledges it without a second copy', async () => {
    const master = await startMaster(testDbName('lost-add'));
    closers.push(() => master.close());
    const feeder = await startFeeder(master.url);
    closers.push(() => feeder.close());
    const socket = connectionOf(feeder);
    const sent: unknown[] = [];
    socket.onAnyOutgoing((event: string, req: unknown) => {
      if (event === 'tasks:add') sent.push(req);
    });
    // The transport closes the moment the master's answer arrives, before the feeder reads it: the
    // tasks are stored, and the feeder cannot know.
    const engine = socket.io.engine;
    const cut = (packet: { type: string; data?: unknown }) => {
      if (
        packet.type === 'message' &&
        typeof packet.data === 'string' &&
        packet.data.startsWith('3/feeder,')
      ) {
        engine.off('packet', cut);
        engine.close();
      }
    };
    engine.on('packet', cut);
    const refs = await feeder.add([
      { id: 'lost-1', module: 'ok', params: [1] },
      { id: 'lost-2', module: 'ok', params: [2] },
    ]);
    expect(refs.map((r) => r.id)).toEqual(['lost-1', 'lost-2']);
    expect(sent).toHaveLength(2);
    expect(sent[1]).toEqual(sent[0]);
    expect((sent[0] as { addKey?: unknown }).addKey).toEqual(expect.any(String));
  });
});
