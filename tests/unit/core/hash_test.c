/* FNV-1a: the published test vectors, and the values of digests that
 * outlive a process (they must never change). */
#include "core/hash.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void fnv1a_matches_the_published_vectors(void **state)
{
    (void)state;
    assert_true(sl__hash_fnv1a("", 0, SL_HASH_FNV1A_OFFSET) ==
                0xcbf29ce484222325ULL);
    assert_true(sl__hash_fnv1a("a", 1, SL_HASH_FNV1A_OFFSET) ==
                0xaf63dc4c8601ec8cULL);
    assert_true(sl__hash_fnv1a_str("foobar", SL_HASH_FNV1A_OFFSET) ==
                0x85944171f73967e8ULL);
}

static void fnv1a_of_a_string_is_fnv1a_of_its_bytes(void **state)
{
    (void)state;
    const char s[] = "orders.workers";
    assert_true(sl__hash_fnv1a_str(s, SL_HASH_FNV1A_SEED) ==
                sl__hash_fnv1a(s, sizeof s - 1, SL_HASH_FNV1A_SEED));
}

/* NATS inbox subjects of durable consumers are made from
 * (stream, '/', durable) with the engines' seed: a change here would move
 * every existing consumer to a new subject. */
static void fnv1a_seeded_digests_keep_their_values(void **state)
{
    (void)state;
    assert_true(sl__hash_fnv1a_str("orders", SL_HASH_FNV1A_SEED) ==
                0x13b95f6c50cf7262ULL);
    uint64_t h = sl__hash_fnv1a_str("ORDERS", SL_HASH_FNV1A_SEED);
    h = sl__hash_fnv1a_byte('/', h);
    h = sl__hash_fnv1a_str("workers", h);
    assert_true(h == 0xaf792985cfda60d2ULL);
}

static void fnv1a_separator_keeps_split_strings_apart(void **state)
{
    (void)state;
    uint64_t a = sl__hash_fnv1a_byte(
        '/', sl__hash_fnv1a_str("ab", SL_HASH_FNV1A_OFFSET));
    a = sl__hash_fnv1a_str("c", a);
    uint64_t b =
        sl__hash_fnv1a_byte('/', sl__hash_fnv1a_str("a", SL_HASH_FNV1A_OFFSET));
    b = sl__hash_fnv1a_str("bc", b);
    assert_true(a != b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fnv1a_matches_the_published_vectors),
        cmocka_unit_test(fnv1a_of_a_string_is_fnv1a_of_its_bytes),
        cmocka_unit_test(fnv1a_seeded_digests_keep_their_values),
        cmocka_unit_test(fnv1a_separator_keeps_split_strings_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
