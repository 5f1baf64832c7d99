// An ES module task: a summary line for the tickers analysed before it.
export default async function report(tickers) {
  return `report ready for ${tickers.join(', ')}`;
}
