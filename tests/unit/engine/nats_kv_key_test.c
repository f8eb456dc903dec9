/* The keys of the NATS engine's idempotency store (src/engine/nats/kv.c).
 *
 * Keys outlive processes: a bucket written by one release is read by the
 * next, so these tests pin the exact keys, the digest of a long id
 * included. A key that changes here orphans every record already kept.
 */
#include "engine/nats/nats_int.h"

#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define PREFIX "gb3JkZXJzL2JpbGxpbmc." /* "orders/billing" */

/* "evt-" and "0123456789" thirty times: 304 characters, whose base64url
 * (408) is past the 400 a key holds as it is. */
static void long_id(char *buf, size_t size, size_t tens)
{
    size_t n = (size_t)snprintf(buf, size, "evt-");
    for (size_t i = 0; i < tens; i++) {
        n += (size_t)snprintf(buf + n, size - n, "0123456789");
    }
}

static void short_id_is_its_base64url_under_the_prefix(void **state)
{
    (void)state;
    char *key = sl__nats_kv_key(PREFIX, "order-1");
    assert_non_null(key);
    assert_string_equal(key, PREFIX "eb3JkZXItMQ");
    sl_free(key);
}

static void id_of_300_characters_is_still_encoded(void **state)
{
    (void)state;
    char id[301];
    memset(id, 'x', 300);
    id[300] = '\0';
    char *key = sl__nats_kv_key(PREFIX, id);
    assert_non_null(key);
    assert_int_equal(strlen(key), strlen(PREFIX) + 1 + 400);
    assert_memory_equal(key, PREFIX "eeHh4", strlen(PREFIX) + 5);
    sl_free(key);
}

/* The digest's two halves start from SL_HASH_FNV1A_SEED and 0x9e37...:
 * the value below was made by the code before it used core/hash.h. */
static void long_id_keeps_its_digest_across_releases(void **state)
{
    (void)state;
    char id[400];
    long_id(id, sizeof id, 30);
    assert_int_equal(strlen(id), 304);
    char *key = sl__nats_kv_key(PREFIX, id);
    assert_non_null(key);
    assert_string_equal(key, PREFIX "h318333aa4ef3ad572bdbba9aef2e3fd5");
    sl_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(short_id_is_its_base64url_under_the_prefix),
        cmocka_unit_test(id_of_300_characters_is_still_encoded),
        cmocka_unit_test(long_id_keeps_its_digest_across_releases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
