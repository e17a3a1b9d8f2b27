package x;
public class A {
    private int x;
    public A(int x) { this.x = x; }
    public int get() { return x; }
    interface Inner { void run(); }
    enum Mode { ON, OFF }
}
