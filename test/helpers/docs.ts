/**
 * The project's documentation as the tests read it: README.md and the files of docs/, their sections,
 * their headings' anchors (as GitHub and npm render them) and their relative links. Fenced code is
 * left out of headings and links: a `# comment` in a shell block is not a heading.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './cluster';

/** README.md and every docs/*.md, as paths relative to the repository. */
export function docFiles(): string[] {
  const docs = fs
    .readdirSync(path.join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/** One documentation file's text (`README.md`, `docs/configuration.md` …). */
export function readDoc(file: string): string {
  return fs.readFileSync(path.join(ROOT, file), 'utf8');
}

/** The text with fenced code blocks blanked out (their lines kept, so line numbers stay). */
export function withoutCode(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[ \t]*$/gm, (block) => block.replace(/[^\n]/g, ''));
}

/**
 * The part of a document from a heading line to the next heading of the same or a higher level
 * (`# Title` gives the whole file).
 */
export function section(markdown: string, heading: string, file = 'the document'): string {
  const text = `\n${markdown}`;
  const start = text.indexOf(`\n${heading}\n`);
  if (start < 0) throw new Error(`${file} has no heading "${heading}"`);
  const level = heading.split(' ')[0];
  const rest = text.slice(start + heading.length + 2);
  const next = withoutCode(rest).search(new RegExp(`^#{1,${level.length}} `, 'm'));
  return next < 0 ? rest : rest.slice(0, next);
}

/** A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces as hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor a document's headings give, repeated headings numbered as GitHub numbers them. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of withoutCode(markdown).matchAll(/^#{1,6} (.+)$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a document (`[text](target)`), outside code; web and mail links left out. */
export function relativeLinks(markdown: string): string[] {
  // Inline code spans may hold brackets and parentheses that are no link.
  const text = withoutCode(markdown).replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((m) => m[1])
    .filter((target) => !/^[a-z][a-z+.-]*:/i.test(target));
}

/** The code of a document's fenced blocks whose info string is `LANG TAG` (```sh first-hour), in order. */
export function taggedBlocks(markdown: string, lang: string, tag: string): string[] {
  const fence = new RegExp(`^\`\`\`${lang} ${tag}\\n([\\s\\S]*?)^\`\`\`$`, 'gm');
  return [...markdown.matchAll(fence)].map((m) => m[1]);
}

export interface Snippet {
  kind: 'runnable' | 'task';
  /** The path its first line names (`// tasks/greet.ts`). */
  file: string;
  code: string;
}

/** A document's code blocks marked ```ts runnable (feeder scripts) and ```ts task / ```js task. */
export function readmeSnippets(markdown: string): Snippet[] {
  return [...markdown.matchAll(/^```(?:ts|js) (runnable|task)\n([\s\S]*?)^```$/gm)].map((m) => {
    const file = /^\/\/ (\S+\.[cm]?[jt]s)\n/.exec(m[2])?.[1];
    if (!file) throw new Error(`a snippet marked ${m[1]} must start with "// <path>":\n${m[2]}`);
    return { kind: m[1] as Snippet['kind'], file, code: m[2] };
  });
}
