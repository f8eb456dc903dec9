/* sluice benchmarks — helpers shared by the programs in bench/.
 *
 * Header-only on purpose: CMake turns every .c file in bench/ into a program
 * of its own, so shared code cannot live in a .c file of its own.
 *
 * Conventions. Time is read with sl_time_mono_ns (CLOCK_MONOTONIC) and waits
 * are absolute (clock_nanosleep with TIMER_ABSTIME on the same clock), so a
 * paced loop keeps its schedule however late one wake-up was. A failed setup
 * call ends the program: a benchmark that ran on a half-built pipeline would
 * print numbers that mean nothing. Nothing here asserts on timings.
 */
#ifndef SLUICE_BENCH_UTIL_H
#define SLUICE_BENCH_UTIL_H

#include "sluice/clock.h"
#include "sluice/event.h"
#include "sluice/status.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Every benchmark event: CloudEvents source and type, 512 data bytes. */
#define BENCH_SOURCE "/bench"
#define BENCH_TYPE "bench.event"
#define BENCH_DATA_BYTES 512u

#define BENCH_NS_PER_S 1000000000ull

/* ---- failing ------------------------------------------------------------- */

static inline void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* End the program unless @p st is SL_OK; @p diag (may be NULL) adds
 * detail. */
static inline void bench_check(sl_status st, const char *what,
                               const sl_diag *diag)
{
    if (st != SL_OK) {
        bench_die("%s: %s%s%s", what, sl_status_str(st),
                  diag != NULL && diag->msg[0] ? ": " : "",
                  diag != NULL ? diag->msg : "");
    }
}

/* ---- time ---------------------------------------------------------------- */

/* Sleep until the monotonic clock reads @p mono_ns. */
static inline void bench_sleep_until_ns(uint64_t mono_ns)
{
    struct timespec ts = {
        .tv_sec = (time_t)(mono_ns / BENCH_NS_PER_S),
        .tv_nsec = (long)(mono_ns % BENCH_NS_PER_S),
    };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
           EINTR) {
    }
}

static inline void bench_sleep_ms(uint64_t ms)
{
    bench_sleep_until_ns(sl_time_mono_ns() + ms * 1000000ull);
}

/* ---- events -------------------------------------------------------------- */

/* The data of a benchmark event: a sequence number and a monotonic stamp
 * (what a latency measurement needs), then filler up to 512 bytes. */
typedef struct bench_stamp {
    uint64_t seq;
    uint64_t mono_ns;
} bench_stamp;

/* A new event (fresh UUIDv7 id, time = now) with 512 data bytes that carry
 * @p seq and @p mono_ns. The caller owns the reference. */
static inline sl_event *bench_event(uint64_t seq, uint64_t mono_ns)
{
    unsigned char data[BENCH_DATA_BYTES];
    bench_stamp stamp = {seq, mono_ns};
    memset(data, 'x', sizeof data);
    memcpy(data, &stamp, sizeof stamp);

    sl_event *ev = NULL;
    bench_check(sl_event_create_new(BENCH_SOURCE, BENCH_TYPE, &ev),
                "sl_event_create_new", NULL);
    bench_check(sl_event_set_data(ev, data, sizeof data), "sl_event_set_data",
                NULL);
    return ev;
}

/* The stamp written by bench_event; false if the data is too short. */
static inline bool bench_event_stamp(const sl_event *ev, bench_stamp *out)
{
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    if (data == NULL || len < sizeof *out) {
        return false;
    }
    memcpy(out, data, sizeof *out);
    return true;
}

/* ---- statistics ---------------------------------------------------------- */

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline int bench_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Median of @p n values (sorts @p v in place); 0 for none. */
static inline double bench_median(double *v, size_t n)
{
    if (n == 0) {
        return 0;
    }
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Nearest-rank percentile @p p (0..100) of @p n sorted values. */
static inline uint64_t bench_percentile(const uint64_t *sorted, size_t n,
                                        double p)
{
    if (n == 0) {
        return 0;
    }
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    rank = rank == 0 ? 1 : rank > n ? n : rank;
    return sorted[rank - 1];
}

/* ---- the process --------------------------------------------------------- */

/* A "Name:  1234 kB" field of /proc/self/status in KiB (VmHWM, VmRSS); 0
 * when unavailable. */
static inline unsigned long bench_proc_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL) {
        return 0;
    }
    char line[256];
    unsigned long kb = 0;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kb = strtoul(line + flen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Make a fresh directory "<root>/sluice-bench-XXXXXX" into @p buf; root is
 * $BENCH_TMPDIR, else $TMPDIR, else /tmp. */
static inline void bench_tmpdir_make(char *buf, size_t size)
{
    const char *root = getenv("BENCH_TMPDIR");
    if (root == NULL || root[0] == '\0') {
        root = getenv("TMPDIR");
    }
    if (root == NULL || root[0] == '\0') {
        root = "/tmp";
    }
    if (snprintf(buf, size, "%s/sluice-bench-XXXXXX", root) >= (int)size) {
        bench_die("temporary directory path too long under %s", root);
    }
    if (mkdtemp(buf) == NULL) {
        bench_die("mkdtemp %s: %s", buf, strerror(errno));
    }
}

/* Remove @p path and, for a directory, everything under it; symbolic
 * links are removed, never followed. */
static inline void bench_tmpdir_remove(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d != NULL && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                continue;
            }
            char child[4096];
            if (snprintf(child, sizeof child, "%s/%s", path, de->d_name) <
                (int)sizeof child) {
                bench_tmpdir_remove(child);
            }
        }
        if (d != NULL) {
            closedir(d);
        }
    }
    if (remove(path) != 0) {
        fprintf(stderr, "bench: remove %s: %s\n", path, strerror(errno));
    }
}

/* ---- printing ------------------------------------------------------------ */

/* @p v rounded, with thousands separators ("1,234,567"), into @p buf. */
static inline const char *bench_fmt_count(double v, char buf[32])
{
    char digits[32];
    snprintf(digits, sizeof digits, "%.0f", v < 0 ? 0 : v);
    size_t n = strlen(digits), o = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0) {
            buf[o++] = ',';
        }
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* The rows of the summary table that run.sh prints at the end. */
#define BENCH_SUMMARY_ROWS 32

typedef struct bench_summary {
    struct {
        char figure[64];
        char value[32];
        char target[32];
        char ratio[16];
    } row[BENCH_SUMMARY_ROWS];
    size_t n;
} bench_summary;

/* Add a row; empty strings print as "-". */
static inline void bench_summary_add(bench_summary *s, const char *figure,
                                     const char *value, const char *target,
                                     const char *ratio)
{
    if (s->n == BENCH_SUMMARY_ROWS) {
        return;
    }
    snprintf(s->row[s->n].figure, sizeof s->row[s->n].figure, "%s", figure);
    snprintf(s->row[s->n].value, sizeof s->row[s->n].value, "%s", value);
    snprintf(s->row[s->n].target, sizeof s->row[s->n].target, "%s", target);
    snprintf(s->row[s->n].ratio, sizeof s->row[s->n].ratio, "%s", ratio);
    s->n++;
}

/* Append the rows, tab-separated, to @p path (for run.sh to gather), or
 * print them as a table when @p path is NULL (the program run alone). */
static inline void bench_summary_finish(const bench_summary *s,
                                        const char *path)
{
    FILE *f = path != NULL ? fopen(path, "a") : stdout;
    if (f == NULL) {
        bench_die("cannot open %s: %s", path, strerror(errno));
    }
    if (path == NULL) {
        printf("\n%-36s %16s %16s %8s\n", "figure", "measured", "target",
               "ratio");
    }
    for (size_t i = 0; i < s->n; i++) {
        const char *v = s->row[i].value[0] ? s->row[i].value : "-";
        const char *t = s->row[i].target[0] ? s->row[i].target : "-";
        const char *r = s->row[i].ratio[0] ? s->row[i].ratio : "-";
        if (path == NULL) {
            printf("%-36s %16s %16s %8s\n", s->row[i].figure, v, t, r);
        } else {
            fprintf(f, "%s\t%s\t%s\t%s\n", s->row[i].figure, v, t, r);
        }
    }
    if (path != NULL) {
        fclose(f);
    }
}

#endif
