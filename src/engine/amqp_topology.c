/* RabbitMQ's "inequivalent arg" refusals in sluice's terms. */
#include "engine/amqp_topology.h"

#include <stdio.h>
#include <string.h>

/* A cursor over the refusal text. */
typedef struct cur {
    const char *p;
    const char *end;
} cur;

static bool eat(cur *c, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) {
        return false;
    }
    c->p += n;
    return true;
}

/* Up to (not including) @p stop; the span goes to @p s / @p n. */
static bool until(cur *c, const char *stop, const char **s, size_t *n)
{
    size_t k = strlen(stop);
    for (const char *q = c->p; q + k <= c->end; q++) {
        if (memcmp(q, stop, k) == 0) {
            *s = c->p;
            *n = (size_t)(q - c->p);
            c->p = q;
            return true;
        }
    }
    return false;
}

/* A value: "none", "the value 'X' of type 'T'" or "'X'", ending where
 * @p after begins (or at the end when @p after is NULL). A NULL *s means
 * none. */
static bool value(cur *c, const char *after, const char **s, size_t *n)
{
    if (eat(c, "none")) {
        *s = NULL;
        *n = 0;
        return true;
    }
    if (eat(c, "the value '")) {
        const char *t;
        size_t tn;
        return until(c, "' of type '", s, n) && eat(c, "' of type '") &&
               until(c, "'", &t, &tn) && eat(c, "'");
    }
    if (!eat(c, "'")) {
        return false;
    }
    if (after == NULL) {
        /* The rest up to its closing quote (the last one). */
        const char *q = c->end;
        while (q > c->p && q[-1] != '\'') {
            q--;
        }
        if (q == c->p) {
            return false;
        }
        *s = c->p;
        *n = (size_t)(q - 1 - c->p);
        c->p = q;
        return true;
    }
    char stop[64];
    snprintf(stop, sizeof stop, "'%s", after);
    return until(c, stop, s, n) && eat(c, "'");
}

/* What a RabbitMQ argument is in sluice's configuration. */
static const char *meaning(const char *key, size_t n)
{
    static const struct {
        const char *key;
        const char *what;
    } known[] = {
        {"x-max-length", "the channel's max_length"},
        {"x-max-length-bytes", "the channel's max_bytes"},
        {"x-overflow",
         "reject-publish, with the channel's max_length or max_bytes"},
        {"x-delivery-limit", "2 x the group's max_attempts + 20"},
        {"x-dead-letter-exchange", "the group's dead-letter channel"},
        {"x-dead-letter-routing-key", "a retry queue's group"},
        {"x-message-ttl", "a retry queue's delay"},
        {"x-queue-type", "sluice's groups are quorum queues"},
        {"type", "sluice's channels are topic exchanges"},
        {"durable", "sluice declares everything durable"},
        {"auto_delete", "sluice never declares auto-delete"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strlen(known[i].key) == n && memcmp(known[i].key, key, n) == 0) {
            return known[i].what;
        }
    }
    return NULL;
}

bool sl__amqp_describe_difference(const char *text, size_t len, char *out,
                                  size_t size)
{
    if (text == NULL || out == NULL || size == 0) {
        return false;
    }
    cur c = {text, text + len};
    const char *key, *kind, *name, *got, *cur_v;
    size_t keyn, kindn, namen, gotn, curn;
    /* "... - inequivalent arg 'K' for KIND 'NAME' in vhost 'V': received
     * VALUE but current is VALUE" */
    const char *tag = "inequivalent arg '";
    const char *hit = NULL;
    for (const char *q = text; q + strlen(tag) <= c.end; q++) {
        if (memcmp(q, tag, strlen(tag)) == 0) {
            hit = q;
            break;
        }
    }
    if (hit == NULL) {
        return false;
    }
    c.p = hit + strlen(tag);
    const char *vh;
    size_t vhn;
    if (!until(&c, "' for ", &key, &keyn) || !eat(&c, "' for ") ||
        !until(&c, " '", &kind, &kindn) || !eat(&c, " '") ||
        !until(&c, "' in vhost '", &name, &namen) || !eat(&c, "' in vhost '") ||
        !until(&c, "': received ", &vh, &vhn) || !eat(&c, "': received ") ||
        !value(&c, " but current is ", &got, &gotn) ||
        !eat(&c, " but current is ") || !value(&c, NULL, &cur_v, &curn)) {
        return false;
    }
    const char *what = meaning(key, keyn);
    char broker[128], wanted[128];
    if (cur_v == NULL) {
        snprintf(broker, sizeof broker, "not set on the broker");
    } else {
        snprintf(broker, sizeof broker, "%.*s on the broker", (int)curn, cur_v);
    }
    if (got == NULL) {
        snprintf(wanted, sizeof wanted, "the configuration wants it unset");
    } else {
        snprintf(wanted, sizeof wanted, "the configuration wants %.*s",
                 (int)gotn, got);
    }
    snprintf(out, size,
             "%.*s '%.*s': %.*s%s%s%s is %s, %s; RabbitMQ cannot change an "
             "existing %.*s: delete it (its messages too) or change the "
             "configuration",
             (int)kindn, kind, (int)namen, name, (int)keyn, key,
             what ? " (" : "", what ? what : "", what ? ")" : "", broker,
             wanted, (int)kindn, kind);
    return true;
}
