/* "Did you mean": edit distance to a set of names. */
#include "core/suggest.h"

#include <stdint.h>
#include <string.h>

/* Levenshtein distance, or SIZE_MAX for strings too long to bother. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 64 };
    size_t la = strlen(a);
    size_t lb = strlen(b);
    if (la > MAXLEN || lb > MAXLEN) {
        return SIZE_MAX;
    }
    size_t prev[MAXLEN + 1];
    size_t cur[MAXLEN + 1];
    for (size_t j = 0; j <= lb; j++) {
        prev[j] = j;
    }
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best) {
                best = prev[j] + 1;
            }
            if (cur[j - 1] + 1 < best) {
                best = cur[j - 1] + 1;
            }
            cur[j] = best;
        }
        memcpy(prev, cur, sizeof prev);
    }
    return prev[lb];
}

const char *sl__closest_name(const char *word, const void *items, size_t n,
                             sl_name_at_fn get)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < n; i++) {
        const char *cand = get(items, i);
        if (cand == NULL) {
            continue;
        }
        /* The word itself is no suggestion: it was not found where it was
         * looked for, so proposing it again would only confuse. */
        size_t d = edit_distance(word, cand);
        if (d != 0 && d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best;
}
