/* Turning libetpan's FETCH / LIST / STATUS structures into the store's plain records. */
#include "store/fetch.h"

#include "protocol/mboxname.h"
#include "util/flags.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void flag_name(struct tb_buf *b, struct mailimap_flag *f)
{
    static const char *names[] = {"\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"};
    switch (f->fl_type) {
    case MAILIMAP_FLAG_ANSWERED:
    case MAILIMAP_FLAG_FLAGGED:
    case MAILIMAP_FLAG_DELETED:
    case MAILIMAP_FLAG_SEEN:
    case MAILIMAP_FLAG_DRAFT:
        tb_buf_puts(b, names[f->fl_type - MAILIMAP_FLAG_ANSWERED]);
        break;
    case MAILIMAP_FLAG_KEYWORD:
        tb_buf_puts(b, f->fl_data.fl_keyword);
        break;
    case MAILIMAP_FLAG_EXTENSION:
        tb_buf_puts(b, "\\");
        tb_buf_puts(b, f->fl_data.fl_extension);
        break;
    default:
        return;
    }
    tb_buf_puts(b, " ");
}

char *tb_flag_name(struct mailimap_flag *f)
{
    struct tb_buf b;
    tb_buf_init(&b);
    flag_name(&b, f);
    if (b.len && b.data[b.len - 1] == ' ')
        b.len--;
    char *r = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return r;
}

static int64_t to_epoch(const struct mailimap_date_time *d, int *tz_minutes)
{
    struct tm tm = {0};
    tm.tm_year = d->dt_year - 1900;
    tm.tm_mon = d->dt_month - 1;
    tm.tm_mday = d->dt_day;
    tm.tm_hour = d->dt_hour;
    tm.tm_min = d->dt_min;
    tm.tm_sec = d->dt_sec;
    int sign = d->dt_zone < 0 ? -1 : 1;
    int z = abs(d->dt_zone);
    *tz_minutes = sign * ((z / 100) * 60 + z % 100);
    return (int64_t)timegm(&tm) - (int64_t)*tz_minutes * 60;
}

/* One header field, unfolded, whitespace runs folded to one space, the name lower-case. */
static char *field_text(const char *p, size_t n)
{
    char *out = tb_xmalloc(n + 1);
    size_t o = 0;
    bool space = false, in_name = true;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
            space = o > 0;
            continue;
        }
        if (space)
            out[o++] = ' ';
        space = false;
        if (ch == ':')
            in_name = false;
        out[o++] = in_name ? (char)tolower((unsigned char)ch) : ch;
    }
    out[o] = 0;
    return out;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The identity part of a message: its Message-ID, Date, From, To and Subject header fields,
 * each unfolded and whitespace-folded, sorted, joined by one space. Sorted because servers
 * return HEADER.FIELDS in message order (Dovecot) or in the order asked (GNU mailutils):
 * two copies of one message must give the same text. A message without a Message-ID is
 * still told apart from others of the same size and date by the rest. */
static char *header_ident(const char *p, size_t n)
{
    char *fields[16];
    size_t nf = 0;
    for (size_t i = 0; i < n && nf < 16;) {
        size_t start = i;
        /* a field runs to a line break not followed by a blank (folding) */
        while (i < n) {
            if (p[i] == '\n' && (i + 1 >= n || (p[i + 1] != ' ' && p[i + 1] != '\t'))) {
                i++;
                break;
            }
            i++;
        }
        char *f = field_text(p + start, i - start);
        if (f[0])
            fields[nf++] = f;
        else
            free(f);
    }
    qsort(fields, nf, sizeof(*fields), cmp_str);
    struct tb_buf b;
    tb_buf_init(&b);
    for (size_t i = 0; i < nf; i++) {
        tb_buf_printf(&b, "%s%s", i ? " " : "", fields[i]);
        free(fields[i]);
    }
    char *r = tb_xstrdup(tb_buf_cstr(&b));
    tb_buf_free(&b);
    return r;
}

bool tb_fetch_to_info(struct mailimap_msg_att *att, struct tb_msg_info *m, const char **body,
                      size_t *body_len)
{
    memset(m, 0, sizeof(*m));
    if (body)
        *body = NULL;
    bool have_uid = false;
    for (clistiter *it = clist_begin(att->att_list); it; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type == MAILIMAP_MSG_ATT_ITEM_DYNAMIC) {
            struct tb_buf b;
            tb_buf_init(&b);
            clist *fl = item->att_data.att_dyn->att_list;
            for (clistiter *j = fl ? clist_begin(fl) : NULL; j; j = clist_next(j)) {
                struct mailimap_flag_fetch *ff = clist_content(j);
                if (ff->fl_type == MAILIMAP_FLAG_FETCH_OTHER && ff->fl_flag)
                    flag_name(&b, ff->fl_flag);
            }
            free(m->flags);
            m->flags = tb_flags_canon(b.data ? tb_buf_cstr(&b) : "");
            tb_buf_free(&b);
        } else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_STATIC) {
            struct mailimap_msg_att_static *st = item->att_data.att_static;
            switch (st->att_type) {
            case MAILIMAP_MSG_ATT_UID:
                m->uid = st->att_data.att_uid;
                have_uid = true;
                break;
            case MAILIMAP_MSG_ATT_INTERNALDATE:
                m->internaldate = to_epoch(st->att_data.att_internal_date, &m->tz_minutes);
                break;
            case MAILIMAP_MSG_ATT_RFC822_SIZE:
                m->size = st->att_data.att_rfc822_size;
                break;
            case MAILIMAP_MSG_ATT_BODY_SECTION: {
                struct mailimap_msg_att_body_section *bs = st->att_data.att_body_section;
                struct mailimap_section *sec = bs->sec_section;
                bool header = sec && sec->sec_spec &&
                              sec->sec_spec->sec_type == MAILIMAP_SECTION_SPEC_SECTION_MSGTEXT;
                if (header) {
                    free(m->ident);
                    m->ident = header_ident(bs->sec_body_part ? bs->sec_body_part : "",
                                            bs->sec_body_part ? bs->sec_length : 0);
                } else if (body) {
                    /* NIL stays NULL: a message the server cannot deliver, not an empty one. */
                    *body = bs->sec_body_part;
                    *body_len = bs->sec_body_part ? bs->sec_length : 0;
                }
                break;
            }
            default:
                break;
            }
        } else if (item->att_type == MAILIMAP_MSG_ATT_ITEM_EXTENSION) {
            struct mailimap_extension_data *e = item->att_data.att_extension_data;
            if (e->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE &&
                e->ext_type == MAILIMAP_CONDSTORE_TYPE_FETCH_DATA) {
                struct mailimap_condstore_fetch_mod_resp *r = e->ext_data;
                m->modseq = r->cs_modseq_value;
            }
        }
    }
    return have_uid;
}

int tb_fetch_body_state(struct mailimap_msg_att *att)
{
    for (clistiter *it = clist_begin(att->att_list); it; it = clist_next(it)) {
        struct mailimap_msg_att_item *item = clist_content(it);
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC ||
            item->att_data.att_static->att_type != MAILIMAP_MSG_ATT_BODY_SECTION)
            continue;
        struct mailimap_msg_att_body_section *bs =
            item->att_data.att_static->att_data.att_body_section;
        struct mailimap_section *sec = bs->sec_section;
        if (sec && sec->sec_spec &&
            sec->sec_spec->sec_type == MAILIMAP_SECTION_SPEC_SECTION_MSGTEXT)
            continue; /* the identity headers */
        return bs->sec_body_part ? 2 : 1;
    }
    return 0;
}

void tb_msg_info_clear(struct tb_msg_info *m)
{
    if (!m->pooled) {
        free(m->flags);
        free(m->ident);
    }
    m->flags = m->ident = NULL;
    m->pooled = false;
}

void tb_list_to_info(struct mailimap_mailbox_list *ml, struct tb_mbox_info *b)
{
    memset(b, 0, sizeof(*b));
    b->name = tb_xstrdup(ml->mb_name);
    b->sep = ml->mb_delimiter;
    struct mailimap_mbx_list_flags *f = ml->mb_flag;
    if (!f)
        return;
    if (f->mbf_type == MAILIMAP_MBX_LIST_FLAGS_SFLAG &&
        f->mbf_sflag == MAILIMAP_MBX_LIST_SFLAG_NOSELECT)
        b->noselect = true;
    static const char *special[] = {"All", "Archive", "Drafts", "Flagged", "Junk", "Sent", "Trash"};
    for (clistiter *it = f->mbf_oflags ? clist_begin(f->mbf_oflags) : NULL; it;
         it = clist_next(it)) {
        struct mailimap_mbx_list_oflag *o = clist_content(it);
        if (o->of_type != MAILIMAP_MBX_LIST_OFLAG_FLAG_EXT || !o->of_flag_ext)
            continue;
        if (strcasecmp(o->of_flag_ext, "NonExistent") == 0 ||
            strcasecmp(o->of_flag_ext, "Noselect") == 0)
            b->noselect = true;
        else if (strcasecmp(o->of_flag_ext, "Subscribed") == 0)
            b->subscribed = true;
        for (size_t i = 0; i < sizeof(special) / sizeof(*special); i++)
            if (strcasecmp(o->of_flag_ext, special[i]) == 0 && !b->special_use) {
                b->special_use = tb_xstrndup("\\", 1);
                size_t l = strlen(special[i]);
                b->special_use = tb_xrealloc(b->special_use, l + 2);
                memcpy(b->special_use + 1, special[i], l + 1);
            }
    }
}

void tb_status_apply(struct mailimap_mailbox_data_status *st, struct tb_mbox_info *boxes, size_t n)
{
    char *name = tb_mboxname_unwire(st->st_mailbox);
    struct tb_mbox_info *b = NULL;
    for (size_t i = 0; i < n && !b; i++)
        if (strcmp(boxes[i].name, name) == 0)
            b = &boxes[i];
    free(name);
    if (!b)
        return;
    b->have_status = true;
    /* "STATUS name ()" is legal: libetpan then has no list at all. */
    for (clistiter *it = st->st_info_list ? clist_begin(st->st_info_list) : NULL; it;
         it = clist_next(it)) {
        struct mailimap_status_info *si = clist_content(it);
        if (si->st_att == MAILIMAP_STATUS_ATT_MESSAGES)
            b->messages = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_UIDNEXT)
            b->uidnext = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_UIDVALIDITY)
            b->uidvalidity = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_HIGHESTMODSEQ)
            b->highestmodseq = si->st_value;
        else if (si->st_att == MAILIMAP_STATUS_ATT_EXTENSION && si->st_ext_data &&
                 si->st_ext_data->ext_extension->ext_id == MAILIMAP_EXTENSION_CONDSTORE)
            b->highestmodseq = ((struct mailimap_condstore_status_info *)si->st_ext_data->ext_data)
                                   ->cs_highestmodseq_value;
    }
}

bool tb_list_status_collect(const struct mailimap_response_data *d, struct tb_mbox_info **boxes,
                            size_t *n)
{
    if (!d || d->rsp_type != MAILIMAP_RESP_DATA_TYPE_MAILBOX_DATA)
        return false;
    struct mailimap_mailbox_data *md = d->rsp_data.rsp_mailbox_data;
    if (md->mbd_type == MAILIMAP_MAILBOX_DATA_LIST) {
        *boxes = tb_xrealloc(*boxes, (*n + 1) * sizeof(**boxes));
        tb_list_to_info(md->mbd_data.mbd_list, &(*boxes)[(*n)++]);
        return true;
    }
    if (md->mbd_type == MAILIMAP_MAILBOX_DATA_STATUS) {
        tb_status_apply(md->mbd_data.mbd_status, *boxes, *n);
        return true;
    }
    return false;
}
