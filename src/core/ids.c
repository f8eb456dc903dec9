/* sluice — identifiers and times: UUIDv7, W3C traceparent, RFC 3339.
 *
 * Nothing here depends on the locale or the TZ environment: dates are
 * converted with the days-from-civil algorithm, and every character class is
 * tested by hand rather than with <ctype.h>.
 */
#include "sluice/event.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- per-thread random numbers ------------------------------------------- */

/* Ids and span ids are made on hot paths (one per published event), so each
 * thread keeps a xoshiro256** generator seeded once from getrandom() instead
 * of making a system call per id. A fork duplicates the generator state, so
 * the child would repeat its parent's ids: an atfork handler bumps a
 * generation counter, and a thread that sees a new generation reseeds. */
typedef struct rng_state {
    uint64_t s[4];
    unsigned gen;
    bool seeded;
} rng_state;

static _Thread_local rng_state tl_rng;
static atomic_uint fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

static void install_atfork(void)
{
    /* If registration fails the generator still works; only the fork
     * reseeding is lost, and there is no caller to report it to. */
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static void rng_seed(rng_state *r)
{
    uint8_t seed[sizeof r->s];
    size_t got = 0;

    while (got < sizeof seed) {
        ssize_t n = getrandom(seed + got, sizeof seed - got, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        got += (size_t)n;
    }
    if (got == sizeof seed) {
        memcpy(r->s, seed, sizeof r->s);
    } else {
        /* No kernel randomness (seccomp, very old kernel): fall back to
         * values that at least differ between processes and threads. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        x ^= (uint64_t)getpid() << 32;
        x ^= (uint64_t)(uintptr_t)r;
        for (size_t i = 0; i < 4; i++) {
            r->s[i] = splitmix64(&x);
        }
    }
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) {
        r->s[0] = 1; /* xoshiro's one forbidden state */
    }
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    rng_state *r = &tl_rng;
    unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);

    if (!r->seeded || r->gen != gen) {
        pthread_once(&atfork_once, install_atfork);
        rng_seed(r);
        r->gen = gen;
        r->seeded = true;
    }

    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static const char hex_digits[] = "0123456789abcdef";

static void put_hex(char *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        dst[2 * i] = hex_digits[src[i] >> 4];
        dst[2 * i + 1] = hex_digits[src[i] & 0x0F];
    }
}

/* ---- UUIDv7 -------------------------------------------------------------- */

/* RFC 9562 section 6.2, method 2 ("monotonic random"): the 74 bits after the
 * timestamp (12-bit rand_a, 62-bit rand_b) form one counter. A new
 * millisecond starts it at a random value with the top bit of rand_a clear,
 * leaving at least 2^73 of headroom; each further id in the same millisecond
 * adds a random step of 1..2^32, so ids stay unguessable and still sort in
 * creation order. If the counter ever overflows, the timestamp borrows the
 * next millisecond. */
typedef struct uuid_state {
    uint64_t ms; /* 48-bit timestamp of the last id */
    uint64_t a;  /* 12-bit rand_a */
    uint64_t b;  /* 62-bit rand_b */
    bool used;
} uuid_state;

static _Thread_local uuid_state tl_uuid;

/* A wall clock stepped back by NTP must not break monotonicity, but a caller
 * that passes a far older time on purpose (a test, a replay) gets that time:
 * steps back smaller than this reuse the last timestamp. */
#define UUID_MAX_BACKSTEP_MS 10000u

#define MASK48 ((UINT64_C(1) << 48) - 1)
#define MASK62 ((UINT64_C(1) << 62) - 1)

static void uuid_fresh(uuid_state *u, uint64_t ms)
{
    u->ms = ms;
    u->a = rng_next() & 0x7FF;
    u->b = rng_next() & MASK62;
}

void sl_uuid7(char buf[37], uint64_t now_ms)
{
    uuid_state *u = &tl_uuid;
    uint64_t ms = now_ms & MASK48;

    if (u->used && u->ms >= ms && u->ms - ms < UUID_MAX_BACKSTEP_MS) {
        u->b += 1 + (rng_next() >> 32);
        if (u->b > MASK62) {
            u->b &= MASK62;
            if (++u->a > 0xFFF) {
                uuid_fresh(u, (u->ms + 1) & MASK48);
            }
        }
    } else {
        uuid_fresh(u, ms);
    }
    u->used = true;

    uint8_t raw[16];
    for (int i = 0; i < 6; i++) {
        raw[i] = (uint8_t)(u->ms >> (40 - 8 * i));
    }
    raw[6] = (uint8_t)(0x70 | (u->a >> 8));
    raw[7] = (uint8_t)u->a;
    raw[8] = (uint8_t)(0x80 | (u->b >> 56));
    for (int i = 9; i < 16; i++) {
        raw[i] = (uint8_t)(u->b >> (8 * (15 - i)));
    }

    put_hex(buf, raw, 4);
    buf[8] = '-';
    put_hex(buf + 9, raw + 4, 2);
    buf[13] = '-';
    put_hex(buf + 14, raw + 6, 2);
    buf[18] = '-';
    put_hex(buf + 19, raw + 8, 2);
    buf[23] = '-';
    put_hex(buf + 24, raw + 10, 6);
    buf[36] = '\0';
}

/* ---- W3C traceparent ----------------------------------------------------- */

static void random_nonzero(uint8_t *dst, size_t n)
{
    bool zero;
    do {
        zero = true;
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = rng_next();
            for (size_t j = 0; j < 8 && i + j < n; j++) {
                dst[i + j] = (uint8_t)(r >> (8 * j));
                zero = zero && dst[i + j] == 0;
            }
        }
    } while (zero);
}

void sl_traceparent_new(char buf[56])
{
    uint8_t trace[16];
    uint8_t span[8];

    random_nonzero(trace, sizeof trace);
    random_nonzero(span, sizeof span);
    memcpy(buf, "00-", 3);
    put_hex(buf + 3, trace, 16);
    buf[35] = '-';
    put_hex(buf + 36, span, 8);
    memcpy(buf + 52, "-01", 4); /* with the terminating NUL */
}

static bool is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* n lower-case hex digits, not all zero when nonzero is set. */
static bool hex_field(const char *s, size_t n, bool nonzero)
{
    bool all_zero = true;
    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex(s[i])) {
            return false;
        }
        all_zero = all_zero && s[i] == '0';
    }
    return !(nonzero && all_zero);
}

sl_status sl_traceparent_parse(const char *tp, char trace_id[33],
                               char span_id[17])
{
    if (tp == NULL) {
        return SL_INVALID;
    }
    /* version "-" trace-id "-" parent-id "-" flags: 55 characters. */
    size_t len = strnlen(tp, 56);
    if (len < 55 || !hex_field(tp, 2, false) || tp[2] != '-' ||
        !hex_field(tp + 3, 32, true) || tp[35] != '-' ||
        !hex_field(tp + 36, 16, true) || tp[52] != '-' ||
        !hex_field(tp + 53, 2, false)) {
        return SL_INVALID;
    }
    /* Version ff is forbidden. Version 00 is exactly 55 characters; later
     * versions may append fields after a dash, which we must ignore. */
    if (memcmp(tp, "ff", 2) == 0) {
        return SL_INVALID;
    }
    if (memcmp(tp, "00", 2) == 0 ? len != 55 : len > 55 && tp[55] != '-') {
        return SL_INVALID;
    }
    if (trace_id != NULL) {
        memcpy(trace_id, tp + 3, 32);
        trace_id[32] = '\0';
    }
    if (span_id != NULL) {
        memcpy(span_id, tp + 36, 16);
        span_id[16] = '\0';
    }
    return SL_OK;
}

/* ---- RFC 3339 ------------------------------------------------------------ */

#define MS_PER_DAY UINT64_C(86400000)

/* 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write. */
#define RFC3339_MAX_MS UINT64_C(253402300799999)

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil; exact for every year, no table, no TZ). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *put_dec(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

void sl_time_format_rfc3339(uint64_t ms, char buf[32])
{
    /* RFC 3339 has four-digit years; later times are clamped rather than
     * written in a form no parser accepts. */
    if (ms > RFC3339_MAX_MS) {
        ms = RFC3339_MAX_MS;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days((int64_t)(ms / MS_PER_DAY), &y, &mo, &d);
    unsigned in_day = (unsigned)(ms % MS_PER_DAY);

    char *p = buf;
    p = put_dec(p, (unsigned)y, 4);
    *p++ = '-';
    p = put_dec(p, mo, 2);
    *p++ = '-';
    p = put_dec(p, d, 2);
    *p++ = 'T';
    p = put_dec(p, in_day / 3600000, 2);
    *p++ = ':';
    p = put_dec(p, in_day / 60000 % 60, 2);
    *p++ = ':';
    p = put_dec(p, in_day / 1000 % 60, 2);
    *p++ = '.';
    p = put_dec(p, in_day % 1000, 3);
    *p++ = 'Z';
    *p = '\0';
}

/* Exactly n decimal digits at *s; advances *s. */
static bool take_digits(const char **s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + (unsigned)(c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

static bool take_char(const char **s, char a, char b)
{
    if (**s == a || **s == b) {
        (*s)++;
        return true;
    }
    return false;
}

static bool is_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30,
                                          31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

sl_status sl_time_parse_rfc3339(const char *s, uint64_t *out_ms)
{
    unsigned y, mo, d, h, mi, sec, ms = 0;

    if (s == NULL) {
        return SL_INVALID;
    }
    if (!take_digits(&s, 4, &y) || !take_char(&s, '-', '-') ||
        !take_digits(&s, 2, &mo) || !take_char(&s, '-', '-') ||
        !take_digits(&s, 2, &d) || !take_char(&s, 'T', 't') ||
        !take_digits(&s, 2, &h) || !take_char(&s, ':', ':') ||
        !take_digits(&s, 2, &mi) || !take_char(&s, ':', ':') ||
        !take_digits(&s, 2, &sec)) {
        return SL_INVALID;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 ||
        mi > 59 || sec > 60) {
        return SL_INVALID;
    }
    if (*s == '.') {
        /* Any number of fraction digits; milliseconds keep the first three
         * and the rest is truncated. */
        s++;
        if (*s < '0' || *s > '9') {
            return SL_INVALID;
        }
        unsigned scale = 100;
        while (*s >= '0' && *s <= '9') {
            ms += (unsigned)(*s - '0') * scale;
            scale /= 10;
            s++;
        }
    }

    int64_t offset_min = 0;
    if (take_char(&s, 'Z', 'z')) {
        offset_min = 0;
    } else if (*s == '+' || *s == '-') {
        int sign = *s == '-' ? -1 : 1;
        unsigned oh, om;
        s++;
        if (!take_digits(&s, 2, &oh) || !take_char(&s, ':', ':') ||
            !take_digits(&s, 2, &om) || oh > 23 || om > 59) {
            return SL_INVALID;
        }
        offset_min = sign * (int64_t)(oh * 60 + om);
    } else {
        return SL_INVALID;
    }
    if (*s != '\0') {
        return SL_INVALID;
    }

    /* A leap second (:60) counts as the first second of the next minute,
     * which is what POSIX time does anyway. */
    int64_t secs = days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 +
                   (int64_t)mi * 60 + sec - offset_min * 60;
    if (secs < 0) {
        return SL_INVALID; /* before the epoch: not representable */
    }
    *out_ms = (uint64_t)secs * 1000u + ms;
    return SL_OK;
}
