/* lcbench: the load generator (see lcbench.h, and `lcbench --help`). */
#include "bench/lcbench/lcbench.h"

int main(int argc, char **argv) { return lcb_main(argc, argv); }
