/* The idempotency inbox: processed ids in SQLite, with a TTL, shared by
 * path within a process; and a store an engine offers through its driver
 * table, reached by the kind its spec names. */
#include "runtime/inbox.h"

#include "engine/driver.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T0 1700000000000ull
#define TTL 60000

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
    if (!ts_tempdir(f->dir, sizeof f->dir, "inbox-test")) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/inbox.db", f->dir);
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

static sl_inbox *open_inbox(const char *path, uint64_t ttl_ms)
{
    sl_inbox *in = NULL;
    sl_diag diag = {0};
    sl_status st = sl__inbox_open(path, ttl_ms, &in, &diag);
    if (st != SL_OK) {
        fail_msg("inbox %s: %s (%s)", path, sl_status_str(st), diag.msg);
    }
    return in;
}

static void inbox_sees_an_id_only_after_it_was_recorded(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_false(sl__inbox_seen(in, "billing", "evt-1", T0));
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0), SL_OK);
    assert_true(sl__inbox_seen(in, "billing", "evt-1", T0));
    assert_false(sl__inbox_seen(in, "billing", "evt-2", T0));
    sl__inbox_close(in);
}

static void inbox_keeps_groups_apart(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0), SL_OK);
    assert_false(sl__inbox_seen(in, "shipping", "evt-1", T0));
    sl__inbox_close(in);
}

static void inbox_forgets_ids_after_the_ttl(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0), SL_OK);
    assert_true(sl__inbox_seen(in, "billing", "evt-1", T0 + TTL - 1));
    assert_false(sl__inbox_seen(in, "billing", "evt-1", T0 + TTL));
    /* Recording again starts a new TTL. */
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0 + TTL), SL_OK);
    assert_true(sl__inbox_seen(in, "billing", "evt-1", T0 + 2 * TTL - 1));
    sl__inbox_close(in);
}

static void inbox_survives_a_reopen(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0), SL_OK);
    sl__inbox_close(in);
    in = open_inbox(f->path, TTL);
    assert_true(sl__inbox_seen(in, "billing", "evt-1", T0 + 1));
    sl__inbox_close(in);
}

static void inbox_is_shared_by_path(void **state)
{
    fx *f = *state;
    sl_inbox *a = open_inbox(f->path, TTL);
    sl_inbox *b = open_inbox(f->path, TTL);
    assert_ptr_equal(a, b);
    assert_int_equal(sl__inbox_record(a, "billing", "evt-1", T0), SL_OK);
    assert_true(sl__inbox_seen(b, "billing", "evt-1", T0));
    /* Closing one user leaves the inbox open for the other. */
    sl__inbox_close(a);
    assert_true(sl__inbox_seen(b, "billing", "evt-1", T0));
    assert_int_equal(sl__inbox_record(b, "billing", "evt-2", T0), SL_OK);
    assert_true(sl__inbox_seen(b, "billing", "evt-2", T0));
    sl__inbox_close(b);
}

static void memory_inboxes_are_not_shared(void **state)
{
    (void)state;
    sl_inbox *a = open_inbox(":memory:", TTL);
    sl_inbox *b = open_inbox(":memory:", TTL);
    assert_ptr_not_equal(a, b);
    assert_int_equal(sl__inbox_record(a, "billing", "evt-1", T0), SL_OK);
    assert_true(sl__inbox_seen(a, "billing", "evt-1", T0));
    assert_false(sl__inbox_seen(b, "billing", "evt-1", T0));
    sl__inbox_close(a);
    sl__inbox_close(b);
}

static void
inbox_that_cannot_be_opened_is_an_io_error_naming_the_path(void **state)
{
    fx *f = *state;
    char path[400];
    snprintf(path, sizeof path, "%s/no/such/dir/inbox.db", f->dir);
    sl_inbox *in = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__inbox_open(path, TTL, &in, &diag), SL_IO);
    assert_null(in);
    assert_non_null(strstr(diag.msg, path));
    /* A failed open leaves nothing behind to share. */
    in = open_inbox(f->path, TTL);
    sl__inbox_close(in);
}

/* ---- transactions -------------------------------------------------------- */

static int count(sl_inbox *in, const char *sql)
{
    sqlite3 *db = sl__inbox_db(in);
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return n;
}

static void inbox_commit_records_the_id_with_the_handlers_writes(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_int_equal(sqlite3_exec(sl__inbox_db(in),
                                  "CREATE TABLE effects(id TEXT)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(sl__inbox_begin(in), SL_OK);
    assert_false(sl__inbox_seen_in_tx(in, "billing", "evt-1", T0));
    assert_int_equal(sqlite3_exec(sl__inbox_db(in),
                                  "INSERT INTO effects VALUES('evt-1')", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sl__inbox_commit_record(in, "billing", "evt-1", T0),
                     SL_OK);
    assert_true(sl__inbox_seen(in, "billing", "evt-1", T0));
    assert_int_equal(count(in, "SELECT count(*) FROM effects"), 1);

    /* In the next transaction the id is already seen. */
    assert_int_equal(sl__inbox_begin(in), SL_OK);
    assert_true(sl__inbox_seen_in_tx(in, "billing", "evt-1", T0));
    sl__inbox_rollback(in);
    sl__inbox_close(in);
}

static void inbox_rollback_discards_the_handlers_writes(void **state)
{
    fx *f = *state;
    sl_inbox *in = open_inbox(f->path, TTL);
    assert_int_equal(sqlite3_exec(sl__inbox_db(in),
                                  "CREATE TABLE effects(id TEXT)", NULL, NULL,
                                  NULL),
                     SQLITE_OK);
    assert_int_equal(sl__inbox_begin(in), SL_OK);
    assert_int_equal(sqlite3_exec(sl__inbox_db(in),
                                  "INSERT INTO effects VALUES('evt-1')", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    sl__inbox_rollback(in);
    assert_int_equal(count(in, "SELECT count(*) FROM effects"), 0);
    assert_false(sl__inbox_seen(in, "billing", "evt-1", T0));
    /* The inbox is usable again at once. */
    assert_int_equal(sl__inbox_record(in, "billing", "evt-1", T0), SL_OK);
    sl__inbox_close(in);
}

static void inbox_close_null_is_noop(void **state)
{
    (void)state;
    sl__inbox_close(NULL);
}

/* ---- a store an engine offers (engine/inbox_store.h) -------------------- */

/* What the fake store was asked, and what its claim answers. */
static struct {
    char arg[64];
    char channel[64];
    uint64_t ttl_ms;
    int opens, claims, records, releases, closes;
    uint64_t token; /* the last record's or release's */
} fake;

struct sl_inbox_store {
    int unused;
};
static struct sl_inbox_store fake_handle;

static sl_status fake_open(sl_engine *eng, const char *arg, const char *channel,
                           const char *group, uint64_t ttl_ms,
                           sl_inbox_store **out, sl_diag *diag)
{
    (void)eng;
    (void)group;
    (void)diag;
    fake.opens++;
    snprintf(fake.arg, sizeof fake.arg, "%s", arg ? arg : "(null)");
    snprintf(fake.channel, sizeof fake.channel, "%s", channel);
    fake.ttl_ms = ttl_ms;
    *out = &fake_handle;
    return SL_OK;
}

static void fake_close(sl_inbox_store *st)
{
    assert_ptr_equal(st, &fake_handle);
    fake.closes++;
}

static sl_status fake_claim(sl_inbox_store *st, const char *group,
                            const char *id, uint64_t lease_ms, uint64_t now_ms,
                            sl_inbox_claim *out, uint64_t *token,
                            uint64_t *retry_ms)
{
    (void)st;
    (void)group;
    (void)id;
    (void)now_ms;
    fake.claims++;
    *out = SL_INBOX_BUSY;
    *token = 7;
    *retry_ms = lease_ms / 2;
    return SL_OK;
}

static sl_status fake_record(sl_inbox_store *st, const char *group,
                             const char *id, uint64_t token, uint64_t now_ms)
{
    (void)st;
    (void)group;
    (void)id;
    (void)now_ms;
    fake.records++;
    fake.token = token;
    return SL_OK;
}

static sl_status fake_release(sl_inbox_store *st, const char *group,
                              const char *id, uint64_t token)
{
    (void)st;
    (void)group;
    (void)id;
    fake.releases++;
    fake.token = token;
    return SL_OK;
}

static const sl_inbox_store_ops fake_store = {
    .kind = "fake-kv",
    .open = fake_open,
    .close = fake_close,
    .claim = fake_claim,
    .record = fake_record,
    .release = fake_release,
};

static const sl_inbox_store_ops *fake_inbox_store(sl_engine *eng,
                                                  const char *kind)
{
    (void)eng;
    return strcmp(kind, fake_store.kind) == 0 ? &fake_store : NULL;
}

static const sl_driver fake_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "fake",
    .inbox_store = fake_inbox_store,
};

static void
inbox_of_a_kind_the_engine_offers_goes_through_its_table(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof fake);
    sl_engine eng = {.drv = &fake_driver};
    sl_inbox *in = NULL;
    assert_int_equal(sl__inbox_open_for(&eng, "fake-kv:shared", "orders",
                                        "billing", TTL, &in, NULL),
                     SL_OK);
    assert_int_equal(fake.opens, 1);
    assert_string_equal(fake.arg, "shared");
    assert_string_equal(fake.channel, "orders");
    assert_int_equal(fake.ttl_ms, TTL);
    assert_false(sl__inbox_has_db(in));

    sl_inbox_claim c = SL_INBOX_NEW;
    uint64_t token = 0, retry_ms = 0;
    assert_int_equal(sl__inbox_claim(in, "billing", "evt-1", 1000, T0, &c,
                                     &token, &retry_ms),
                     SL_OK);
    assert_int_equal(c, SL_INBOX_BUSY);
    assert_int_equal(token, 7);
    assert_int_equal(retry_ms, 500);
    assert_int_equal(sl__inbox_finish(in, "billing", "evt-1", 7, true, T0),
                     SL_OK);
    assert_int_equal(sl__inbox_finish(in, "billing", "evt-1", 8, false, T0),
                     SL_OK);
    assert_int_equal(fake.records, 1);
    assert_int_equal(fake.releases, 1);
    assert_int_equal(fake.token, 8);
    sl__inbox_close(in);
    assert_int_equal(fake.closes, 1);

    /* The kind alone: no argument. */
    assert_int_equal(sl__inbox_open_for(&eng, "fake-kv", "orders", "billing",
                                        TTL, &in, NULL),
                     SL_OK);
    assert_string_equal(fake.arg, "(null)");
    sl__inbox_close(in);
}

static void inbox_spec_that_names_no_store_is_an_sqlite_file(void **state)
{
    fx *f = *state;
    memset(&fake, 0, sizeof fake);
    sl_engine eng = {.drv = &fake_driver};
    sl_inbox *in = NULL;
    assert_int_equal(
        sl__inbox_open_for(&eng, f->path, "orders", "billing", TTL, &in, NULL),
        SL_OK);
    assert_true(sl__inbox_has_db(in));
    assert_int_equal(fake.opens, 0);
    sl_inbox_claim c = SL_INBOX_BUSY;
    uint64_t token = 1, retry_ms = 1;
    assert_int_equal(sl__inbox_claim(in, "billing", "evt-1", 1000, T0, &c,
                                     &token, &retry_ms),
                     SL_OK);
    assert_int_equal(c, SL_INBOX_NEW);
    assert_int_equal(sl__inbox_finish(in, "billing", "evt-1", token, true, T0),
                     SL_OK);
    assert_int_equal(sl__inbox_claim(in, "billing", "evt-1", 1000, T0, &c,
                                     &token, &retry_ms),
                     SL_OK);
    assert_int_equal(c, SL_INBOX_DONE);
    sl__inbox_close(in);
}

/* A kind another engine of this build offers is refused, not taken for a
 * file name (only with that engine built: "nats-kv" needs NATS). */
static void inbox_of_a_kind_only_another_engine_offers_is_refused(void **state)
{
    (void)state;
    const char *owner = sl__engine_inbox_store_owner("nats-kv");
    if (owner == NULL) {
        skip();
    }
    assert_string_equal(owner, "nats");
    sl_engine eng = {.drv = &fake_driver};
    sl_inbox *in = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__inbox_open_for(&eng, "nats-kv:b", "orders", "billing",
                                        TTL, &in, &diag),
                     SL_INVALID);
    assert_null(in);
    assert_non_null(strstr(diag.msg, "needs the nats engine"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(inbox_sees_an_id_only_after_it_was_recorded),
        T(inbox_keeps_groups_apart),
        T(inbox_forgets_ids_after_the_ttl),
        T(inbox_survives_a_reopen),
        T(inbox_is_shared_by_path),
        T(memory_inboxes_are_not_shared),
        T(inbox_that_cannot_be_opened_is_an_io_error_naming_the_path),
        T(inbox_commit_records_the_id_with_the_handlers_writes),
        T(inbox_rollback_discards_the_handlers_writes),
        T(inbox_close_null_is_noop),
        T(inbox_of_a_kind_the_engine_offers_goes_through_its_table),
        T(inbox_spec_that_names_no_store_is_an_sqlite_file),
        T(inbox_of_a_kind_only_another_engine_offers_is_refused),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
