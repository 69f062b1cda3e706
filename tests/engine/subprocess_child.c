/* The child of the subprocess tests. Modes (argv[1]):
 *   fds              prints its open descriptors (from /proc/self/fd, the directory's own left
 *                    out), space-separated, then exits 0
 *   exit N           exits with status N
 *   echo-exit N      prints N, exits with status N % 256
 *   ignore-term      ignores SIGTERM, prints "ready", then sleeps until killed
 *   sleep            prints "ready", then sleeps until killed
 *   gen N            writes N bytes of the pattern i % 251 to stdout
 *   slow-read        reads stdin in 4 KiB reads with a 1 ms pause each, checks the pattern, and
 *                    prints the number of bytes read (or "bad" if the pattern broke)
 *   pwd-env NAME     prints its working directory and the value of $NAME, one per line
 *   sid              prints "leader" if it leads its own session (setsid ran), else "member"
 *   sigstate         prints "dfl" if SIGPIPE and SIGINT are at their default and the signal
 *                    mask is empty, else "changed" */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 100;
    const char *mode = argv[1];
    if (strcmp(mode, "fds") == 0) {
        DIR *d = opendir("/proc/self/fd");
        if (d == NULL)
            return 101;
        int self = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == self)
                continue;
            printf("%s ", e->d_name);
        }
        closedir(d);
        printf("\n");
        return 0;
    }
    if (strcmp(mode, "exit") == 0 && argc > 2)
        return atoi(argv[2]);
    if (strcmp(mode, "echo-exit") == 0 && argc > 2) {
        printf("%s", argv[2]);
        fflush(stdout);
        return atoi(argv[2]) % 256;
    }
    if (strcmp(mode, "ignore-term") == 0 || strcmp(mode, "sleep") == 0) {
        if (mode[0] == 'i')
            signal(SIGTERM, SIG_IGN);
        write_all("ready\n", 6);
        for (;;)
            pause();
    }
    if (strcmp(mode, "gen") == 0 && argc > 2) {
        long long n = atoll(argv[2]);
        static char buf[251 * 256];
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (char)(i % 251);
        while (n > 0) {
            size_t k = n < (long long)sizeof(buf) ? (size_t)n : sizeof(buf);
            if (write_all(buf, k) != 0)
                return 102;
            n -= (long long)k;
        }
        return 0;
    }
    if (strcmp(mode, "slow-read") == 0) {
        char buf[4096];
        long long total = 0;
        int bad = 0;
        ssize_t n;
        while ((n = read(0, buf, sizeof(buf))) > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != (char)((total + i) % 251))
                    bad = 1;
            total += n;
            usleep(1000);
        }
        if (bad)
            printf("bad\n");
        else
            printf("%lld\n", total);
        return 0;
    }
    if (strcmp(mode, "pwd-env") == 0 && argc > 2) {
        char cwd[4096];
        if (getcwd(cwd, sizeof(cwd)) == NULL)
            return 103;
        const char *v = getenv(argv[2]);
        printf("%s\n%s\n", cwd, v != NULL ? v : "(unset)");
        return 0;
    }
    if (strcmp(mode, "sid") == 0) {
        printf("%s\n", getsid(0) == getpid() ? "leader" : "member");
        return 0;
    }
    if (strcmp(mode, "sigstate") == 0) {
        struct sigaction a, b;
        sigset_t mask;
        sigaction(SIGPIPE, NULL, &a);
        sigaction(SIGINT, NULL, &b);
        sigprocmask(SIG_BLOCK, NULL, &mask);
        int blocked = 0;
        for (int s = 1; s < 32; s++)
            blocked |= sigismember(&mask, s);
        printf("%s\n",
               a.sa_handler == SIG_DFL && b.sa_handler == SIG_DFL && !blocked ? "dfl" : "changed");
        return 0;
    }
    return 100;
}
