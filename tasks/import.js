// The original taskmaster sample: finish later with this.done(), reporting progress on the way.
module.exports = function (options) {
  const ticker = options.ticker;
  this.log.info(`importing ${ticker}`);
  this.progress(0.5);
  setTimeout(() => {
    this.progress(1);
    this.done({ ticker, rows: 250 + ticker.length * 7 });
  }, 150);
};
