// A TypeScript task: a (fake, deterministic) analysis of one ticker's prices.
export default function analyze(ticker: string, days = 30): { ticker: string; days: number; average: number; trend: string } {
  let seed = [...ticker].reduce((s, c) => s * 31 + c.charCodeAt(0), 7) % 1000;
  const prices: number[] = [];
  for (let i = 0; i < days; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    prices.push(100 + (seed % 2000) / 100);
  }
  const average = prices.reduce((a, b) => a + b, 0) / prices.length;
  const trend = prices[prices.length - 1] >= prices[0] ? 'up' : 'down';
  return { ticker, days, average: Math.round(average * 100) / 100, trend };
}
