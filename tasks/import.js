// The original taskmaster's sample task: it finishes later, with this.done(), and reports progress
// on the way. Params: [{ ticker }].
module.exports = function importPrices(options) {
  const ticker = options.ticker;
  this.log.info(`importing ${ticker}`);
  this.progress(0.5); // a fraction from 0 to 1
  setTimeout(() => {
    this.progress(1);
    this.done({ ticker, rows: 250 + ticker.length * 7 });
  }, 300);
};
