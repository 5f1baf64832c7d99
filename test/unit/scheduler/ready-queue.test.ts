/**
 * The ready queue (master/scheduler/ready-queue.ts) on its own: priority first, groups' weighted turns
 * within a priority, FIFO within a group, and only starts (`charge`) cost a group its turn.
 */
import { ReadyQueue, type Queued } from '../../../master/scheduler/ready-queue';

interface Item extends Queued {
  id: string;
}

function queue(weights: Record<string, number> = {}): ReadyQueue<Item> & { add(...x: Item[]): void } {
  const q = new ReadyQueue<Item>((g) => (g === null ? 1 : (weights[g] ?? 1))) as ReadyQueue<Item> & {
    add(...x: Item[]): void;
  };
  q.add = (...x) => x.forEach((i) => q.push(i));
  return q;
}

let seq = 0;
function item(group: string | null, priority = 0, id = `${group ?? '-'}${seq + 1}`): Item {
  return { id, group, priority, seq: ++seq };
}

/** Pops `n` tasks, each started (charged), and returns their groups. */
function start(q: ReadyQueue<Item>, n: number): (string | null)[] {
  const out: (string | null)[] = [];
  for (let i = 0; i < n; i++) {
    const x = q.pop();
    if (!x) break;
    q.charge(x);
    out.push(x.group);
  }
  return out;
}

function count(groups: (string | null)[], g: string | null): number {
  return groups.filter((x) => x === g).length;
}

describe('ready queue', () => {
  test('with one group, the order is priority (higher first) then FIFO, as a plain priority heap', () => {
    const q = queue();
    const items: Item[] = [];
    // A fixed pseudo-random sequence of priorities, pushes and pops interleaved.
    let x = 7;
    const popped: Item[] = [];
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const it = item(null, x % 5);
      items.push(it);
      q.push(it);
      if (i % 3 === 2) {
        const p = q.pop() as Item;
        q.charge(p);
        popped.push(p);
      }
    }
    // Every pop took the best of what was queued at that moment.
    const left: Item[] = [];
    for (let p = q.pop(); p; p = q.pop()) left.push(p);
    const sorted = [...left].sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    expect(left.map((i) => i.id)).toEqual(sorted.map((i) => i.id));
    expect(popped.length + left.length).toBe(items.length);
    expect(q.size).toBe(0);
  });

  test('two equally weighted groups alternate, FIFO within each, whatever was queued first', () => {
    const q = queue();
    const a = Array.from({ length: 100 }, () => item('a'));
    const b = Array.from({ length: 10 }, () => item('b'));
    q.add(...a, ...b);
    const order: Item[] = [];
    for (let i = 0; i < 20; i++) {
      const x = q.pop() as Item;
      q.charge(x);
      order.push(x);
    }
    expect(order.map((x) => x.group)).toEqual(Array.from({ length: 20 }, (_, i) => (i % 2 ? 'b' : 'a')));
    expect(order.filter((x) => x.group === 'b')).toEqual(b);
    expect(order.filter((x) => x.group === 'a')).toEqual(a.slice(0, 10));
    // b drained: a alone goes on, in its order.
    expect(q.pop()).toBe(a[10]);
  });

  test('weights: 3 to 1 gives three starts for one while both are backlogged', () => {
    const q = queue({ big: 3 });
    q.add(
      ...Array.from({ length: 400 }, () => item('big')),
      ...Array.from({ length: 400 }, () => item('small')),
    );
    const groups = start(q, 400);
    expect(count(groups, 'big')).toBe(300);
    expect(count(groups, 'small')).toBe(100);
    // Spread out, not in runs: every window of 8 starts holds 6 of big.
    for (let i = 0; i + 8 <= groups.length; i += 8) expect(count(groups.slice(i, i + 8), 'big')).toBe(6);
  });

  test('ten groups of equal weight each get a tenth of the starts', () => {
    const q = queue();
    const names = Array.from({ length: 10 }, (_, i) => `g${i}`);
    // Uneven backlogs, queued one group after the other.
    for (const [i, g] of names.entries()) q.add(...Array.from({ length: 100 * (i + 1) }, () => item(g)));
    const groups = start(q, 500);
    for (const g of names) expect(count(groups, g)).toBe(50);
  });

  test('the default group (no group) is one group among the others', () => {
    const q = queue();
    q.add(...Array.from({ length: 50 }, () => item(null)), ...Array.from({ length: 50 }, () => item('x')));
    const groups = start(q, 20);
    expect(count(groups, null)).toBe(10);
    expect(count(groups, 'x')).toBe(10);
  });

  test('a higher priority always goes first, whatever its group has had', () => {
    const q = queue({ low: 1000 });
    q.add(...Array.from({ length: 30 }, () => item('low', 1)));
    q.add(...Array.from({ length: 30 }, () => item('hot', 5)));
    // hot's lane has had every start so far, still its priority wins each time.
    const first = [];
    for (let i = 0; i < 30; i++) {
      const x = q.pop() as Item;
      q.charge(x);
      first.push(x);
    }
    expect(first.every((x) => x.priority === 5)).toBe(true);
    q.add(item('other', 3));
    expect(q.pop()?.group).toBe('other');
  });

  test('a group that drained and refills gets no credit for the time it had nothing, and waits behind nobody', () => {
    const q = queue();
    q.add(...Array.from({ length: 1000 }, () => item('busy')));
    q.add(item('light'));
    expect(start(q, 2).sort()).toEqual(['busy', 'light']);
    start(q, 200); // light has nothing: busy alone
    q.add(...Array.from({ length: 50 }, () => item('light')));
    // From here on they share: no run of 200 for light (credit), no wait for light (debt).
    const next = start(q, 20);
    expect(count(next, 'light')).toBe(10);
    expect(next.slice(0, 2)).toContain('light');
  });

  test('a task popped but not started (skipped in a pass) costs its group nothing and keeps its place', () => {
    const q = queue();
    const a = Array.from({ length: 5 }, () => item('a'));
    const b = Array.from({ length: 5 }, () => item('b'));
    q.add(...a, ...b);
    // A pass skips a's first (no runner for it now): a keeps its turn, its next task is offered.
    const skipped = q.pop() as Item;
    const s2 = q.pop() as Item;
    expect([skipped, s2]).toEqual([a[0], a[1]]);
    q.charge(s2); // a[1] started: now b's turn
    const s3 = q.pop() as Item;
    expect(s3).toBe(b[0]);
    q.charge(s3);
    q.push(skipped); // the end of the pass pushes it back
    const rest = [];
    for (let x = q.pop(); x; x = q.pop()) {
      q.charge(x);
      rest.push(x);
    }
    // Back at the head of its group, and the turns still alternate.
    expect(rest.map((x) => x.id)).toEqual([a[0], b[1], a[2], b[2], a[3], b[3], a[4], b[4]].map((x) => x.id));
  });

  test('a group whose tasks no runner could take for a while (each pass skips them all) gets no burst after', () => {
    const q = queue();
    q.add(...Array.from({ length: 300 }, () => item('a')), ...Array.from({ length: 300 }, () => item('b')));
    // 100 passes in which no runner can take a's tasks: each pass skips a's head and starts b's.
    for (let pass = 0; pass < 100; pass++) {
      const skipped: Item[] = [];
      for (let x = q.pop(); x; x = q.pop()) {
        if (x.group === 'a') skipped.push(x);
        else {
          q.charge(x);
          break;
        }
      }
      skipped.forEach((x) => q.push(x));
    }
    // Now a's tasks can go: they share again, a ahead by at most one start.
    const next = start(q, 20);
    expect(count(next, 'a')).toBeLessThanOrEqual(11);
    expect(count(next, 'a')).toBeGreaterThanOrEqual(10);
  });

  test('many groups that come and go: each newcomer has its turn, the backlogged group keeps its share, idle ones are forgotten', () => {
    const q = queue({ heavy: 2 });
    q.add(...Array.from({ length: 6000 }, () => item('heavy')));
    // 3000 one-task groups, one new every second start: each drains at once.
    const groups: (string | null)[] = [];
    for (let i = 0; i < 3000; i++) {
      q.push(item(`once-${i}`));
      groups.push(...start(q, 2));
    }
    const light = groups.filter((g) => g !== 'heavy').length;
    expect(light).toBeGreaterThanOrEqual(2999);
    expect(count(groups, 'heavy')).toBeGreaterThanOrEqual(3000 - 1);
    // The idle groups owe nothing: the queue forgets them as it goes.
    expect(q.lanes).toBeLessThanOrEqual(2 * 1024 + 2);
    q.add(...Array.from({ length: 300 }, () => item('late')));
    const after = start(q, 300);
    // 2 to 1, give or take the one-task group still queued when late arrived.
    expect(Math.abs(count(after, 'heavy') - 200)).toBeLessThanOrEqual(1);
    expect(Math.abs(count(after, 'late') - 100)).toBeLessThanOrEqual(1);
  });

  test('turns: how many groups share a priority, and the weights', () => {
    const q = queue({ a: 3 });
    const x = item('a');
    q.add(x, item('b'), item('c', 1));
    expect(q.turns(x)).toEqual({ groups: 2, weight: 3, totalWeight: 4 });
    expect(q.turns(item('d'))).toEqual({ groups: 3, weight: 1, totalWeight: 5 });
  });
});
