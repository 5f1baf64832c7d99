/**
 * The documentation holds together: every relative link in README.md and docs/*.md names a file
 * that exists and, when it names an anchor, a heading of that file; every file of docs/ is linked
 * from the README; and the package ships docs/, so the README's links work where npm shows it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from '../helpers/cluster';
import { anchors, docFiles, readDoc, relativeLinks, slug } from '../helpers/docs';

describe('the documentation', () => {
  test('every relative link in README.md and docs/ points to an existing file and heading', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const file of docFiles()) {
      for (const link of relativeLinks(readDoc(file))) {
        checked++;
        const [target, anchor] = link.split('#') as [string, string | undefined];
        const resolved =
          target === '' ? file : path.posix.normalize(path.posix.join(path.posix.dirname(file), target));
        if (!fs.existsSync(path.join(ROOT, resolved))) {
          broken.push(`${file}: ${link} (no file ${resolved})`);
          continue;
        }
        if (anchor !== undefined && resolved.endsWith('.md') && !anchors(readDoc(resolved)).has(anchor))
          broken.push(`${file}: ${link} (no heading #${anchor} in ${resolved})`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(20);
  });

  test('every file of docs/ is linked from the README', () => {
    const linked = new Set(relativeLinks(readDoc('README.md')).map((l) => l.split('#')[0]));
    const docs = docFiles().filter((f) => f !== 'README.md');
    expect(docs.length).toBeGreaterThanOrEqual(6);
    expect(docs.filter((f) => !linked.has(f))).toEqual([]);
  });

  test('headings become the anchors GitHub gives them', () => {
    expect(slug('`taskmaster status`, `taskmaster drain RUNNER_ID`')).toBe(
      'taskmaster-status-taskmaster-drain-runner_id',
    );
    expect(slug("Dependencies' results")).toBe('dependencies-results');
    expect(slug('Discovery (opt-in, after SuperCluster)')).toBe('discovery-opt-in-after-supercluster');
    expect([...anchors('# A\n\n```sh\n# not a heading\n```\n\n## A\n')]).toEqual(['a', 'a-1']);
  });

  test('the package ships docs/, so the README links resolve in the installed package', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).toContain('docs/');
  });
});
