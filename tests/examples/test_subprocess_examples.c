/* Runs the subprocess examples as a user would and checks what they print. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "tests/support/loop_fixture.h"

static const char *date_path;
static const char *shell_path;

static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 8192, n = 0;
    char *out = calloc(1, cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - n - 1, p)) > 0)
        n += k;
    *status = pclose(p);
    return out;
}

/* "Current date: YYYY-MM-DD HH:MM:SS". */
static void test_subprocess_date(void **state)
{
    int status;
    char *out = run(date_path, &status);
    assert_int_equal(status, 0);
    int y, mo, d, h, mi, s;
    char nl = 0;
    assert_int_equal(
        sscanf(out, "Current date: %d-%d-%d %d:%d:%d%c", &y, &mo, &d, &h, &mi, &s, &nl), 7);
    assert_true(y >= 2024);
    assert_int_equal(nl, '\n');
    free(out);
}

/* The default command fails: its exit code and its stderr; a command with output: [stdout]. */
static void test_subprocess_shell(void **state)
{
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "%s 2>&1", shell_path);
    int status;
    char *out = run(cmd, &status);
    assert_int_equal(status, 0);
    const char *head = "['ls /zzz' exited with 2]\n[stderr]\nls: ";
    if (strncmp(out, head, strlen(head)) != 0)
        fail_msg("unexpected output: %s", out);
    assert_non_null(strstr(out, "/zzz"));
    assert_null(strstr(out, "[stdout]"));
    free(out);
    snprintf(cmd, sizeof(cmd), "%s 'echo hello; exit 3'", shell_path);
    out = run(cmd, &status);
    assert_int_equal(status, 0);
    assert_string_equal(out, "['echo hello; exit 3' exited with 3]\n[stdout]\nhello\n\n");
    free(out);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: subprocess_examples_test SUBPROCESS_DATE SUBPROCESS_SHELL\n");
        return 2;
    }
    date_path = argv[1];
    shell_path = argv[2];
    lc_test_watchdog(60);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subprocess_date),
        cmocka_unit_test(test_subprocess_shell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
