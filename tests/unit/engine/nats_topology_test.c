/* The NATS engine's names without a server: a group's key, from which the
 * inbox subjects of durable consumers are made, keeps its digest across
 * versions (a new one would orphan the consumers' subjects). */
#include "engine/nats/nats_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void group_key_keeps_its_digest(void **state)
{
    (void)state;
    /* FNV-1a, 64 bits, from 1469598103934665603 over "orders/billing". */
    assert_int_equal(sl__nats_hash("orders", "billing"),
                     UINT64_C(0xaf92609bbf5604de));
    assert_int_equal(sl__nats_hash("", ""), UINT64_C(0x44bd54d473cd3d44));
}

static void group_key_separates_its_two_names(void **state)
{
    (void)state;
    assert_true(sl__nats_hash("ab", "c") != sl__nats_hash("a", "bc"));
    assert_true(sl__nats_hash("a", "b") != sl__nats_hash("b", "a"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(group_key_keeps_its_digest),
        cmocka_unit_test(group_key_separates_its_two_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
