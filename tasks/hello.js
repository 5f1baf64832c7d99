// The smallest task: params are the function's arguments; the return value is the result.
module.exports = function (name = 'comrade') {
  this.log.info(`greeting ${name}`);
  return `Greetings, ${name}!`;
};
