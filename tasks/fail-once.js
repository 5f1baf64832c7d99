// Fails its first attempt and succeeds on the retry: the master retries a failed attempt until the
// task's maxAttempts (default 3). An error with `unrecoverable: true` would not be retried.
module.exports = function failOnce(label = 'flaky') {
  if (this.attempt === 1) {
    const err = new Error(`${label}: the first attempt fails on purpose`);
    err.code = 'EFLAKY';
    throw err;
  }
  return `${label}: succeeded on attempt ${this.attempt}`;
};
