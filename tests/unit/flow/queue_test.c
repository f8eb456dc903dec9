#include "sluice/queue.h"

#include "sluice/clock.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

/* Items are small integers carried in the pointer. */
#define ITEM(i) ((void *)(uintptr_t)(i))
#define VALUE(p) ((uintptr_t)(p))

static sl_queue *make(size_t capacity, sl_queue_overflow overflow)
{
    sl_queue *q = NULL;
    sl_queue_opts opts = {.capacity = capacity, .overflow = overflow};
    assert_int_equal(sl_queue_create(&opts, &q), SL_OK);
    return q;
}

static uintptr_t pop_value(sl_queue *q)
{
    void *item = NULL;
    assert_int_equal(sl_queue_pop(q, &item, 0), SL_OK);
    return VALUE(item);
}

/* Give a thread that is about to block a moment to get there. Only used
 * to make a wake-up test exercise the waiting path; the assertions hold
 * either way. */
static void let_thread_block(atomic_int *started)
{
    while (!atomic_load(started)) {
        sched_yield();
    }
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void queue_defaults_are_capacity_1024_and_block(void **state)
{
    (void)state;
    sl_queue *q = NULL;
    assert_int_equal(sl_queue_create(NULL, &q), SL_OK);
    assert_int_equal(sl_queue_capacity(q), 1024);
    for (int i = 0; i < 1024; i++) {
        assert_int_equal(sl_queue_push(q, ITEM(i), 0), SL_OK);
    }
    assert_int_equal(sl_queue_push(q, ITEM(0), 0), SL_FULL);
    assert_int_equal(sl_queue_len(q), 1024);
    sl_queue_destroy(q);
}

static void queue_pops_in_fifo_order_across_wraparound(void **state)
{
    (void)state;
    sl_queue *q = make(4, SL_QUEUE_REJECT);
    uintptr_t next_in = 0, next_out = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 3; i++) {
            assert_int_equal(sl_queue_push(q, ITEM(next_in++), 0), SL_OK);
        }
        for (int i = 0; i < 3; i++) {
            assert_int_equal(pop_value(q), next_out++);
        }
    }
    assert_int_equal(sl_queue_len(q), 0);
    sl_queue_destroy(q);
}

static void queue_null_item_is_a_valid_item(void **state)
{
    (void)state;
    sl_queue *q = make(2, SL_QUEUE_BLOCK);
    assert_int_equal(sl_queue_push(q, NULL, 0), SL_OK);
    void *item = ITEM(1);
    assert_int_equal(sl_queue_pop(q, &item, 0), SL_OK);
    assert_null(item);
    sl_queue_destroy(q);
}

static void queue_pop_on_empty_times_out_with_empty(void **state)
{
    (void)state;
    sl_queue *q = make(2, SL_QUEUE_BLOCK);
    void *item = ITEM(7);
    assert_int_equal(sl_queue_pop(q, &item, 0), SL_EMPTY);
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(sl_queue_pop(q, &item, 30), SL_EMPTY);
    assert_true(sl_time_mono_ms() - start >= 30);
    assert_ptr_equal(item, ITEM(7)); /* untouched */
    sl_queue_destroy(q);
}

static void queue_block_push_times_out_with_full(void **state)
{
    (void)state;
    sl_queue *q = make(1, SL_QUEUE_BLOCK);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    assert_int_equal(sl_queue_push(q, ITEM(2), 0), SL_FULL);
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(sl_queue_push(q, ITEM(2), 30), SL_FULL);
    assert_true(sl_time_mono_ms() - start >= 30);
    assert_int_equal(pop_value(q), 1);
    sl_queue_destroy(q);
}

typedef struct pusher_arg {
    sl_queue *q;
    atomic_int started;
    sl_status st;
} pusher_arg;

static void *push_one(void *p)
{
    pusher_arg *arg = p;
    atomic_store(&arg->started, 1);
    arg->st = sl_queue_push(arg->q, ITEM(2), 10000);
    return NULL;
}

static void queue_block_push_resumes_when_room_is_made(void **state)
{
    (void)state;
    sl_queue *q = make(1, SL_QUEUE_BLOCK);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    pusher_arg arg = {.q = q};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, push_one, &arg), 0);
    let_thread_block(&arg.started);
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(pop_value(q), 1);
    void *item = NULL;
    assert_int_equal(sl_queue_pop(q, &item, 10000), SL_OK);
    pthread_join(t, NULL);
    assert_true(sl_time_mono_ms() - start < 5000);
    assert_int_equal(arg.st, SL_OK);
    assert_int_equal(VALUE(item), 2);
    sl_queue_destroy(q);
}

static void queue_close_wakes_blocked_push_with_closed(void **state)
{
    (void)state;
    sl_queue *q = make(1, SL_QUEUE_BLOCK);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    pusher_arg arg = {.q = q};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, push_one, &arg), 0);
    let_thread_block(&arg.started);
    uint64_t start = sl_time_mono_ms();
    sl_queue_close(q);
    pthread_join(t, NULL);
    assert_true(sl_time_mono_ms() - start < 5000);
    assert_int_equal(arg.st, SL_CLOSED);
    sl_queue_destroy(q);
}

typedef struct popper_arg {
    sl_queue *q;
    atomic_int started;
    sl_status st;
} popper_arg;

static void *pop_one(void *p)
{
    popper_arg *arg = p;
    void *item = NULL;
    atomic_store(&arg->started, 1);
    arg->st = sl_queue_pop(arg->q, &item, 10000);
    return NULL;
}

static void queue_close_wakes_blocked_pop_with_closed(void **state)
{
    (void)state;
    sl_queue *q = make(4, SL_QUEUE_BLOCK);
    popper_arg arg = {.q = q};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, pop_one, &arg), 0);
    let_thread_block(&arg.started);
    uint64_t start = sl_time_mono_ms();
    sl_queue_close(q);
    pthread_join(t, NULL);
    assert_true(sl_time_mono_ms() - start < 5000);
    assert_int_equal(arg.st, SL_CLOSED);
    sl_queue_destroy(q);
}

static void queue_reject_fails_at_once_when_full(void **state)
{
    (void)state;
    sl_queue *q = make(2, SL_QUEUE_REJECT);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    assert_int_equal(sl_queue_push(q, ITEM(2), 0), SL_OK);
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(sl_queue_push(q, ITEM(3), 10000), SL_FULL);
    assert_true(sl_time_mono_ms() - start < 5000);
    assert_int_equal(pop_value(q), 1);
    assert_int_equal(pop_value(q), 2);
    sl_queue_destroy(q);
}

typedef struct drop_log {
    int n;
    uintptr_t items[8];
} drop_log;

static void record_drop(void *item, void *ctx)
{
    drop_log *log = ctx;
    log->items[log->n++] = VALUE(item);
}

static void queue_drop_oldest_makes_room_and_hands_back_item(void **state)
{
    (void)state;
    drop_log log = {0};
    sl_queue *q = NULL;
    sl_queue_opts opts = {.capacity = 2,
                          .overflow = SL_QUEUE_DROP_OLDEST,
                          .drop_fn = record_drop,
                          .drop_ctx = &log};
    assert_int_equal(sl_queue_create(&opts, &q), SL_OK);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(sl_queue_push(q, ITEM(i), 0), SL_OK);
    }
    assert_int_equal(sl_queue_dropped(q), 3);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.items[0], 1);
    assert_int_equal(log.items[1], 2);
    assert_int_equal(log.items[2], 3);
    assert_int_equal(pop_value(q), 4);
    assert_int_equal(pop_value(q), 5);
    sl_queue_destroy(q);
}

static void queue_drop_oldest_works_without_drop_fn(void **state)
{
    (void)state;
    sl_queue *q = make(1, SL_QUEUE_DROP_OLDEST);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    assert_int_equal(sl_queue_push(q, ITEM(2), 0), SL_OK);
    assert_int_equal(sl_queue_dropped(q), 1);
    assert_int_equal(pop_value(q), 2);
    sl_queue_destroy(q);
}

static void queue_pop_many_takes_what_is_there_up_to_max(void **state)
{
    (void)state;
    sl_queue *q = make(8, SL_QUEUE_BLOCK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sl_queue_push(q, ITEM(i), 0), SL_OK);
    }
    void *items[8];
    assert_int_equal(sl_queue_pop_many(q, items, 3, 0), 3);
    assert_int_equal(VALUE(items[0]), 0);
    assert_int_equal(VALUE(items[2]), 2);
    assert_int_equal(sl_queue_pop_many(q, items, 8, 0), 2);
    assert_int_equal(VALUE(items[0]), 3);
    assert_int_equal(VALUE(items[1]), 4);
    assert_int_equal(sl_queue_pop_many(q, items, 8, 0), 0);
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(sl_queue_pop_many(q, items, 8, 30), 0);
    assert_true(sl_time_mono_ms() - start >= 30);
    sl_queue_destroy(q);
}

static void queue_close_fails_pushes_and_drains_pops(void **state)
{
    (void)state;
    sl_queue *q = make(4, SL_QUEUE_DROP_OLDEST);
    assert_int_equal(sl_queue_push(q, ITEM(1), 0), SL_OK);
    assert_int_equal(sl_queue_push(q, ITEM(2), 0), SL_OK);
    sl_queue_close(q);
    sl_queue_close(q); /* idempotent */
    assert_int_equal(sl_queue_push(q, ITEM(3), 0), SL_CLOSED);
    assert_int_equal(pop_value(q), 1);
    void *items[4];
    assert_int_equal(sl_queue_pop_many(q, items, 4, 1000), 1);
    assert_int_equal(VALUE(items[0]), 2);
    void *item = NULL;
    uint64_t start = sl_time_mono_ms();
    assert_int_equal(sl_queue_pop(q, &item, 10000), SL_CLOSED);
    assert_int_equal(sl_queue_pop_many(q, items, 4, 10000), 0);
    assert_true(sl_time_mono_ms() - start < 5000);
    assert_int_equal(sl_queue_dropped(q), 0);
    sl_queue_destroy(q);
}

#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER 20000

typedef struct mpmc {
    sl_queue *q;
    atomic_int next_producer;
    atomic_int seen[PRODUCERS * PER_PRODUCER];
    atomic_int push_failures;
} mpmc;

static void *producer(void *p)
{
    mpmc *m = p;
    int id = atomic_fetch_add(&m->next_producer, 1);
    for (int i = 0; i < PER_PRODUCER; i++) {
        /* Values start at 1 so that a NULL would stand out. */
        uintptr_t v = (uintptr_t)(id * PER_PRODUCER + i) + 1;
        if (sl_queue_push(m->q, ITEM(v), 10000) != SL_OK) {
            atomic_fetch_add(&m->push_failures, 1);
        }
    }
    return NULL;
}

static void mark(mpmc *m, void *item)
{
    uintptr_t v = VALUE(item);
    if (v >= 1 && v <= PRODUCERS * PER_PRODUCER) {
        atomic_fetch_add(&m->seen[v - 1], 1);
    }
}

static void *consumer_one(void *p)
{
    mpmc *m = p;
    void *item;
    sl_status st;
    while ((st = sl_queue_pop(m->q, &item, 10000)) != SL_CLOSED) {
        if (st == SL_OK) {
            mark(m, item);
        }
    }
    return NULL;
}

static void *consumer_many(void *p)
{
    mpmc *m = p;
    void *items[7];
    for (;;) {
        size_t n = sl_queue_pop_many(m->q, items, 7, 10000);
        if (n == 0) {
            /* A timeout or closed and drained: sl_queue_pop() tells. */
            sl_status st = sl_queue_pop(m->q, &items[0], 0);
            if (st == SL_CLOSED) {
                return NULL;
            }
            n = st == SL_OK;
        }
        for (size_t i = 0; i < n; i++) {
            mark(m, items[i]);
        }
    }
}

static void queue_mpmc_loses_and_duplicates_nothing(void **state)
{
    (void)state;
    static mpmc m; /* large: keep it off the stack */
    memset(&m, 0, sizeof m);
    m.q = make(16, SL_QUEUE_BLOCK);
    pthread_t prod[PRODUCERS], cons[CONSUMERS];
    for (int i = 0; i < CONSUMERS; i++) {
        assert_int_equal(pthread_create(&cons[i], NULL,
                                        i % 2 ? consumer_many : consumer_one,
                                        &m),
                         0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        assert_int_equal(pthread_create(&prod[i], NULL, producer, &m), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(prod[i], NULL);
    }
    sl_queue_close(m.q);
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(cons[i], NULL);
    }
    assert_int_equal(atomic_load(&m.push_failures), 0);
    for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++) {
        if (atomic_load(&m.seen[i]) != 1) {
            fail_msg("item %d seen %d times", i + 1, atomic_load(&m.seen[i]));
        }
    }
    assert_int_equal(sl_queue_len(m.q), 0);
    sl_queue_destroy(m.q);
}

static void queue_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_queue *q = (sl_queue *)&q;
    sl_queue *const sentinel = q;
    sl_queue_opts opts = {.overflow = (sl_queue_overflow)5};
    assert_int_equal(sl_queue_create(&opts, &q), SL_INVALID);
    assert_int_equal(sl_queue_create(NULL, NULL), SL_INVALID);
    assert_ptr_equal(q, sentinel);
}

static void queue_null_handle_is_harmless(void **state)
{
    (void)state;
    void *item;
    sl_queue_destroy(NULL);
    sl_queue_close(NULL);
    assert_int_equal(sl_queue_push(NULL, NULL, 0), SL_INVALID);
    assert_int_equal(sl_queue_pop(NULL, &item, 0), SL_INVALID);
    assert_int_equal(sl_queue_pop_many(NULL, &item, 1, 0), 0);
    assert_int_equal(sl_queue_len(NULL), 0);
    assert_int_equal(sl_queue_capacity(NULL), 0);
    assert_int_equal(sl_queue_dropped(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(queue_defaults_are_capacity_1024_and_block),
        cmocka_unit_test(queue_pops_in_fifo_order_across_wraparound),
        cmocka_unit_test(queue_null_item_is_a_valid_item),
        cmocka_unit_test(queue_pop_on_empty_times_out_with_empty),
        cmocka_unit_test(queue_block_push_times_out_with_full),
        cmocka_unit_test(queue_block_push_resumes_when_room_is_made),
        cmocka_unit_test(queue_close_wakes_blocked_push_with_closed),
        cmocka_unit_test(queue_close_wakes_blocked_pop_with_closed),
        cmocka_unit_test(queue_reject_fails_at_once_when_full),
        cmocka_unit_test(queue_drop_oldest_makes_room_and_hands_back_item),
        cmocka_unit_test(queue_drop_oldest_works_without_drop_fn),
        cmocka_unit_test(queue_pop_many_takes_what_is_there_up_to_max),
        cmocka_unit_test(queue_close_fails_pushes_and_drains_pops),
        cmocka_unit_test(queue_mpmc_loses_and_duplicates_nothing),
        cmocka_unit_test(queue_create_rejects_invalid_opts),
        cmocka_unit_test(queue_null_handle_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
