/* The idempotency store on JetStream KV, inbox kind "nats-kv" (nats_int.h,
 * "kv.c"), offered to the runtime through sl_driver.inbox_store. */
#include "engine/nats/nats_int.h"

#include "core/hash.h"
#include "sluice/alloc.h"
#include "sluice/clock.h"
#include "sluice/event.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KV_LOG "inbox.nats-kv"
#define KEY_MAX 400       /* escaped ids longer than this are hashed */
#define CLAIM_TRIES 4     /* lost races before giving up (BUSY) */
#define BUSY_RETRY_MS 100 /* ... and when to look again then */

struct sl_inbox_store {
    kvStore *kv;
    char *bucket;
    char *prefix;   /* "g<base64url(channel/group)>." */
    char owner[37]; /* this inbox's claims (a UUID) */
};

/* base64url without padding: every character is legal in a KV key. */
static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char a[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = a[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = a[v & 63];
        }
    }
    out[o] = '\0';
}

/* The second half of a long id's digest starts here; with
 * SL_HASH_FNV1A_SEED for the first, it makes the keys already in buckets:
 * neither may change. */
#define KEY_SEED2 0x9e3779b97f4a7c15ULL

char *sl__nats_kv_key(const char *prefix, const char *id)
{
    size_t n = strlen(id);
    size_t enc = (n + 2) / 3 * 4;
    size_t size = strlen(prefix) + 2 + (enc > KEY_MAX ? 33 : enc) + 1;
    char *key = sl_malloc(size);
    if (key == NULL) {
        return NULL;
    }
    size_t p = (size_t)snprintf(key, size, "%s", prefix);
    if (enc > KEY_MAX) {
        snprintf(key + p, size - p, "h%016" PRIx64 "%016" PRIx64,
                 sl__hash_fnv1a_str(id, SL_HASH_FNV1A_SEED),
                 sl__hash_fnv1a_str(id, KEY_SEED2));
    } else {
        key[p] = 'e';
        b64url((const unsigned char *)id, n, key + p + 1);
    }
    return key;
}

static void kv_close(sl_inbox_store *in);

/* The table's open: bind (creating it if needed) the bucket of group
 * @p group on @p channel, @p bucket or NULL for the group's own. The
 * group's own bucket takes @p ttl_ms as its TTL (and is updated to it); a
 * named bucket shared with other groups must already have that TTL if it
 * exists. */
static sl_status kv_open(sl_engine *eng, const char *bucket,
                         const char *channel, const char *group,
                         uint64_t ttl_ms, sl_inbox_store **out, sl_diag *diag)
{
    if (eng == NULL || eng->drv != &sl__nats_driver) {
        return sl_diag_set(diag, SL_INVALID,
                           "inbox nats-kv needs the NATS engine (nats://)");
    }
    nats_engine *e = (nats_engine *)eng;
    if (bucket != NULL) {
        for (const char *c = bucket; *c; c++) {
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')) {
                return sl_diag_set(diag, SL_INVALID,
                                   "inbox nats-kv:%s: a bucket name is "
                                   "[A-Za-z0-9_-]+",
                                   bucket);
            }
        }
        if (bucket[0] == '\0') {
            return sl_diag_set(diag, SL_INVALID,
                               "inbox nats-kv: empty bucket name");
        }
    }
    sl_inbox_store *in = sl_calloc(1, sizeof *in);
    if (in == NULL) {
        return SL_NOMEM;
    }
    sl_status st = SL_NOMEM;
    size_t gl = strlen(channel) + 1 + strlen(group);
    size_t prefix_size = (gl + 2) / 3 * 4 + 3; /* 'g', base64url, '.', NUL */
    char *cg = sl_malloc(gl + 1);
    if (cg == NULL ||
        (in->bucket = sl__nats_bucket_name(e, bucket, channel, group)) ==
            NULL ||
        (in->prefix = sl_malloc(prefix_size)) == NULL) {
        sl_free(cg);
        goto fail;
    }
    /* '/' never occurs in channel or group names. */
    snprintf(cg, gl + 1, "%s/%s", channel, group);
    in->prefix[0] = 'g';
    b64url((const unsigned char *)cg, gl, in->prefix + 1);
    size_t pl = strlen(in->prefix);
    snprintf(in->prefix + pl, prefix_size - pl, ".");
    sl_free(cg);
    sl_uuid7(in->owner, sl_time_wall_ms());

    jsCtx *js = e->js;
    natsStatus ns = js_KeyValue(&in->kv, js, in->bucket);
    if (ns == NATS_NOT_FOUND) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = in->bucket;
        kc.Description = "sluice idempotency records";
        kc.History = 1;
        kc.TTL = (int64_t)ttl_ms * 1000000; /* nanoseconds */
        kc.StorageType = e->memory ? js_MemoryStorage : js_FileStorage;
        kc.Replicas = (int)e->replicas;
        ns = js_CreateKeyValue(&in->kv, js, &kc);
        if (ns != NATS_OK) {
            /* Another process may have created it meanwhile. */
            ns = js_KeyValue(&in->kv, js, in->bucket);
        }
    }
    if (ns != NATS_OK) {
        st = sl_diag_set(diag, SL_UNAVAILABLE,
                         "idempotency bucket %s for group %s on %s: %s",
                         in->bucket, group, channel, natsStatus_GetText(ns));
        goto fail;
    }
    /* The TTL is the bucket's (its stream's MaxAge). */
    kvStatus *ks = NULL;
    if (kvStore_Status(&ks, in->kv) == NATS_OK) {
        int64_t have = kvStatus_TTL(ks) / 1000000; /* ns */
        kvStatus_Destroy(ks);
        if (have != (int64_t)ttl_ms) {
            if (bucket != NULL) {
                st = sl_diag_set(
                    diag, SL_INVALID,
                    "idempotency bucket %s keeps records for %" PRId64
                    " ms; group %s on %s wants %" PRIu64
                    " ms: groups sharing a bucket need one "
                    "idempotency_ttl (or use inbox: nats-kv, a bucket "
                    "per group)",
                    in->bucket, have, group, channel, ttl_ms);
                goto fail;
            }
            /* The group's own bucket follows its configuration. */
            char stream[300];
            snprintf(stream, sizeof stream, "KV_%s", in->bucket);
            jsStreamInfo *si = NULL;
            jsErrCode jerr = 0;
            ns = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
            if (ns == NATS_OK) {
                si->Config->MaxAge = (int64_t)ttl_ms * 1000000;
                ns = js_UpdateStream(NULL, js, si->Config, NULL, &jerr);
                jsStreamInfo_Destroy(si);
            }
            if (ns != NATS_OK) {
                st = sl_diag_set(diag, SL_UNAVAILABLE,
                                 "idempotency bucket %s: changing its TTL to "
                                 "%" PRIu64 " ms: %s",
                                 in->bucket, ttl_ms, natsStatus_GetText(ns));
                goto fail;
            }
            sl_logf(SL_LOG_INFO, KV_LOG,
                    "idempotency bucket %s: TTL %" PRId64 " -> %" PRIu64 " ms",
                    in->bucket, have, ttl_ms);
        }
    }
    *out = in;
    return SL_OK;
fail:
    kv_close(in);
    return st;
}

static void kv_close(sl_inbox_store *in)
{
    if (in == NULL) {
        return;
    }
    kvStore_Destroy(in->kv);
    sl_free(in->bucket);
    sl_free(in->prefix);
    sl_free(in);
}

/* The table's claim: the id for a delivery whose handler may run until
 * @p lease_ms from @p now_ms (wall clock); the token is the claim's
 * revision. The group is in the key's prefix already. */
static sl_status kv_claim(sl_inbox_store *in, const char *group, const char *id,
                          uint64_t lease_ms, uint64_t now_ms,
                          sl_inbox_claim *claim, uint64_t *token,
                          uint64_t *retry_ms)
{
    (void)group;
    char *key = sl__nats_kv_key(in->prefix, id);
    if (key == NULL) {
        return SL_NOMEM;
    }
    char value[96];
    snprintf(value, sizeof value, "claim %" PRIu64 " %s", now_ms + lease_ms,
             in->owner);
    sl_status st = SL_OK;
    *claim = SL_INBOX_BUSY;
    *retry_ms = BUSY_RETRY_MS;
    for (int tries = 0; tries < CLAIM_TRIES; tries++) {
        uint64_t rev = 0;
        /* Create-only: of two processes racing here, one succeeds. */
        natsStatus ns = kvStore_CreateString(&rev, in->kv, key, value);
        if (ns == NATS_OK) {
            *claim = SL_INBOX_NEW;
            *token = rev;
            break;
        }
        if (ns != NATS_ERR) {
            st = sl__nats_status(ns); /* no answer: nothing claimed */
            break;
        }
        /* The key exists: what is it? */
        kvEntry *ent = NULL;
        ns = kvStore_Get(&ent, in->kv, key);
        if (ns == NATS_NOT_FOUND) {
            continue; /* expired or deleted meanwhile */
        }
        if (ns != NATS_OK) {
            st = sl__nats_status(ns);
            break;
        }
        const char *v = kvEntry_ValueString(ent);
        uint64_t at = kvEntry_Revision(ent);
        uint64_t until = 0;
        bool done = v != NULL && strncmp(v, "done ", 5) == 0;
        bool held = v != NULL && sscanf(v, "claim %" SCNu64, &until) == 1 &&
                    until > now_ms;
        kvEntry_Destroy(ent);
        if (done) {
            *claim = SL_INBOX_DONE;
            break;
        }
        if (held) {
            *claim = SL_INBOX_BUSY;
            *retry_ms = until - now_ms;
            break;
        }
        /* Given back ("free") or a lease that ran out (its holder died):
         * take it over at the revision read, unless someone was faster. */
        ns = kvStore_UpdateString(&rev, in->kv, key, value, at);
        if (ns == NATS_OK) {
            *claim = SL_INBOX_NEW;
            *token = rev;
            break;
        }
        if (ns != NATS_ERR) {
            st = sl__nats_status(ns);
            break;
        }
    }
    sl_free(key);
    return st;
}

/* The table's record: handled, whatever became of the claim meanwhile (a
 * lease that ran out and was taken over is logged; its new holder is then
 * handling the id a second time). */
static sl_status kv_record(sl_inbox_store *in, const char *group,
                           const char *id, uint64_t token, uint64_t now_ms)
{
    (void)group;
    char *key = sl__nats_kv_key(in->prefix, id);
    if (key == NULL) {
        return SL_NOMEM;
    }
    char value[40];
    snprintf(value, sizeof value, "done %" PRIu64, now_ms);
    natsStatus ns = kvStore_UpdateString(NULL, in->kv, key, value, token);
    if (ns == NATS_ERR) {
        sl_logf(SL_LOG_WARN, KV_LOG,
                "event %s was handled past its claim's lease; another "
                "delivery may be handling it too",
                id);
        ns = kvStore_PutString(NULL, in->kv, key, value);
    }
    sl_free(key);
    return sl__nats_status(ns);
}

/* The table's release: given back, only if the claim is still this one. */
static sl_status kv_release(sl_inbox_store *in, const char *group,
                            const char *id, uint64_t token)
{
    (void)group;
    char *key = sl__nats_kv_key(in->prefix, id);
    if (key == NULL) {
        return SL_NOMEM;
    }
    natsStatus ns = kvStore_UpdateString(NULL, in->kv, key, "free", token);
    if (ns == NATS_ERR) {
        ns = NATS_OK; /* taken over meanwhile: nothing to give back */
    }
    sl_free(key);
    return sl__nats_status(ns);
}

static const sl_inbox_store_ops kv_store = {
    .kind = "nats-kv",
    .open = kv_open,
    .close = kv_close,
    .claim = kv_claim,
    .record = kv_record,
    .release = kv_release,
};

const sl_inbox_store_ops *sl__nats_inbox_store(sl_engine *base,
                                               const char *kind)
{
    (void)base; /* every NATS engine has JetStream, so KV */
    return kind != NULL && strcmp(kind, kv_store.kind) == 0 ? &kv_store : NULL;
}
