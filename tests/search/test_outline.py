from __future__ import annotations

from pathlib import Path

import pytest

from agent.tools.outline import OutlineTool, format_outline
from agent.tools.repo_map.symbols import extract_symbols, language_for_path

SAMPLES = Path(__file__).parent / "samples"

# kind name [first-last line]  first line of the definition; children indented under parents.
EXPECTED_OUTLINES = {
    "Sample.java": [
        "class A [2-8]  public class A {",
        "  constructor A [4-4]  public A(int x) { this.x = x; }",
        "  method get [5-5]  public int get() { return x; }",
        "  interface Inner [6-6]  interface Inner { void run(); }",
        "    method run [6-6]",
        "  enum Mode [7-7]  enum Mode { ON, OFF }",
    ],
    "sample.c": [
        "macro MAX [2-2]  #define MAX(a, b) ((a) > (b) ? (a) : (b))",
        "struct point [3-3]  struct point { int x; int y; };",
        "type value_t [4-4]  typedef struct { int v; } value_t;",
        "enum color [5-5]  enum color { RED, GREEN };",
        "function name_of [6-6]  static char *name_of(int id);",
        "function add [7-10]  int add(int a, int b) {",
        'function name_of [11-11]  static char *name_of(int id) { return "x"; }',
    ],
    "sample.cpp": [
        "namespace geo [1-10]  namespace geo {",
        "  class Shape [2-7]  class Shape {",
        "    method ~Shape [4-4]  virtual ~Shape();",
        "    method area [5-5]  virtual double area() const = 0;",
        "    method scale [6-6]  double scale(double f) { return f; }",
        "  struct Pt [8-8]  struct Pt { int x; };",
        "  function Shape::perimeter [9-9]  double Shape::perimeter() const { return 0; }",
        "function main [11-11]  int main() { return 0; }",
        "function maxof [12-12]  template <typename T> T maxof(T a, T b) { return a > b ? a : b; }",
    ],
    "sample.go": [
        "struct Server [3-5]  type Server struct {",
        "interface Handler [7-9]  type Handler interface {",
        "  method Serve [8-8]  Serve(req string) error",
        "type ID [11-11]  type ID int",
        "method Start [13-15]  func (s *Server) Start() error {",
        "function main [17-18]  func main() {",
    ],
    "sample.js": [
        "class Greeter [1-4]  class Greeter {",
        "  method constructor [2-2]  constructor(name) { this.name = name; }",
        '  method greet [3-3]  greet() { return "hi " + this.name; }',
        "function helper [5-5]  function helper(a) { return a; }",
        "function arrow [6-6]  const arrow = (x) => x * 2;",
        "function exported [7-7]  module.exports.exported = function () {};",
    ],
    "sample.py": [
        "class Animal [4-15]  class Animal(dict):",
        "  method __init__ [7-8]  def __init__(self, name):",
        "  method speak [11-15]  def speak(self):",
        "    function inner [12-13]  def inner():",
        "function top [18-19]  def top(x):",
    ],
    "sample.rs": [
        "struct Point [1-1]  pub struct Point { x: i32 }",
        "enum Shape [2-2]  enum Shape { Circle, Square }",
        "trait Draw [3-3]  pub trait Draw { fn draw(&self); }",
        "  method draw [3-3]",
        "impl Point [4-6]  impl Draw for Point {",
        "  method draw [5-5]  fn draw(&self) {}",
        "impl Point [7-9]  impl Point {",
        "  method new [8-8]  pub fn new() -> Self { Point { x: 0 } }",
        "module inner [10-10]  mod inner { pub fn helper() {} }",
        "  function helper [10-10]",
        "function main [11-11]  fn main() {}",
        "macro my_macro [12-12]  macro_rules! my_macro { () => {}; }",
    ],
    "sample.ts": [
        "interface Shape [1-1]  interface Shape { area(): number; }",
        "  method area [1-1]",
        "type Id [2-2]  type Id = string;",
        "enum Color [3-3]  enum Color { Red, Green }",
        "namespace Geo [4-4]  namespace Geo { export function dist(): number { return 0; } }",
        "  function dist [4-4]",
        "class Base [5-5]  abstract class Base { abstract run(): void; }",
        "  method run [5-5]",
        "class Circle [6-10]  export class Circle extends Base implements Shape {",
        "  method constructor [7-7]  constructor(private r: number) { super(); }",
        "  method area [8-8]  area(): number { return 3.14 * this.r * this.r; }",
        "  method run [9-9]  run() {}",
        "function make [11-11]  export const make = (r: number): Circle => new Circle(r);",
        "function plain [12-12]  function plain(): void {}",
    ],
    "sample.tsx": [
        "interface ButtonProps [3-3]  export interface ButtonProps { label: string; }",
        "function Button [5-7]  export function Button({ label }: ButtonProps) {",
        "class Panel [9-11]  export class Panel extends React.Component {",
        "  method render [10-10]  render() { return <div />; }",
    ],
}


@pytest.mark.parametrize("file_name", sorted(EXPECTED_OUTLINES))
def test_outline_per_language(file_name):
    source = (SAMPLES / file_name).read_bytes()
    symbols = extract_symbols(source, language_for_path(file_name))
    assert format_outline(symbols) == EXPECTED_OUTLINES[file_name]


def test_outline_tool_reports_structure(make_ctx):
    ctx = make_ctx({"pkg/sample.py": (SAMPLES / "sample.py").read_text()})
    result = OutlineTool().run({"path": "pkg/sample.py"}, ctx)
    assert result.ok
    assert result.output.splitlines()[0] == "pkg/sample.py (python, 19 lines)"
    animal = result.data["symbols"][0]
    assert (animal["kind"], animal["name"], animal["start_line"], animal["end_line"]) == (
        "class",
        "Animal",
        4,
        15,
    )
    assert [c["name"] for c in animal["children"]] == ["__init__", "speak"]
    assert animal["children"][1]["children"][0]["kind"] == "function"


def test_outline_tool_errors(make_ctx):
    ctx = make_ctx({"notes.md": "# hi\n", "empty.py": "x = 1\n"})
    tool = OutlineTool()
    assert "supported extensions" in tool.run({"path": "notes.md"}, ctx).output
    assert not tool.run({"path": "missing.py"}, ctx).ok
    assert not tool.run({"path": "../../x.py"}, ctx).ok
    assert not tool.run({}, ctx).ok
    empty = tool.run({"path": "empty.py"}, ctx)
    assert empty.ok and empty.output == "empty.py (python): no symbols found."


def test_outline_tool_caps_huge_files(make_ctx):
    ctx = make_ctx({"many.py": "".join(f"def f{i}():\n    pass\n" for i in range(450))})
    lines = OutlineTool().run({"path": "many.py"}, ctx).output.splitlines()
    assert lines[-1] == "[50 more symbols not shown]"


def test_broken_source_still_outlines(make_ctx):
    ctx = make_ctx(
        {"broken.py": "def ok():\n    pass\n\ndef broken(:\n\nclass After:\n    def m(self): pass\n"}
    )
    names = [s["name"] for s in OutlineTool().run({"path": "broken.py"}, ctx).data["symbols"]]
    assert "ok" in names and "After" in names
