#include <stdio.h>
#define MAX(a, b) ((a) > (b) ? (a) : (b))
struct point { int x; int y; };
typedef struct { int v; } value_t;
enum color { RED, GREEN };
static char *name_of(int id);
int add(int a, int b) {
    int helper(int);
    return a + b;
}
static char *name_of(int id) { return "x"; }
