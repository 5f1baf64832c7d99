/**
 * The runner's epoch fence: a message from a master older than one already heard is refused, one
 * without an epoch (a master without leases) is not judged, and the highest epoch only rises.
 */
import { EpochFence } from '../../runner/epoch-fence';

describe('epoch fence', () => {
  test('an epoch lower than the highest seen is refused, naming both; equal and higher ones pass and raise it', () => {
    const fence = new EpochFence();
    expect(fence.highest).toBeUndefined();
    expect(fence.check(3)).toEqual({ ok: true });
    expect(fence.check(3)).toEqual({ ok: true });
    expect(fence.check(2)).toEqual({ ok: false, epoch: 2, seen: 3 });
    expect(fence.highest).toBe(3);
    expect(fence.check(5)).toEqual({ ok: true });
    expect(fence.check(3)).toEqual({ ok: false, epoch: 3, seen: 5 });
    expect(fence.highest).toBe(5);
  });

  test('a message without an epoch is let through and changes nothing', () => {
    const fence = new EpochFence();
    expect(fence.check(undefined)).toEqual({ ok: true });
    expect(fence.highest).toBeUndefined();
    fence.check(4);
    expect(fence.check(undefined)).toEqual({ ok: true });
    expect(fence.highest).toBe(4);
  });

  test('epoch 0 counts: a later 0 after it passes, and anything after 1 must not be 0', () => {
    const fence = new EpochFence();
    expect(fence.check(0)).toEqual({ ok: true });
    expect(fence.check(0)).toEqual({ ok: true });
    expect(fence.check(1)).toEqual({ ok: true });
    expect(fence.check(0)).toEqual({ ok: false, epoch: 0, seen: 1 });
  });
});
