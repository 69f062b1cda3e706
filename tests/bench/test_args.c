/* lcbench's command line: wrk's own command lines parse unchanged, loopcore's options, URLs,
 * units, and the errors a user gets for a bad one. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bench/lcbench/args.h"

static lcb_config_t cfg;
static char err[512];

/* Parses a NULL-terminated list of arguments (program name added). */
static int parse_list(const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"lcbench";
    for (; *args != NULL; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    return lcb_config_parse(&cfg, argc, argv, err, sizeof(err));
}

#define PARSE(...) parse_list((const char *const[]){__VA_ARGS__, NULL})

static void assert_error(int r, const char *fragment)
{
    assert_int_equal(r, LCB_PARSE_ERROR);
    if (strstr(err, fragment) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, fragment);
}

static void test_args_wrk_command_line(void **state)
{
    (void)state;
    assert_int_equal(PARSE("-t2", "-c64", "-d10s", "--latency", "http://127.0.0.1:8080/plaintext"),
                     LCB_PARSE_OK);
    assert_int_equal(cfg.threads, 2);
    assert_int_equal(cfg.connections, 64);
    assert_true(cfg.duration == 10.0);
    assert_true(cfg.latency);
    assert_int_equal(cfg.mode, LCB_MODE_HTTP);
    assert_string_equal(cfg.scheme, "http");
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_string_equal(cfg.port, "8080");
    assert_string_equal(cfg.authority, "127.0.0.1:8080");
    assert_string_equal(cfg.path, "/plaintext");
    assert_string_equal(cfg.url, "http://127.0.0.1:8080/plaintext");
    /* The defaults (wrk's where wrk has them). */
    assert_true(cfg.timeout == 2.0);
    assert_true(cfg.rate == 0.0);
    assert_int_equal(cfg.pipeline, 1);
    assert_string_equal(cfg.method, "GET");
    assert_true(cfg.max_errors == 0.01);
    assert_false(cfg.pin);
    assert_false(cfg.json);
}

static void test_args_wrk_long_options_and_units(void **state)
{
    (void)state;
    assert_int_equal(PARSE("--threads", "4", "--connections", "1k", "--duration", "2m", "--timeout",
                           "500ms", "-H", "Accept: text/plain", "--header", "X-Trace: 1",
                           "http://example.com"),
                     LCB_PARSE_OK);
    assert_int_equal(cfg.threads, 4);
    assert_int_equal(cfg.connections, 1000);
    assert_true(cfg.duration == 120.0);
    assert_true(fabs(cfg.timeout - 0.5) < 1e-12);
    assert_int_equal(cfg.nheaders, 2);
    assert_string_equal(cfg.headers[0], "Accept: text/plain");
    assert_string_equal(cfg.headers[1], "X-Trace: 1");
    assert_string_equal(cfg.port, "80");
    assert_string_equal(cfg.authority, "example.com");
    assert_string_equal(cfg.path, "/");
    /* Defaults when nothing is given but the URL: wrk's 2 threads, 10 connections, 10 s. */
    assert_int_equal(PARSE("http://h:1/"), LCB_PARSE_OK);
    assert_int_equal(cfg.threads, 2);
    assert_int_equal(cfg.connections, 10);
    assert_true(cfg.duration == 10.0);
    /* -T and -L, wrk's short forms; -R, wrk2's. */
    assert_int_equal(PARSE("-L", "-T", "3", "-R", "10k", "http://h/"), LCB_PARSE_OK);
    assert_true(cfg.latency);
    assert_true(cfg.timeout == 3.0);
    assert_true(cfg.rate == 10000.0);
}

static void test_args_time_and_count_units(void **state)
{
    (void)state;
    double v;
    assert_int_equal(lcb_parse_time("10s", &v), 0);
    assert_true(v == 10.0);
    assert_int_equal(lcb_parse_time("1.5", &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(lcb_parse_time("250us", &v), 0);
    assert_true(fabs(v - 250e-6) < 1e-15);
    assert_int_equal(lcb_parse_time("2h", &v), 0);
    assert_true(v == 7200.0);
    assert_int_equal(lcb_parse_time("3m", &v), 0);
    assert_true(v == 180.0);
    assert_int_equal(lcb_parse_time("10x", &v), -1);
    assert_int_equal(lcb_parse_time("", &v), -1);
    assert_int_equal(lcb_parse_time("-1s", &v), -1);
    assert_int_equal(lcb_parse_count("64", &v), 0);
    assert_true(v == 64);
    assert_int_equal(lcb_parse_count("2M", &v), 0);
    assert_true(v == 2e6);
    assert_int_equal(lcb_parse_count("1.5k", &v), 0);
    assert_true(v == 1500);
    assert_int_equal(lcb_parse_count("5q", &v), -1);
}

static void test_args_loopcore_options(void **state)
{
    (void)state;
    assert_int_equal(PARSE("-t1", "-c8", "-d", "500ms", "-m", "POST", "--body", "a=1", "--pipeline",
                           "16", "--warmup", "2s", "--connect-timeout", "250ms", "--json",
                           "--percentiles", "/tmp/p.txt", "--max-errors", "0.05", "--cpus", "0,2-3",
                           "--no-progress", "http://[::1]:8080/x?y=1"),
                     LCB_PARSE_OK);
    assert_true(cfg.duration == 0.5);
    assert_string_equal(cfg.method, "POST");
    assert_string_equal(cfg.body, "a=1");
    assert_int_equal(cfg.pipeline, 16);
    assert_true(cfg.warmup == 2.0);
    assert_true(cfg.connect_timeout == 0.25);
    assert_true(cfg.json);
    assert_string_equal(cfg.percentiles_path, "/tmp/p.txt");
    assert_true(cfg.max_errors == 0.05);
    assert_true(cfg.pin);
    assert_int_equal(cfg.ncpus, 3);
    assert_int_equal(cfg.cpus[0], 0);
    assert_int_equal(cfg.cpus[1], 2);
    assert_int_equal(cfg.cpus[2], 3);
    assert_true(cfg.quiet_progress);
    assert_string_equal(cfg.host, "::1");
    assert_string_equal(cfg.port, "8080");
    assert_string_equal(cfg.authority, "[::1]:8080");
    assert_string_equal(cfg.path, "/x?y=1");
    assert_int_equal(PARSE("--hdr-out", "f.txt", "--pin", "http://h?q"), LCB_PARSE_OK);
    assert_string_equal(cfg.percentiles_path, "f.txt");
    assert_true(cfg.pin);
    assert_int_equal(cfg.ncpus, 0);
    assert_string_equal(cfg.path, "/?q");
}

static void test_args_echo_mode(void **state)
{
    (void)state;
    assert_int_equal(
        PARSE("--mode", "echo", "--size", "16k", "-c4", "-t1", "tcp://127.0.0.1:19000"),
        LCB_PARSE_OK);
    assert_int_equal(cfg.mode, LCB_MODE_ECHO);
    assert_int_equal(cfg.size, 16000);
    assert_string_equal(cfg.port, "19000");
    /* The mode follows the scheme when --mode is not given. */
    assert_int_equal(PARSE("--size", "100", "tcp://127.0.0.1:19000"), LCB_PARSE_OK);
    assert_int_equal(cfg.mode, LCB_MODE_ECHO);
    assert_int_equal(cfg.size, 100);
    assert_false(cfg.tls);
}

static void test_args_udp_mode(void **state)
{
    (void)state;
    assert_int_equal(PARSE("--size", "1200", "-c4", "-t1", "udp://127.0.0.1:19100"), LCB_PARSE_OK);
    assert_int_equal(cfg.mode, LCB_MODE_UDP);
    assert_string_equal(cfg.scheme, "udp");
    assert_string_equal(cfg.port, "19100");
    assert_int_equal(cfg.size, 1200);
    assert_false(cfg.tls);
    assert_int_equal(PARSE("--mode", "udp", "-R", "10k", "udp://[::1]:9"), LCB_PARSE_OK);
    assert_int_equal(cfg.mode, LCB_MODE_UDP);
    assert_string_equal(cfg.host, "::1");
    assert_error(PARSE("--mode", "udp", "tcp://h:1"), "--mode udp needs a udp:// URL");
    assert_error(PARSE("--mode", "echo", "udp://h:1"), "needs a tcp:// or tls:// URL");
    assert_error(PARSE("udp://h/"), "udp:// needs a port");
    assert_error(PARSE("--size", "7", "udp://h:1"), "8 to 65507");
    assert_error(PARSE("--size", "65508", "udp://h:1"), "8 to 65507");
    assert_error(PARSE("-H", "X: y", "udp://h:1"), "http mode only");
    assert_error(PARSE("--mode", "tcp", "udp://h:1"), "http, echo or udp");
    assert_int_equal(PARSE("--gso", "--pipeline", "8", "udp://h:1"), LCB_PARSE_OK);
    assert_true(cfg.gso);
    assert_int_equal(PARSE("udp://h:1"), LCB_PARSE_OK);
    assert_false(cfg.gso);
    assert_error(PARSE("--gso", "tcp://h:1"), "udp mode only");
}

static void test_args_tls_schemes(void **state)
{
    (void)state;
    assert_int_equal(PARSE("HTTPS://h/x"), LCB_PARSE_OK);
    assert_string_equal(cfg.scheme, "https");
    assert_true(cfg.tls);
    assert_int_equal(cfg.mode, LCB_MODE_HTTP);
    assert_string_equal(cfg.port, "443");
    assert_string_equal(cfg.path, "/x");
    assert_int_equal(PARSE("tls://127.0.0.1:19000"), LCB_PARSE_OK);
    assert_true(cfg.tls);
    assert_int_equal(cfg.mode, LCB_MODE_ECHO);
    assert_error(PARSE("tls://h/"), "tls:// needs a port");
    assert_error(PARSE("--mode", "echo", "https://h/"), "needs a tcp:// or tls:// URL");
    assert_int_equal(PARSE("http://h/"), LCB_PARSE_OK);
    assert_false(cfg.tls);
}

static void test_args_errors(void **state)
{
    (void)state;
    assert_error(PARSE("-t4", "-c2", "http://h/"), "connections must be >= threads");
    assert_error(PARSE("-d", "10x", "http://h/"), "invalid duration");
    assert_error(PARSE("-d", "0", "http://h/"), "invalid duration");
    assert_error(PARSE("-c", "0", "http://h/"), "invalid number of connections");
    assert_error(PARSE("-t", "1.5", "http://h/"), "invalid number of threads");
    assert_error(PARSE("-t2"), "missing URL");
    assert_error(PARSE("http://a/", "http://b/"), "unexpected argument");
    assert_error(PARSE("ftp://h/"), "unsupported URL scheme");
    assert_error(PARSE("h:80"), "invalid URL");
    assert_error(PARSE("http://h:99999/"), "bad port");
    /* Found by lcbench_args_fuzz: the path went into the request line as it was. */
    assert_error(PARSE("http://h/a b"), "must be percent-encoded");
    assert_error(PARSE("http://h/x\r\nX-Injected: 1"), "must be percent-encoded");
    assert_error(PARSE("http://h\t/"), "must be percent-encoded");
    assert_error(PARSE("http://h/\x7f"), "must be percent-encoded");
    assert_int_equal(PARSE("http://h/caf\xc3\xa9?a=%20"), LCB_PARSE_OK);
    assert_error(PARSE("tcp://h/"), "needs a port");
    assert_error(PARSE("-s", "x.lua", "http://h/"), "Lua scripts");
    assert_error(PARSE("--bogus", "http://h/"), "unknown option");
    assert_error(PARSE("-H", "NoColon", "http://h/"), "invalid header");
    /* Found by lcbench_args_fuzz: a method or header went onto the wire as it was. */
    assert_error(PARSE("-m", "\x10HEAD", "http://h/"), "invalid method");
    assert_error(PARSE("-m", "GET\x7f", "http://h/"), "invalid method");
    assert_error(PARSE("-m", "G(T", "http://h/"), "invalid method");
    assert_error(PARSE("-H", "Bad Name: v", "http://h/"), "invalid header");
    assert_error(PARSE("-H", ": v", "http://h/"), "invalid header");
    assert_error(PARSE("-H", "X: a\x01b", "http://h/"), "invalid header");
    assert_error(PARSE("-H", "X: a\rb", "http://h/"), "invalid header");
    assert_int_equal(
        PARSE("-m", "M-SEARCH", "-H", "X-A: tab\there, caf\xc3\xa9", "-H", "Y:", "http://h/"),
        LCB_PARSE_OK);
    assert_error(PARSE("--max-errors", "2", "http://h/"), "--max-errors");
    assert_error(PARSE("--pipeline", "0", "http://h/"), "pipeline");
    assert_error(PARSE("--mode", "echo", "http://h/"), "needs a tcp:// or tls:// URL");
    assert_error(PARSE("--mode", "quic", "http://h/"), "invalid mode");
    assert_error(PARSE("-m", "PUT", "tcp://h:1"), "http mode only");
    assert_error(PARSE("--cpus", "a", "http://h/"), "CPU list");
    assert_error(PARSE("-R", "0", "http://h/"), "invalid rate");
    assert_error(PARSE("http://h/", "-d"), "needs a value");
    assert_int_equal(PARSE("--help"), LCB_PARSE_HELP);
    assert_int_equal(PARSE("-v"), LCB_PARSE_VERSION);
    assert_non_null(strstr(lcb_usage(), "--connections"));
}

/* Every number lcb_run() turns into an integer (nanoseconds, schedule slots, counts) is range
 * checked here: a huge, infinite, NaN or negative value is a usage error, not an overflowing
 * double-to-integer conversion later. */
static void test_args_out_of_range_numbers(void **state)
{
    (void)state;
    double v;
    assert_int_equal(lcb_parse_time("1e308h", &v), -1); /* finite, but inf once scaled */
    assert_int_equal(lcb_parse_time("nan", &v), -1);
    assert_int_equal(lcb_parse_time("inf", &v), -1);
    assert_int_equal(lcb_parse_count("1e308G", &v), -1);
    assert_int_equal(lcb_parse_count("nan", &v), -1);
    assert_int_equal(lcb_parse_count("-inf", &v), -1);

    assert_error(PARSE("-T", "1e300", "http://h/"), "invalid timeout");
    assert_error(PARSE("-T", "1e308h", "http://h/"), "invalid timeout");
    assert_error(PARSE("-T", "nan", "http://h/"), "invalid timeout");
    assert_error(PARSE("-T", "0.5us", "http://h/"), "invalid timeout");
    assert_error(PARSE("--timeout", "721h", "http://h/"), "invalid timeout");
    assert_error(PARSE("--warmup", "1e300", "http://h/"), "invalid warmup");
    assert_error(PARSE("--warmup", "-1", "http://h/"), "invalid warmup");
    assert_error(PARSE("--warmup", "inf", "http://h/"), "invalid warmup");
    assert_error(PARSE("-d", "1e300", "http://h/"), "invalid duration");
    assert_error(PARSE("-d", "1e20ms", "http://h/"), "invalid duration");
    assert_error(PARSE("-d", "NaN", "http://h/"), "invalid duration");
    assert_error(PARSE("-d", "-0.5", "http://h/"), "invalid duration");
    assert_error(PARSE("--connect-timeout", "1e300", "http://h/"), "invalid connect timeout");
    assert_error(PARSE("--connect-timeout", "0", "http://h/"), "invalid connect timeout");
    assert_error(PARSE("-R", "1e300", "http://h/"), "invalid rate");
    assert_error(PARSE("-R", "1e308G", "http://h/"), "invalid rate");
    assert_error(PARSE("-R", "nan", "http://h/"), "invalid rate");
    assert_error(PARSE("-R", "1e-300", "http://h/"), "invalid rate");
    assert_error(PARSE("-R", "2G", "http://h/"), "invalid rate");
    assert_error(PARSE("-c", "1e300", "http://h/"), "invalid number of connections");
    assert_error(PARSE("-t", "inf", "http://h/"), "invalid number of threads");
    assert_error(PARSE("--size", "1e308G", "http://h/"), "invalid message size");
    assert_error(PARSE("--pipeline", "nan", "http://h/"), "pipeline");
    assert_error(PARSE("--max-errors", "nan", "http://h/"), "--max-errors");

    /* The bounds themselves are accepted. */
    assert_int_equal(PARSE("-d", "720h", "--warmup", "720h", "-T", "1us", "--connect-timeout",
                           "2592000", "-R", "1G", "http://h/"),
                     LCB_PARSE_OK);
    assert_true(cfg.duration == LCB_MAX_SECONDS);
    assert_true(cfg.warmup == LCB_MAX_SECONDS);
    assert_true(cfg.connect_timeout == LCB_MAX_SECONDS);
    assert_true(cfg.rate == LCB_MAX_RATE);
    lcb_timing_t t;
    lcb_config_timing(&cfg, &t);
    assert_true(t.duration_ns == 2592000ULL * 1000000000ULL);
    assert_true(t.warmup_ns == t.duration_ns);
    assert_true(t.timeout_ns == 1000);
    assert_true(t.tick_ns == 1000000); /* 1 ms at least */
    assert_true(t.ns_per_request == 1.0L);
    assert_int_equal(PARSE("-d", "1us", "--warmup", "0", "-R", "0.01", "http://h/"), LCB_PARSE_OK);
    assert_true(cfg.rate == LCB_MIN_RATE);
    assert_true(cfg.warmup == 0.0);
    lcb_config_timing(&cfg, &t);
    assert_true(t.duration_ns == 1000);
    assert_true(t.warmup_ns == 0);
    assert_true(t.tick_ns == 100000000); /* the default timeouts: 100 ms */
    assert_true(fabsl(t.ns_per_request - 1e11L) < 1e-3L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_wrk_command_line),
        cmocka_unit_test(test_args_wrk_long_options_and_units),
        cmocka_unit_test(test_args_time_and_count_units),
        cmocka_unit_test(test_args_loopcore_options),
        cmocka_unit_test(test_args_udp_mode),
        cmocka_unit_test(test_args_tls_schemes),
        cmocka_unit_test(test_args_echo_mode),
        cmocka_unit_test(test_args_errors),
        cmocka_unit_test(test_args_out_of_range_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
