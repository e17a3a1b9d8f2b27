pub struct Point { x: i32 }
enum Shape { Circle, Square }
pub trait Draw { fn draw(&self); }
impl Draw for Point {
    fn draw(&self) {}
}
impl Point {
    pub fn new() -> Self { Point { x: 0 } }
}
mod inner { pub fn helper() {} }
fn main() {}
macro_rules! my_macro { () => {}; }
