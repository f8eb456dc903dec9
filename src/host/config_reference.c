/* The configuration's reference: every option of the tables
 * (config_options.c) as Markdown, which docs/configuration.md embeds.
 */
#include "sluice/config.h"

#include "host/config_int.h"

#include <stdio.h>

static void write_type(FILE *out, const opt_desc *o)
{
    char buf[200];
    textbuf tb = tb_init(buf, sizeof buf);
    switch (o->type) {
    case OPT_STRING:
        if (o->choices != NULL) {
            sl__config_format_choices(&tb, o->choices, "`");
        } else {
            tb_add(&tb, "%s", (o->flags & OPT_NAME) ? "name" : "string");
        }
        break;
    case OPT_UINT32:
    case OPT_UINT64:
        tb_add(&tb, "integer, ");
        sl__config_format_range(&tb, o);
        break;
    case OPT_DOUBLE:
        tb_add(&tb, "number, ");
        sl__config_format_range(&tb, o);
        break;
    case OPT_BOOL:
        tb_add(&tb, "bool");
        break;
    case OPT_DURATION:
        tb_add(&tb, "duration, ");
        sl__config_format_range(&tb, o);
        break;
    case OPT_SIZE:
        tb_add(&tb, "size, ");
        sl__config_format_range(&tb, o);
        break;
    case OPT_ENUM:
        sl__config_format_choices(&tb, o->choices, "`");
        break;
    case OPT_DURATION_LIST:
        tb_add(&tb, "list of 1 to %zu durations, each ", o->max_items);
        sl__config_format_range(&tb, o);
        break;
    case OPT_SECTION:
        tb_add(&tb, "mapping, see `%s`", o->sub->path);
        break;
    case OPT_LIST:
        tb_add(&tb, "list of mappings (at most %zu), see `%s`", o->max_items,
               o->sub->path);
        break;
    case OPT_NUMBER:
        tb_add(&tb, "number");
        break;
    case OPT_STRING_LIST:
        tb_add(&tb, "list of 1 to %zu strings", o->max_items);
        break;
    }
    fputs(buf, out);
}

static void write_default(FILE *out, const opt_desc *o)
{
    if (o->flags & OPT_REQUIRED) {
        fputs("**required**", out);
    } else if (o->flags & OPT_KIND_REQUIRED) {
        fprintf(out, "**required** for `%s`", o->kind);
    } else if (o->type == OPT_DURATION_LIST && o->def != NULL) {
        fprintf(out, "`[%s]`", o->def);
    } else if (o->def != NULL) {
        fprintf(out, "`%s`", o->def);
    } else if (o->def_doc != NULL) {
        fputs(o->def_doc, out);
    } else if (o->type == OPT_LIST) {
        fputs("`[]`", out);
    } else if (o->type == OPT_SECTION) {
        fputs("see section", out);
    } else {
        fputs("none", out);
    }
}

static void write_table(FILE *out, const opt_table *tab)
{
    if (tab->path[0] == '\0') {
        fputs("### Top level\n\n", out);
    } else {
        fprintf(out, "### `%s`\n\n", tab->path);
    }
    fprintf(out, "%s\n\n", tab->doc);
    fputs("| key | type | default | doc |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (size_t i = 0; i < tab->nopts; i++) {
        const opt_desc *o = &tab->opts[i];
        fprintf(out, "| `%s` | ", o->key);
        write_type(out, o);
        fputs(" | ", out);
        write_default(out, o);
        fputs(" | ", out);
        if (o->kind != NULL) {
            fprintf(out, "*%s:* ", o->kind);
        }
        fprintf(out, "%s |\n", o->doc);
    }
    fputs("\n", out);
    for (size_t i = 0; i < tab->nopts; i++) {
        if (tab->opts[i].sub != NULL) {
            write_table(out, tab->opts[i].sub);
        }
    }
}

void sl_config_write_reference(FILE *out)
{
    if (out == NULL) {
        return;
    }
    fputs("## Option reference\n\n"
          "Generated from the option tables in `src/host/config_options.c` by "
          "`sl_config_write_reference()`.\n"
          "Durations are written `250ms`, `5s`, `1.5m`, `2h`; a plain "
          "number is milliseconds.\n"
          "Sizes are written `1048576`, `512KiB`, `1MiB`, `1GiB`.\n\n",
          out);
    write_table(out, &sl__config_root_table);
}
