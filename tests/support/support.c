#include "support.h"

#include "core/waiter.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

bool ts_tempdir(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(out, size, "%s/sluice-%s.XXXXXX",
                     tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp", name);
    return n > 0 && (size_t)n < size && mkdtemp(out) != NULL;
}

void ts_rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        DIR *dir = opendir(path);
        struct dirent *de;
        while (dir != NULL && (de = readdir(dir)) != NULL) {
            if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                char child[1024];
                snprintf(child, sizeof child, "%s/%s", path, de->d_name);
                ts_rm_rf(child);
            }
        }
        if (dir != NULL) {
            closedir(dir);
        }
    }
    remove(path);
}

bool ts_wait_until(bool (*pred)(void *arg), void *arg, uint64_t timeout_ms)
{
    uint64_t until = sl_time_mono_ms() + timeout_ms;
    while (!pred(arg)) {
        if (sl_time_mono_ms() >= until) {
            return false;
        }
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

typedef struct listed_at_least {
    size_t n;
} listed_at_least;

static bool enough_listed(void *arg)
{
    return sl__clock_waits_listed() >= ((listed_at_least *)arg)->n;
}

bool ts_clock_waiting(size_t n, uint64_t timeout_ms)
{
    listed_at_least want = {n};
    return ts_wait_until(enough_listed, &want, timeout_ms);
}

bool ts_clock_advance_when_waiting(sl_manual_clock *mc, size_t n, uint64_t ms)
{
    if (!ts_clock_waiting(n, TS_WAIT_MS)) {
        return false;
    }
    sl_manual_clock_advance(mc, ms);
    return true;
}
