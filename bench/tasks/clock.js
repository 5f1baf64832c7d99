// Returns when it started by the wall clock (Date.now(): the clock the master schedules by).
module.exports = function () {
  return Date.now();
};
