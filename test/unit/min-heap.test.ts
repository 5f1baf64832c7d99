import { MinHeap } from '../../common/min-heap';

describe('MinHeap', () => {
  test('pops in the order it is given, however pushes and pops interleave', () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const heap = new MinHeap<number>((a, b) => a < b);
    const model: number[] = [];
    for (let i = 0; i < 5_000; i++) {
      if (random() < 0.6) {
        const v = Math.floor(random() * 1000);
        heap.push(v);
        model.push(v);
      } else {
        model.sort((a, b) => a - b);
        expect(heap.peek()).toBe(model[0]);
        expect(heap.pop()).toBe(model.shift());
      }
      expect(heap.size).toBe(model.length);
    }
    heap.clear();
    expect([heap.size, heap.pop(), heap.peek()]).toEqual([0, undefined, undefined]);
  });
});
