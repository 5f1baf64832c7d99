#!/usr/bin/env python3
"""Syscalls per task of taskmaster's processes on a short drain:

    python3 bench/peer/strace-drain.py TASKS OUTDIR     # e.g. 10000 /tmp/strace

Runs `npm run bench:peer -- --mode drain --rounds 1 --systems taskmaster --tasks TASKS` and attaches
`strace -c` to the master (every thread, `-f`, from its start: its start-up and the adds count) and
to both runners and their children (the main thread only, the event loop's, from the moment the
runner's child exists, so their start-up is left out). Writes OUTDIR/{master,runner1,child1,
runner2,child2}.strace and the benchmark's output; divide the counts by TASKS. Needs `strace`."""
import os, subprocess, sys, time
tasks, out = sys.argv[1], sys.argv[2]
repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.makedirs(out, exist_ok=True)
env = dict(os.environ)
bench = subprocess.Popen(['timeout', '900', 'npm', 'run', 'bench:peer', '--', '--mode', 'drain', '--rounds', '1',
                          '--systems', 'taskmaster', '--tasks', tasks],
                         cwd=repo, env=env,
                         stdout=open(f'{out}/bench.out', 'w'), stderr=open(f'{out}/bench.err', 'w'))
def table():
    procs = {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            s = open(f'/proc/{p}/stat').read()
            ppid = int(s[s.rindex(')') + 2:].split()[1])
            args = open(f'/proc/{p}/cmdline').read().replace('\0', ' ')
        except OSError:
            continue
        procs[int(p)] = (ppid, args)
    return procs
def under(procs, root):
    found, queue = [], [root]
    while queue:
        q = queue.pop()
        for pid, (ppid, args) in procs.items():
            if ppid == q: found.append(pid); queue.append(pid)
    return found
traced, tracers = set(), []
def trace(name, pid, follow):
    traced.add(pid)
    tracers.append(subprocess.Popen(['strace', '-c'] + (['-f'] if follow else []) + ['-p', str(pid), '-o', f'{out}/{name}.strace'], stderr=subprocess.DEVNULL))
    print(f'{name} {pid} traced at {time.strftime("%X")}', flush=True)
deadline = time.time() + 900
runners_done = 0
while bench.poll() is None and time.time() < deadline and runners_done < 2:
    procs = table()
    mine = under(procs, bench.pid)
    for pid in mine:
        if pid in traced: continue
        ppid, args = procs[pid]
        if ' -e ' in args: continue  # a tether
        if 'taskmaster.js master' in args: trace('master', pid, True)
        if 'taskmaster.js runner' in args:
            kids = [k for k in mine if procs[k][0] == pid and 'child-main' in procs[k][1]]
            if kids:
                runners_done += 1
                trace(f'runner{runners_done}', pid, False)
                trace(f'child{runners_done}', kids[0], False)
    time.sleep(0.01)
bench.wait()
for t in tracers:
    try: t.wait(timeout=30)
    except subprocess.TimeoutExpired: t.terminate(); t.wait()
print('done', bench.returncode, flush=True)
