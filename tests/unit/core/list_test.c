/* The intrusive list: order, length, unlinking from anywhere, splicing,
 * and an all-zero list being an empty one. */
#include "core/list.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

typedef struct item {
    int value;
    sl_list_node link;
} item;

/* The values of @p l, head to tail, into @p out; returns how many. */
static size_t values(const sl_list *l, int *out, size_t max)
{
    size_t n = 0;
    SL_LIST_FOREACH(l, node)
    {
        if (n < max) {
            out[n] = SL_LIST_ENTRY(node, item, link)->value;
        }
        n++;
    }
    return n;
}

static void zeroed_list_is_empty(void **state)
{
    (void)state;
    sl_list l = {0};
    assert_true(sl__list_is_empty(&l));
    assert_null(sl__list_pop_head(&l));
    assert_null(SL_LIST_ENTRY_OR_NULL(l.head, item, link));
    assert_int_equal(l.n, 0);
}

static void pushes_keep_order_and_count(void **state)
{
    (void)state;
    item it[4] = {{.value = 0}, {.value = 1}, {.value = 2}, {.value = 3}};
    sl_list l = {0};
    sl__list_push_tail(&l, &it[1].link);
    sl__list_push_tail(&l, &it[2].link);
    sl__list_push_head(&l, &it[0].link);
    sl__list_push_tail(&l, &it[3].link);
    int v[4];
    assert_int_equal(values(&l, v, 4), 4);
    assert_int_equal(l.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(v[i], i);
    }
    assert_ptr_equal(SL_LIST_ENTRY(l.tail, item, link), &it[3]);
}

static void remove_unlinks_head_middle_and_tail(void **state)
{
    (void)state;
    item it[5];
    sl_list l = {0};
    for (int i = 0; i < 5; i++) {
        it[i].value = i;
        sl__list_push_tail(&l, &it[i].link);
    }
    sl__list_remove(&l, &it[2].link); /* middle */
    sl__list_remove(&l, &it[0].link); /* head */
    sl__list_remove(&l, &it[4].link); /* tail */
    int v[5];
    assert_int_equal(values(&l, v, 5), 2);
    assert_int_equal(l.n, 2);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[1], 3);
    assert_null(it[2].link.prev);
    assert_null(it[2].link.next);
    assert_ptr_equal(sl__list_pop_head(&l), &it[1].link);
    assert_ptr_equal(sl__list_pop_head(&l), &it[3].link);
    assert_true(sl__list_is_empty(&l));
    assert_null(l.tail);
    assert_int_equal(l.n, 0);
}

static void foreach_safe_survives_unlinking_each_node(void **state)
{
    (void)state;
    item it[3];
    sl_list l = {0};
    for (int i = 0; i < 3; i++) {
        it[i].value = i;
        sl__list_push_tail(&l, &it[i].link);
    }
    int seen = 0;
    SL_LIST_FOREACH_SAFE(&l, node, next)
    {
        sl__list_remove(&l, node);
        /* Poison the unlinked node, as freeing it would. */
        node->next = (sl_list_node *)(uintptr_t)1;
        seen++;
    }
    assert_int_equal(seen, 3);
    assert_true(sl__list_is_empty(&l));
}

static void splice_moves_everything_and_empties_the_source(void **state)
{
    (void)state;
    item it[4];
    sl_list a = {0}, b = {0};
    for (int i = 0; i < 4; i++) {
        it[i].value = i;
        sl__list_push_tail(i < 2 ? &a : &b, &it[i].link);
    }
    sl__list_splice_tail(&a, &b);
    int v[4];
    assert_int_equal(values(&a, v, 4), 4);
    assert_int_equal(a.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(v[i], i);
    }
    assert_true(sl__list_is_empty(&b));
    assert_int_equal(b.n, 0);
    /* Into an empty list, and from an empty one. */
    sl_list c = {0};
    sl__list_splice_tail(&c, &a);
    sl__list_splice_tail(&c, &b);
    assert_int_equal(c.n, 4);
    assert_ptr_equal(c.head, &it[0].link);
    assert_ptr_equal(c.tail, &it[3].link);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(zeroed_list_is_empty),
        cmocka_unit_test(pushes_keep_order_and_count),
        cmocka_unit_test(remove_unlinks_head_middle_and_tail),
        cmocka_unit_test(foreach_safe_survives_unlinking_each_node),
        cmocka_unit_test(splice_moves_everything_and_empties_the_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
