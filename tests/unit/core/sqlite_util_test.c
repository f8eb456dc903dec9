/* Every sluice database is opened the same way: WAL, the durability level
 * asked for, a busy timeout, a bounded cache; errors name the database. */
#include "core/sqlite_util.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct fx {
    char dir[256];
    char path[300];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    if (!ts_tempdir(f->dir, sizeof f->dir, "sqlite")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ts_rm_rf(f->dir);
    free(f);
    return 0;
}

static long long pragma(sqlite3 *db, const char *name)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA %s", name);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static void defaults_are_wal_normal_and_five_seconds(void **state)
{
    fx *f = *state;
    sqlite3 *db = NULL;
    assert_int_equal(sl__sqlite_open(f->path, NULL, &db, NULL), SL_OK);
    sqlite3_stmt *s = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    assert_int_equal(pragma(db, "synchronous"), 1); /* NORMAL */
    assert_int_equal(pragma(db, "busy_timeout"), 5000);
    sqlite3_close(db);
}

static void durability_timeout_and_cache_follow_the_options(void **state)
{
    fx *f = *state;
    sqlite3 *db = NULL;
    sl_sqlite_opts o = {
        .sync = SL_SQLITE_SYNC_FULL, .busy_timeout_ms = 250, .cache_kib = 128};
    assert_int_equal(sl__sqlite_open(f->path, &o, &db, NULL), SL_OK);
    assert_int_equal(pragma(db, "synchronous"), 2); /* FULL */
    assert_int_equal(pragma(db, "busy_timeout"), 250);
    assert_int_equal(pragma(db, "cache_size"), -128);
    sqlite3_close(db);
    o = (sl_sqlite_opts){.sync = SL_SQLITE_SYNC_OFF};
    assert_int_equal(sl__sqlite_open(f->path, &o, &db, NULL), SL_OK);
    assert_int_equal(pragma(db, "synchronous"), 0); /* OFF */
    sqlite3_close(db);
}

static void read_only_connection_cannot_write(void **state)
{
    fx *f = *state;
    sqlite3 *rw = NULL;
    sqlite3 *ro = NULL;
    assert_int_equal(sl__sqlite_open(f->path, NULL, &rw, NULL), SL_OK);
    assert_int_equal(sqlite3_exec(rw, "CREATE TABLE t(x)", NULL, NULL, NULL),
                     SQLITE_OK);
    sl_sqlite_opts o = {.read_only = true, .shared = true};
    assert_int_equal(sl__sqlite_open(f->path, &o, &ro, NULL), SL_OK);
    assert_int_equal(pragma(ro, "busy_timeout"), 5000);
    assert_int_equal(
        sqlite3_exec(ro, "INSERT INTO t VALUES(1)", NULL, NULL, NULL),
        SQLITE_READONLY);
    sqlite3_close(ro);
    sqlite3_close(rw);
}

static void failure_names_the_database_and_leaves_out_alone(void **state)
{
    fx *f = *state;
    char path[300];
    snprintf(path, sizeof path, "%s/missing/dir/test.db", f->dir);
    sqlite3 *db = (sqlite3 *)(uintptr_t)1; /* must stay as it is */
    sl_diag diag = {0};
    sl_sqlite_opts o = {.what = "idempotency inbox"};
    assert_int_equal(sl__sqlite_open(path, &o, &db, &diag), SL_IO);
    assert_ptr_equal(db, (sqlite3 *)(uintptr_t)1);
    assert_non_null(strstr(diag.msg, "idempotency inbox"));
    assert_non_null(strstr(diag.msg, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            defaults_are_wal_normal_and_five_seconds, setup, teardown),
        cmocka_unit_test_setup_teardown(
            durability_timeout_and_cache_follow_the_options, setup, teardown),
        cmocka_unit_test_setup_teardown(read_only_connection_cannot_write,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            failure_names_the_database_and_leaves_out_alone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
