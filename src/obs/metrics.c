/* The metrics registry and the Prometheus text exposition format 0.0.4.
 *
 * Series live in a per-family hash table whose chains only ever grow:
 * readers walk them with acquire loads and no lock, writers insert at the
 * head under the family's mutex with a release store. Values are atomics:
 * doubles are kept as their bit patterns and updated by compare-and-swap;
 * histogram buckets are plain counters, made cumulative only when rendered
 * (so _count, the +Inf bucket, is their sum and always agrees with them).
 */
#include "sluice/metrics.h"

#include "sluice/alloc.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 8
#define MAX_BUCKETS 64
/* Longer label values are cut: a label is a dimension, not a payload. */
#define MAX_VALUE_LEN 256
#define OVERFLOW_VALUE "other"

static const double default_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,    2.5,   5,    10};

struct sl_metric {
    sl_metric *_Atomic next; /* hash chain */
    sl_metric_family *fam;
    uint32_t hash;
    _Atomic uint64_t bits;    /* counter or gauge value; histogram sum */
    _Atomic uint64_t *counts; /* histogram: nbuckets + 1, not cumulative */
    const char *values[MAX_LABELS]; /* into the same allocation */
};

struct sl_metric_family {
    sl_metric_type type;
    char *name;
    char *help;
    char *labels[MAX_LABELS];
    size_t nlabels;
    double buckets[MAX_BUCKETS];
    size_t nbuckets;
    size_t max_series;
    pthread_mutex_t mu; /* insertions and `all` */
    sl_metric *_Atomic *table;
    size_t mask;
    sl_metric **all; /* every series, in creation order */
    size_t n;
    size_t cap;
    size_t bounded; /* series counted against max_series */
};

typedef struct collector {
    sl_metrics_collect_fn fn;
    void *ctx;
} collector;

struct sl_metrics {
    pthread_mutex_t render_mu; /* one render (and collector run) at a time */
    pthread_mutex_t mu;        /* families and collectors */
    sl_metric_family **fams;
    size_t nfams;
    size_t capfams;
    collector *cols;
    size_t ncols;
    size_t capcols;
};

/* ---- atomics on doubles ------------------------------------------------ */

static uint64_t to_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        a, &old, to_bits(from_bits(old) + v), memory_order_relaxed,
        memory_order_relaxed)) {
    }
}

/* ---- registry ---------------------------------------------------------- */

sl_status sl_metrics_create(sl_metrics **out)
{
    if (out == NULL) {
        return SL_INVALID;
    }
    sl_metrics *reg = sl_calloc(1, sizeof *reg);
    if (reg == NULL) {
        return SL_NOMEM;
    }
    pthread_mutex_init(&reg->render_mu, NULL);
    pthread_mutex_init(&reg->mu, NULL);
    *out = reg;
    return SL_OK;
}

static void family_free(sl_metric_family *fam)
{
    if (fam == NULL) {
        return;
    }
    for (size_t i = 0; i < fam->n; i++) {
        sl_free(fam->all[i]);
    }
    sl_free(fam->all);
    sl_free((void *)fam->table);
    for (size_t i = 0; i < fam->nlabels; i++) {
        sl_free(fam->labels[i]);
    }
    sl_free(fam->name);
    sl_free(fam->help);
    pthread_mutex_destroy(&fam->mu);
    sl_free(fam);
}

void sl_metrics_destroy(sl_metrics *reg)
{
    if (reg == NULL) {
        return;
    }
    for (size_t i = 0; i < reg->nfams; i++) {
        family_free(reg->fams[i]);
    }
    sl_free(reg->fams);
    sl_free(reg->cols);
    pthread_mutex_destroy(&reg->mu);
    pthread_mutex_destroy(&reg->render_mu);
    sl_free(reg);
}

static bool valid_name(const char *s, bool colon_ok)
{
    if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        char ch = *p;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' ||
                  (colon_ok && ch == ':');
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Check @p opts and fill @p def (strings borrowed from opts). */
static sl_status check_def(sl_metric_type type, const sl_metric_opts *opts,
                           sl_metric_family *def, sl_diag *diag)
{
    if (!valid_name(opts->name, true)) {
        return sl_diag_set(diag, SL_INVALID, "metric name '%s' is not valid",
                           opts->name ? opts->name : "(null)");
    }
    if (opts->nlabels > MAX_LABELS ||
        (opts->nlabels > 0 && opts->labels == NULL)) {
        return sl_diag_set(diag, SL_INVALID, "metric %s: at most %d labels",
                           opts->name, MAX_LABELS);
    }
    def->type = type;
    def->nlabels = opts->nlabels;
    for (size_t i = 0; i < opts->nlabels; i++) {
        const char *l = opts->labels[i];
        if (!valid_name(l, false) || strncmp(l, "__", 2) == 0 ||
            (type == SL_METRIC_HISTOGRAM && strcmp(l, "le") == 0)) {
            return sl_diag_set(diag, SL_INVALID,
                               "metric %s: label name '%s' is not valid",
                               opts->name, l ? l : "(null)");
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(opts->labels[j], l) == 0) {
                return sl_diag_set(diag, SL_INVALID,
                                   "metric %s: label '%s' repeated", opts->name,
                                   l);
            }
        }
        def->labels[i] = (char *)l;
    }
    if (type == SL_METRIC_HISTOGRAM) {
        const double *b = opts->buckets ? opts->buckets : default_buckets;
        size_t nb = opts->buckets
                        ? opts->nbuckets
                        : sizeof default_buckets / sizeof default_buckets[0];
        if (nb == 0 || nb > MAX_BUCKETS) {
            return sl_diag_set(diag, SL_INVALID, "metric %s: 1 to %d buckets",
                               opts->name, MAX_BUCKETS);
        }
        for (size_t i = 0; i < nb; i++) {
            if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1]))) {
                return sl_diag_set(diag, SL_INVALID,
                                   "metric %s: buckets must be finite and "
                                   "strictly increasing",
                                   opts->name);
            }
            def->buckets[i] = b[i];
        }
        def->nbuckets = nb;
    }
    return SL_OK;
}

static bool same_def(const sl_metric_family *a, const sl_metric_family *b)
{
    if (a->type != b->type || a->nlabels != b->nlabels ||
        a->nbuckets != b->nbuckets) {
        return false;
    }
    for (size_t i = 0; i < a->nlabels; i++) {
        if (strcmp(a->labels[i], b->labels[i]) != 0) {
            return false;
        }
    }
    for (size_t i = 0; i < a->nbuckets; i++) {
        if (a->buckets[i] != b->buckets[i]) {
            return false;
        }
    }
    return true;
}

static sl_metric_family *family_new(const sl_metric_family *def,
                                    const sl_metric_opts *opts)
{
    sl_metric_family *fam = sl_calloc(1, sizeof *fam);
    if (fam == NULL) {
        return NULL;
    }
    pthread_mutex_init(&fam->mu, NULL);
    fam->type = def->type;
    fam->nbuckets = def->nbuckets;
    memcpy(fam->buckets, def->buckets, sizeof fam->buckets);
    fam->max_series =
        opts->max_series ? opts->max_series : SL_METRICS_MAX_SERIES_DEFAULT;
    size_t slots = 16;
    while (slots < fam->max_series / 2 && slots < 4096) {
        slots *= 2;
    }
    fam->mask = slots - 1;
    fam->table = sl_calloc(slots, sizeof *fam->table);
    fam->name = sl_strdup(opts->name);
    fam->help = sl_strdup(opts->help ? opts->help : "");
    bool ok = fam->table != NULL && fam->name != NULL && fam->help != NULL;
    for (size_t i = 0; i < def->nlabels; i++) {
        fam->labels[i] = sl_strdup(def->labels[i]);
        fam->nlabels = i + 1;
        ok = ok && fam->labels[i] != NULL;
    }
    if (!ok) {
        family_free(fam);
        return NULL;
    }
    return fam;
}

sl_status sl_metrics_family(sl_metrics *reg, sl_metric_type type,
                            const sl_metric_opts *opts, sl_metric_family **out,
                            sl_diag *diag)
{
    if (reg == NULL || opts == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "metrics: missing argument");
    }
    sl_metric_family def = {0};
    sl_status st = check_def(type, opts, &def, diag);
    if (st != SL_OK) {
        return st;
    }
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->nfams; i++) {
        sl_metric_family *fam = reg->fams[i];
        if (strcmp(fam->name, opts->name) != 0) {
            continue;
        }
        pthread_mutex_unlock(&reg->mu);
        if (!same_def(fam, &def)) {
            return sl_diag_set(diag, SL_EXISTS,
                               "metric %s already declared differently",
                               opts->name);
        }
        *out = fam;
        return SL_OK;
    }
    if (reg->nfams == reg->capfams) {
        size_t cap = reg->capfams ? reg->capfams * 2 : 16;
        sl_metric_family **grown = sl_realloc(reg->fams, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&reg->mu);
            return SL_NOMEM;
        }
        reg->fams = grown;
        reg->capfams = cap;
    }
    sl_metric_family *fam = family_new(&def, opts);
    if (fam == NULL) {
        pthread_mutex_unlock(&reg->mu);
        return SL_NOMEM;
    }
    /* A family without labels has exactly one series: create it now so it
     * is exposed (as 0) before its first update. */
    if (fam->nlabels == 0 && sl_metric_get(fam, NULL) == NULL) {
        family_free(fam);
        pthread_mutex_unlock(&reg->mu);
        return SL_NOMEM;
    }
    reg->fams[reg->nfams++] = fam;
    pthread_mutex_unlock(&reg->mu);
    *out = fam;
    return SL_OK;
}

sl_status sl_metrics_counter(sl_metrics *reg, const sl_metric_opts *opts,
                             sl_metric_family **out, sl_diag *diag)
{
    return sl_metrics_family(reg, SL_METRIC_COUNTER, opts, out, diag);
}

sl_status sl_metrics_gauge(sl_metrics *reg, const sl_metric_opts *opts,
                           sl_metric_family **out, sl_diag *diag)
{
    return sl_metrics_family(reg, SL_METRIC_GAUGE, opts, out, diag);
}

sl_status sl_metrics_histogram(sl_metrics *reg, const sl_metric_opts *opts,
                               sl_metric_family **out, sl_diag *diag)
{
    return sl_metrics_family(reg, SL_METRIC_HISTOGRAM, opts, out, diag);
}

/* ---- series ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at @p s (at most @p n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t min;
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return len;
}

/* Exposition needs valid UTF-8, and labels should be short: when @p v is
 * neither, write a fixed copy (invalid bytes as '?', cut at MAX_VALUE_LEN)
 * into @p buf and return it; otherwise return @p v itself. */
static const char *clean_value(const char *v, char *buf)
{
    if (v == NULL) {
        return "";
    }
    size_t n = strlen(v);
    const unsigned char *s = (const unsigned char *)v;
    bool clean = n <= MAX_VALUE_LEN;
    for (size_t i = 0; clean && i < n;) {
        size_t l = utf8_len(s + i, n - i);
        clean = l != 0;
        i += l;
    }
    if (clean) {
        return v;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(s + i, n - i);
        if (l == 0) {
            l = 1;
            if (o + 1 > MAX_VALUE_LEN) {
                break;
            }
            buf[o++] = '?';
        } else {
            if (o + l > MAX_VALUE_LEN) {
                break;
            }
            memcpy(buf + o, s + i, l);
            o += l;
        }
        i += l;
    }
    buf[o] = '\0';
    return buf;
}

static uint32_t hash_values(const char *const *values, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p;
             p++) {
            h = (h ^ *p) * 16777619u;
        }
        h = (h ^ 0xFFu) * 16777619u; /* separator: ("ab","") != ("a","b") */
    }
    return h;
}

static bool same_values(const sl_metric *m, const char *const *values, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m->values[i], values[i]) != 0) {
            return false;
        }
    }
    return true;
}

static sl_metric *find(sl_metric_family *fam, const char *const *values,
                       uint32_t h)
{
    for (sl_metric *m = atomic_load_explicit(&fam->table[h & fam->mask],
                                             memory_order_acquire);
         m != NULL; m = atomic_load_explicit(&m->next, memory_order_acquire)) {
        if (m->hash == h && same_values(m, values, fam->nlabels)) {
            return m;
        }
    }
    return NULL;
}

/* Create a series; fam->mu held. */
static sl_metric *insert(sl_metric_family *fam, const char *const *values,
                         uint32_t h, bool bounded)
{
    if (fam->n == fam->cap) {
        size_t cap = fam->cap ? fam->cap * 2 : 8;
        sl_metric **grown = sl_realloc(fam->all, cap * sizeof *grown);
        if (grown == NULL) {
            return NULL;
        }
        fam->all = grown;
        fam->cap = cap;
    }
    size_t nc = fam->type == SL_METRIC_HISTOGRAM ? fam->nbuckets + 1 : 0;
    size_t strs = 0;
    for (size_t i = 0; i < fam->nlabels; i++) {
        strs += strlen(values[i]) + 1;
    }
    size_t size = sizeof(sl_metric) + nc * sizeof(_Atomic uint64_t) + strs;
    sl_metric *m = sl_calloc(1, size);
    if (m == NULL) {
        return NULL;
    }
    m->fam = fam;
    m->hash = h;
    atomic_init(&m->bits, to_bits(0.0));
    m->counts = nc ? (_Atomic uint64_t *)(m + 1) : NULL;
    for (size_t i = 0; i < nc; i++) {
        atomic_init(&m->counts[i], 0);
    }
    char *p = (char *)(m + 1) + nc * sizeof(_Atomic uint64_t);
    for (size_t i = 0; i < fam->nlabels; i++) {
        size_t l = strlen(values[i]) + 1;
        memcpy(p, values[i], l);
        m->values[i] = p;
        p += l;
    }
    sl_metric *_Atomic *slot = &fam->table[h & fam->mask];
    atomic_init(&m->next, atomic_load_explicit(slot, memory_order_relaxed));
    atomic_store_explicit(slot, m, memory_order_release);
    fam->all[fam->n++] = m;
    if (bounded) {
        fam->bounded++;
    }
    return m;
}

sl_metric *sl_metric_get(sl_metric_family *fam, const char *const *values)
{
    if (fam == NULL) {
        return NULL;
    }
    char bufs[MAX_LABELS][MAX_VALUE_LEN + 1];
    const char *vals[MAX_LABELS];
    for (size_t i = 0; i < fam->nlabels; i++) {
        vals[i] = clean_value(values != NULL ? values[i] : NULL, bufs[i]);
    }
    uint32_t h = hash_values(vals, fam->nlabels);
    sl_metric *m = find(fam, vals, h);
    if (m != NULL) {
        return m;
    }
    pthread_mutex_lock(&fam->mu);
    m = find(fam, vals, h);
    if (m == NULL && fam->bounded < fam->max_series) {
        m = insert(fam, vals, h, true);
    } else if (m == NULL) {
        const char *other[MAX_LABELS];
        for (size_t i = 0; i < fam->nlabels; i++) {
            other[i] = OVERFLOW_VALUE;
        }
        uint32_t oh = hash_values(other, fam->nlabels);
        m = find(fam, other, oh);
        if (m == NULL) {
            m = insert(fam, other, oh, false);
        }
    }
    pthread_mutex_unlock(&fam->mu);
    return m;
}

size_t sl_metric_family_size(const sl_metric_family *fam)
{
    if (fam == NULL) {
        return 0;
    }
    pthread_mutex_lock((pthread_mutex_t *)&fam->mu);
    size_t n = fam->n;
    pthread_mutex_unlock((pthread_mutex_t *)&fam->mu);
    return n;
}

/* ---- updates ----------------------------------------------------------- */

void sl_counter_add(sl_metric *m, double v)
{
    if (m == NULL || !(v >= 0)) {
        return;
    }
    atomic_add_double(&m->bits, v);
}

void sl_counter_inc(sl_metric *m)
{
    sl_counter_add(m, 1.0);
}

void sl_counter_set(sl_metric *m, double v)
{
    if (m == NULL || !(v >= 0)) {
        return;
    }
    atomic_store_explicit(&m->bits, to_bits(v), memory_order_relaxed);
}

void sl_gauge_set(sl_metric *m, double v)
{
    if (m == NULL) {
        return;
    }
    atomic_store_explicit(&m->bits, to_bits(v), memory_order_relaxed);
}

void sl_gauge_add(sl_metric *m, double v)
{
    if (m == NULL) {
        return;
    }
    atomic_add_double(&m->bits, v);
}

void sl_histogram_observe(sl_metric *m, double v)
{
    if (m == NULL || m->counts == NULL || isnan(v)) {
        return;
    }
    const sl_metric_family *fam = m->fam;
    size_t lo = 0;
    size_t hi = fam->nbuckets; /* index nbuckets is +Inf */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= fam->buckets[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    atomic_fetch_add_explicit(&m->counts[lo], 1, memory_order_relaxed);
    atomic_add_double(&m->bits, v);
}

double sl_metric_value(const sl_metric *m)
{
    if (m == NULL) {
        return 0;
    }
    return from_bits(
        atomic_load_explicit(&((sl_metric *)m)->bits, memory_order_relaxed));
}

uint64_t sl_metric_count(const sl_metric *m)
{
    if (m == NULL || m->counts == NULL) {
        return 0;
    }
    uint64_t n = 0;
    for (size_t i = 0; i <= m->fam->nbuckets; i++) {
        n += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
    }
    return n;
}

/* ---- collectors -------------------------------------------------------- */

sl_status sl_metrics_add_collector(sl_metrics *reg, sl_metrics_collect_fn fn,
                                   void *ctx)
{
    if (reg == NULL || fn == NULL) {
        return SL_INVALID;
    }
    pthread_mutex_lock(&reg->mu);
    if (reg->ncols == reg->capcols) {
        size_t cap = reg->capcols ? reg->capcols * 2 : 4;
        collector *grown = sl_realloc(reg->cols, cap * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&reg->mu);
            return SL_NOMEM;
        }
        reg->cols = grown;
        reg->capcols = cap;
    }
    reg->cols[reg->ncols++] = (collector){fn, ctx};
    pthread_mutex_unlock(&reg->mu);
    return SL_OK;
}

void sl_metrics_remove_collector(sl_metrics *reg, sl_metrics_collect_fn fn,
                                 void *ctx)
{
    if (reg == NULL) {
        return;
    }
    /* Holding render_mu waits out a render that may be running it. */
    pthread_mutex_lock(&reg->render_mu);
    pthread_mutex_lock(&reg->mu);
    for (size_t i = 0; i < reg->ncols; i++) {
        if (reg->cols[i].fn == fn && reg->cols[i].ctx == ctx) {
            memmove(&reg->cols[i], &reg->cols[i + 1],
                    (reg->ncols - i - 1) * sizeof reg->cols[0]);
            reg->ncols--;
            break;
        }
    }
    pthread_mutex_unlock(&reg->mu);
    pthread_mutex_unlock(&reg->render_mu);
}

/* ---- text exposition --------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len;
    size_t cap;
    bool failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) {
            cap *= 2;
        }
        char *grown = sl_realloc(b->p, cap);
        if (grown == NULL) {
            b->failed = true;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* HELP text escapes \ and newline; label values also escape ". */
static void put_escaped(buf *b, const char *s, bool quote)
{
    const char *run = s;
    for (const char *p = s; *p != '\0'; p++) {
        const char *esc = NULL;
        if (*p == '\\') {
            esc = "\\\\";
        } else if (*p == '\n') {
            esc = "\\n";
        } else if (quote && *p == '"') {
            esc = "\\\"";
        }
        if (esc != NULL) {
            put(b, run, (size_t)(p - run));
            puts_(b, esc);
            run = p + 1;
        }
    }
    puts_(b, run);
}

/* The shortest text that reads back as the same double (Go's strconv
 * style, which Prometheus parses): "1", "0.005", "+Inf", "NaN". */
static void fmt_double(char *out, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, size, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            return;
        }
    }
}

static void put_double(buf *b, double v)
{
    char tmp[40];
    fmt_double(tmp, sizeof tmp, v);
    puts_(b, tmp);
}

static void put_u64(buf *b, uint64_t v)
{
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    puts_(b, tmp);
}

/* {a="x",b="y"[,le="…"]}, or nothing without labels. */
static void put_labels(buf *b, const sl_metric *m, const char *le)
{
    const sl_metric_family *fam = m->fam;
    if (fam->nlabels == 0 && le == NULL) {
        return;
    }
    puts_(b, "{");
    for (size_t i = 0; i < fam->nlabels; i++) {
        if (i > 0) {
            puts_(b, ",");
        }
        puts_(b, fam->labels[i]);
        puts_(b, "=\"");
        put_escaped(b, m->values[i], true);
        puts_(b, "\"");
    }
    if (le != NULL) {
        puts_(b, fam->nlabels > 0 ? ",le=\"" : "le=\"");
        puts_(b, le);
        puts_(b, "\"");
    }
    puts_(b, "}");
}

static void put_histogram(buf *b, const sl_metric *m)
{
    const sl_metric_family *fam = m->fam;
    uint64_t cum = 0;
    for (size_t i = 0; i <= fam->nbuckets; i++) {
        char le[40];
        if (i < fam->nbuckets) {
            fmt_double(le, sizeof le, fam->buckets[i]);
        } else {
            snprintf(le, sizeof le, "+Inf");
        }
        cum += atomic_load_explicit(&m->counts[i], memory_order_relaxed);
        puts_(b, fam->name);
        puts_(b, "_bucket");
        put_labels(b, m, le);
        puts_(b, " ");
        put_u64(b, cum);
        puts_(b, "\n");
    }
    puts_(b, fam->name);
    puts_(b, "_sum");
    put_labels(b, m, NULL);
    puts_(b, " ");
    put_double(b, sl_metric_value(m));
    puts_(b, "\n");
    puts_(b, fam->name);
    puts_(b, "_count");
    put_labels(b, m, NULL);
    puts_(b, " ");
    put_u64(b, cum);
    puts_(b, "\n");
}

static int cmp_family(const void *a, const void *b)
{
    const sl_metric_family *fa = *(const sl_metric_family *const *)a;
    const sl_metric_family *fb = *(const sl_metric_family *const *)b;
    return strcmp(fa->name, fb->name);
}

static int cmp_series(const void *a, const void *b)
{
    const sl_metric *ma = *(const sl_metric *const *)a;
    const sl_metric *mb = *(const sl_metric *const *)b;
    for (size_t i = 0; i < ma->fam->nlabels; i++) {
        int c = strcmp(ma->values[i], mb->values[i]);
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

static const char *type_name(sl_metric_type type)
{
    switch (type) {
    case SL_METRIC_COUNTER:
        return "counter";
    case SL_METRIC_GAUGE:
        return "gauge";
    case SL_METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

static bool render_family(buf *b, sl_metric_family *fam)
{
    pthread_mutex_lock(&fam->mu);
    size_t n = fam->n;
    sl_metric **series = sl_malloc((n ? n : 1) * sizeof *series);
    if (series != NULL && n > 0) {
        memcpy(series, fam->all, n * sizeof *series);
    }
    pthread_mutex_unlock(&fam->mu);
    if (series == NULL) {
        return false;
    }
    qsort(series, n, sizeof *series, cmp_series);
    /* Like the Go client, no HELP line without a help text. */
    if (fam->help[0] != '\0') {
        puts_(b, "# HELP ");
        puts_(b, fam->name);
        puts_(b, " ");
        put_escaped(b, fam->help, false);
        puts_(b, "\n");
    }
    puts_(b, "# TYPE ");
    puts_(b, fam->name);
    puts_(b, " ");
    puts_(b, type_name(fam->type));
    puts_(b, "\n");
    for (size_t i = 0; i < n; i++) {
        if (fam->type == SL_METRIC_HISTOGRAM) {
            put_histogram(b, series[i]);
            continue;
        }
        puts_(b, fam->name);
        put_labels(b, series[i], NULL);
        puts_(b, " ");
        put_double(b, sl_metric_value(series[i]));
        puts_(b, "\n");
    }
    sl_free(series);
    return !b->failed;
}

sl_status sl_metrics_render_text(sl_metrics *reg, char **out, size_t *len)
{
    if (reg == NULL || out == NULL) {
        return SL_INVALID;
    }
    sl_status st = SL_NOMEM;
    buf b = {0};
    collector *cols = NULL;
    sl_metric_family **fams = NULL;
    pthread_mutex_lock(&reg->render_mu);

    /* Collectors run without reg->mu so that they may declare families. */
    pthread_mutex_lock(&reg->mu);
    size_t ncols = reg->ncols;
    cols = sl_malloc((ncols ? ncols : 1) * sizeof *cols);
    if (cols != NULL && ncols > 0) {
        memcpy(cols, reg->cols, ncols * sizeof *cols);
    }
    pthread_mutex_unlock(&reg->mu);
    if (cols == NULL) {
        goto unlock;
    }
    for (size_t i = 0; i < ncols; i++) {
        cols[i].fn(reg, cols[i].ctx);
    }

    pthread_mutex_lock(&reg->mu);
    size_t nfams = reg->nfams;
    fams = sl_malloc((nfams ? nfams : 1) * sizeof *fams);
    if (fams != NULL && nfams > 0) {
        memcpy(fams, reg->fams, nfams * sizeof *fams);
    }
    pthread_mutex_unlock(&reg->mu);
    if (fams == NULL) {
        goto unlock;
    }
    qsort(fams, nfams, sizeof *fams, cmp_family);
    put(&b, "", 0); /* an empty registry renders as "" */
    for (size_t i = 0; i < nfams; i++) {
        if (!render_family(&b, fams[i])) {
            goto unlock;
        }
    }
    if (!b.failed) {
        *out = b.p;
        if (len != NULL) {
            *len = b.len;
        }
        b.p = NULL;
        st = SL_OK;
    }
unlock:
    pthread_mutex_unlock(&reg->render_mu);
    sl_free(fams);
    sl_free(cols);
    sl_free(b.p);
    return st;
}
