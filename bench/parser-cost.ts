/**
 * CPU of encoding and decoding typical /runner packets with Socket.IO's default parser (JSON) and,
 * when it is installed, socket.io-msgpack-parser (not a dependency: the question was whether it
 * would pay; see docs/performance.md, The runner wire):
 *
 *   npm i --no-save socket.io-msgpack-parser@3.0.2 && node bin/run-ts.js bench/parser-cost.ts
 *
 * Prints, per packet, µs of CPU per encode + decode (the best of 5 runs) and the bytes on the wire.
 */
import * as json from 'socket.io-parser';

interface Parser {
  Encoder: new () => { encode(packet: unknown): (string | Buffer)[] };
  Decoder: new () => { add(chunk: string | Buffer): void; on(event: 'decoded', fn: () => void): void };
}

const id = (i: number) => `0193f2a1-7c3e-7b2a-9d1e-${String(i).padStart(12, '0')}`;
const assign = (n: number) => ({
  type: 2,
  nsp: '/runner',
  data: [
    'task:assign',
    {
      tasks: Array.from({ length: n }, (_, i) => ({
        id: id(i),
        attempt: 1,
        module: 'noop',
        params: [],
        priority: 0,
        batch: 'b-0193f2a1',
      })),
      epoch: 1,
    },
  ],
});
const results = (n: number) => ({
  type: 2,
  nsp: '/runner',
  id: 7,
  data: [
    'task:results',
    {
      results: Array.from({ length: n }, (_, i) => ({
        id: id(i),
        attempt: 1,
        ok: true,
        result: null,
        moduleHash: 'a3f1c2d4e5b6',
      })),
      started: Array.from({ length: n }, (_, i) => ({ id: id(i), attempt: 1 })),
    },
  ],
});
const ack = { type: 3, nsp: '/runner', id: 7, data: [{ ok: true, accepted: 1, stale: 0 }] };

function cpuPerPacket(parser: Parser, packet: unknown, iterations: number): number {
  const encoder = new parser.Encoder();
  const decoder = new parser.Decoder();
  let decoded = 0;
  decoder.on('decoded', () => decoded++);
  const before = process.cpuUsage();
  for (let i = 0; i < iterations; i++) for (const part of encoder.encode(packet)) decoder.add(part);
  const used = process.cpuUsage(before);
  if (decoded !== iterations) throw new Error(`decoded ${decoded} of ${iterations}`);
  return (used.user + used.system) / iterations;
}

function bytes(parser: Parser, packet: unknown): number {
  return new parser.Encoder()
    .encode(packet)
    .reduce((n, part) => n + (typeof part === 'string' ? Buffer.byteLength(part) : part.length), 0);
}

function main(): void {
  const parsers: [string, Parser][] = [['json', json as unknown as Parser]];
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    parsers.push(['msgpack', require('socket.io-msgpack-parser') as Parser]);
  } catch {
    process.stdout.write('socket.io-msgpack-parser is not installed: the default parser only\n');
  }
  const packets: [string, unknown, number][] = [
    ['assign x1', assign(1), 50_000],
    ['assign x32', assign(32), 5_000],
    ['results x1', results(1), 50_000],
    ['results x32', results(32), 5_000],
    ['ack', ack, 50_000],
  ];
  for (const [name, packet, iterations] of packets) {
    const cells = parsers.map(([label, p]) => {
      const best = Math.min(...Array.from({ length: 5 }, () => cpuPerPacket(p, packet, iterations)));
      return `${label} ${best.toFixed(2)} µs ${bytes(p, packet)} B`;
    });
    process.stdout.write(`${name.padEnd(12)} ${cells.join(' | ')}\n`);
  }
}

main();
