namespace geo {
class Shape {
public:
    virtual ~Shape();
    virtual double area() const = 0;
    double scale(double f) { return f; }
};
struct Pt { int x; };
double Shape::perimeter() const { return 0; }
}
int main() { return 0; }
template <typename T> T maxof(T a, T b) { return a > b ? a : b; }
