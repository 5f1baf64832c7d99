// Waits `ms`, and appends one line per execution to the file in FAILOVER_LOG (`<task id> <start ms>`):
// bench/failover.ts counts executions per task and finds the first start after a takeover.
const fs = require('node:fs');

module.exports = async function (ms = 50) {
  const file = process.env.FAILOVER_LOG;
  if (file) fs.appendFileSync(file, `${this.id} ${Date.now()}\n`);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { ok: true };
};
