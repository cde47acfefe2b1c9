/* err.h - sitesync error codes: one X-macro table generates the enum, the
 * message text and the stable wire name used in ERROR frames and logs. */
#ifndef SS_ERR_H
#define SS_ERR_H

/* X(NAME, value, "wire_name", "message"). Values are stable: they may be
 * logged and stored. The wire name travels in ERROR frames and in ACK
 * rejections; a peer that does not know a name treats it as SS_EPROTO. */
#define SS_ERRNO_MAP(X)                                                                          \
    X(ENOMEM, -1, "no_memory", "out of memory")                                                  \
    X(EINVAL, -2, "invalid_argument", "invalid argument")                                        \
    X(ENOSPC, -3, "no_space", "buffer or storage too small")                                     \
    X(EOVERSIZE, -4, "oversize", "frame or field larger than the configured maximum")            \
    X(ETYPE, -5, "unknown_type", "unknown frame type")                                           \
    X(EFLAGS, -6, "bad_flags", "frame or envelope flags not supported")                          \
    X(ETRUNC, -7, "truncated", "input truncated")                                                \
    X(EJSON, -8, "malformed_json", "malformed JSON")                                             \
    X(EUTF8, -9, "invalid_utf8", "text is not valid UTF-8")                                      \
    X(ENUL, -10, "embedded_nul", "text contains a NUL character")                                \
    X(EDEPTH, -11, "too_deep", "JSON nesting deeper than allowed")                               \
    X(EDUPKEY, -12, "duplicate_key", "duplicate key in JSON object")                             \
    X(EMISSING, -13, "missing_field", "required field missing")                                  \
    X(EFIELDTYPE, -14, "wrong_type", "field has the wrong type")                                 \
    X(ERANGE, -15, "out_of_range", "number out of range")                                        \
    X(EENUM, -16, "bad_enum", "value not one of the allowed values")                             \
    X(ETOOLONG, -17, "too_long", "text longer than allowed")                                     \
    X(EUNKNOWNFIELD, -18, "unknown_field", "unknown field")                                      \
    X(EID, -19, "bad_id", "identifier empty, too long or outside the allowed characters")        \
    X(EVERSION, -20, "bad_version", "unsupported protocol or format version")                    \
    X(ESEQ, -21, "bad_sequence", "sequence numbers not contiguous or out of range")              \
    X(ECLOCK, -22, "clock_overflow", "clock value out of range")                                 \
    X(ESKEW, -23, "clock_skew", "timestamp too far in the future")                               \
    X(EIDENT, -24, "bad_identity", "certificate identity missing or malformed")                  \
    X(EGAP, -25, "gap", "sequence gap: resume from the committed sequence")                      \
    X(ETAMPER, -26, "tamper", "same origin and sequence with different content")                 \
    X(EFORBIDDEN, -27, "forbidden_site", "peer may not write records of this site")              \
    X(EROLE, -28, "forbidden_role", "peer's role may not do this")                               \
    X(EAUTH, -29, "auth", "peer identity does not match its certificate")                        \
    X(EPROTO, -30, "protocol", "protocol violation")                                             \
    X(EIO, -31, "io", "input/output error")                                                      \
    X(EDB, -32, "database", "database error")                                                    \
    X(ETIMEDOUT, -33, "timeout", "timed out")                                                    \
    X(ECLOSED, -34, "closed", "connection closed")                                               \
    X(EBUSY, -35, "busy", "resource busy, try again later")                                      \
    X(EFULL, -36, "full", "capacity reached: input refused, nothing accepted was dropped")       \
    X(ESIG, -37, "bad_signature", "origin signature missing or invalid")                         \
    X(ECERT, -38, "bad_certificate", "certificate invalid, expired or not from the sitesync CA") \
    X(EREVOKED, -39, "revoked", "certificate revoked")                                           \
    X(ECONFIG, -40, "config", "invalid configuration")                                           \
    X(ENOENT, -41, "not_found", "no such file or record")                                        \
    X(EEXIST, -42, "exists", "already exists")                                                   \
    X(EPERM, -43, "permission", "permission denied or unsafe permissions")                       \
    X(EAGAIN, -44, "again", "resource temporarily unavailable")                                  \
    X(ECORRUPT, -45, "corrupt", "stored data failed its checksum")                               \
    X(ESHUTDOWN, -46, "shutting_down", "server is shutting down")                                \
    X(ELIMIT, -47, "limit", "a configured limit was reached")                                    \
    X(EINTERNAL, -48, "internal", "internal error")

typedef enum ss_err {
    SS_OK = 0,
#define SS__ERR_ENUM(name, val, wire, msg) SS_##name = (val),
    SS_ERRNO_MAP(SS__ERR_ENUM)
#undef SS__ERR_ENUM
} ss_err;

/* Human message for a code; never NULL (unknown codes get a generic text). */
const char *ss_strerror(int err);
/* Stable wire name ("gap", "forbidden_site", ...); "ok" for 0; never NULL. */
const char *ss_err_name(int err);
/* Code for a wire name; SS_EPROTO for names this build does not know. */
int ss_err_from_name(const char *name);

#endif
