/** The peer benchmark's tables: per workload and figure, each system per round, ratios and medians. */
import { median, round2, type Figures, type Mode, type System, type Workload } from './measure';

export type Measurement = { round: number; mode: Mode; system: System; error?: string } & Figures;

interface Column {
  figure: keyof Figures;
  label: string;
}

const COLUMNS: Record<Mode, Column[]> = {
  drain: [{ figure: 'jobsPerSecond', label: 'jobs/s (higher is better)' }],
  light: [
    { figure: 'p50Ms', label: 'add → result p50 ms (lower is better)' },
    { figure: 'p99Ms', label: 'add → result p99 ms (lower is better)' },
  ],
  scale: [
    { figure: 'addsPerSecond', label: 'adds/s (higher is better)' },
    { figure: 'rssMb', label: 'RSS MB of the master / of Redis (lower is better)' },
  ],
};

function title(mode: Mode, w: Workload): string {
  const n = (x: number) => x.toLocaleString('en-US');
  switch (mode) {
    case 'drain':
      return `drain: ${n(w.tasks)} no-op tasks queued, then ${w.workers} worker processes × ${w.slots} slots`;
    case 'light':
      return `light load: ${n(w.adds)} single adds at ${n(w.rate)}/s, open loop, ${w.workers} worker processes${w.feederIds ? ', feeder-chosen ids' : ''}`;
    case 'scale':
      return `scale: ${n(w.scale)} tasks queued, adds in chunks of ${n(w.chunk)}, nobody working`;
  }
}

function fmt(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '–';
  return x >= 100 ? Math.round(x).toLocaleString('en-US') : String(round2(x));
}

const ratio = (a: number | undefined, b: number | undefined): number =>
  a !== undefined && b !== undefined && b !== 0 ? a / b : NaN;
const fmtRatio = (r: number): string => (Number.isFinite(r) ? `${round2(r)}×` : '–');

/** Markdown tables, one per workload and figure; ratios are taskmaster ÷ each BullMQ. */
export function printTables(
  results: Measurement[],
  modes: Mode[],
  systems: System[],
  w: Workload,
  out: (line: string) => void,
): void {
  const peers = systems.filter((s) => s !== 'taskmaster');
  const withRatios = systems.includes('taskmaster') ? peers : [];
  const rounds = [...new Set(results.map((r) => r.round))];
  for (const mode of modes) {
    out(`### ${title(mode, w)}`);
    for (const { figure, label } of COLUMNS[mode]) {
      out('');
      out(label);
      out('');
      const header = ['round', ...systems, ...withRatios.map((p) => `taskmaster ÷ ${p}`)];
      out(`| ${header.join(' | ')} |`);
      out(`|${header.map(() => '---').join('|')}|`);
      const value = (round: number, s: System) =>
        results.find((r) => r.round === round && r.mode === mode && r.system === s)?.[figure] as
          number | undefined;
      for (const round of rounds) {
        const cells = systems.map((s) => fmt(value(round, s)));
        const ratios = withRatios.map((p) => fmtRatio(ratio(value(round, 'taskmaster'), value(round, p))));
        out(`| ${[String(round), ...cells, ...ratios].join(' | ')} |`);
      }
      const med = (s: System) => median(rounds.map((r) => value(r, s) ?? NaN));
      const medRatios = withRatios.map((p) =>
        fmtRatio(median(rounds.map((r) => ratio(value(r, 'taskmaster'), value(r, p))))),
      );
      out(`| **median** | ${[...systems.map((s) => fmt(med(s))), ...medRatios].join(' | ')} |`);
    }
    if (systems.includes('taskmaster')) {
      const tmRuns = results.filter((r) => r.mode === mode && r.system === 'taskmaster');
      const commands = median(tmRuns.map((r) => r.dbCommandsPerTask ?? NaN));
      const documents = median(tmRuns.map((r) => r.dbDocumentsPerTask ?? NaN));
      out('');
      out(`taskmaster database writes per task (median): ${commands} commands, ${documents} documents`);
      if (mode === 'drain')
        for (const s of systems.filter((x) => x.startsWith('taskmaster'))) {
          const cpu = median(
            results.filter((r) => r.mode === mode && r.system === s).map((r) => r.runnerCpuUsPerTask ?? NaN),
          );
          out(`${s}: runner CPU per task (median, runners and their workers): ${fmt(cpu)} µs`);
        }
    }
    out('');
  }
}
