/**
 * A batch's dependency graph in SVG. Tasks with dependencies or dependents are laid out in layers by
 * dagre (edges point from a dependency to its dependent); tasks with neither sit in a grid below, so a
 * batch of many independent tasks stays compact. The layout is computed when the graph's shape
 * changes, not when a state does: state changes only recolour nodes.
 */
import dagre from '@dagrejs/dagre';
import { useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { GraphNode, TaskState } from '../types';
import { STATE_COLOURS } from '../ui';

const W = 132;
const H = 28;
const GAP = 12;

interface Laid {
  width: number;
  height: number;
  at: Map<string, { x: number; y: number }>;
  edges: { from: string; to: string; points: { x: number; y: number }[] }[];
}

function layout(nodes: GraphNode[], edges: [string, string][]): Laid {
  const known = new Set(nodes.map((n) => n.id));
  const linked = new Set<string>();
  const drawn = edges.filter(([a, b]) => known.has(a) && known.has(b));
  for (const [a, b] of drawn) linked.add(a).add(b);

  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 8, ranksep: 48, marginx: 8, marginy: 8 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) if (linked.has(n.id)) g.setNode(n.id, { width: W, height: H });
  for (const [a, b] of drawn) g.setEdge(a, b);
  dagre.layout(g);

  const at = new Map<string, { x: number; y: number }>();
  let width = linked.size ? (g.graph().width ?? 0) : 0;
  let height = linked.size ? (g.graph().height ?? 0) : 0;
  for (const id of linked) {
    const p = g.node(id);
    at.set(id, { x: p.x - W / 2, y: p.y - H / 2 });
  }
  const out = drawn.map(([from, to]) => ({ from, to, points: g.edge(from, to).points ?? [] }));

  const loose = nodes.filter((n) => !linked.has(n.id));
  if (loose.length) {
    const cols = Math.max(1, Math.min(loose.length, Math.floor(Math.max(width, 900) / (W + GAP))));
    const top = height + (height ? 24 : 8);
    loose.forEach((n, i) =>
      at.set(n.id, { x: 8 + (i % cols) * (W + GAP), y: top + Math.floor(i / cols) * (H + GAP) }),
    );
    width = Math.max(width, 16 + cols * (W + GAP));
    height = top + Math.ceil(loose.length / cols) * (H + GAP) + 8;
  }
  return { width, height, at, edges: out };
}

export function DependencyGraph({
  nodes,
  edges,
  states,
  selected,
  onSelect,
}: {
  nodes: GraphNode[];
  edges: [string, string][];
  /** Current state of each node (live), over the state in `nodes`. */
  states: (id: string) => TaskState;
  selected?: string;
  onSelect: (id: string) => void;
}) {
  const laid = useMemo(() => layout(nodes, edges), [nodes, edges]);
  const box = useRef<HTMLDivElement>(null);
  const [room, setRoom] = useState(1100);
  useLayoutEffect(() => setRoom(box.current?.clientWidth || 1100), []);
  const fit = Math.min(1, (room - 4) / Math.max(1, laid.width));
  // At first the labels stay readable (scroll for the rest); "fit" shows the whole width.
  const [zoom, setZoom] = useState<number | 'start' | 'fit'>('start');
  const scale = zoom === 'fit' ? fit : zoom === 'start' ? Math.max(0.75, fit) : zoom;
  return (
    <div class="graph">
      <div class="graph-tools">
        <button class="quiet" onClick={() => setZoom('fit')}>
          fit
        </button>
        <button class="quiet" onClick={() => setZoom(1)}>
          1:1
        </button>
        <button class="quiet" onClick={() => setZoom(scale * 1.25)}>
          +
        </button>
        <button class="quiet" onClick={() => setZoom(scale / 1.25)}>
          −
        </button>
        <span class="muted">
          {nodes.length} tasks, {edges.length} dependencies
        </span>
      </div>
      <div class="graph-scroll" ref={box}>
        <svg
          data-testid="graph"
          width={laid.width * scale}
          height={laid.height * scale}
          viewBox={`0 0 ${laid.width} ${laid.height}`}
        >
          <defs>
            <marker
              id="arrow"
              viewBox="0 0 8 8"
              refX="8"
              refY="4"
              markerWidth="6"
              markerHeight="6"
              orient="auto"
            >
              <path d="M0,0 L8,4 L0,8 z" fill="#94a3b8" />
            </marker>
          </defs>
          {laid.edges.map((e) => (
            <polyline
              key={`${e.from}>${e.to}`}
              points={e.points.map((p) => `${p.x},${p.y}`).join(' ')}
              fill="none"
              stroke="#94a3b8"
              stroke-width="1.2"
              marker-end="url(#arrow)"
            />
          ))}
          {nodes.map((n) => {
            const p = laid.at.get(n.id)!;
            const state = states(n.id);
            return (
              <g
                key={n.id}
                class={n.id === selected ? 'node selected' : 'node'}
                transform={`translate(${p.x},${p.y})`}
                data-testid="graph-node"
                data-task={n.id}
                data-state={state}
                onClick={() => onSelect(n.id)}
              >
                <title>{`${n.id} (${n.module}): ${state}`}</title>
                <rect width={W} height={H} rx="5" fill={STATE_COLOURS[state]} />
                <text x={W / 2} y={H / 2 + 4} text-anchor="middle">
                  {n.id.length > 18 ? `${n.id.slice(0, 17)}…` : n.id}
                </text>
              </g>
            );
          })}
        </svg>
      </div>
    </div>
  );
}
