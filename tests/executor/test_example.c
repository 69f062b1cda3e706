/* Runs examples/run_in_executor (the spec's run_in_executor example) and checks what it prints. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/loop_fixture.h"

static const char *example_path;

static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 8192, n = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0)
        n += k;
    *status = pclose(p);
    return out;
}

/* Checks "<label> <200 hex digits>\n" at *line and advances past it. */
static void check_bytes_line(char **line, const char *label)
{
    size_t len = strlen(label);
    assert_int_equal(strncmp(*line, label, len), 0);
    char *p = *line + len;
    assert_int_equal(*p++, ' ');
    for (int i = 0; i < 200; i++, p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    assert_int_equal(*p++, '\n');
    *line = p;
}

static void test_example_run_in_executor(void **state)
{
    (void)state;
    int status;
    char *out = run(example_path, &status);
    assert_int_equal(status, 0);
    char *line = out;
    check_bytes_line(&line, "default thread pool");
    check_bytes_line(&line, "custom thread pool");
    /* sum(i * i for i in range(10 ** 7)), as Python prints it. */
    assert_string_equal(line, "custom thread pool (cpu-bound) 333333283333335000000\n");
    free(out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: example_test RUN_IN_EXECUTOR\n");
        return 2;
    }
    example_path = argv[1];
    lc_test_watchdog(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_run_in_executor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
