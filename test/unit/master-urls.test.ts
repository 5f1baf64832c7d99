/**
 * Several master URLs: how a list or comma-separated text is read, and the order a client tries the
 * masters in when one fails or a standby names the active one.
 */
import { Feeder } from '../../feeder/feeder';
import { followActive, nextMaster, parseMasterUrls, type MasterPosition } from '../../common/master-urls';
import { resolveRunnerOptions } from '../../runner/config';

describe('master URLs', () => {
  test('a list or comma-separated text gives the URLs in order, blanks trimmed and repeats kept once', () => {
    expect(parseMasterUrls('http://a:3232')).toEqual(['http://a:3232']);
    expect(parseMasterUrls(' http://a:3232 , https://b:3232')).toEqual(['http://a:3232', 'https://b:3232']);
    expect(parseMasterUrls(['http://b:1', 'http://a:1', 'http://b:1/'])).toEqual([
      'http://b:1',
      'http://a:1',
    ]);
  });

  test('a bad URL among several is named with its place; an empty entry and an empty list are refused', () => {
    expect(() => parseMasterUrls('http://a:1,htp://b:1', '--master')).toThrow(
      '--master[1]: "htp://b:1" is not an http:// or https:// URL such as http://127.0.0.1:3232',
    );
    expect(() => parseMasterUrls('http://a:1,,http://b:1')).toThrow(
      'master[1]: is empty: separate masters with single commas',
    );
    expect(() => parseMasterUrls([])).toThrow('master: must name at least one master');
    expect(() => parseMasterUrls('localhost:3232')).toThrow(
      'master: must be an http:// or https:// URL such as http://127.0.0.1:3232',
    );
  });

  test('the runner and the feeder take an array of masters and refuse a bad one by name', () => {
    expect(resolveRunnerOptions({ master: ['http://a:1', 'http://b:1'] }).master).toEqual([
      'http://a:1',
      'http://b:1',
    ]);
    expect(resolveRunnerOptions({ master: 'http://a:1,http://b:1' }).master).toEqual([
      'http://a:1',
      'http://b:1',
    ]);
    expect(() => resolveRunnerOptions({ master: ['http://a:1', 'ws://b:1'] })).toThrow(
      'invalid runner options: master[1]: "ws://b:1" is not an http:// or https:// URL',
    );
    const feeder = new Feeder({ master: ['http://127.0.0.1:9', 'http://127.0.0.2:9'], connectTimeoutMs: 10 });
    try {
      expect(feeder.masters).toEqual(['http://127.0.0.1:9', 'http://127.0.0.2:9']);
      expect(feeder.master).toBe('http://127.0.0.1:9');
    } finally {
      void feeder.close();
    }
    expect(() => new Feeder({ master: ['http://127.0.0.1:9', 'nope'] })).toThrow(
      'master[1]: "nope" is not an http:// or https:// URL',
    );
  });

  test('after a failure the next listed master is tried, round and round', () => {
    const list = ['http://a', 'http://b', 'http://c'];
    let at: MasterPosition = { current: list[0], listed: 0 };
    const tried = [at.current];
    for (let i = 0; i < 5; i++) tried.push((at = nextMaster(list, at)).current);
    expect(tried).toEqual(['http://a', 'http://b', 'http://c', 'http://a', 'http://b', 'http://c']);
  });

  test('a standby is followed to the active master it names; when that fails, the list goes on after the standby', () => {
    const list = ['http://a', 'http://b', 'http://c'];
    // b is a standby naming d, a master not in the list.
    let at: MasterPosition = { current: 'http://b', listed: 1 };
    at = followActive(list, at, 'http://d');
    expect(at).toEqual({ current: 'http://d', listed: 1 });
    // d fails (an address b advertises that this client cannot reach): on to c, not back to b,
    // which would only name d again.
    at = nextMaster(list, at);
    expect(at).toEqual({ current: 'http://c', listed: 2 });
    expect(nextMaster(list, at).current).toBe('http://a');
    // With one URL, its standby is all there is.
    expect(nextMaster(['http://b'], { current: 'http://d', listed: 0 }).current).toBe('http://b');
    // An active master that is in the list is followed at its place there.
    expect(followActive(list, { current: 'http://a', listed: 0 }, 'http://c/')).toEqual({
      current: 'http://c',
      listed: 2,
    });
  });
});
