#!/usr/bin/env python3
"""chaos_check.py - the reference merge of the chaos tests, compared with what
sitesync-admin reports from the daemon's database.

The reference is computed from the changes the gateways' submissions returned
success for (one JSON line per change, the change's wire form, in files named
ORIGIN.jsonl): per record and field the value with the greatest (hlc, origin)
wins, a delete is a tombstone with its own clock, and a record is visible when
some field is newer than its tombstone. Lines without an "hlc" (changes made
through the sitesync-gw CLI, which does not print its clock) come after every
earlier change of the same origin, which is what the gateway's persisted,
monotonic clock guarantees; they are only used on records that origin alone
writes.

usage: chaos_check.py ref RECORDS_DIR OUT.json [--refused ORIGIN:SEQ,...]
       chaos_check.py check ADMIN DB REF.json
       chaos_check.py kill-at DB PID TARGET DELAY_MS TIMEOUT_S

`kill-at` polls the daemon's committed count (sum over origins, read-only,
every millisecond) and sends SIGKILL to PID once it reaches TARGET, DELAY_MS
later (fractional), or at TIMEOUT_S at the latest; it prints the count read
just before the kill.

`ref` computes the reference once (changes listed in --refused are expected to
be refused by the daemon: they count in the sequence but change nothing).
`check` compares, each failure printed on its own line (exit 1):
  - every origin's committed sequence (sitesync-admin peers) equals its number
    of changes
  - incidents (sitesync-admin incidents): the same keys, and each key's merged
    fields, as the reference
  - sites (sitesync-admin sites): every site's merged status fields
  - sitesync-admin record site_status KEY of every status record: each
    field's winning hlc and origin (the race is decided by the clock, not by
    arrival order)
  - the audit table: every (origin, seq) has exactly one entry that consumed
    it (applied or superseded; rejected:* for the expected refusals) and any
    further entry for it is `duplicate` (a re-delivery after a lost ACK):
    0 lost, 0 applied twice.
Prints one summary line on success.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone


def hlc_human(hexstr):
    v = int(hexstr, 16)
    ms, counter = v >> 16, v & 0xFFFF
    t = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return "%s.%03dZ#%04x" % (t.strftime("%Y-%m-%dT%H:%M:%S"), ms % 1000, counter)


def load_changes(records_dir):
    """origin -> list of changes in sequence order."""
    out = {}
    for name in sorted(os.listdir(records_dir)):
        if not name.endswith(".jsonl"):
            continue
        origin = name[: -len(".jsonl")]
        changes = []
        with open(os.path.join(records_dir, name)) as f:
            for line in f:
                line = line.strip()
                if line:
                    changes.append(json.loads(line))
        changes.sort(key=lambda c: c["seq"])
        for i, c in enumerate(changes):
            if c["seq"] != i + 1:
                raise SystemExit("%s: sequence %d where %d was expected" % (name, c["seq"], i + 1))
        out[origin] = changes
    return out


def reference(changes_by_origin, refused):
    """(collection, key) -> {"site", "tomb": clock, "fields": {name: (clock, value, exact)}}.
    A clock is (hlc int, origin); exact is False when the hlc is not known."""
    recs = {}
    for origin, changes in changes_by_origin.items():
        last = 0
        for c in changes:
            exact = "hlc" in c
            # A CLI change comes after everything earlier of this origin.
            h = int(c["hlc"], 16) if exact else last + 1
            last = h
            if (origin, c["seq"]) in refused:
                continue
            clock = (h, origin)
            r = recs.setdefault((c["collection"], c["key"]), {"site": c["site"], "tomb": None, "fields": {}})
            if c["op"] == "delete":
                if r["tomb"] is None or clock > r["tomb"]:
                    r["tomb"] = clock
                continue
            for name, value in c.get("fields", {}).items():
                cur = r["fields"].get(name)
                if cur is None or clock > cur[0]:
                    r["fields"][name] = (clock, value, exact)
    return recs


def visible(r):
    """Merged fields newer than the tombstone, or None if the record is deleted."""
    fields = {n: cv for n, cv in r["fields"].items() if r["tomb"] is None or cv[0] > r["tomb"]}
    # A null value clears a field; the admin output leaves it out.
    if r["tomb"] is not None and not fields:
        return None
    return fields


def build_ref(records_dir, out_path, refused):
    changes = load_changes(records_dir)
    recs = reference(changes, refused)
    incidents, status = {}, {}
    for (coll, key), r in recs.items():
        v = visible(r)
        if coll == "incident":
            if v is not None:
                incidents[key] = {n: cv[1] for n, cv in v.items() if cv[1] is not None}
        else:
            status[key] = {
                n: [cv[1], hlc_human("%016x" % cv[0][0]) if cv[2] else None, cv[0][1]] for n, cv in (v or {}).items()
            }
    ref = {
        "origins": {o: len(c) for o, c in changes.items()},
        "refused": sorted("%s:%d" % k for k in refused),
        "incidents": incidents,
        "status": status,
    }
    with open(out_path, "w") as f:
        json.dump(ref, f)
    print("reference: %d changes from %d origins, %d incidents, %d status records, %d refused" % (
        sum(ref["origins"].values()), len(changes), len(incidents), len(status), len(refused)))
    return 0


def admin(binary, db, *args):
    out = subprocess.run([binary, "--db", db, "--json", *args], check=True, capture_output=True, timeout=300)
    return json.loads(out.stdout)


def check(binary, db, ref_path):
    with open(ref_path) as f:
        ref = json.load(f)
    origins = ref["origins"]
    refused = set(tuple(x.rsplit(":", 1)) for x in ref["refused"])
    refused = {(o, int(s)) for o, s in refused}
    errors = []

    def err(msg):
        if len(errors) < 40:
            errors.append(msg)

    peers = {p["node"]: p for p in admin(binary, db, "peers")}
    for origin, n in origins.items():
        got = peers.get(origin, {}).get("committed_seq")
        if got != n:
            err("peers: %s committed_seq %s, want %d" % (origin, got, n))

    want_inc = ref["incidents"]
    got_inc = {i["key"]: i["fields"] for i in admin(binary, db, "incidents", "--limit", "100000000")}
    for k in sorted(set(want_inc) - set(got_inc))[:10]:
        err("incident %s missing" % k)
    for k in sorted(set(got_inc) - set(want_inc))[:10]:
        err("incident %s present but deleted or never accepted" % k)
    for k in sorted(set(want_inc) & set(got_inc)):
        if want_inc[k] != got_inc[k]:
            err("incident %s: fields %s, want %s" % (k, got_inc[k], want_inc[k]))

    sites = {s["site"]: s for s in admin(binary, db, "sites")}
    for key, fields in sorted(ref["status"].items()):
        want = {n: v[0] for n, v in fields.items() if v[0] is not None}
        got = sites.get(key, {}).get("status")
        if got != want:
            err("site %s: status %s, want %s" % (key, got, want))
        rec = admin(binary, db, "record", "site_status", key)
        rec = rec[0] if isinstance(rec, list) else rec
        clocks = rec["clocks"]["fields"]
        for n, (value, hlc, origin) in fields.items():
            c = clocks.get(n)
            if c is None or c["origin"] != origin or c["value"] != value or (hlc is not None and c["hlc"] != hlc):
                err("site_status %s.%s: winner %s, want %r by %s at %s" % (key, n, c, value, origin, hlc or "(cli)"))

    # The audit trail, straight from its table (read-only): per (origin, seq)
    # how many entries consumed it, refused it, or were re-deliveries.
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    rows = con.execute(
        "SELECT origin, seq, sum(outcome IN ('applied','superseded')), sum(outcome LIKE 'rejected:%'),"
        " sum(outcome = 'duplicate'), count(*) FROM audit GROUP BY origin, seq"
    ).fetchall()
    nentries = con.execute("SELECT count(*) FROM audit").fetchone()[0]
    con.close()
    seen = set()
    dups = 0
    for o, s, applied, rejected, dup, n in rows:
        if o not in origins or s is None or not (1 <= s <= origins[o]):
            err("audit: %d entries for %s/%s, which no gateway submitted" % (n, o, s))
            continue
        seen.add((o, s))
        dups += dup
        want_applied, want_rejected = (0, 1) if (o, s) in refused else (1, 0)
        if applied != want_applied or rejected != want_rejected or applied + rejected + dup != n:
            err("audit: %s/%d: %d applied/superseded, %d refused, %d duplicate of %d entries (want %d/%d)"
                % (o, s, applied, rejected, dup, n, want_applied, want_rejected))
    lost = sum(origins.values()) - len(seen)
    if lost:
        missing = [(o, s) for o, n in origins.items() for s in range(1, n + 1) if (o, s) not in seen]
        err("audit: %d changes lost (no entry), first %s" % (lost, missing[:5]))
    if errors:
        for e in errors:
            print("MISMATCH " + e)
        return 1
    print(
        "reference ok: %d changes, %d incidents, %d status records, %d audit entries"
        " (%d re-delivered as duplicate, %d refused as expected), 0 lost, 0 applied twice"
        % (sum(origins.values()), len(want_inc), len(ref["status"]), nentries, dups, len(refused))
    )
    return 0


class Committed:
    """The daemon's committed count, read through one read-only connection
    (each SELECT in autocommit mode sees the latest committed WAL frame)."""

    def __init__(self, db):
        self.db, self.con = db, None

    def read(self):
        try:
            if self.con is None:
                self.con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True, timeout=1)
            return self.con.execute("SELECT coalesce(sum(committed), 0) FROM origins").fetchone()[0]
        except sqlite3.Error:
            if self.con is not None:
                self.con.close()
            self.con = None
            return 0  # not created yet, or busy: try again


def kill_at(db, pid, target, delay_ms, timeout_s):
    deadline = time.monotonic() + timeout_s
    reader = Committed(db)
    c = reader.read()
    while c < target and time.monotonic() < deadline:
        time.sleep(0.001)
        c = reader.read()
    time.sleep(delay_ms / 1000.0)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        print("gone")
        return 1
    print(c)
    return 0


def main():
    a = sys.argv[1:]
    if len(a) == 6 and a[0] == "kill-at":
        return kill_at(a[1], int(a[2]), int(a[3]), float(a[4]), float(a[5]))
    if len(a) >= 3 and a[0] == "ref":
        refused = set()
        if len(a) == 5 and a[3] == "--refused":
            for item in filter(None, a[4].split(",")):
                o, s = item.rsplit(":", 1)
                refused.add((o, int(s)))
        elif len(a) != 3:
            print(__doc__, file=sys.stderr)
            return 2
        return build_ref(a[1], a[2], refused)
    if len(a) == 4 and a[0] == "check":
        return check(a[1], a[2], a[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
