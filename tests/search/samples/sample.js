class Greeter {
  constructor(name) { this.name = name; }
  greet() { return "hi " + this.name; }
}
function helper(a) { return a; }
const arrow = (x) => x * 2;
module.exports.exported = function () {};
