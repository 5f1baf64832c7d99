// Returns when it started, in its own process (epoch ms, sub-millisecond): bench/limits.ts counts
// the starts in each window as the children saw them.
module.exports = function () {
  return performance.timeOrigin + performance.now();
};
