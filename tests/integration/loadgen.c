/* loadgen — the orders integration tests' load generator: real HTTP over
 * real sockets, with libcurl's multi interface (one thread, C requests in
 * flight on kept-alive connections).
 *
 *   loadgen post URL [-n COUNT | -d SECONDS] [-c CONCURRENCY] [-r RATE]
 *                    [-k API_KEY] [-o IDS_FILE] [-s SEED]
 *
 *     POSTs JSON orders ({"sku", "qty", "amount", "customer"}) to URL:
 *     COUNT of them, or as many as fit in SECONDS; at most CONCURRENCY in
 *     flight; at most RATE per second when given (request i is not started
 *     before start + i / RATE, so the offered rate is fixed and the answers
 *     do not slow the offer unless every slot is busy). Records each
 *     answer's status (a refused connection as "refused", other transport
 *     errors and timeouts as "error", the first one's text in
 *     "first_error"), the
 *     event id of every 202 (written to IDS_FILE, one per line), whether
 *     429 and 503 answers carry Retry-After, and each request's latency,
 *     from its start to its last byte. Prints one JSON summary:
 *
 *       {"sent", "elapsed_s", "offered_per_s", "accepted_per_s",
 *        "by_code": {"202": n, "429": n, "error": n, ...},
 *        "retry_after_missing", "ids_missing", "p50_ms", "p99_ms",
 *        "p99_ms_by_class": {"accepted", "rejected"},
 *        "max_ms_by_class": {"accepted", "rejected"}}
 *
 *     "accepted" is 2xx, "rejected" is 429 and 503; a class without
 *     answers reports null. ids_missing counts 202s whose body had no id.
 *
 *   loadgen status BASE_URL IDS_FILE [-c CONCURRENCY] [-w WORD]
 *                    [-f FAILED_FILE]
 *
 *     GETs BASE_URL/status/{id} for every id and prints
 *
 *       {"total", "completed", "failed", "pending", "processing",
 *        "missing", "errors", "failed_matching"}
 *
 *     where missing counts 404s, errors any other answer, and
 *     failed_matching the failed ones whose detail contains WORD. With -f,
 *     "id<TAB>detail" of each failed order goes to FAILED_FILE.
 *
 * Exit status: 0 when the run was made (whatever the answers), 2 for usage
 * errors, 1 when it could not run (files, libcurl).
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_CONCURRENCY 4096
#define REQUEST_TIMEOUT_MS 30000L

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

typedef struct slot {
    CURL *easy;
    struct curl_slist *headers;
    buf body;      /* response body */
    char req[256]; /* request body (post) */
    char url[1024];
    size_t index; /* request number, or id number (status) */
    double start_s;
    bool retry_after;
} slot;

typedef struct samples {
    double *v;
    size_t n, cap;
} samples;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool buf_add(buf *b, const void *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 512;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            return false;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

static void samples_add(samples *s, double v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        double *p = realloc(s->v, cap * sizeof *p);
        if (p == NULL) {
            return; /* a lost sample, not a lost count */
        }
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile in milliseconds, or JSON null without samples. */
static json_t *percentile_ms(samples *s, double p)
{
    if (s->n == 0) {
        return json_null();
    }
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    if (rank < 1) {
        rank = 1;
    }
    if (rank > s->n) {
        rank = s->n;
    }
    return json_real((double)(long)(s->v[rank - 1] * 1e3) / 1e3);
}

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
    slot *sl = user;
    return buf_add(&sl->body, data, size * n) ? size * n : 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
    slot *sl = user;
    static const char name[] = "retry-after:";
    if (size * n >= sizeof name - 1 &&
        strncasecmp(data, name, sizeof name - 1) == 0) {
        sl->retry_after = true;
    }
    return size * n;
}

static bool slot_init(slot *sl, const char *api_key, bool post)
{
    memset(sl, 0, sizeof *sl);
    sl->easy = curl_easy_init();
    if (sl->easy == NULL) {
        return false;
    }
    if (post) {
        sl->headers = curl_slist_append(NULL, "Content-Type: application/json");
        sl->headers = curl_slist_append(sl->headers, "Expect:");
        if (api_key != NULL) {
            char h[300];
            snprintf(h, sizeof h, "X-API-Key: %s", api_key);
            sl->headers = curl_slist_append(sl->headers, h);
        }
    }
    curl_easy_setopt(sl->easy, CURLOPT_HTTPHEADER, sl->headers);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(sl->easy, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(sl->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(sl->easy, CURLOPT_HEADERDATA, sl);
    curl_easy_setopt(sl->easy, CURLOPT_PRIVATE, sl);
    curl_easy_setopt(sl->easy, CURLOPT_TIMEOUT_MS, REQUEST_TIMEOUT_MS);
    curl_easy_setopt(sl->easy, CURLOPT_NOSIGNAL, 1L);
    return true;
}

static void slot_reset(slot *sl)
{
    sl->body.len = 0;
    if (sl->body.p != NULL) {
        sl->body.p[0] = '\0';
    }
    sl->retry_after = false;
}

static void slot_fini(slot *sl)
{
    if (sl->easy != NULL) {
        curl_easy_cleanup(sl->easy);
    }
    curl_slist_free_all(sl->headers);
    free(sl->body.p);
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (s == NULL || errno != 0 || end == s || *end != '\0' || v < lo ||
        v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen post URL [-n COUNT | -d SECONDS] [-c CONCURRENCY]\n"
            "                        [-r RATE] [-k API_KEY] [-o IDS_FILE] "
            "[-s SEED]\n"
            "       loadgen status BASE_URL IDS_FILE [-c CONCURRENCY] "
            "[-w WORD]\n"
            "                        [-f FAILED_FILE]\n");
}

/* ---- post -----------------------------------------------------------------
 */

typedef struct post_run {
    size_t count;      /* 0 with a duration */
    double duration_s; /* 0 with a count */
    double rate;       /* 0: as fast as the slots allow */
    unsigned concurrency;
    const char *url, *api_key, *ids_path;
    unsigned long seed;
} post_run;

/* An order; the SKUs are those the example stocks by the million. */
static void make_order(char *out, size_t n, size_t i, unsigned long seed)
{
    unsigned long h = (unsigned long)i * 2654435761ul ^ seed;
    snprintf(out, n,
             "{\"sku\":\"%s\",\"qty\":%lu,\"amount\":%lu.%02lu,"
             "\"customer\":\"c-%lu-%zu\"}",
             (h & 1) ? "A-1" : "B-2", 1 + (h >> 1) % 3, 5 + (h >> 3) % 200,
             (h >> 11) % 100, seed, i);
}

static int run_post(const post_run *r)
{
    FILE *ids = NULL;
    if (r->ids_path != NULL && (ids = fopen(r->ids_path, "w")) == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", r->ids_path, strerror(errno));
        return 1;
    }
    CURLM *multi = curl_multi_init();
    slot *slots = calloc(r->concurrency, sizeof *slots);
    slot **free_slots = calloc(r->concurrency, sizeof *free_slots);
    if (multi == NULL || slots == NULL || free_slots == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    size_t nfree = 0;
    for (unsigned i = 0; i < r->concurrency; i++) {
        if (!slot_init(&slots[i], r->api_key, true)) {
            fprintf(stderr, "loadgen: curl_easy_init failed\n");
            return 1;
        }
        free_slots[nfree++] = &slots[i];
    }
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)r->concurrency);

    uint64_t by_code[600] = {0};
    uint64_t errors = 0, refused = 0, retry_after_missing = 0, ids_missing = 0;
    CURLcode first_error_code = CURLE_OK;
    samples all = {0}, accepted = {0}, rejected = {0};
    size_t started = 0, done = 0;
    double t0 = now_s();
    double end = r->duration_s > 0 ? t0 + r->duration_s : 0;

    for (;;) {
        double now = now_s();
        bool more = r->count ? started < r->count : now < end;
        while (more && nfree > 0) {
            if (r->rate > 0 && now < t0 + (double)started / r->rate) {
                break;
            }
            slot *sl = free_slots[--nfree];
            slot_reset(sl);
            sl->index = started++;
            make_order(sl->req, sizeof sl->req, sl->index, r->seed);
            curl_easy_setopt(sl->easy, CURLOPT_URL, r->url);
            curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, sl->req);
            sl->start_s = now_s();
            curl_multi_add_handle(multi, sl->easy);
            more = r->count ? started < r->count : now < end;
        }
        if (!more && nfree == r->concurrency) {
            break;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            slot *sl = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &sl);
            double ms = (now_s() - sl->start_s) * 1e3;
            long code = 0;
            CURLcode res = msg->data.result;
            if (res == CURLE_OK) {
                curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &code);
            }
            curl_multi_remove_handle(multi, sl->easy);
            done++;
            if (res == CURLE_COULDNT_CONNECT) {
                refused++;
            } else if (code <= 0 || code >= 600) {
                errors++;
                if (first_error_code == CURLE_OK) {
                    first_error_code = res;
                }
            } else {
                by_code[code]++;
                samples_add(&all, ms);
                if (code >= 200 && code < 300) {
                    samples_add(&accepted, ms);
                } else if (code == 429 || code == 503) {
                    samples_add(&rejected, ms);
                    if (!sl->retry_after) {
                        retry_after_missing++;
                    }
                }
                if (code == 202) {
                    json_error_t err;
                    json_t *doc =
                        sl->body.p ? json_loads(sl->body.p, 0, &err) : NULL;
                    const char *id =
                        json_string_value(json_object_get(doc, "id"));
                    if (id == NULL) {
                        ids_missing++;
                    } else if (ids != NULL) {
                        fprintf(ids, "%s\n", id);
                    }
                    json_decref(doc);
                }
            }
            free_slots[nfree++] = sl;
        }
        /* Sleep until an answer comes or the next request is due. */
        int wait_ms = 20;
        if (more && nfree > 0 && r->rate > 0) {
            double due = t0 + (double)started / r->rate - now_s();
            wait_ms = due <= 0 ? 0 : (int)(due * 1e3) + 1;
            if (wait_ms > 20) {
                wait_ms = 20;
            }
        } else if (more && nfree > 0) {
            wait_ms = 0;
        }
        if (wait_ms > 0) {
            curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
        }
    }
    double elapsed = now_s() - t0;

    json_t *codes = json_object();
    uint64_t ok = 0;
    for (int c = 0; c < 600; c++) {
        if (by_code[c] != 0) {
            char k[8];
            snprintf(k, sizeof k, "%d", c);
            json_object_set_new(codes, k, json_integer((json_int_t)by_code[c]));
            if (c >= 200 && c < 300) {
                ok += by_code[c];
            }
        }
    }
    if (refused != 0) {
        json_object_set_new(codes, "refused",
                            json_integer((json_int_t)refused));
    }
    if (errors != 0) {
        json_object_set_new(codes, "error", json_integer((json_int_t)errors));
    }
    json_t *out = json_object();
    json_object_set_new(out, "sent", json_integer((json_int_t)done));
    json_object_set_new(out, "elapsed_s",
                        json_real((double)(long)(elapsed * 1e3) / 1e3));
    json_object_set_new(out, "offered_per_s",
                        json_real((double)(long)((double)done / elapsed)));
    json_object_set_new(out, "accepted_per_s",
                        json_real((double)(long)((double)ok / elapsed)));
    json_object_set_new(out, "by_code", codes);
    json_object_set_new(out, "retry_after_missing",
                        json_integer((json_int_t)retry_after_missing));
    json_object_set_new(out, "ids_missing",
                        json_integer((json_int_t)ids_missing));
    if (first_error_code != CURLE_OK) {
        json_object_set_new(out, "first_error",
                            json_string(curl_easy_strerror(first_error_code)));
    }
    json_object_set_new(out, "p50_ms", percentile_ms(&all, 50));
    json_object_set_new(out, "p99_ms", percentile_ms(&all, 99));
    json_object_set_new(out, "p99_ms_by_class",
                        json_pack("{s:o, s:o}", "accepted",
                                  percentile_ms(&accepted, 99), "rejected",
                                  percentile_ms(&rejected, 99)));
    json_object_set_new(out, "max_ms_by_class",
                        json_pack("{s:o, s:o}", "accepted",
                                  percentile_ms(&accepted, 100), "rejected",
                                  percentile_ms(&rejected, 100)));
    int rc = 0;
    if (json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0 ||
        putchar('\n') == EOF || fflush(stdout) != 0) {
        rc = 1;
    }
    json_decref(out);
    if (ids != NULL && fclose(ids) != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", r->ids_path, strerror(errno));
        rc = 1;
    }
    for (unsigned i = 0; i < r->concurrency; i++) {
        slot_fini(&slots[i]);
    }
    free(slots);
    free(free_slots);
    free(all.v);
    free(accepted.v);
    free(rejected.v);
    curl_multi_cleanup(multi);
    return rc;
}

/* ---- status ---------------------------------------------------------------
 */

typedef struct status_run {
    const char *base, *ids_path, *word, *failed_path;
    unsigned concurrency;
} status_run;

static int run_status(const status_run *r)
{
    FILE *in = fopen(r->ids_path, "r");
    if (in == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", r->ids_path, strerror(errno));
        return 1;
    }
    FILE *failed_out = NULL;
    if (r->failed_path != NULL &&
        (failed_out = fopen(r->failed_path, "w")) == NULL) {
        fprintf(stderr, "loadgen: %s: %s\n", r->failed_path, strerror(errno));
        fclose(in);
        return 1;
    }
    CURLM *multi = curl_multi_init();
    slot *slots = calloc(r->concurrency, sizeof *slots);
    slot **free_slots = calloc(r->concurrency, sizeof *free_slots);
    if (multi == NULL || slots == NULL || free_slots == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    size_t nfree = 0;
    for (unsigned i = 0; i < r->concurrency; i++) {
        if (!slot_init(&slots[i], NULL, false)) {
            fprintf(stderr, "loadgen: curl_easy_init failed\n");
            return 1;
        }
        free_slots[nfree++] = &slots[i];
    }
    uint64_t total = 0, completed = 0, failed = 0, pending = 0, processing = 0,
             missing = 0, errors = 0, matching = 0;
    bool eof = false;
    char line[512];
    for (;;) {
        while (!eof && nfree > 0) {
            if (fgets(line, sizeof line, in) == NULL) {
                eof = true;
                break;
            }
            line[strcspn(line, "\r\n")] = '\0';
            if (line[0] == '\0') {
                continue;
            }
            slot *sl = free_slots[--nfree];
            slot_reset(sl);
            char *esc = curl_easy_escape(sl->easy, line, 0);
            snprintf(sl->url, sizeof sl->url, "%s/status/%s", r->base,
                     esc ? esc : line);
            curl_free(esc);
            curl_easy_setopt(sl->easy, CURLOPT_URL, sl->url);
            curl_easy_setopt(sl->easy, CURLOPT_HTTPGET, 1L);
            total++;
            curl_multi_add_handle(multi, sl->easy);
        }
        if (eof && nfree == r->concurrency) {
            break;
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE) {
                continue;
            }
            slot *sl = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &sl);
            long code = 0;
            if (msg->data.result == CURLE_OK) {
                curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &code);
            }
            curl_multi_remove_handle(multi, sl->easy);
            json_error_t err;
            json_t *doc = code == 200 && sl->body.p
                              ? json_loads(sl->body.p, 0, &err)
                              : NULL;
            const char *st = json_string_value(json_object_get(doc, "status"));
            const char *detail =
                json_string_value(json_object_get(doc, "detail"));
            if (code == 404) {
                missing++;
            } else if (st == NULL) {
                errors++;
            } else if (strcmp(st, "completed") == 0) {
                completed++;
            } else if (strcmp(st, "failed") == 0) {
                failed++;
                if (r->word != NULL && detail != NULL &&
                    strstr(detail, r->word) != NULL) {
                    matching++;
                }
                if (failed_out != NULL) {
                    const char *slash = strrchr(sl->url, '/');
                    fprintf(failed_out, "%s\t%s\n", slash ? slash + 1 : "",
                            detail ? detail : "");
                }
            } else if (strcmp(st, "pending") == 0) {
                pending++;
            } else if (strcmp(st, "processing") == 0) {
                processing++;
            } else {
                errors++;
            }
            json_decref(doc);
            free_slots[nfree++] = sl;
        }
        if (!(!eof && nfree > 0)) {
            curl_multi_poll(multi, NULL, 0, 20, NULL);
        }
    }
    fclose(in);
    int rc = 0;
    if (failed_out != NULL && fclose(failed_out) != 0) {
        rc = 1;
    }
    json_t *out = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)total,
        "completed", (json_int_t)completed, "failed", (json_int_t)failed,
        "pending", (json_int_t)pending, "processing", (json_int_t)processing,
        "missing", (json_int_t)missing, "errors", (json_int_t)errors,
        "failed_matching", (json_int_t)matching);
    if (out == NULL ||
        json_dumpf(out, stdout, JSON_COMPACT | JSON_REAL_PRECISION(9)) != 0 ||
        putchar('\n') == EOF || fflush(stdout) != 0) {
        rc = 1;
    }
    json_decref(out);
    for (unsigned i = 0; i < r->concurrency; i++) {
        slot_fini(&slots[i]);
    }
    free(slots);
    free(free_slots);
    curl_multi_cleanup(multi);
    return rc;
}

/* ---- main -----------------------------------------------------------------
 */

int main(int argc, char **argv)
{
    if (argc >= 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    bool post = argc >= 3 && strcmp(argv[1], "post") == 0;
    bool status = argc >= 4 && strcmp(argv[1], "status") == 0;
    if (!post && !status) {
        usage(stderr);
        return 2;
    }
    post_run pr = {.concurrency = 16, .url = argv[2], .seed = 1};
    status_run sr = {.concurrency = 16, .base = argv[2], .ids_path = argv[3]};
    for (int i = post ? 3 : 4; i < argc; i += 2) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
        bool ok = v != NULL;
        if (strcmp(a, "-c") == 0) {
            ok = ok && parse_num(v, 1, MAX_CONCURRENCY, &d);
            pr.concurrency = sr.concurrency = (unsigned)d;
        } else if (post && strcmp(a, "-n") == 0) {
            ok = ok && parse_num(v, 1, 1e9, &d);
            pr.count = (size_t)d;
        } else if (post && strcmp(a, "-d") == 0) {
            ok = ok && parse_num(v, 0.001, 86400, &d);
            pr.duration_s = d;
        } else if (post && strcmp(a, "-r") == 0) {
            ok = ok && parse_num(v, 0.001, 1e9, &d);
            pr.rate = d;
        } else if (post && strcmp(a, "-s") == 0) {
            ok = ok && parse_num(v, 0, 4294967295.0, &d);
            pr.seed = (unsigned long)d;
        } else if (post && strcmp(a, "-k") == 0) {
            ok = ok && strlen(v) < 256;
            pr.api_key = v;
        } else if (post && strcmp(a, "-o") == 0) {
            pr.ids_path = v;
        } else if (status && strcmp(a, "-w") == 0) {
            sr.word = v;
        } else if (status && strcmp(a, "-f") == 0) {
            sr.failed_path = v;
        } else {
            fprintf(stderr, "loadgen: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "loadgen: bad or missing value for %s\n", a);
            return 2;
        }
    }
    if (post && (pr.count == 0) == (pr.duration_s == 0)) {
        fprintf(stderr, "loadgen: post wants exactly one of -n and -d\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "loadgen: curl_global_init failed\n");
        return 1;
    }
    int rc = post ? run_post(&pr) : run_status(&sr);
    curl_global_cleanup();
    return rc;
}
