/* An intrusive doubly linked list, like the Linux and libuv ones.
 *
 * The node lives inside the element (an engine's delivery, say), so linking
 * and unlinking never allocate and an element leaves any position in O(1).
 * The list keeps its length, since engines count what is in flight against
 * a prefetch. An all-zero sl_list is an empty list and an all-zero node is
 * unlinked, so both can live in calloc'd structs without an init call; the
 * list is NULL-terminated at both ends (no sentinel), so a list struct may
 * be copied or moved while it holds nodes.
 *
 * Not thread-safe: the owner's lock guards a list and its nodes.
 *
 *     typedef struct delivery { ...; sl_list_node link; } delivery;
 *     sl__list_push_tail(&sub->flight, &d->link);
 *     SL_LIST_FOREACH(&sub->flight, node) {
 *         delivery *d = SL_LIST_ENTRY(node, delivery, link);
 *     }
 */
#ifndef SLUICE_CORE_LIST_H
#define SLUICE_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sl_list_node {
    struct sl_list_node *prev, *next;
} sl_list_node;

typedef struct sl_list {
    sl_list_node *head, *tail;
    size_t n; /* nodes linked */
} sl_list;

/** The element of type @p type that holds @p node in its member @p member;
 * @p node must not be NULL (SL_LIST_ENTRY_OR_NULL accepts it). */
#define SL_LIST_ENTRY(node, type, member)                                      \
    ((type *)(void *)((char *)(node)-offsetof(type, member)))

#define SL_LIST_ENTRY_OR_NULL(node, type, member)                              \
    ((node) != NULL ? SL_LIST_ENTRY(node, type, member) : (type *)NULL)

/** Visit every node, head to tail; the body must not unlink @p node (keep
 * the next one first, as SL_LIST_FOREACH_SAFE does). */
#define SL_LIST_FOREACH(list, node)                                            \
    for (sl_list_node *node = (list)->head; node != NULL; node = node->next)

/** Visit every node, head to tail; the body may unlink @p node. */
#define SL_LIST_FOREACH_SAFE(list, node, next_)                                \
    for (sl_list_node *node = (list)->head, *next_ = node ? node->next : NULL; \
         node != NULL; node = next_, next_ = node ? node->next : NULL)

static inline bool sl__list_is_empty(const sl_list *l)
{
    return l->head == NULL;
}

static inline void sl__list_push_tail(sl_list *l, sl_list_node *node)
{
    node->next = NULL;
    node->prev = l->tail;
    if (l->tail != NULL) {
        l->tail->next = node;
    } else {
        l->head = node;
    }
    l->tail = node;
    l->n++;
}

static inline void sl__list_push_head(sl_list *l, sl_list_node *node)
{
    node->prev = NULL;
    node->next = l->head;
    if (l->head != NULL) {
        l->head->prev = node;
    } else {
        l->tail = node;
    }
    l->head = node;
    l->n++;
}

/** Unlink @p node, which must be on @p l. */
static inline void sl__list_remove(sl_list *l, sl_list_node *node)
{
    if (node->prev != NULL) {
        node->prev->next = node->next;
    } else {
        l->head = node->next;
    }
    if (node->next != NULL) {
        node->next->prev = node->prev;
    } else {
        l->tail = node->prev;
    }
    node->prev = node->next = NULL;
    l->n--;
}

/** Unlink and return the head; NULL if the list is empty. */
static inline sl_list_node *sl__list_pop_head(sl_list *l)
{
    sl_list_node *node = l->head;
    if (node != NULL) {
        sl__list_remove(l, node);
    }
    return node;
}

/** Move every node of @p from to the tail of @p to, leaving @p from empty
 * (taking a whole in-flight list at once, under a lock, to settle it after
 * the lock is released). */
static inline void sl__list_splice_tail(sl_list *to, sl_list *from)
{
    if (from->head == NULL) {
        return;
    }
    if (to->tail != NULL) {
        to->tail->next = from->head;
        from->head->prev = to->tail;
    } else {
        to->head = from->head;
    }
    to->tail = from->tail;
    to->n += from->n;
    *from = (sl_list){0};
}

#endif
