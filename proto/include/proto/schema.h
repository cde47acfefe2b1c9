/* schema.h - the record schema: the one source of truth for collections,
 * fields, types and limits, used by the gateway (refuse bad input at
 * submission) and by the daemon (refuse bad input at ingest), and the change
 * type that carries a write of one record. */
#ifndef SS_SCHEMA_H
#define SS_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "proto/hlc.h"
#include "proto/ident.h"

#define SS_SCHEMA_MAX_FIELDS 16
#define SS_FIELD_NAME_MAX    31
/* Record keys: 1..96 chars of [A-Za-z0-9._:-]. site_status keys are site ids;
 * incident keys are minted by ss_incident_key. */
#define SS_KEY_MAX 96
/* Sequence numbers and other integers stay below 2^53 so every JSON reader
 * represents them exactly. */
#define SS_SEQ_MAX ((UINT64_C(1) << 53) - 1)

typedef enum ss_ftype {
    SS_FT_STRING = 1, /* UTF-8 text; min/max are byte lengths */
    SS_FT_TEXT = 2,   /* multi-line UTF-8 text (tab, LF, CR allowed) */
    SS_FT_ENUM = 3,   /* one of enums[] */
    SS_FT_INT = 4,    /* integer in [min, max] */
    SS_FT_TIME = 5    /* UTC timestamp "YYYY-MM-DDTHH:MM:SS[.mmm]Z" */
} ss_ftype;

typedef struct ss_field_def {
    const char *name;
    ss_ftype type;
    int required;             /* must be present (non-null) in a create */
    int64_t min, max;         /* value range (INT) or byte-length range (text) */
    const char *const *enums; /* NULL-terminated, for SS_FT_ENUM */
    const char *help;
} ss_field_def;

typedef enum ss_collection_id { SS_COLL_SITE_STATUS = 1, SS_COLL_INCIDENT = 2 } ss_collection_id;

typedef struct ss_collection_def {
    const char *name; /* "site_status", "incident" */
    ss_collection_id id;
    int key_is_site; /* 1: key must equal the record's site id */
    int nfields;
    const ss_field_def *fields;
} ss_collection_def;

/* All collections, in id order; *n receives the count. */
const ss_collection_def *ss_schema_collections(int *n);
const ss_collection_def *ss_schema_collection(const char *name, size_t len);
const ss_field_def *ss_schema_field(const ss_collection_def *c, const char *name, size_t len);

typedef enum ss_op {
    SS_OP_CREATE = 1, /* new record: required fields must be present */
    SS_OP_UPDATE = 2, /* some fields of a record (at least one) */
    SS_OP_DELETE = 3  /* tombstone, no fields */
} ss_op;
const char *ss_op_name(ss_op op);
int ss_op_parse(const char *s, size_t len); /* ss_op or SS_EINVAL */

typedef struct ss_value {
    int is_null;     /* JSON null: clears an optional field */
    int64_t num;     /* SS_FT_INT */
    const char *str; /* text, enum and time (not NUL-terminated) */
    size_t len;
} ss_value;

typedef struct ss_fieldval {
    const ss_field_def *def;
    ss_value v;
} ss_fieldval;

/* One change. Strings point into storage owned by whoever built it (a parsed
 * body, or the caller); the struct itself owns nothing. */
typedef struct ss_change {
    uint64_t seq;
    ss_hlc_t hlc;
    const ss_collection_def *coll;
    char key[SS_KEY_MAX + 1];
    char site[SS_ID_MAX + 1];
    ss_op op;
    int nfields;
    ss_fieldval fields[SS_SCHEMA_MAX_FIELDS];
} ss_change;

/* Validation error detail: the code, the offending field ("" if none) and a
 * message fit for an operator. */
typedef struct ss_verr {
    int code;
    char field[SS_FIELD_NAME_MAX + 1];
    char msg[160];
} ss_verr;
/* Fills err (if not NULL) and returns code. */
int ss_verr_set(ss_verr *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checks one change against the schema: key and site ids, key rules of the
 * collection, op rules (create has every required field; update at least one
 * field; delete none), each value's type, enum, range and length, no field
 * twice, hlc and seq non-zero and in range. Returns 0 or the error, with the
 * field named in err. */
int ss_change_validate(const ss_change *ch, ss_verr *err);

/* Sets a field from text as a user typed it (CLI "--set field=value"):
 * numbers are parsed for INT fields, "null" clears. Validates the one value.
 * value must outlive ch. Returns 0 or an error naming the field. */
int ss_change_set_text(ss_change *ch, const char *field, const char *value, ss_verr *err);

/* Encodes the change as one compact JSON object (the wire form inside an
 * envelope body):
 *   {"seq":N,"hlc":"<16 hex>","collection":"..","key":"..","site":"..",
 *    "op":"create|update|delete","fields":{...}}
 * Returns the length written (NUL-terminated when room remains), or
 * SS_ENOSPC. Does not validate: call ss_change_validate first. */
int ss_change_encode(const ss_change *ch, char *out, size_t cap);

/* Mints an incident key, unique without coordination and ordered in time per
 * origin: "<node>-<hlc as 16 hex>". Returns the length or an error. */
int ss_incident_key(char *out, size_t cap, const char *node, ss_hlc_t hlc);

/* 0 if s is a valid record key. */
int ss_key_check(const char *s, size_t len);

#endif
