/**
 * Where each selector's limit comes from: the master's `--limit` options, and the `limits` collection
 * (written by `PUT /api/limits/SELECTOR`, read at every activation, so a limit set at run time
 * survives a restart and a takeover). A stored limit replaces the option's for its selector; deleting
 * it brings the option's back. A stored `none` lifts an option's limit until it is deleted.
 */
import { TaskmasterError } from '../../protocol/errors';
import { limitRules, type LimitRule } from './limit-spec';

export type LimitSource = 'option' | 'stored';

export interface LimitEntry extends LimitRule {
  source: LimitSource;
  /** With a stored limit: the option's, which it replaces. */
  replaces?: string;
}

export class LimitBook {
  private readonly options: ReadonlyMap<string, LimitRule>;
  private readonly stored = new Map<string, LimitRule>();

  /** `texts`: the `--limit` values, checked by the option's schema already. */
  constructor(texts: readonly string[]) {
    const r = limitRules(texts);
    if (!r.ok) throw new TaskmasterError('EVALIDATION', `limits[${r.index}]: ${r.message}`);
    this.options = r.value;
  }

  /** The stored limits, as read from the database (replacing what was held). */
  load(rules: Iterable<LimitRule>): void {
    this.stored.clear();
    for (const r of rules) this.stored.set(r.selector, r);
  }

  put(rule: LimitRule): void {
    this.stored.set(rule.selector, rule);
  }

  /** Whether a stored limit was there to delete. */
  delete(selector: string): boolean {
    return this.stored.delete(selector);
  }

  /** The limit in effect for `selector`, and where it comes from. */
  get(selector: string): LimitEntry | undefined {
    const s = this.stored.get(selector);
    const o = this.options.get(selector);
    if (s) return { ...s, source: 'stored', ...(o ? { replaces: o.spec } : {}) };
    return o ? { ...o, source: 'option' } : undefined;
  }

  /** Every selector's limit in effect, `none` included, sorted by selector. */
  entries(): LimitEntry[] {
    const selectors = new Set([...this.options.keys(), ...this.stored.keys()]);
    return [...selectors].sort().map((s) => this.get(s) as LimitEntry);
  }
}
