// A TypeScript task: a fake but deterministic analysis of one ticker (the same ticker always gives
// the same numbers). Params: [ticker, days?].
export interface Analysis {
  ticker: string;
  days: number;
  average: number;
  change: number;
  trend: 'up' | 'down';
}

export default function analyze(ticker: string, days = 30): Analysis {
  if (typeof ticker !== 'string' || ticker === '') throw new Error('analyze: params[0] must be a ticker');
  // A small linear congruential generator seeded by the ticker stands in for market data.
  let seed = [...ticker].reduce((s, c) => (s * 31 + c.charCodeAt(0)) % 2147483648, 7);
  const prices: number[] = [];
  for (let i = 0; i < days; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    prices.push(100 + (seed % 2000) / 100);
  }
  const average = prices.reduce((a, b) => a + b, 0) / prices.length;
  const change = prices[prices.length - 1] - prices[0];
  return {
    ticker,
    days,
    average: Math.round(average * 100) / 100,
    change: Math.round(change * 100) / 100,
    trend: change >= 0 ? 'up' : 'down',
  };
}
