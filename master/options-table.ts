/**
 * The master's part of docs/configuration.md, written from the options' declarations: one table of
 * flags per section (MASTER_GROUPS) and one of the options only `new Master()` takes. It sits between
 * two marker comments; `npm run docs:options` rewrites it and a test fails when it is stale. Tables
 * are laid out as Prettier lays them out, so `npm run format` leaves them alone.
 */
import { defaultWords, flagUsage, type Declarations } from '../common/settings';
import { masterSettings } from './config';
import { MASTER_GROUPS, MASTER_OPTIONS } from './options';

export const OPTIONS_START =
  '<!-- options:start: written by `npm run docs:options` from the declarations gathered in master/options.ts; edit those, not this -->';
export const OPTIONS_END = '<!-- options:end -->';

/** The text between the markers (markers included) for these declarations. */
export function optionsSection(declarations: Declarations = MASTER_OPTIONS): string {
  const settings = Object.entries(masterSettings(declarations));
  const parts: string[] = [OPTIONS_START];
  for (const [group, title] of Object.entries(MASTER_GROUPS)) {
    const rows = settings
      .filter(([, s]) => s.group === group)
      .map(([key, s]) => [
        code(flagUsage(s)),
        s.env ? code(s.env) : '',
        s.defaultText ?? '',
        s.doc ?? '',
        key in declarations ? code(key) : '',
      ]);
    if (rows.length > 0)
      parts.push(`### ${title}`, table(['flag', 'environment', 'default', 'what', 'option'], rows));
  }
  const apiOnly = Object.entries(declarations)
    .filter(([, d]) => d.flag === undefined)
    .map(([key, d]) => [code(key), d.defaultText ?? defaultWords(d.default, ''), d.doc]);
  parts.push(
    '### Options only `new Master()` takes',
    'The last column above names the option of `new Master({ … })`, and the key of `GET /api/config`, ' +
      'that a flag sets; these options have no flag:',
    table(['option', 'default', 'what'], apiOnly),
    OPTIONS_END,
  );
  return parts.join('\n\n');
}

/** `markdown` with the part between the markers replaced by `section`. */
export function withOptionsSection(markdown: string, section: string = optionsSection()): string {
  const { start, end } = markers(markdown);
  return markdown.slice(0, start) + section + markdown.slice(end + OPTIONS_END.length);
}

/** The part between the markers (markers included), as the document has it now. */
export function documentedSection(markdown: string): string {
  const { start, end } = markers(markdown);
  return markdown.slice(start, end + OPTIONS_END.length);
}

function markers(markdown: string): { start: number; end: number } {
  const start = markdown.indexOf(OPTIONS_START);
  const end = markdown.indexOf(OPTIONS_END);
  if (start < 0 || end < start) throw new Error(`no "${OPTIONS_START}" … "${OPTIONS_END}" in the document`);
  return { start, end };
}

const code = (s: string): string => `\`${s}\``;

/** A Markdown table padded as Prettier pads it: every column as wide as its widest cell. */
function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows].map((r) => r.map((c) => c.replace(/\|/g, '\\|')));
  const widths = header.map((_, i) => Math.max(3, ...cells.map((r) => [...r[i]].length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => c.padEnd(widths[i] + c.length - [...c].length)).join(' | ')} |`;
  return [line(cells[0]), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join('\n');
}
