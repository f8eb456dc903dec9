#include "engine/track.h"

#include <stddef.h>

sl_track *sl__track_find(sl_track_table *tt, uint64_t key, uint64_t id,
                         bool create)
{
    if (tt->used == 0 && !create) {
        return NULL; /* the common case: nothing was ever given back */
    }
    sl_track *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < SL_TRACK_MAX; i++) {
        sl_track *t = &tt->slots[i];
        if (t->key == key && t->id == id) {
            t->touched = ++tt->clock;
            return t;
        }
        if (t->key == 0) {
            if (free_slot == NULL) {
                free_slot = t;
            }
        } else if (oldest == NULL || t->touched < oldest->touched) {
            oldest = t;
        }
    }
    if (!create) {
        return NULL;
    }
    sl_track *t = free_slot ? free_slot : oldest;
    if (free_slot != NULL) {
        tt->used++;
    }
    *t = (sl_track){.key = key, .id = id, .touched = ++tt->clock};
    return t;
}

void sl__track_drop(sl_track_table *tt, sl_track *t)
{
    if (t->key != 0) {
        t->key = 0;
        tt->used--;
    }
}
