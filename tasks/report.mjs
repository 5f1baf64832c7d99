// An ES module task (export default): runs once every analysis it depends on is done, and combines
// the tickers into one report. Params: [tickers].
export default async function report(tickers) {
  this.log.info(`report for ${tickers.length} tickers`);
  const sorted = [...tickers].sort();
  return {
    title: `Daily report: ${sorted.join(', ')}`,
    tickers: sorted.length,
    generatedBy: this.id,
  };
}
