// The smallest task: the task's params are the function's arguments, the return value is the result.
module.exports = function hello(name = 'comrade') {
  this.log.info(`greeting ${name}`);
  return `Greetings, ${name}!`;
};
