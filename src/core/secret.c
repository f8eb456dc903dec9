/* Secrets: from the environment or a file; URLs with credentials hidden. */
#include "core/secret.h"

#include "sluice/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENV_PREFIX "env:"
#define FILE_PREFIX "file:"
#define MASK "***"

bool sl__secret_is_ref(const char *ref)
{
    return ref != NULL && (strncmp(ref, ENV_PREFIX, strlen(ENV_PREFIX)) == 0 ||
                           strncmp(ref, FILE_PREFIX, strlen(FILE_PREFIX)) == 0);
}

static sl_status read_env(const char *name, char **out, sl_diag *diag)
{
    if (name[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID,
                           "secret reference 'env:' names no variable");
    }
    const char *v = getenv(name);
    if (v == NULL) {
        return sl_diag_set(diag, SL_NOT_FOUND,
                           "environment variable %s is not set", name);
    }
    if (v[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID, "environment variable %s is empty",
                           name);
    }
    char *s = sl_strdup(v);
    if (s == NULL) {
        return SL_NOMEM;
    }
    *out = s;
    return SL_OK;
}

static sl_status read_file(const char *path, char **out, sl_diag *diag)
{
    if (path[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID,
                           "secret reference 'file:' names no file");
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int err = errno;
        return sl_diag_set(diag, err == ENOENT ? SL_NOT_FOUND : SL_IO,
                           "cannot read secret file %s: %s", path,
                           strerror(err));
    }
    sl_status st = SL_OK;
    /* One byte more than allowed tells a file that is too large. */
    char *s = sl_malloc(SL_SECRET_MAX_FILE + 2);
    if (s == NULL) {
        st = SL_NOMEM;
        goto close_file;
    }
    size_t n = fread(s, 1, SL_SECRET_MAX_FILE + 1, f);
    if (ferror(f)) {
        st = sl_diag_set(diag, SL_IO, "cannot read secret file %s: %s", path,
                         strerror(errno));
        goto free_secret;
    }
    if (n > SL_SECRET_MAX_FILE) {
        st = sl_diag_set(diag, SL_TOO_LARGE,
                         "secret file %s is larger than %d bytes", path,
                         SL_SECRET_MAX_FILE);
        goto free_secret;
    }
    if (memchr(s, '\0', n) != NULL) {
        st = sl_diag_set(diag, SL_INVALID, "secret file %s contains a NUL byte",
                         path);
        goto free_secret;
    }
    /* Editors and `echo` end files with a line break: not part of it. */
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) {
        n--;
    }
    s[n] = '\0';
    if (n == 0) {
        st = sl_diag_set(diag, SL_INVALID, "secret file %s is empty", path);
        goto free_secret;
    }
    fclose(f);
    *out = s;
    return SL_OK;
free_secret:
    sl__secret_free(s);
close_file:
    fclose(f);
    return st;
}

sl_status sl__secret_read(const char *ref, char **out, sl_diag *diag)
{
    if (ref == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "no secret reference");
    }
    if (strncmp(ref, ENV_PREFIX, strlen(ENV_PREFIX)) == 0) {
        return read_env(ref + strlen(ENV_PREFIX), out, diag);
    }
    if (strncmp(ref, FILE_PREFIX, strlen(FILE_PREFIX)) == 0) {
        return read_file(ref + strlen(FILE_PREFIX), out, diag);
    }
    return sl_diag_set(diag, SL_INVALID,
                       "a secret must be given as env:NAME or file:PATH");
}

void sl__secret_free(char *secret)
{
    if (secret == NULL) {
        return;
    }
    /* volatile: the compiler may not drop stores to memory freed next. */
    volatile char *p = secret;
    while (*p) {
        *p++ = '\0';
    }
    sl_free(secret);
}

/* ---- redaction ------------------------------------------------------------
 */

/* Appends to a fixed buffer, truncating, always NUL-terminated. */
typedef struct out_buf {
    char *buf;
    size_t size;
    size_t len;
} out_buf;

static void put(out_buf *o, const char *s, size_t n)
{
    if (o->size == 0) {
        return;
    }
    size_t room = o->size - 1 - o->len;
    if (n > room) {
        n = room;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void puts_(out_buf *o, const char *s)
{
    put(o, s, strlen(s));
}

/* One server of the authority, "[userinfo@]host[:port]". */
static void redact_server(out_buf *o, const char *s, size_t n)
{
    const char *at = NULL;
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == '@') {
            at = s + i - 1;
            break;
        }
    }
    if (at == NULL) {
        put(o, s, n);
        return;
    }
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (colon != NULL) {
        put(o, s, (size_t)(colon - s) + 1); /* "user:" */
    }
    puts_(o, MASK);
    put(o, at, n - (size_t)(at - s)); /* "@host:port" */
}

static bool secret_key(const char *k, size_t n)
{
    static const char *const keys[] = {"password", "pass", "passwd", "token",
                                       "secret"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (strlen(keys[i]) == n && strncmp(k, keys[i], n) == 0) {
            return true;
        }
    }
    return false;
}

/* "k=v&k=v...", stopping at '#' (copied unchanged). */
static void redact_query(out_buf *o, const char *q)
{
    while (*q != '\0' && *q != '#') {
        size_t n = strcspn(q, "&#");
        const char *eq = memchr(q, '=', n);
        if (eq != NULL && secret_key(q, (size_t)(eq - q))) {
            const char *v = eq + 1;
            size_t vn = n - (size_t)(v - q);
            char val[8];
            snprintf(val, sizeof val, "%.*s", (int)(vn < 7 ? vn : 7), v);
            put(o, q, (size_t)(v - q));
            if (sl__secret_is_ref(val)) {
                put(o, v, vn);
            } else {
                puts_(o, MASK);
            }
        } else {
            put(o, q, n);
        }
        q += n;
        if (*q == '&') {
            puts_(o, "&");
            q++;
        }
    }
    puts_(o, q);
}

char *sl__secret_redact_url(const char *url, char *buf, size_t size)
{
    out_buf o = {.buf = buf, .size = size, .len = 0};
    if (size > 0) {
        buf[0] = '\0';
    }
    if (url == NULL) {
        return buf;
    }
    const char *sep = strstr(url, "://");
    if (sep == NULL) {
        puts_(&o, url);
        return buf;
    }
    const char *auth = sep + 3;
    put(&o, url, (size_t)(auth - url));
    /* The authority ends at the first '/', '?' or '#' after its last '@':
     * a password with an unencoded '/' or '?' stays hidden. */
    const char *last_at = strrchr(auth, '@');
    const char *from = last_at ? last_at : auth;
    const char *end = from + strcspn(from, "/?#");
    /* Servers of a cluster URL are separated by commas. */
    const char *p = auth;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        redact_server(&o, p, (size_t)(stop - p));
        if (comma != NULL) {
            puts_(&o, ",");
            p = comma + 1;
        } else {
            p = end;
        }
    }
    const char *q = strchr(end, '?');
    if (q == NULL) {
        puts_(&o, end);
        return buf;
    }
    put(&o, end, (size_t)(q + 1 - end));
    redact_query(&o, q + 1);
    return buf;
}
