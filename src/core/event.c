/* sluice — the event envelope and its compact binary encoding.
 *
 * Memory layout. An event is one block: the struct, then an arena of string
 * and data bytes. Setters copy a value into the arena while it has room and
 * into a separate sl_malloc block otherwise, and record per slot whether the
 * value is such a separate ("owned") block, so that replacing or freeing it
 * knows what to release. Arena bytes of a replaced value are not reused; the
 * arena is small and events are short-lived, so the waste is bounded.
 *
 * - sl_event_create gives a fresh event an arena sized for a typical
 *   envelope, so creating an event and setting its attributes and a small
 *   payload costs one or two allocations.
 * - sl_event_clone and sl_event_decode size the arena exactly (plus a little
 *   slack for a clone, which is usually modified next) and pack everything
 *   into it: one allocation per event.
 */
#include "sluice/event.h"

#include "core/event_internal.h"
#include "sluice/alloc.h"
#include "sluice/clock.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* Arena of a created event: room for the attributes of a typical event
 * (uuid, source, type, traceparent, content type...) and a small payload. */
#define CREATE_ARENA_BYTES 448u

/* Extra arena of a clone, for the few attributes a caller sets next
 * (sl_event_derive sets traceparent, correlationid and causationid). */
#define CLONE_SLACK_BYTES 160u

/* Longest extension name CloudEvents allows. */
#define EXT_NAME_MAX 20u

/* Strings and data are limited to what a 32-bit length can describe; a
 * real event is bounded far lower by SL_EVENT_MAX_SIZE_DEFAULT. */
#define VALUE_MAX UINT32_MAX

#define EXT_NAME_OWNED 1u
#define EXT_VALUE_OWNED 2u

typedef struct ext_slot {
    const char *name;
    const char *value;
    uint32_t name_len;
    uint32_t value_len;
    unsigned owned; /* EXT_NAME_OWNED | EXT_VALUE_OWNED */
} ext_slot;

struct sl_event {
    atomic_uint refs;
    uint32_t attr_owned; /* bit per sl_attr: value is a separate block */
    bool data_owned;
    size_t n_ext;
    /* Extension slots live in the arena (packed events) or in their own
     * block (ext_owned), sized to what is used: most events carry none, and
     * a queued event should not pay for SL_EVENT_MAX_EXTENSIONS slots. */
    ext_slot *ext;
    size_t ext_cap;
    bool ext_owned;
    size_t arena_cap;  /* bytes in arena[] */
    size_t arena_used; /* bytes handed out; never given back */
    const char *attr[SL_ATTR_COUNT_];
    uint32_t attr_len[SL_ATTR_COUNT_];
    uint64_t time_ms;     /* ms since the epoch; 0 = absent */
    uint64_t deadline_ms; /* ms since the epoch; 0 = none */
    const uint8_t *data;  /* NULL when there is no data */
    size_t data_len;
    char arena[];
};

static const char specversion_1_0[] = "1.0";

/* Attribute names, and their lengths: every attribute read from a header
 * is looked up here, by length first. */
#define ATTR_NAMES(X)                                                          \
    X(SL_ATTR_ID, "id")                                                        \
    X(SL_ATTR_SOURCE, "source")                                                \
    X(SL_ATTR_TYPE, "type")                                                    \
    X(SL_ATTR_SPECVERSION, "specversion")                                      \
    X(SL_ATTR_SUBJECT, "subject")                                              \
    X(SL_ATTR_DATACONTENTTYPE, "datacontenttype")                              \
    X(SL_ATTR_DATASCHEMA, "dataschema")                                        \
    X(SL_ATTR_TRACEPARENT, "traceparent")                                      \
    X(SL_ATTR_TRACESTATE, "tracestate")                                        \
    X(SL_ATTR_PARTITIONKEY, "partitionkey")                                    \
    X(SL_ATTR_CORRELATIONID, "correlationid")                                  \
    X(SL_ATTR_CAUSATIONID, "causationid")

#define ATTR_NAME(attr, lit) [attr] = lit,
#define ATTR_NAME_LEN(attr, lit) [attr] = sizeof lit - 1,
static const char *const attr_names[SL_ATTR_COUNT_] = {ATTR_NAMES(ATTR_NAME)};
static const uint8_t attr_name_len[SL_ATTR_COUNT_] = {
    ATTR_NAMES(ATTR_NAME_LEN)};
#undef ATTR_NAME
#undef ATTR_NAME_LEN

/* ---- storage ------------------------------------------------------------- */

static sl_event *event_alloc(size_t arena_cap)
{
    if (arena_cap > SIZE_MAX - sizeof(sl_event)) {
        return NULL;
    }
    sl_event *ev = sl_malloc(sizeof(sl_event) + arena_cap);
    if (ev == NULL) {
        return NULL;
    }
    memset(ev, 0, sizeof *ev);
    atomic_init(&ev->refs, 1);
    ev->arena_cap = arena_cap;
    return ev;
}

static bool is_shared(const sl_event *ev)
{
    /* A count of 1 means the caller holds the only reference, and nobody
     * can take another without holding one already. Acquire pairs with the
     * release in sl_event_unref, so the last other holder's reads happen
     * before our writes. The cast drops const because some compilers'
     * atomic_load wants a non-const pointer; the load does not write. */
    atomic_uint *refs = &((sl_event *)ev)->refs;
    return atomic_load_explicit(refs, memory_order_acquire) > 1;
}

/* Copy @p len bytes (plus a NUL when @p nul) into the arena or a new block.
 * Sets *owned to say which. */
static sl_status store(sl_event *ev, const void *src, size_t len, bool nul,
                       char **dst, bool *owned)
{
    size_t need = len + (nul ? 1 : 0);
    char *p;

    if (need <= ev->arena_cap - ev->arena_used) {
        p = ev->arena + ev->arena_used;
        ev->arena_used += need;
        *owned = false;
    } else {
        p = sl_malloc(need);
        if (p == NULL) {
            return SL_NOMEM;
        }
        *owned = true;
    }
    if (len > 0) {
        memcpy(p, src, len);
    }
    if (nul) {
        p[len] = '\0';
    }
    *dst = p;
    return SL_OK;
}

/* Arena-only copy for an event allocated with enough room. */
static const char *pack(sl_event *ev, const void *src, size_t len, bool nul)
{
    char *p = ev->arena + ev->arena_used;
    if (len > 0) {
        memcpy(p, src, len);
    }
    if (nul) {
        p[len] = '\0';
    }
    ev->arena_used += len + (nul ? 1 : 0);
    return p;
}

/* Carve @p n zeroed extension slots from the arena, aligned. The caller
 * made sure they fit (ext_arena_bytes, or ext_fits). */
static void carve_ext(sl_event *ev, size_t n)
{
    size_t align = _Alignof(ext_slot);
    ev->arena_used = (ev->arena_used + align - 1) / align * align;
    ev->ext = (ext_slot *)(void *)(ev->arena + ev->arena_used);
    memset(ev->ext, 0, n * sizeof(ext_slot));
    ev->arena_used += n * sizeof(ext_slot);
    ev->ext_cap = n;
    ev->ext_owned = false;
}

/* True if @p n slots fit in what is left of the arena. */
static bool ext_fits(const sl_event *ev, size_t n)
{
    size_t align = _Alignof(ext_slot);
    size_t at = (ev->arena_used + align - 1) / align * align;
    return at <= ev->arena_cap && n * sizeof(ext_slot) <= ev->arena_cap - at;
}

static size_t ext_arena_bytes(size_t n)
{
    return n == 0 ? 0 : n * sizeof(ext_slot) + _Alignof(ext_slot);
}

static void release(bool owned, const void *p)
{
    if (owned) {
        sl_free((void *)p);
    }
}

static bool ext_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > EXT_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            return false;
        }
    }
    return true;
}

static bool known_name(const char *name, size_t len, sl_attr *attr)
{
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (attr_name_len[i] == len && attr_names[i][0] == name[0] &&
            memcmp(attr_names[i], name, len) == 0) {
            if (attr != NULL) {
                *attr = (sl_attr)i;
            }
            return true;
        }
    }
    return false;
}

/* Names that have a slot of their own, or that the JSON format reserves, and
 * therefore never appear in the extension list. */
static bool reserved_name(const char *name, size_t len)
{
    static const char *const others[] = {"time", "deadline", "data"};
    if (known_name(name, len, NULL)) {
        return true;
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (strlen(others[i]) == len && memcmp(others[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

static bool find_ext(const sl_event *ev, const char *name, size_t len,
                     size_t *idx)
{
    for (size_t i = 0; i < ev->n_ext; i++) {
        if (ev->ext[i].name_len == len &&
            memcmp(ev->ext[i].name, name, len) == 0) {
            *idx = i;
            return true;
        }
    }
    return false;
}

/* ---- lifecycle ----------------------------------------------------------- */

sl_status sl_event_create(sl_event **out)
{
    return sl__event_create_sized(CREATE_ARENA_BYTES, out);
}

sl_status sl__event_create_sized(size_t arena_bytes, sl_event **out)
{
    if (out == NULL || arena_bytes > SIZE_MAX / 2) {
        return SL_INVALID;
    }
    sl_event *ev = event_alloc(arena_bytes);
    if (ev == NULL) {
        return SL_NOMEM;
    }
    /* A static string: not owned, costs no arena. */
    ev->attr[SL_ATTR_SPECVERSION] = specversion_1_0;
    ev->attr_len[SL_ATTR_SPECVERSION] = sizeof specversion_1_0 - 1;
    *out = ev;
    return SL_OK;
}

sl_status sl_event_create_new(const char *source, const char *type,
                              sl_event **out)
{
    sl_event *ev = NULL;
    char id[37];
    sl_status st;

    if (source == NULL || type == NULL || out == NULL) {
        return SL_INVALID;
    }
    st = sl_event_create(&ev);
    if (st != SL_OK) {
        return st;
    }
    uint64_t now_ms = sl_time_wall_ms();
    sl_uuid7(id, now_ms);
    if ((st = sl_event_set(ev, SL_ATTR_ID, id)) != SL_OK ||
        (st = sl_event_set(ev, SL_ATTR_SOURCE, source)) != SL_OK ||
        (st = sl_event_set(ev, SL_ATTR_TYPE, type)) != SL_OK) {
        goto fail_event;
    }
    ev->time_ms = now_ms;
    *out = ev;
    return SL_OK;

fail_event:
    sl_event_unref(ev);
    return st;
}

sl_event *sl_event_ref(sl_event *ev)
{
    if (ev != NULL) {
        atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
    }
    return ev;
}

void sl_event_unref(sl_event *ev)
{
    if (ev == NULL) {
        return;
    }
    /* Release on every drop, acquire for the last one, so that the thread
     * that frees sees every other holder's reads completed. acq_rel on the
     * one operation rather than a separate fence: ThreadSanitizer does not
     * model standalone fences. */
    if (atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        release(ev->attr_owned & (1u << i), ev->attr[i]);
    }
    release(ev->data_owned, ev->data);
    for (size_t i = 0; i < ev->n_ext; i++) {
        release(ev->ext[i].owned & EXT_NAME_OWNED, ev->ext[i].name);
        release(ev->ext[i].owned & EXT_VALUE_OWNED, ev->ext[i].value);
    }
    release(ev->ext_owned, ev->ext);
    sl_free(ev);
}

static size_t packed_bytes(const sl_event *ev)
{
    size_t n = ev->data_len;
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ev->attr[i] != NULL) {
            n += (size_t)ev->attr_len[i] + 1;
        }
    }
    for (size_t i = 0; i < ev->n_ext; i++) {
        n += (size_t)ev->ext[i].name_len + 1 + ev->ext[i].value_len + 1;
    }
    return n;
}

sl_status sl_event_clone(const sl_event *ev, sl_event **out)
{
    if (ev == NULL || out == NULL) {
        return SL_INVALID;
    }
    sl_event *cp = event_alloc(packed_bytes(ev) + ext_arena_bytes(ev->n_ext) +
                               CLONE_SLACK_BYTES);
    if (cp == NULL) {
        return SL_NOMEM;
    }
    if (ev->n_ext > 0) {
        carve_ext(cp, ev->n_ext);
    }
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ev->attr[i] != NULL) {
            cp->attr[i] = pack(cp, ev->attr[i], ev->attr_len[i], true);
            cp->attr_len[i] = ev->attr_len[i];
        }
    }
    cp->time_ms = ev->time_ms;
    cp->deadline_ms = ev->deadline_ms;
    if (ev->data_len > 0) {
        cp->data = (const uint8_t *)pack(cp, ev->data, ev->data_len, false);
        cp->data_len = ev->data_len;
    }
    for (size_t i = 0; i < ev->n_ext; i++) {
        const ext_slot *src = &ev->ext[i];
        ext_slot *dst = &cp->ext[i];
        dst->name = pack(cp, src->name, src->name_len, true);
        dst->name_len = src->name_len;
        dst->value = pack(cp, src->value, src->value_len, true);
        dst->value_len = src->value_len;
    }
    cp->n_ext = ev->n_ext;
    *out = cp;
    return SL_OK;
}

/* ---- attributes ---------------------------------------------------------- */

/* sl_event_setn once its arguments are checked: @p value (NULL to clear)
 * holds no NUL within its @p len bytes. */
static sl_status set_slot(sl_event *ev, sl_attr attr, const char *value,
                          size_t len)
{
    const char *old = ev->attr[attr];
    bool old_owned = ev->attr_owned & (1u << attr);

    if (value == NULL) {
        ev->attr[attr] = NULL;
        ev->attr_len[attr] = 0;
        ev->attr_owned &= ~(1u << attr);
        release(old_owned, old);
        return SL_OK;
    }
    if (len > VALUE_MAX) {
        return SL_TOO_LARGE;
    }
    /* Copy before releasing the old value: @p value may be the old value
     * itself (sl_event_derive(ev, ev), or a caller re-setting a get). */
    char *copy;
    bool owned;
    sl_status st = store(ev, value, len, true, &copy, &owned);
    if (st != SL_OK) {
        return st;
    }
    ev->attr[attr] = copy;
    ev->attr_len[attr] = (uint32_t)len;
    if (owned) {
        ev->attr_owned |= 1u << attr;
    } else {
        ev->attr_owned &= ~(1u << attr);
    }
    release(old_owned, old);
    return SL_OK;
}

sl_status sl_event_setn(sl_event *ev, sl_attr attr, const char *value,
                        size_t len)
{
    if (ev == NULL || (unsigned)attr >= SL_ATTR_COUNT_ || is_shared(ev)) {
        return SL_INVALID;
    }
    /* A NUL inside would make the C string disagree with its length. */
    if (value != NULL && memchr(value, '\0', len) != NULL) {
        return SL_INVALID;
    }
    return set_slot(ev, attr, value, len);
}

sl_status sl_event_set(sl_event *ev, sl_attr attr, const char *value)
{
    return sl_event_setn(ev, attr, value, value == NULL ? 0 : strlen(value));
}

const char *sl_event_get(const sl_event *ev, sl_attr attr)
{
    if (ev == NULL || (unsigned)attr >= SL_ATTR_COUNT_) {
        return NULL;
    }
    return ev->attr[attr];
}

const char *sl_attr_name(sl_attr attr)
{
    return (unsigned)attr < SL_ATTR_COUNT_ ? attr_names[attr] : NULL;
}

sl_status sl_attr_from_name(const char *name, sl_attr *out)
{
    sl_attr attr;
    if (name == NULL || out == NULL) {
        return SL_INVALID;
    }
    if (!known_name(name, strlen(name), &attr)) {
        return SL_NOT_FOUND;
    }
    *out = attr;
    return SL_OK;
}

uint64_t sl_event_time_ms(const sl_event *ev)
{
    return ev == NULL ? 0 : ev->time_ms;
}

sl_status sl_event_set_time_ms(sl_event *ev, uint64_t time_ms)
{
    if (ev == NULL || is_shared(ev)) {
        return SL_INVALID;
    }
    ev->time_ms = time_ms;
    return SL_OK;
}

uint64_t sl_event_deadline_ms(const sl_event *ev)
{
    return ev == NULL ? 0 : ev->deadline_ms;
}

sl_status sl_event_set_deadline_ms(sl_event *ev, uint64_t deadline_ms)
{
    if (ev == NULL || is_shared(ev)) {
        return SL_INVALID;
    }
    ev->deadline_ms = deadline_ms;
    return SL_OK;
}

sl_status sl_event_set_data(sl_event *ev, const void *data, size_t len)
{
    if (ev == NULL || (data == NULL && len > 0) || is_shared(ev)) {
        return SL_INVALID;
    }
    if (len > VALUE_MAX) {
        return SL_TOO_LARGE;
    }
    const uint8_t *old = ev->data;
    bool old_owned = ev->data_owned;
    char *copy = NULL;
    bool owned = false;

    /* Empty data and no data are the same thing: nothing to carry. */
    if (len > 0) {
        sl_status st = store(ev, data, len, false, &copy, &owned);
        if (st != SL_OK) {
            return st;
        }
    }
    ev->data = (const uint8_t *)copy;
    ev->data_len = len;
    ev->data_owned = owned;
    release(old_owned, old);
    return SL_OK;
}

const void *sl_event_data(const sl_event *ev, size_t *len)
{
    if (ev == NULL) {
        if (len != NULL) {
            *len = 0;
        }
        return NULL;
    }
    if (len != NULL) {
        *len = ev->data_len;
    }
    return ev->data;
}

/* Strict decimal ms for "deadline" given as text: digits only, no sign, no
 * overflow. */
static bool parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        unsigned digit = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

static sl_status remove_ext(sl_event *ev, size_t i)
{
    ext_slot gone = ev->ext[i];
    /* Keep insertion order: bindings re-emit extensions in it. */
    memmove(&ev->ext[i], &ev->ext[i + 1],
            (ev->n_ext - i - 1) * sizeof ev->ext[0]);
    ev->n_ext--;
    release(gone.owned & EXT_NAME_OWNED, gone.name);
    release(gone.owned & EXT_VALUE_OWNED, gone.value);
    return SL_OK;
}

sl_status sl_event_set_ext(sl_event *ev, const char *name, const char *value)
{
    if (name == NULL) {
        return SL_INVALID;
    }
    return sl__event_set_attr(ev, name, strlen(name), value,
                              value == NULL ? 0 : strlen(value));
}

sl_status sl__event_set_attr(sl_event *ev, const char *name, size_t name_len,
                             const char *value, size_t value_len)
{
    sl_attr attr;
    size_t idx;

    if (ev == NULL || name == NULL || is_shared(ev)) {
        return SL_INVALID;
    }
    /* Known names go to their slots, so that "ce-subject" and
     * set(SL_ATTR_SUBJECT) are one thing (and are valid names). */
    if (known_name(name, name_len, &attr)) {
        return set_slot(ev, attr, value, value_len); /* no NUL: strlen */
    }
    if (!ext_name_valid(name, name_len)) {
        return SL_INVALID;
    }
    bool is_time = name_len == 4 && memcmp(name, "time", 4) == 0;
    if (is_time || (name_len == 8 && memcmp(name, "deadline", 8) == 0)) {
        uint64_t ms = 0;
        if (value != NULL) {
            bool ok = is_time ? sl_time_parse_rfc3339(value, &ms) == SL_OK
                              : parse_u64(value, &ms);
            if (!ok) {
                return SL_INVALID;
            }
        }
        return is_time ? sl_event_set_time_ms(ev, ms)
                       : sl_event_set_deadline_ms(ev, ms);
    }
    if (name_len == 4 && memcmp(name, "data", 4) == 0) {
        return SL_INVALID; /* the payload, never an attribute */
    }

    bool exists = find_ext(ev, name, name_len, &idx);
    if (value == NULL) {
        return exists ? remove_ext(ev, idx) : SL_OK;
    }
    if (value_len > VALUE_MAX) {
        return SL_TOO_LARGE;
    }
    if (!exists && ev->n_ext == SL_EVENT_MAX_EXTENSIONS) {
        return SL_FULL;
    }
    if (!exists && ev->n_ext == ev->ext_cap) {
        size_t cap = ev->ext_cap ? ev->ext_cap * 2 : 4;
        if (cap > SL_EVENT_MAX_EXTENSIONS) {
            cap = SL_EVENT_MAX_EXTENSIONS;
        }
        ext_slot *old = ev->ext;
        bool old_owned = ev->ext_owned;
        if (!old_owned && ext_fits(ev, cap)) {
            carve_ext(ev, cap); /* the old slots stay as unused arena */
        } else {
            ext_slot *slots = sl_malloc(cap * sizeof *slots);
            if (slots == NULL) {
                return SL_NOMEM;
            }
            ev->ext = slots;
            ev->ext_cap = cap;
            ev->ext_owned = true;
        }
        if (ev->n_ext > 0) {
            memcpy(ev->ext, old, ev->n_ext * sizeof *old);
        }
        release(old_owned, old);
    }

    char *vcopy;
    bool vowned;
    sl_status st = store(ev, value, value_len, true, &vcopy, &vowned);
    if (st != SL_OK) {
        return st;
    }
    if (exists) {
        ext_slot *slot = &ev->ext[idx];
        const char *old = slot->value;
        bool old_owned = slot->owned & EXT_VALUE_OWNED;
        slot->value = vcopy;
        slot->value_len = (uint32_t)value_len;
        slot->owned =
            (slot->owned & EXT_NAME_OWNED) | (vowned ? EXT_VALUE_OWNED : 0u);
        release(old_owned, old);
        return SL_OK;
    }

    char *ncopy;
    bool nowned;
    st = store(ev, name, name_len, true, &ncopy, &nowned);
    if (st != SL_OK) {
        goto fail_value;
    }
    ev->ext[ev->n_ext++] = (ext_slot){
        .name = ncopy,
        .value = vcopy,
        .name_len = (uint32_t)name_len,
        .value_len = (uint32_t)value_len,
        .owned =
            (nowned ? EXT_NAME_OWNED : 0u) | (vowned ? EXT_VALUE_OWNED : 0u),
    };
    return SL_OK;

fail_value:
    release(vowned, vcopy);
    return st;
}

const char *sl_event_get_ext(const sl_event *ev, const char *name)
{
    sl_attr attr;
    size_t idx;

    if (ev == NULL || name == NULL) {
        return NULL;
    }
    size_t len = strlen(name);
    if (known_name(name, len, &attr)) {
        return ev->attr[attr];
    }
    return find_ext(ev, name, len, &idx) ? ev->ext[idx].value : NULL;
}

size_t sl_event_ext_count(const sl_event *ev)
{
    return ev == NULL ? 0 : ev->n_ext;
}

void sl_event_ext_at(const sl_event *ev, size_t i, const char **name,
                     const char **value)
{
    bool ok = ev != NULL && i < ev->n_ext;
    if (name != NULL) {
        *name = ok ? ev->ext[i].name : NULL;
    }
    if (value != NULL) {
        *value = ok ? ev->ext[i].value : NULL;
    }
}

/* ---- validation and derivation ------------------------------------------- */

sl_status sl_event_validate(const sl_event *ev, size_t max_size, sl_diag *diag)
{
    static const sl_attr required[] = {SL_ATTR_ID, SL_ATTR_SOURCE,
                                       SL_ATTR_TYPE};

    if (ev == NULL) {
        return sl_diag_set(diag, SL_INVALID, "event is NULL");
    }
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const char *v = ev->attr[required[i]];
        if (v == NULL || v[0] == '\0') {
            return sl_diag_set(diag, SL_INVALID, "missing attribute '%s'",
                               attr_names[required[i]]);
        }
    }
    const char *sv = ev->attr[SL_ATTR_SPECVERSION];
    if (sv == NULL || strcmp(sv, specversion_1_0) != 0) {
        return sl_diag_set(diag, SL_INVALID,
                           "specversion is '%s', expected '1.0'",
                           sv == NULL ? "(absent)" : sv);
    }
    for (size_t i = 0; i < ev->n_ext; i++) {
        const ext_slot *x = &ev->ext[i];
        if (!ext_name_valid(x->name, x->name_len) ||
            reserved_name(x->name, x->name_len)) {
            return sl_diag_set(diag, SL_INVALID, "invalid extension name '%s'",
                               x->name);
        }
    }
    /* SL_EVENT_MAX_SIZE_DEFAULT is also the hard limit: a larger max_size
     * cannot admit a larger event. */
    size_t limit = max_size == 0 || max_size > SL_EVENT_MAX_SIZE_DEFAULT
                       ? SL_EVENT_MAX_SIZE_DEFAULT
                       : max_size;
    size_t size = sl_event_encoded_size(ev);
    if (size > limit) {
        return sl_diag_set(diag, SL_TOO_LARGE,
                           "encoded event is %zu bytes, limit %zu", size,
                           limit);
    }
    return SL_OK;
}

sl_status sl_event_derive(sl_event *child, const sl_event *parent)
{
    char tp[56];
    char trace_id[33];
    const char *tracestate = NULL;
    sl_status st;

    if (child == NULL || parent == NULL || is_shared(child)) {
        return SL_INVALID;
    }
    const char *parent_id = parent->attr[SL_ATTR_ID];
    if (parent_id == NULL || parent_id[0] == '\0') {
        return SL_INVALID;
    }

    /* Same trace, new span, parent's flags. A parent without a usable
     * traceparent starts a new trace, and W3C says its tracestate must
     * then be dropped with it. */
    const char *ptp = parent->attr[SL_ATTR_TRACEPARENT];
    sl_traceparent_new(tp);
    if (ptp != NULL && sl_traceparent_parse(ptp, trace_id, NULL) == SL_OK) {
        memcpy(tp + 3, trace_id, 32);
        memcpy(tp + 53, ptp + 53, 2);
        tracestate = parent->attr[SL_ATTR_TRACESTATE];
    }

    /* A child cannot outlive its parent's deadline; it may have a
     * tighter one of its own. */
    uint64_t deadline_ms = child->deadline_ms;
    if (parent->deadline_ms != 0 &&
        (deadline_ms == 0 || parent->deadline_ms < deadline_ms)) {
        deadline_ms = parent->deadline_ms;
    }

    const char *corr = parent->attr[SL_ATTR_CORRELATIONID];
    if (corr == NULL) {
        corr = parent_id;
    }

    /* Each set copies its value before freeing the old one, so the
     * pointers above stay valid even when parent == child. */
    if ((st = sl_event_set(child, SL_ATTR_TRACEPARENT, tp)) != SL_OK ||
        (st = sl_event_set(child, SL_ATTR_TRACESTATE, tracestate)) != SL_OK ||
        (st = sl_event_set(child, SL_ATTR_CORRELATIONID, corr)) != SL_OK ||
        (st = sl_event_set(child, SL_ATTR_CAUSATIONID, parent_id)) != SL_OK) {
        return st;
    }
    child->deadline_ms = deadline_ms;
    return SL_OK;
}

/* ---- compact binary encoding ------------------------------------------------
 *
 * magic 0xCE, version 0x01, then fields, then the end tag 0x00:
 *
 *     field := tag:u8 len:uvarint value[len]
 *
 * uvarint is unsigned LEB128, at most 5 bytes, minimal, value < 2^32. Tags:
 *
 *     0x01..0x0C  string attribute (sl_attr + 1), UTF-8 bytes, no NUL
 *     0x20        time, 8 bytes little-endian ms since the epoch
 *     0x21        deadline, same form
 *     0x30        extension: name_len:uvarint name value (rest of field)
 *     0x40        data bytes
 *     0x80..0xFF  optional fields a decoder skips when it does not know them
 *
 * Every other tag below 0x80 is rejected, as is a field given twice. The end
 * tag makes every truncation detectable.
 */

#define CODEC_MAGIC 0xCEu
#define CODEC_VERSION 0x01u

enum {
    TAG_END = 0x00,
    TAG_ATTR_FIRST = 0x01,
    TAG_TIME = 0x20,
    TAG_DEADLINE = 0x21,
    TAG_EXT = 0x30,
    TAG_DATA = 0x40,
    TAG_OPTIONAL = 0x80,
};

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t field_size(size_t len)
{
    return 1 + varint_size(len) + len;
}

size_t sl_event_encoded_size(const sl_event *ev)
{
    if (ev == NULL) {
        return 0;
    }
    size_t n = 2 + 1; /* magic, version, end tag */
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ev->attr[i] != NULL) {
            n += field_size(ev->attr_len[i]);
        }
    }
    if (ev->time_ms != 0) {
        n += field_size(8);
    }
    if (ev->deadline_ms != 0) {
        n += field_size(8);
    }
    for (size_t i = 0; i < ev->n_ext; i++) {
        const ext_slot *x = &ev->ext[i];
        n += field_size(varint_size(x->name_len) + x->name_len + x->value_len);
    }
    if (ev->data_len > 0) {
        n += field_size(ev->data_len);
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_field(uint8_t *p, unsigned tag, const void *v, size_t len)
{
    *p++ = (uint8_t)tag;
    p = put_varint(p, len);
    if (len > 0) {
        memcpy(p, v, len);
    }
    return p + len;
}

static uint8_t *put_u64_field(uint8_t *p, unsigned tag, uint64_t v)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++) {
        le[i] = (uint8_t)(v >> (8 * i));
    }
    return put_field(p, tag, le, sizeof le);
}

sl_status sl_event_encode(const sl_event *ev, uint8_t **out, size_t *len)
{
    if (ev == NULL || out == NULL || len == NULL) {
        return SL_INVALID;
    }
    size_t size = sl_event_encoded_size(ev);
    uint8_t *buf = sl_malloc(size);
    if (buf == NULL) {
        return SL_NOMEM;
    }

    uint8_t *p = buf;
    *p++ = CODEC_MAGIC;
    *p++ = CODEC_VERSION;
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ev->attr[i] != NULL) {
            p = put_field(p, TAG_ATTR_FIRST + (unsigned)i, ev->attr[i],
                          ev->attr_len[i]);
        }
    }
    if (ev->time_ms != 0) {
        p = put_u64_field(p, TAG_TIME, ev->time_ms);
    }
    if (ev->deadline_ms != 0) {
        p = put_u64_field(p, TAG_DEADLINE, ev->deadline_ms);
    }
    for (size_t i = 0; i < ev->n_ext; i++) {
        const ext_slot *x = &ev->ext[i];
        *p++ = TAG_EXT;
        p = put_varint(p,
                       varint_size(x->name_len) + x->name_len + x->value_len);
        p = put_varint(p, x->name_len);
        memcpy(p, x->name, x->name_len);
        p += x->name_len;
        memcpy(p, x->value, x->value_len);
        p += x->value_len;
    }
    if (ev->data_len > 0) {
        p = put_field(p, TAG_DATA, ev->data, ev->data_len);
    }
    *p++ = TAG_END;

    *out = buf;
    *len = (size_t)(p - buf);
    return SL_OK;
}

typedef struct span {
    const uint8_t *p; /* NULL = absent */
    size_t n;
} span;

/* What the validating pass found; nothing is allocated until it succeeds. */
typedef struct parsed {
    span attr[SL_ATTR_COUNT_];
    span name[SL_EVENT_MAX_EXTENSIONS];
    span value[SL_EVENT_MAX_EXTENSIONS];
    size_t n_ext;
    span data;
    uint64_t time_ms;
    uint64_t deadline_ms;
    bool has_time;
    bool has_deadline;
} parsed;

/* Read a minimal uvarint below 2^32 that fits before @p end. */
static bool get_varint(const uint8_t **pp, const uint8_t *end, size_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;

    for (unsigned i = 0; i < 5; i++) {
        if (p == end) {
            return false;
        }
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            if ((b == 0 && i > 0) || v > UINT32_MAX) {
                return false; /* overlong, or beyond 32 bits */
            }
            *pp = p;
            *out = (size_t)v;
            return true;
        }
    }
    return false;
}

static uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static sl_status parse_ext(parsed *ps, const uint8_t *p, size_t n, size_t off,
                           sl_diag *diag)
{
    const uint8_t *end = p + n;
    size_t name_len;

    if (ps->n_ext == SL_EVENT_MAX_EXTENSIONS) {
        return sl_diag_set(diag, SL_INVALID,
                           "more than %d extensions at offset %zu",
                           SL_EVENT_MAX_EXTENSIONS, off);
    }
    if (!get_varint(&p, end, &name_len) || name_len > (size_t)(end - p)) {
        return sl_diag_set(diag, SL_INVALID,
                           "bad extension name length at offset %zu", off);
    }
    const char *name = (const char *)p;
    if (!ext_name_valid(name, name_len) || reserved_name(name, name_len)) {
        return sl_diag_set(diag, SL_INVALID,
                           "invalid extension name at offset %zu", off);
    }
    for (size_t i = 0; i < ps->n_ext; i++) {
        if (ps->name[i].n == name_len &&
            memcmp(ps->name[i].p, name, name_len) == 0) {
            return sl_diag_set(diag, SL_INVALID,
                               "extension '%.*s' given twice at offset %zu",
                               (int)name_len, name, off);
        }
    }
    const uint8_t *value = p + name_len;
    size_t value_len = (size_t)(end - value);
    if (memchr(value, '\0', value_len) != NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "NUL in extension value at offset %zu", off);
    }
    ps->name[ps->n_ext] = (span){p, name_len};
    ps->value[ps->n_ext] = (span){value, value_len};
    ps->n_ext++;
    return SL_OK;
}

static sl_status parse_fields(const uint8_t *buf, size_t len, parsed *ps,
                              sl_diag *diag)
{
    if (len < 3) {
        return sl_diag_set(diag, SL_INVALID, "truncated: %zu bytes", len);
    }
    if (buf[0] != CODEC_MAGIC) {
        return sl_diag_set(diag, SL_INVALID, "not a sluice event (magic)");
    }
    if (buf[1] != CODEC_VERSION) {
        return sl_diag_set(diag, SL_UNSUPPORTED,
                           "unsupported event encoding version %u",
                           (unsigned)buf[1]);
    }

    const uint8_t *p = buf + 2;
    const uint8_t *end = buf + len;
    while (p < end) {
        size_t off = (size_t)(p - buf);
        unsigned tag = *p++;
        size_t n;

        if (tag == TAG_END) {
            if (p != end) {
                return sl_diag_set(diag, SL_INVALID,
                                   "%zu bytes after the end tag",
                                   (size_t)(end - p));
            }
            return SL_OK;
        }
        if (!get_varint(&p, end, &n) || n > (size_t)(end - p)) {
            return sl_diag_set(diag, SL_INVALID,
                               "truncated or bad length at offset %zu", off);
        }
        const uint8_t *v = p;
        p += n;

        if (tag >= TAG_ATTR_FIRST && tag < TAG_ATTR_FIRST + SL_ATTR_COUNT_) {
            span *s = &ps->attr[tag - TAG_ATTR_FIRST];
            if (s->p != NULL) {
                return sl_diag_set(diag, SL_INVALID,
                                   "'%s' given twice at offset %zu",
                                   attr_names[tag - TAG_ATTR_FIRST], off);
            }
            if (memchr(v, '\0', n) != NULL) {
                return sl_diag_set(diag, SL_INVALID,
                                   "NUL in '%s' at offset %zu",
                                   attr_names[tag - TAG_ATTR_FIRST], off);
            }
            *s = (span){v, n};
        } else if (tag == TAG_TIME || tag == TAG_DEADLINE) {
            bool *has = tag == TAG_TIME ? &ps->has_time : &ps->has_deadline;
            if (n != 8 || *has) {
                return sl_diag_set(diag, SL_INVALID,
                                   "bad or repeated time at offset %zu", off);
            }
            *has = true;
            *(tag == TAG_TIME ? &ps->time_ms : &ps->deadline_ms) = get_u64le(v);
        } else if (tag == TAG_EXT) {
            sl_status st = parse_ext(ps, v, n, off, diag);
            if (st != SL_OK) {
                return st;
            }
        } else if (tag == TAG_DATA) {
            if (ps->data.p != NULL) {
                return sl_diag_set(diag, SL_INVALID,
                                   "data given twice at offset %zu", off);
            }
            ps->data = (span){v, n};
        } else if (tag < TAG_OPTIONAL) {
            return sl_diag_set(diag, SL_INVALID,
                               "unknown field tag 0x%02x at offset %zu", tag,
                               off);
        }
        /* An unknown optional tag: skipped, its length already consumed. */
    }
    return sl_diag_set(diag, SL_INVALID, "truncated: no end tag");
}

sl_status sl_event_decode(const uint8_t *buf, size_t len, sl_event **out,
                          sl_diag *diag)
{
    parsed ps;

    if ((buf == NULL && len > 0) || out == NULL) {
        return sl_diag_set(diag, SL_INVALID, "NULL argument");
    }
    memset(&ps, 0, sizeof ps);
    sl_status st = parse_fields(buf, len, &ps, diag);
    if (st != SL_OK) {
        return st;
    }

    /* Every span lies inside buf, so their sum (plus one NUL each) is
     * bounded by len plus a small constant: no overflow. */
    size_t need = ps.data.n;
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ps.attr[i].p != NULL) {
            need += ps.attr[i].n + 1;
        }
    }
    for (size_t i = 0; i < ps.n_ext; i++) {
        need += ps.name[i].n + 1 + ps.value[i].n + 1;
    }
    sl_event *ev = event_alloc(need + ext_arena_bytes(ps.n_ext));
    if (ev == NULL) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    if (ps.n_ext > 0) {
        carve_ext(ev, ps.n_ext);
    }

    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (ps.attr[i].p != NULL) {
            ev->attr[i] = pack(ev, ps.attr[i].p, ps.attr[i].n, true);
            ev->attr_len[i] = (uint32_t)ps.attr[i].n;
        }
    }
    ev->time_ms = ps.time_ms;
    ev->deadline_ms = ps.deadline_ms;
    if (ps.data.n > 0) {
        ev->data = (const uint8_t *)pack(ev, ps.data.p, ps.data.n, false);
        ev->data_len = ps.data.n;
    }
    for (size_t i = 0; i < ps.n_ext; i++) {
        ev->ext[i].name = pack(ev, ps.name[i].p, ps.name[i].n, true);
        ev->ext[i].name_len = (uint32_t)ps.name[i].n;
        ev->ext[i].value = pack(ev, ps.value[i].p, ps.value[i].n, true);
        ev->ext[i].value_len = (uint32_t)ps.value[i].n;
    }
    ev->n_ext = ps.n_ext;
    *out = ev;
    return SL_OK;
}
