/* main.c - sitesync-pki, the command line over pki/: parses options per
 * command, calls the library, and turns its errors into messages and exit
 * codes (0 ok, 1 the operation failed, 2 the command line is wrong). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pki/pki.h"
#include "proto/err.h"
#include "proto/ident.h"

#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define MAX_MULTI  64

enum opt_kind { FLAG, VALUE, MULTI };

typedef struct opt_def {
    const char *name; /* without the leading "--" */
    enum opt_kind kind;
} opt_def;

typedef struct cmd_def {
    const char *name;
    const char *synopsis;
    const char *help;
    const opt_def *opts;
    int positional; /* number of positional arguments required */
} cmd_def;

/* Parsed options: one slot per option of the command. */
typedef struct parsed {
    const char *value[16];
    int set[16];
    const char *multi[16][MAX_MULTI];
    int nmulti[16];
    const char *pos;
} parsed;

static const opt_def init_opts[] = { { "dir", VALUE },
                                     { "name", VALUE },
                                     { "days", VALUE },
                                     { "passphrase-file", VALUE },
                                     { NULL, FLAG } };
static const opt_def issue_opts[] = { { "dir", VALUE },  { "role", VALUE },
                                      { "node", VALUE }, { "site", MULTI },
                                      { "dns", MULTI },  { "ip", MULTI },
                                      { "days", VALUE }, { "out", VALUE },
                                      { "force", FLAG }, { "passphrase-file", VALUE },
                                      { NULL, FLAG } };
static const opt_def csr_opts[] = { { "dir", VALUE },
                                    { "csr", VALUE },
                                    { "role", VALUE },
                                    { "node", VALUE },
                                    { "site", MULTI },
                                    { "dns", MULTI },
                                    { "ip", MULTI },
                                    { "days", VALUE },
                                    { "out", VALUE },
                                    { "force", FLAG },
                                    { "passphrase-file", VALUE },
                                    { NULL, FLAG } };
static const opt_def revoke_opts[] = { { "dir", VALUE },  { "serial", VALUE },
                                       { "node", VALUE }, { "reason", VALUE },
                                       { "days", VALUE }, { "passphrase-file", VALUE },
                                       { NULL, FLAG } };
static const opt_def crl_opts[] = {
    { "dir", VALUE }, { "days", VALUE }, { "passphrase-file", VALUE }, { NULL, FLAG }
};
static const opt_def list_opts[] = { { "dir", VALUE }, { "json", FLAG }, { NULL, FLAG } };
static const opt_def show_opts[] = { { "json", FLAG }, { NULL, FLAG } };

static const cmd_def cmds[] = {
    { "init", "init --dir DIR [--name NAME] [--days N] [--passphrase-file F]",
      "Creates a CA in DIR: an ECDSA P-256 key (DIR/private/ca.key, mode 0600, directory 0700),\n"
      "a self-signed CA certificate (DIR/ca.crt), an empty CRL (DIR/crl.pem) and the issuance\n"
      "index (DIR/index.json). Refuses to overwrite an existing CA.\n"
      "  --name NAME           CA name, used as CN and O (default \"sitesync CA\"; <= 64 chars)\n"
      "  --days N              CA validity in days (default 3650)\n"
      "  --passphrase-file F   encrypt the CA key (PKCS#8, AES-256-CBC) with the first line of\n"
      "                        F (>= 8 characters); every signing command then needs it too\n",
      init_opts, 0 },
    { "issue",
      "issue --dir DIR --role daemon|gateway|relay --node ID [--site ID ...] [--dns NAME ...]\n"
      "        [--ip ADDR ...] [--days N] --out PREFIX [--force] [--passphrase-file F]",
      "Generates a P-256 key pair and a certificate for a node: PREFIX.key (0600) and\n"
      "PREFIX.crt. The identity travels as SAN URIs urn:sitesync:node:ID, urn:sitesync:role:ROLE\n"
      "and urn:sitesync:site:ID (one per --site). Key usage: digitalSignature; extended key\n"
      "usage: daemon serverAuth, gateway clientAuth, relay both.\n"
      "  --role R      daemon (no --site), gateway or relay (at least one --site)\n"
      "  --node ID     node id: 1-64 of a-z 0-9 . _ - (starting with a-z or 0-9)\n"
      "  --site ID     a site the node may write (gateway) or relay (relay) for; repeatable\n"
      "  --dns NAME    DNS subjectAltName (daemon and relay); repeatable\n"
      "  --ip ADDR     IP subjectAltName (daemon and relay); repeatable\n"
      "  --days N      validity in days (default 397; never beyond the CA's expiry)\n"
      "  --out PREFIX  output prefix; existing files are refused unless --force\n",
      issue_opts, 0 },
    { "sign-csr",
      "sign-csr --dir DIR --csr FILE --role R --node ID [--site ID ...] [--dns NAME ...]\n"
      "        [--ip ADDR ...] [--days N] --out FILE.crt [--force] [--passphrase-file F]",
      "Certifies a key made on the device (the private key never leaves it). The CSR (PEM or\n"
      "DER) must carry an ECDSA P-256 key and a valid self-signature; its subject and requested\n"
      "extensions are ignored: the identity comes from this command line only. Options as for\n"
      "issue; --out names the certificate file.\n",
      csr_opts, 0 },
    { "revoke",
      "revoke --dir DIR (--serial HEX | --node ID) [--reason R] [--days N] [--passphrase-file F]",
      "Revokes one certificate (--serial, as printed by list) or every valid certificate of a\n"
      "node (--node), then re-signs DIR/crl.pem (nextUpdate in --days days, default 30).\n"
      "  --reason R    unspecified (default), keyCompromise, cACompromise, affiliationChanged,\n"
      "                superseded, cessationOfOperation, privilegeWithdrawn\n",
      revoke_opts, 0 },
    { "crl", "crl --dir DIR [--days N] [--passphrase-file F]",
      "Re-signs DIR/crl.pem with the next CRL number, lastUpdate now and nextUpdate in --days\n"
      "days (default 30). Run it before nextUpdate passes, e.g. from cron, and publish the file.\n",
      crl_opts, 0 },
    { "list", "list --dir DIR [--json]",
      "Lists every certificate the CA issued: serial, node, role, status (valid, expired,\n"
      "revoked), not-after and sites. Needs no key.\n",
      list_opts, 0 },
    { "show", "show FILE.crt [--json]",
      "Prints a certificate's identity exactly as sitesync parses it (node, role, sites), its\n"
      "validity, serial and SHA-256 fingerprint (the form sitesyncd logs). Exits 1 if sitesync\n"
      "would refuse the identity (a CA certificate is shown without one and exits 0).\n",
      show_opts, 1 },
};

#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: sitesync-pki COMMAND [OPTIONS]\n\n"
               "The sitesync private certificate authority.\n\ncommands:\n");
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(f, "  sitesync-pki %s\n", cmds[i].synopsis);
    fprintf(f, "\n'sitesync-pki COMMAND --help' describes one command. Exit status: 0 ok,\n"
               "1 the operation failed, 2 bad command line. Guide: docs/pki.md\n");
}

static void cmd_usage(const cmd_def *c, FILE *f)
{
    fprintf(f, "usage: sitesync-pki %s\n\n%s", c->synopsis, c->help);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
usage_error(const cmd_def *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sitesync-pki %s: ", c->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'sitesync-pki %s --help')\n", c->name);
    return EXIT_USAGE;
}

static int find_opt(const cmd_def *c, const char *name, size_t len)
{
    for (int i = 0; c->opts[i].name; i++) {
        if (strlen(c->opts[i].name) == len && memcmp(c->opts[i].name, name, len) == 0)
            return i;
    }
    return -1;
}

/* Returns 0, EXIT_USAGE after printing why, or -1 when --help was asked. */
static int parse_args(const cmd_def *c, int argc, char **argv, parsed *p)
{
    int npos = 0;

    memset(p, 0, sizeof(*p));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq, *val = NULL;
        size_t nlen;
        int k;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return -1;
        if (strncmp(a, "--", 2) != 0) {
            if (npos >= c->positional)
                return usage_error(c, "unexpected argument '%s'", a);
            p->pos = a;
            npos++;
            continue;
        }
        eq = strchr(a + 2, '=');
        nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        k = find_opt(c, a + 2, nlen);
        if (k < 0)
            return usage_error(c, "unknown option '%s'", a);
        if (c->opts[k].kind == FLAG) {
            if (eq)
                return usage_error(c, "option '%s' takes no value", a);
            p->set[k] = 1;
            continue;
        }
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return usage_error(c, "option '%s' needs a value", a);
            val = argv[++i];
        }
        if (c->opts[k].kind == VALUE) {
            if (p->set[k])
                return usage_error(c, "option '--%s' given twice", c->opts[k].name);
            p->value[k] = val;
            p->set[k] = 1;
        } else {
            if (p->nmulti[k] >= MAX_MULTI)
                return usage_error(c, "too many '--%s' options", c->opts[k].name);
            p->multi[k][p->nmulti[k]++] = val;
            p->set[k] = 1;
        }
    }
    if (npos < c->positional)
        return usage_error(c, "%s", "missing the certificate file argument");
    return 0;
}

static const char *val(const cmd_def *c, const parsed *p, const char *name)
{
    int k = find_opt(c, name, strlen(name));
    return k >= 0 ? p->value[k] : NULL;
}

static int flag(const cmd_def *c, const parsed *p, const char *name)
{
    int k = find_opt(c, name, strlen(name));
    return k >= 0 && p->set[k];
}

static const char *const *multi(const cmd_def *c, const parsed *p, const char *name, int *n)
{
    int k = find_opt(c, name, strlen(name));
    *n = k >= 0 ? p->nmulti[k] : 0;
    return k >= 0 ? p->multi[k] : NULL;
}

/* Parses --days when given; 0 means "the default". */
static int days_opt(const cmd_def *c, const parsed *p, int *days)
{
    const char *s = val(c, p, "days");
    char *end = NULL;
    long v;

    *days = 0;
    if (!s)
        return 0;
    if (*s < '0' || *s > '9')
        return usage_error(c, "--days wants a positive number of days, not '%s'", s);
    v = strtol(s, &end, 10);
    if (!end || *end != '\0' || v < 1 || v > PKI_DAYS_MAX)
        return usage_error(c, "--days wants a number of days from 1 to 36500, not '%s'", s);
    *days = (int)v;
    return 0;
}

static int fail(const cmd_def *c, const char *msg, int rc)
{
    fprintf(stderr, "sitesync-pki %s: error: %s\n", c->name, msg[0] ? msg : ss_strerror(rc));
    return EXIT_FAIL;
}

static int fill_issue(const cmd_def *c, const parsed *p, pki_issue_opts *o)
{
    const char *role = val(c, p, "role");
    int r;

    memset(o, 0, sizeof(*o));
    o->dir = val(c, p, "dir");
    o->passphrase_file = val(c, p, "passphrase-file");
    if (!o->dir)
        return usage_error(c, "%s", "--dir DIR is required");
    if (!role)
        return usage_error(c, "%s", "--role is required: daemon, gateway or relay");
    r = ss_role_parse(role, strlen(role));
    if (r < 0)
        return usage_error(c, "unknown role '%s': daemon, gateway or relay", role);
    o->role = (ss_role)r;
    o->node = val(c, p, "node");
    if (!o->node)
        return usage_error(c, "%s", "--node ID is required");
    o->sites = multi(c, p, "site", &o->nsites);
    o->dns = multi(c, p, "dns", &o->ndns);
    o->ips = multi(c, p, "ip", &o->nips);
    o->force = flag(c, p, "force");
    if (!val(c, p, "out"))
        return usage_error(c, "%s",
                           strcmp(c->name, "issue") == 0 ? "--out PREFIX is required"
                                                         : "--out FILE.crt is required");
    return days_opt(c, p, &o->days);
}

static void print_issued(const pki_issued *r, const char *node, const char *files)
{
    printf("issued serial %s for node %s, valid until %s\nfingerprint %s\nwrote %s\n", r->serial,
           node, r->not_after, r->fingerprint, files);
}

static int run(const cmd_def *c, const parsed *p)
{
    char err[1024] = "";
    char files[2 * 4096 + 8];
    pki_issued res;
    int rc;

    if (strcmp(c->name, "init") == 0) {
        pki_init_opts o = { val(c, p, "dir"), val(c, p, "name"), 0, val(c, p, "passphrase-file") };
        if (!o.dir)
            return usage_error(c, "%s", "--dir DIR is required");
        if ((rc = days_opt(c, p, &o.days)) != 0)
            return rc;
        rc = pki_init(&o, err, sizeof(err));
        if (rc < 0)
            return fail(c, err, rc);
        printf("created CA in %s: ca.crt, private/ca.key (0600%s), crl.pem, index.json\n", o.dir,
               o.passphrase_file ? ", encrypted" : "");
        return 0;
    }
    if (strcmp(c->name, "issue") == 0 || strcmp(c->name, "sign-csr") == 0) {
        pki_issue_opts o;
        int csr = strcmp(c->name, "sign-csr") == 0;
        if ((rc = fill_issue(c, p, &o)) != 0)
            return rc;
        if (csr) {
            o.csr_file = val(c, p, "csr");
            o.out_crt = val(c, p, "out");
            if (!o.csr_file)
                return usage_error(c, "%s", "--csr FILE is required");
            rc = pki_sign_csr(&o, &res, err, sizeof(err));
            snprintf(files, sizeof(files), "%s", o.out_crt);
        } else {
            o.out_prefix = val(c, p, "out");
            rc = pki_issue(&o, &res, err, sizeof(err));
            snprintf(files, sizeof(files), "%s.key %s.crt", o.out_prefix, o.out_prefix);
        }
        if (rc < 0)
            return fail(c, err, rc);
        print_issued(&res, o.node, files);
        return 0;
    }
    if (strcmp(c->name, "revoke") == 0) {
        pki_revoke_opts o;
        const char *reason = val(c, p, "reason");
        memset(&o, 0, sizeof(o));
        o.dir = val(c, p, "dir");
        o.passphrase_file = val(c, p, "passphrase-file");
        o.serial = val(c, p, "serial");
        o.node = val(c, p, "node");
        if (!o.dir)
            return usage_error(c, "%s", "--dir DIR is required");
        if (!o.serial == !o.node)
            return usage_error(c, "%s", "give exactly one of --serial HEX or --node ID");
        if (reason && (o.reason = pki_reason_parse(reason)) < 0)
            return usage_error(c, "unknown --reason '%s'", reason);
        if ((rc = days_opt(c, p, &o.crl_days)) != 0)
            return rc;
        rc = pki_revoke(&o, err, sizeof(err));
        if (rc < 0)
            return fail(c, err, rc);
        printf("revoked %d certificate%s; %s/crl.pem updated\n", rc, rc == 1 ? "" : "s", o.dir);
        return 0;
    }
    if (strcmp(c->name, "crl") == 0) {
        pki_crl_opts o = { val(c, p, "dir"), val(c, p, "passphrase-file"), 0 };
        if (!o.dir)
            return usage_error(c, "%s", "--dir DIR is required");
        if ((rc = days_opt(c, p, &o.days)) != 0)
            return rc;
        rc = pki_crl(&o, err, sizeof(err));
        if (rc < 0)
            return fail(c, err, rc);
        printf("%s/crl.pem re-signed\n", o.dir);
        return 0;
    }
    if (strcmp(c->name, "list") == 0) {
        if (!val(c, p, "dir"))
            return usage_error(c, "%s", "--dir DIR is required");
        rc = pki_list(val(c, p, "dir"), flag(c, p, "json"), stdout, err, sizeof(err));
        return rc < 0 ? fail(c, err, rc) : 0;
    }
    /* show */
    rc = pki_show(p->pos, flag(c, p, "json"), stdout, err, sizeof(err));
    return rc < 0 ? fail(c, err, rc) : 0;
}

int main(int argc, char **argv)
{
    const cmd_def *c = NULL;
    parsed *p;
    int rc;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2) {
            for (size_t i = 0; i < NCMDS; i++) {
                if (strcmp(argv[2], cmds[i].name) == 0) {
                    cmd_usage(&cmds[i], stdout);
                    return 0;
                }
            }
            fprintf(stderr, "sitesync-pki: unknown command '%s'\n", argv[2]);
            return EXIT_USAGE;
        }
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < NCMDS; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0)
            c = &cmds[i];
    }
    if (!c) {
        fprintf(stderr, "sitesync-pki: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        fprintf(stderr, "sitesync-pki: out of memory\n");
        return EXIT_FAIL;
    }
    rc = parse_args(c, argc - 2, argv + 2, p);
    if (rc < 0) {
        cmd_usage(c, stdout);
        rc = 0;
    } else if (rc == 0) {
        rc = run(c, p);
    }
    free(p);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "sitesync-pki: cannot write output\n");
        rc = EXIT_FAIL;
    }
    return rc;
}
