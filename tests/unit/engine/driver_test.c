/* The driver table's version: engine.c uses only a driver built against
 * the table layout of this library (SL_DRIVER_ABI_VERSION). */
#include "engine/driver.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void driver_of_this_layout_is_accepted(void **state)
{
    (void)state;
    const sl_driver drv = {.abi_version = SL_DRIVER_ABI_VERSION,
                           .name = "current"};
    assert_int_equal(sl__driver_check(&drv, NULL), SL_OK);
    assert_int_equal(sl__driver_check(&sl__embedded_driver, NULL), SL_OK);
}

static void driver_of_another_layout_is_refused_by_name(void **state)
{
    (void)state;
    const sl_driver old = {.abi_version = SL_DRIVER_ABI_VERSION - 1,
                           .name = "old"};
    sl_diag diag = {0};
    assert_int_equal(sl__driver_check(&old, &diag), SL_INTERNAL);
    assert_non_null(strstr(diag.msg, "engine driver old"));
    /* A table without a version (zero-filled) is refused too. */
    const sl_driver none = {.name = "unversioned"};
    assert_int_equal(sl__driver_check(&none, NULL), SL_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(driver_of_this_layout_is_accepted),
        cmocka_unit_test(driver_of_another_layout_is_refused_by_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
