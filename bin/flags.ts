/**
 * A command's flags and their `--help` lines from its settings (common/settings.ts), so what the
 * command reads, what it says it reads and what the docs list cannot drift apart.
 */
import type { Command } from 'commander';
import { flagUsage, type Setting } from '../common/settings';

/** Markdown as a terminal shows it: no backticks, a link as its text. */
export function plain(markdown: string): string {
  return markdown.replace(/`([^`]*)`/g, '$1').replace(/\[([^\]]*)\]\([^)]*\)/g, '$1');
}

/**
 * A setting's `--help` line: its doc, then its variable and default in parentheses. A switch says no
 * default: it is off unless given.
 */
export function helpLine(s: Setting<unknown>): string {
  const notes = [
    ...(s.env ? [`env ${s.env}`] : []),
    ...(s.arg && s.defaultText ? [`default ${plain(s.defaultText)}`] : []),
  ];
  const doc = plain(s.doc ?? '');
  return notes.length > 0 ? `${doc} (${notes.join('; ')})` : doc;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** Adds every setting to `cmd` as a flag, with its help line; repeatable ones collect an array. */
export function addFlags(cmd: Command, settings: Record<string, Setting<unknown>>): Command {
  for (const s of Object.values(settings)) {
    if (s.repeatable) cmd.option(flagUsage(s), helpLine(s), collect);
    else cmd.option(flagUsage(s), helpLine(s));
  }
  return cmd;
}
