/* Runs the example binaries and checks their output and timing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tests/support/loop_fixture.h"

static const char *hello_path;
static const char *date_path;

static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 4096, n = 0;
    char *out = calloc(1, cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0)
        n += k;
    *status = pclose(p);
    return out;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_examples_hello_world(void **state)
{
    (void)state;
    int status;
    char *out = run(hello_path, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "Hello World\n");
    free(out);
}

static void test_examples_display_date(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s 3", date_path);
    int status;
    double t0 = now();
    char *out = run(cmd, &status);
    double dt = now() - t0;
    assert_int_equal(status, 0);
    /* Dates at t = 0, 1 and 2 s, then the loop stops before 3 s. */
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3);
    assert_true(dt >= 2.0 && dt < 3.5);
    int y, mo, d, h, mi, s;
    long us;
    assert_int_equal(sscanf(out, "%d-%d-%d %d:%d:%d.%ld", &y, &mo, &d, &h, &mi, &s, &us), 7);
    assert_true(y >= 2024);
    free(out);
    snprintf(cmd, sizeof(cmd), "%s -1 2>/dev/null", date_path);
    out = run(cmd, &status);
    assert_int_not_equal(status, 0);
    free(out);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: examples_test HELLO_WORLD DISPLAY_DATE\n");
        return 2;
    }
    hello_path = argv[1];
    date_path = argv[2];
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_hello_world),
        cmocka_unit_test(test_examples_display_date),
    };
    return cmocka_run_group_tests_name("examples", tests, NULL, NULL);
}
