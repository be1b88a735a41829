/* Shared by the files of src/state: the database handle. Not part of any public API. */
#ifndef TWINBOX_STATE_INTERNAL_H
#define TWINBOX_STATE_INTERNAL_H

#include <sqlite3.h>

struct tb_state {
    sqlite3 *db;
};

#endif
