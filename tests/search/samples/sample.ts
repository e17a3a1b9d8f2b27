interface Shape { area(): number; }
type Id = string;
enum Color { Red, Green }
namespace Geo { export function dist(): number { return 0; } }
abstract class Base { abstract run(): void; }
export class Circle extends Base implements Shape {
  constructor(private r: number) { super(); }
  area(): number { return 3.14 * this.r * this.r; }
  run() {}
}
export const make = (r: number): Circle => new Circle(r);
function plain(): void {}
