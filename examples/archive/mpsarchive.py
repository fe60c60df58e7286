#!/usr/bin/python3
"""mpsarchive: an archive/backup subscriber of mailpubsubd's firehose.

Subscribes to the node ``mailpubsub:firehose`` of the mailpubsub component
(every event of every account, in journal order, with message content),
keeps every message once in a content-addressed store (DIR/ab/abcdef...),
its metadata and the history of its state in SQLite, and restores mailboxes
or single messages into the IMAP store, byte-identical, with their flags and
internal date.  See README in this directory.

Standard library + slixmpp (Debian: python3-slixmpp) only.

    mpsarchive.py run --jid archiver@example.org --password PW \\
        --service events.example.org --db archive.db --store DIR
    mpsarchive.py restore --db archive.db --store DIR --imap-host H \\
        --admin admin --password PW --mailbox alice/INBOX/Sub [--at TIME] \\
        [--into alice/INBOX/Restored]
    mpsarchive.py stats --db archive.db [--json]
"""

import argparse
import asyncio
import base64
import binascii
import datetime
import email.header
import email.parser
import email.policy
import hashlib
import imaplib
import json
import logging
import os
import re
import signal
import sqlite3
import ssl
import sys
import time
import traceback
import xml.etree.ElementTree as ET

NODE = 'mailpubsub:firehose'
NS_CLIENT = 'jabber:client'
NS_PUBSUB = 'http://jabber.org/protocol/pubsub'
NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_DATA = 'jabber:x:data'
NS_EV = 'urn:mailpubsub:event:0'
NS_CT = 'urn:mailpubsub:content:0'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'
SUBOPTS = 'http://jabber.org/protocol/pubsub#subscribe_options'

CONTENT_EVENTS = ('MessageNew', 'MessageAppend', 'vnd.cmu.MessageCopy',
                  'vnd.cmu.MessageMove')
FLAG_EVENTS = ('FlagsSet', 'FlagsClear', 'MessageRead', 'MessageTrash')
REMOVE_EVENTS = ('MessageExpunge', 'MessageExpire')

log = logging.getLogger('mpsarchive')


# --------------------------------------------------------------------------
# small helpers

def prev_of(item, seq):
    """The id of the firehose item before this one (the mailbox-event's
    prev attribute): with [firehose] accounts set, ids skip the events of
    other accounts, which are no gap."""
    ev = item.find('{%s}mailbox-event' % NS_EV)
    prev = ev.get('prev') if ev is not None else None
    return int(prev) if prev is not None and prev.isdigit() else seq - 1


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%S.%fZ')


def parse_time(text):
    """ISO 8601 (with Z or an offset; naive = UTC) -> epoch seconds."""
    text = text.strip()
    if text.endswith('Z') or text.endswith('z'):
        text = text[:-1] + '+00:00'
    d = datetime.datetime.fromisoformat(text)
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


def parse_uidset(text):
    """IMAP sequence set ("1:3,7") -> list of ints, in the order given
    (a range a:b with a > b is expanded upward, as RFC 3501 says)."""
    out = []
    if not text:
        return out
    for part in text.replace(' ', '').split(','):
        if not part:
            continue
        if ':' in part:
            a, b = part.split(':', 1)
            if a == '*' or b == '*':
                raise ValueError('"*" in a uidset: %r' % text)
            a, b = int(a), int(b)
            if a > b:
                a, b = b, a
            if b - a > 10000000:
                raise ValueError('uidset range too large: %r' % part)
            out.extend(range(a, b + 1))
        else:
            out.append(int(part))
    return out


def flag_list(text):
    return [f for f in (text or '').split() if f]


def flags_text(flags):
    """Canonical text of a flag set: unique (case-insensitively), sorted."""
    seen = {}
    for f in flags:
        seen.setdefault(f.lower(), f)
    return ' '.join(sorted(seen.values(), key=str.lower))


def flags_apply(current, change, flags):
    cur = {f.lower(): f for f in flag_list(current)}
    for f in flags:
        if change == 'clear':
            cur.pop(f.lower(), None)
        else:
            cur.setdefault(f.lower(), f)
    return flags_text(cur.values())


def clean_text(value):
    """A str safe for SQLite (no lone surrogates), RFC 2047 decoded."""
    if value is None:
        return None
    value = str(value)
    try:
        decoded = str(email.header.make_header(email.header.decode_header(value)))
        value = decoded
    except Exception:
        pass
    return value.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')


def envelope(data):
    """Message-ID and envelope headers of raw message bytes."""
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            data, headersonly=True)
    except Exception as e:     # never fail an item on a strange message
        log.warning('header parse failed: %s', e)
        return {}
    out = {}
    for key, hdr in (('message_id', 'Message-ID'), ('subject', 'Subject'),
                     ('from_addr', 'From'), ('to_addr', 'To'), ('cc_addr', 'Cc'),
                     ('date_hdr', 'Date')):
        try:
            out[key] = clean_text(msg.get(hdr))
        except Exception:
            out[key] = None
    return out


def node_to_imap(node, sep='/'):
    """A node name (INBOX/Sub, '/' separated) -> the IMAP name the account
    sees in its personal namespace (unixhierarchysep on: the same), in
    modified UTF-7, quoted for imaplib."""
    name = sep.join(node.split('/'))
    return imap_quote(imap_utf7_encode(name))


def imap_utf7_encode(name):
    out, buf = [], []

    def flush():
        if buf:
            b64 = base64.b64encode(''.join(buf).encode('utf-16-be')).decode()
            out.append('&' + b64.rstrip('=').replace('/', ',') + '-')
            buf.clear()
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7e:
            flush()
            out.append('&-' if ch == '&' else ch)
        else:
            buf.append(ch)
    flush()
    return ''.join(out)


def imap_quote(s):
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'


def parse_mailbox_url(url):
    """Fallback for an oldMailboxID URL without <oldMailbox>:
    imap://host/user/alice/Sub;UIDVALIDITY=n -> (account, node, uidvalidity)."""
    m = re.match(r'imap://[^/]*/([^;]*)(?:;UIDVALIDITY=(\d+))?', url or '')
    if not m:
        return None
    from urllib.parse import unquote
    path = unquote(m.group(1))
    for sep in ('/', '.'):
        parts = path.split(sep)
        if len(parts) >= 2 and parts[0] == 'user':
            node = '/'.join(['INBOX'] + parts[2:])
            return parts[1], node, int(m.group(2)) if m.group(2) else None
    return None


class Transient(Exception):
    """The connection failed under us: retry the item after reconnecting."""


class Fatal(Exception):
    """A condition an administrator must fix (e.g. not allowed to subscribe)."""


# --------------------------------------------------------------------------
# storage

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
-- every journal sequence number processed: the firehose has them all
CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, received TEXT,
    t REAL, type TEXT, account TEXT, node TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS blobs(sha256 TEXT PRIMARY KEY, size INTEGER,
    part TEXT, first_seq INTEGER);
-- one row per message *location*: a move, a rename closes the row and
-- opens a new one (prev_id); nothing is ever deleted
CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, account TEXT,
    node TEXT, uidvalidity INTEGER, uid INTEGER, sha256 TEXT, size INTEGER,
    part TEXT, internaldate TEXT, flags TEXT, message_id TEXT, subject TEXT,
    from_addr TEXT, to_addr TEXT, cc_addr TEXT, date_hdr TEXT, origin TEXT,
    prev_id INTEGER, first_seq INTEGER, first_time TEXT, first_t REAL,
    end_seq INTEGER, end_time TEXT, end_t REAL, end_reason TEXT);
CREATE INDEX IF NOT EXISTS messages_loc ON messages(account, node, uid);
CREATE INDEX IF NOT EXISTS messages_sha ON messages(sha256);
CREATE TABLE IF NOT EXISTS history(id INTEGER PRIMARY KEY, seq INTEGER,
    time TEXT, t REAL, account TEXT, node TEXT, uidvalidity INTEGER,
    uid INTEGER, message INTEGER, change TEXT, detail TEXT, flags_after TEXT);
CREATE INDEX IF NOT EXISTS history_msg ON history(message, seq);
CREATE TABLE IF NOT EXISTS gaps(id INTEGER PRIMARY KEY, from_seq INTEGER,
    to_seq INTEGER, detected TEXT, state TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS content_gaps(id INTEGER PRIMARY KEY, seq INTEGER,
    account TEXT, node TEXT, uidvalidity INTEGER, uid INTEGER, reason TEXT,
    attempts INTEGER, detail TEXT, resolved TEXT, retries INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS errors(id INTEGER PRIMARY KEY, seq INTEGER,
    time TEXT, error TEXT, payload TEXT);
"""


class Store:
    def __init__(self, db, blobdir, fsync=True, readonly=False):
        self.blobdir = blobdir
        self.fsync = fsync
        self.expect_content = True     # False when subscribed with content=none
        if not readonly:
            os.makedirs(blobdir, exist_ok=True)
            os.makedirs(os.path.join(blobdir, 'tmp'), exist_ok=True)
        self.db = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        if not readonly:
            self.db.execute('PRAGMA journal_mode=WAL')
            self.db.execute('PRAGMA synchronous=FULL')
            self.db.executescript(SCHEMA)

    # ---- meta
    def meta(self, key, default=None):
        r = self.db.execute('SELECT value FROM meta WHERE key=?', (key,)).fetchone()
        return r[0] if r else default

    def set_meta(self, key, value):
        self.db.execute('INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)',
                        (key, str(value)))

    @property
    def last_seq(self):
        return int(self.meta('last_seq', 0))

    # ---- blobs
    def blob_path(self, sha):
        return os.path.join(self.blobdir, sha[:2], sha)

    def put_blob(self, data, sha):
        path = self.blob_path(sha)
        try:
            if os.path.getsize(path) == len(data):
                return path
        except OSError:
            pass
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = os.path.join(self.blobdir, 'tmp', '%s.%d' % (sha, os.getpid()))
        with open(tmp, 'wb') as f:
            f.write(data)
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.fsync:
            fd = os.open(os.path.dirname(path), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return path

    def get_blob(self, sha):
        with open(self.blob_path(sha), 'rb') as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError('blob %s is corrupt' % sha)
        return data

    # ---- gaps and errors (own transactions)
    def record_gap(self, lo, hi, state, note):
        log.warning('GAP: seq %d..%d %s (%s)', lo, hi, state, note)
        self.db.execute('INSERT INTO gaps(from_seq, to_seq, detected, state, note) '
                        'VALUES (?, ?, ?, ?, ?)', (lo, hi, now_iso(), state, note))

    def record_error(self, seq, error, payload):
        self.db.execute('INSERT INTO errors(seq, time, error, payload) VALUES '
                        '(?, ?, ?, ?)', (seq, now_iso(), error, payload))

    def skip(self, seq, received, note):
        """Advance past seq without state changes (unparseable item)."""
        self.db.execute('BEGIN IMMEDIATE')
        try:
            self.db.execute('INSERT OR REPLACE INTO events(seq, received, t, type, note) '
                            'VALUES (?, ?, ?, ?, ?)',
                            (seq, received, _t(received), '?', note))
            if seq > self.last_seq:
                self.set_meta('last_seq', seq)
            self.db.execute('COMMIT')
        except BaseException:
            self.db.execute('ROLLBACK')
            raise

    # ---- the state machine: one transaction per item
    def apply(self, seq, payload, contents):
        """Apply one firehose item. contents: list of Content (blobs already
        written). Commits, together with last_seq."""
        self.db.execute('BEGIN IMMEDIATE')
        try:
            Apply(self, seq, payload, contents).run()
            if seq > self.last_seq:
                self.set_meta('last_seq', seq)
            self.db.execute('COMMIT')
        except BaseException:
            self.db.execute('ROLLBACK')
            raise

    # ---- queries
    def seq_at(self, t):
        r = self.db.execute('SELECT max(seq) FROM events WHERE t <= ?', (t,)).fetchone()
        return r[0] or 0

    def flags_at(self, msg_id, seq):
        r = self.db.execute('SELECT flags_after FROM history WHERE message=? AND '
                            'seq <= ? AND flags_after IS NOT NULL ORDER BY seq DESC, '
                            'id DESC LIMIT 1', (msg_id, seq)).fetchone()
        return r[0] if r else None

    def mailbox_at(self, account, node, seq):
        return self.db.execute(
            'SELECT * FROM messages WHERE account=? AND node=? AND first_seq <= ? '
            'AND (end_seq IS NULL OR end_seq > ?) ORDER BY uidvalidity, uid, id',
            (account, node, seq, seq)).fetchall()

    def stats(self):
        q = lambda sql, *a: self.db.execute(sql, a).fetchone()[0]
        return {
            'last_seq': self.last_seq,
            'events': q('SELECT count(*) FROM events'),
            'messages_archived': q("SELECT count(*) FROM messages WHERE origin IN "
                                   "('MessageNew', 'MessageAppend', 'unknown')"),
            'locations': q('SELECT count(*) FROM messages'),
            'present': q('SELECT count(*) FROM messages WHERE end_seq IS NULL'),
            'expunged': q("SELECT count(*) FROM messages WHERE end_reason='expunged'"),
            'deleted': q("SELECT count(*) FROM messages WHERE end_reason='deleted'"),
            'blobs': q('SELECT count(*) FROM blobs'),
            'blob_bytes': q('SELECT coalesce(sum(size), 0) FROM blobs'),
            'without_content': q('SELECT count(*) FROM messages WHERE sha256 IS NULL'),
            'gaps': [dict(r) for r in self.db.execute(
                'SELECT from_seq, to_seq, state, note FROM gaps ORDER BY id')],
            'content_gaps': [dict(r) for r in self.db.execute(
                'SELECT seq, account, node, uidvalidity, uid, reason, attempts '
                'FROM content_gaps WHERE resolved IS NULL ORDER BY id')],
            'content_gaps_resolved': q('SELECT count(*) FROM content_gaps WHERE '
                                       'resolved IS NOT NULL'),
            'errors': q('SELECT count(*) FROM errors'),
        }


def _t(received):
    try:
        return parse_time(received) if received else time.time()
    except ValueError:
        return time.time()


def store_content(store, c, data, want_sha, what):
    """Checks data against the SHA-256 and size the sender announced
    (what: 'item' or 'message', for the detail), stores the blob and fills
    c in. Returns c (c.ok tells)."""
    sha = hashlib.sha256(data).hexdigest()
    if want_sha and sha != want_sha:
        c.reason = 'sha256 mismatch'
        c.detail = 'got %s, %s says %s' % (sha, what, want_sha)
        return c
    if c.size is not None and c.size != len(data):
        c.reason = 'size mismatch'
        c.detail = 'got %d bytes, %s says %d' % (len(data), what, c.size)
        return c
    c.sha, c.size = sha, len(data)
    store.put_blob(data, sha)
    c.headers = envelope(data)
    c.ok = True
    return c


class Content:
    """The content of one message of an item, already stored (ok) or not."""

    def __init__(self, uid=None, part=None, sha=None, size=None,
                 internaldate=None, flags=None, ok=False, reason=None,
                 attempts=None, detail=None, headers=None):
        self.uid = uid
        self.part = part
        self.sha = sha
        self.size = size
        self.internaldate = internaldate
        self.flags = flags
        self.ok = ok
        self.reason = reason
        self.attempts = attempts
        self.detail = detail
        self.headers = headers or {}


def q(el, name, ns=NS_EV):
    return el.find('{%s}%s' % (ns, name))


def qtext(el, name):
    c = q(el, name)
    return c.text if c is not None else None


class Apply:
    """State changes of one item (runs inside the Store's transaction)."""

    def __init__(self, store, seq, payload, contents):
        self.s = store
        self.db = store.db
        self.seq = seq
        self.p = payload
        self.contents = contents
        self.type = payload.get('type') or '?'
        self.received = payload.get('received') or now_iso()
        self.t = _t(self.received)
        self.mb = q(payload, 'mailbox')
        self.old = q(payload, 'oldMailbox')
        self.account = self.mb.get('account') if self.mb is not None else None
        self.node = self.mb.get('node') if self.mb is not None else None
        self.uidvalidity = _int(self.mb.get('uidvalidity')) if self.mb is not None else None
        self.ext = {e.get('name'): e.text for e in payload.findall('{%s}extension' % NS_EV)}

    def run(self):
        self.db.execute('INSERT OR REPLACE INTO events(seq, received, t, type, account, node) '
                        'VALUES (?, ?, ?, ?, ?, ?)', (self.seq, self.received, self.t,
                                                     self.type, self.account, self.node))
        handler = {
            'MessageNew': self.new, 'MessageAppend': self.new,
            'vnd.cmu.MessageCopy': self.copy, 'vnd.cmu.MessageMove': self.copy,
            'FlagsSet': self.flags, 'FlagsClear': self.flags,
            'MessageRead': self.flags, 'MessageTrash': self.flags,
            'MessageExpunge': self.expunge, 'MessageExpire': self.expunge,
            'MailboxRename': self.rename, 'MailboxDelete': self.delete,
        }.get(self.type)
        if handler is not None:
            if self.account is None or self.node is None:
                raise ValueError('%s without <mailbox account= node=>' % self.type)
            handler()

    # ---- helpers
    def uids(self):
        uid = self.mb.get('uid')
        if uid:
            return [int(uid)]
        return parse_uidset(qtext(self.p, 'uidset'))

    def history(self, account, node, uidvalidity, uid, msg_id, change,
                detail=None, flags_after=None):
        self.db.execute('INSERT INTO history(seq, time, t, account, node, uidvalidity, '
                        'uid, message, change, detail, flags_after) VALUES '
                        '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                        (self.seq, self.received, self.t, account, node, uidvalidity,
                         uid, msg_id, change, detail, flags_after))

    def content_for(self, uid, index, count):
        with_uid = [c for c in self.contents if c.uid is not None]
        if with_uid:
            for c in with_uid:
                if c.uid == uid:
                    return c
            return None
        if len(self.contents) == count and index < count:
            return self.contents[index]
        if len(self.contents) == 1 and count == 1:
            return self.contents[0]
        return None

    def content_gap(self, uid, c, default_reason):
        reason = c.reason if c is not None and c.reason else default_reason
        attempts = c.attempts if c is not None else None
        detail = c.detail if c is not None else None
        log.warning('CONTENT GAP: seq %d %s %s/%s uid %s: %s%s', self.seq, self.type,
                    self.account, self.node, uid, reason,
                    ' (%s)' % detail if detail else '')
        self.db.execute('INSERT INTO content_gaps(seq, account, node, uidvalidity, uid, '
                        'reason, attempts, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                        (self.seq, self.account, self.node, self.uidvalidity, uid,
                         reason, attempts, detail))

    def insert(self, account, node, uidvalidity, uid, origin, base=None, c=None,
               prev_id=None):
        """A new location row; metadata from content c, else from row base."""
        cols = dict(account=account, node=node, uidvalidity=uidvalidity, uid=uid,
                    origin=origin, prev_id=prev_id, first_seq=self.seq,
                    first_time=self.received, first_t=self.t)
        if base is not None:
            for k in ('sha256', 'size', 'part', 'internaldate', 'flags', 'message_id',
                      'subject', 'from_addr', 'to_addr', 'cc_addr', 'date_hdr'):
                cols[k] = base[k]
        if c is not None and c.ok:
            cols.update(sha256=c.sha, size=c.size, part=c.part,
                        internaldate=c.internaldate, **c.headers)
            if c.flags is not None:     # \Recent belongs to a session, not kept
                cols['flags'] = flags_text(f for f in flag_list(c.flags)
                                           if f.lower() != '\\recent')
            self.db.execute('INSERT OR IGNORE INTO blobs(sha256, size, part, first_seq) '
                            'VALUES (?, ?, ?, ?)', (c.sha, c.size, c.part, self.seq))
        cols.setdefault('flags', '')
        keys = list(cols)
        cur = self.db.execute('INSERT INTO messages(%s) VALUES (%s)' % (
            ', '.join(keys), ', '.join('?' * len(keys))), [cols[k] for k in keys])
        return cur.lastrowid, cols['flags']

    def find(self, account, node, uidvalidity, uid, present_only=True):
        sql = 'SELECT * FROM messages WHERE account=? AND node=? AND uid=?'
        args = [account, node, uid]
        if uidvalidity is not None:
            sql += ' AND (uidvalidity=? OR uidvalidity IS NULL)'
            args.append(uidvalidity)
        if present_only:
            sql += ' AND end_seq IS NULL'
        sql += ' ORDER BY (end_seq IS NULL) DESC, first_seq DESC LIMIT 1'
        return self.db.execute(sql, args).fetchone()

    def close(self, row, reason):
        self.db.execute('UPDATE messages SET end_seq=?, end_time=?, end_t=?, end_reason=? '
                        'WHERE id=? AND end_seq IS NULL',
                        (self.seq, self.received, self.t, reason, row['id']))

    # ---- handlers
    def new(self):
        uids = self.uids()
        for i, uid in enumerate(uids):
            c = self.content_for(uid, i, len(uids))
            if (c is None and self.s.expect_content) or (c is not None and not c.ok):
                self.content_gap(uid, c, 'no content in the item')
            msg_id, flags = self.insert(self.account, self.node, self.uidvalidity, uid,
                                        self.type, c=c)
            self.history(self.account, self.node, self.uidvalidity, uid, msg_id,
                         'new', self.type, flags)

    def copy(self):
        move = self.type == 'vnd.cmu.MessageMove'
        new_uids = parse_uidset(qtext(self.p, 'uidset'))
        if not new_uids and self.mb.get('uid'):
            new_uids = [int(self.mb.get('uid'))]
        old_uids = parse_uidset(self.ext.get('vnd.cmu.oldUidset'))
        if self.old is not None:
            oacc, onode = self.old.get('account'), self.old.get('node')
            ouv = _int(self.old.get('uidvalidity'))
        else:
            parsed = parse_mailbox_url(qtext(self.p, 'oldMailboxID'))
            oacc, onode, ouv = parsed if parsed else (None, None, None)
        if len(old_uids) != len(new_uids):
            log.warning('seq %d %s: oldUidset %r and uidset %r differ in length',
                        self.seq, self.type, self.ext.get('vnd.cmu.oldUidset'),
                        qtext(self.p, 'uidset'))
        for i, uid in enumerate(new_uids):
            old_uid = old_uids[i] if i < len(old_uids) else None
            base = None
            if onode is not None and old_uid is not None:
                base = self.find(oacc, onode, ouv, old_uid, present_only=False)
            c = self.content_for(uid, i, len(new_uids))
            if base is None and (c is None or not c.ok):
                self.content_gap(uid, c, 'copy of a message not in the archive')
            elif base is not None and base['sha256'] is None and (c is None or not c.ok):
                self.content_gap(uid, c, 'copy of a message archived without content')
            if base is not None and c is not None and c.ok and base['sha256'] and \
                    base['sha256'] != c.sha:
                log.warning('seq %d: %s of %s/%s uid %s: content differs from the '
                            'archived original', self.seq, self.type, onode, old_uid, uid)
            msg_id, flags = self.insert(self.account, self.node, self.uidvalidity, uid,
                                        self.type if base is None else
                                        ('move' if move else 'copy'),
                                        base=base, c=c,
                                        prev_id=base['id'] if base is not None else None)
            src = '%s/%s/%s/%s' % (oacc, onode, ouv, old_uid)
            self.history(self.account, self.node, self.uidvalidity, uid, msg_id,
                         'move-in' if move else 'copy-in', 'from ' + src, flags)
            if move and base is not None and base['end_seq'] is None:
                self.close(base, 'moved')
                self.history(oacc, onode, base['uidvalidity'], old_uid, base['id'],
                             'move-out', 'to %s/%s/%s/%s' % (self.account, self.node,
                                                            self.uidvalidity, uid))

    def flags(self):
        change = 'clear' if self.type == 'FlagsClear' else 'set'
        flags = [f.text for f in self.p.iter('{%s}flag' % NS_EV) if f.text]
        if self.type == 'MessageRead' and not flags:
            flags = ['\\Seen']
        if self.type == 'MessageTrash' and not flags:
            flags = ['\\Deleted']
        for uid in parse_uidset(qtext(self.p, 'uidset')):
            row = self.find(self.account, self.node, self.uidvalidity, uid)
            if row is None:
                self.history(self.account, self.node, self.uidvalidity, uid, None,
                             'flags-' + change, 'unknown message: ' + ' '.join(flags))
                continue
            new = flags_apply(row['flags'], change, flags)
            self.db.execute('UPDATE messages SET flags=? WHERE id=?', (new, row['id']))
            self.history(self.account, self.node, row['uidvalidity'], uid, row['id'],
                         'flags-' + change, ' '.join(flags), new)

    def expunge(self):
        for uid in parse_uidset(qtext(self.p, 'uidset')):
            row = self.find(self.account, self.node, self.uidvalidity, uid)
            if row is None:
                # a MOVE already closed it, or it predates the archive
                self.history(self.account, self.node, self.uidvalidity, uid, None,
                             'expunge', 'no present message')
                continue
            self.close(row, 'expunged')
            self.history(self.account, self.node, row['uidvalidity'], uid, row['id'],
                         'expunge', self.type)

    def rename(self):
        if self.old is None:
            raise ValueError('MailboxRename without <oldMailbox>')
        oacc, onode = self.old.get('account'), self.old.get('node')
        if onode == 'INBOX':      # RENAME INBOX moves the messages, not children
            rows = self.db.execute('SELECT * FROM messages WHERE account=? AND node=? '
                                   'AND end_seq IS NULL', (oacc, onode)).fetchall()
        else:
            rows = self.db.execute(
                'SELECT * FROM messages WHERE account=? AND (node=? OR substr(node, 1, ?)=?) '
                'AND end_seq IS NULL', (oacc, onode, len(onode) + 1, onode + '/')).fetchall()
        for row in rows:
            new_node = self.node + row['node'][len(onode):]
            uv = row['uidvalidity']
            if row['node'] == onode and self.uidvalidity is not None:
                uv = self.uidvalidity
            self.close(row, 'renamed')
            msg_id, flags = self.insert(self.account, new_node, uv, row['uid'], 'rename',
                                        base=row, prev_id=row['id'])
            self.history(oacc, row['node'], row['uidvalidity'], row['uid'], row['id'],
                         'rename-out', 'to %s/%s' % (self.account, new_node))
            self.history(self.account, new_node, uv, row['uid'], msg_id, 'rename-in',
                         'from %s/%s' % (oacc, row['node']), flags)
        log.info('seq %d: %s/%s renamed to %s/%s (%d messages)', self.seq, oacc, onode,
                 self.account, self.node, len(rows))

    def delete(self):
        if self.node == 'INBOX':    # the account was deleted
            rows = self.db.execute('SELECT * FROM messages WHERE account=? AND '
                                   'end_seq IS NULL', (self.account,)).fetchall()
        else:
            rows = self.db.execute('SELECT * FROM messages WHERE account=? AND node=? '
                                   'AND end_seq IS NULL', (self.account, self.node)).fetchall()
        for row in rows:
            self.close(row, 'deleted')
            self.history(self.account, row['node'], row['uidvalidity'], row['uid'],
                         row['id'], 'mailbox-deleted', None)
        log.info('seq %d: %s/%s deleted (%d messages kept in the archive)', self.seq,
                 self.account, self.node, len(rows))


def _int(v):
    try:
        return int(v) if v not in (None, '') else None
    except ValueError:
        return None


# --------------------------------------------------------------------------
# the XMPP subscriber

class Archiver:
    def __init__(self, args):
        self.args = args
        self.store = Store(args.db, args.store, fsync=not args.no_fsync)
        self.store.expect_content = args.content != 'none'
        self.stop_event = None
        self.queue = None
        self.xmpp = None
        self.exit_code = 0
        self.done = False
        self.processed = 0

    # ---- connection management
    async def main(self):
        loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        backoff = 1.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                await self.connection()
            except Fatal as e:
                log.error('fatal: %s', e)
                return 3
            except Exception:
                log.error('session failed:\n%s', traceback.format_exc())
            if self.stop_event.is_set() or self.done:
                break
            if time.monotonic() - started > 60:
                backoff = 1.0
            log.info('reconnecting in %.0f s', backoff)
            try:
                await asyncio.wait_for(self.stop_event.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 30.0)
        log.info('stopped at seq %d (%d items this run)', self.store.last_seq,
                 self.processed)
        return self.exit_code

    def make_client(self):
        import slixmpp
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath
        a = self.args
        cfg = {}
        if a.tls == 'none':
            cfg['feature_mechanisms'] = {'unencrypted_plain': True}
        x = slixmpp.ClientXMPP(a.jid, a.password, plugin_config=cfg)
        if a.tls != 'none' and a.insecure_tls:
            x.ssl_context.check_hostname = False
            x.ssl_context.verify_mode = ssl.CERT_NONE
        x.register_plugin('xep_0199', {'keepalive': True, 'interval': 30,
                                       'timeout': 15})
        x.register_handler(Callback('firehose', MatchXPath('{%s}message' % NS_CLIENT),
                                    self.on_message))
        return x

    async def connection(self):
        loop = asyncio.get_running_loop()
        a = self.args
        x = self.make_client()
        self.xmpp = x
        session = loop.create_future()
        gone = loop.create_future()

        def settle(fut, value):
            if not fut.done():
                fut.set_result(value)
        x.add_event_handler('session_start', lambda _: settle(session, True))
        x.add_event_handler('disconnected', lambda _: (settle(gone, 'disconnected'),
                                                       settle(session, False)))
        x.add_event_handler('connection_failed', lambda e: (settle(gone, 'failed: %s' % e),
                                                            settle(session, False)))
        x.add_event_handler('failed_all_auth', lambda _: (settle(gone, 'auth failed'),
                                                          settle(session, False)))
        log.info('connecting to %s:%d as %s', a.server, a.port, a.jid)
        x.connect((a.server, a.port), use_ssl=a.tls == 'direct',
                  force_starttls=a.tls == 'starttls', disable_starttls=a.tls == 'none')
        task = None
        stopper = asyncio.ensure_future(self.stop_event.wait())
        try:
            done, _ = await asyncio.wait([session, stopper], timeout=30,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not session.done() or not session.result():
                log.warning('no XMPP session: %s', gone.result() if gone.done()
                            else 'timeout' if not stopper.done() else 'stopping')
                return
            log.info('session started as %s', x.boundjid)
            x.send_presence()
            self.queue = asyncio.Queue()
            task = asyncio.ensure_future(self.session())
            done, _ = await asyncio.wait([task, gone, stopper],
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()     # raises Fatal, or the failure
            elif gone in done:
                log.warning('connection lost (%s)', gone.result())
        finally:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
            stopper.cancel()
            if not gone.done():
                try:
                    await asyncio.wait_for(x.disconnect(wait=2), 5)
                except BaseException:
                    x.abort()
            else:
                x.abort()
            self.xmpp = None

    def on_message(self, stanza):
        try:
            xml = stanza.xml
            frm = xml.get('from', '')
            if frm.split('/')[0] != self.args.service:
                return
            ev = xml.find('{%s}event' % NS_PUBSUB_EVENT)
            if ev is None:
                return
            items = ev.find('{%s}items' % NS_PUBSUB_EVENT)
            if items is None:
                other = [c.tag for c in ev]
                log.info('pubsub event from the service: %s', other)
                return
            if items.get('node') != NODE:
                return
            for it in items.findall('{%s}item' % NS_PUBSUB_EVENT):
                try:
                    seq = int(it.get('id'))
                except (TypeError, ValueError):
                    log.error('firehose item with a non-numeric id %r: ignored',
                              it.get('id'))
                    continue
                if self.queue is not None:
                    self.queue.put_nowait((seq, it))
        except Exception:
            log.error('unexpected message: %s', traceback.format_exc())

    async def iq(self, payload, itype='get', timeout=60):
        from slixmpp.exceptions import IqTimeout
        x = self.xmpp
        if x is None:
            raise Transient('not connected')
        iq = x.Iq()
        iq['type'] = itype
        iq['to'] = self.args.service
        iq.xml.append(payload)
        try:
            reply = await iq.send(timeout=timeout)
        except IqTimeout:
            raise Transient('no answer to %s within %d s' % (payload.tag, timeout))
        return reply.xml

    # ---- subscription
    async def session(self):
        await self.ensure_subscribed()
        await self.catch_up()
        await self.retry_content_gaps()
        if self.args.catch_up_only:
            log.info('catch-up done at seq %d', self.store.last_seq)
            self.done = True
            return
        log.info('following live from seq %d', self.store.last_seq)
        while True:
            seq, item = await self.queue.get()
            last = self.store.last_seq
            if seq <= last:
                # already stored (a repeat after a restart); it may bring
                # content the first copy of the item lacked
                await self.upgrade(seq, item.find('{%s}mailbox-event' % NS_EV))
                continue
            if seq > last + 1 and prev_of(item, seq) > last:
                log.warning('live item %d after %d: gap %d..%d, filling it with RSM',
                            seq, last, last + 1, seq - 1)
                gap_lo = last + 1
                await self.catch_up()
                last = self.store.last_seq
                if seq <= last:
                    self.store.record_gap(gap_lo, seq - 1, 'filled',
                                          'missed live, filled by RSM catch-up')
                    continue
                self.store.record_gap(last + 1, seq - 1, 'lost',
                                      'not on the firehose, not retrievable')
            await self.process(seq, item.find('{%s}mailbox-event' % NS_EV), live=True)

    async def ensure_subscribed(self):
        from slixmpp.exceptions import IqError
        bare = self.xmpp.boundjid.bare
        want = self.args.content
        subscribed = False
        try:
            el = ET.Element('{%s}pubsub' % NS_PUBSUB)
            ET.SubElement(el, '{%s}subscriptions' % NS_PUBSUB, node=NODE)
            reply = await self.iq(el, timeout=30)
            for s in reply.iter('{%s}subscription' % NS_PUBSUB):
                if s.get('node', NODE) == NODE and s.get('subscription') == 'subscribed' \
                        and s.get('jid', bare).split('/')[0] == bare:
                    subscribed = True
        except IqError as e:
            log.info('subscriptions query refused (%s): subscribing', e.condition)
        if subscribed:
            current = None
            try:
                el = ET.Element('{%s}pubsub' % NS_PUBSUB)
                ET.SubElement(el, '{%s}options' % NS_PUBSUB, node=NODE, jid=bare)
                reply = await self.iq(el, timeout=30)
                for f in reply.iter('{%s}field' % NS_DATA):
                    if f.get('var') == 'mailpubsub#content':
                        current = f.findtext('{%s}value' % NS_DATA)
            except IqError as e:
                log.info('options query refused (%s)', e.condition)
            if current is not None and current != want:
                log.info('subscription has content=%s: setting %s', current, want)
                el = ET.Element('{%s}pubsub' % NS_PUBSUB)
                o = ET.SubElement(el, '{%s}options' % NS_PUBSUB, node=NODE, jid=bare)
                o.append(options_form({'mailpubsub#content': want}))
                try:
                    await self.iq(el, 'set', timeout=30)
                except IqError as e:
                    log.error('could not set content=%s: %s', want, e.condition)
            log.info('already subscribed to %s (content %s)', NODE, current or '?')
            self.store.set_meta('subscribed', bare)
            return
        el = ET.Element('{%s}pubsub' % NS_PUBSUB)
        ET.SubElement(el, '{%s}subscribe' % NS_PUBSUB, node=NODE, jid=bare)
        o = ET.SubElement(el, '{%s}options' % NS_PUBSUB)
        o.append(options_form({'mailpubsub#content': want}))
        try:
            reply = await self.iq(el, 'set', timeout=30)
        except IqError as e:
            raise Fatal('subscription to %s on %s refused: %s %s (is %s in the '
                        "daemon's [firehose] subscribers?)" % (
                            NODE, self.args.service, e.etype, e.condition, bare))
        sub = reply.find('.//{%s}subscription' % NS_PUBSUB)
        state = sub.get('subscription') if sub is not None else '?'
        if state != 'subscribed':
            raise Fatal('subscription to %s is %r' % (NODE, state))
        log.info('subscribed to %s (content %s, subid %s)', NODE, want,
                 sub.get('subid'))
        self.store.set_meta('subscribed', bare)

    # ---- catch-up (XEP-0059 RSM on the node's items)
    async def catch_up(self):
        from slixmpp.exceptions import IqError
        page = ceiling = self.args.page
        total = 0
        t0 = time.monotonic()
        while True:
            after = self.store.last_seq
            el = ET.Element('{%s}pubsub' % NS_PUBSUB)
            ET.SubElement(el, '{%s}items' % NS_PUBSUB, node=NODE)
            rsm = ET.SubElement(el, '{%s}set' % NS_RSM)
            ET.SubElement(rsm, '{%s}after' % NS_RSM).text = str(after)
            ET.SubElement(rsm, '{%s}max' % NS_RSM).text = str(page)
            try:
                reply = await self.iq(el, timeout=self.args.page_timeout)
            except IqError as e:
                log.error('catch-up after %d refused: %s %s', after, e.etype, e.condition)
                if e.condition in ('forbidden', 'not-authorized', 'not-allowed'):
                    raise Fatal('items retrieval on %s refused: %s' % (NODE, e.condition))
                raise Transient('catch-up failed: %s' % e.condition)
            except Transient:
                # a page too large for the XMPP server never arrives (Prosody
                # drops a component stanza over 512 KiB): ask for less
                if page > 1:
                    ceiling = max(1, page // 2)
                    page = max(1, page // 50)
                    log.warning('catch-up page after %d timed out: retrying with '
                                'max=%d', after, page)
                    continue
                raise
            items = []
            for it in reply.iter('{%s}item' % NS_PUBSUB):
                try:
                    items.append((int(it.get('id')), it))
                except (TypeError, ValueError):
                    log.error('catch-up item with id %r ignored', it.get('id'))
            fresh = [(s, it) for s, it in items if s > after]
            if len(fresh) < len(items):
                log.warning('catch-up after %d returned %d items not after it',
                            after, len(items) - len(fresh))
            if not fresh:
                break
            for seq, it in sorted(fresh, key=lambda p: p[0]):
                last = self.store.last_seq
                if seq <= last:
                    continue
                if seq > last + 1 and prev_of(it, seq) > last:
                    self.store.record_gap(last + 1, seq - 1, 'lost',
                                          'missing from the RSM catch-up (journal '
                                          'trimmed, or before the archive began)')
                await self.process(seq, it.find('{%s}mailbox-event' % NS_EV))
                total += 1
            # go on until an empty page: a server may return fewer than max
            # for size reasons before the end
            if len(items) >= page and page < ceiling:
                page = min(ceiling, page * 2)
        if total:
            log.info('caught up %d items in %.3f s; at seq %d', total,
                     time.monotonic() - t0, self.store.last_seq)

    # ---- one item
    async def process(self, seq, payload, live=False):
        received = payload.get('received') if payload is not None else None
        if payload is None:
            log.error('item %d has no mailbox-event payload: skipped', seq)
            self.store.record_error(seq, 'no mailbox-event payload', None)
            self.store.skip(seq, received, 'no payload')
            return
        try:
            contents = await self.contents(seq, payload)
        except Transient:
            raise
        except Exception as e:
            log.error('item %d: content handling failed: %s', seq, traceback.format_exc())
            contents = [Content(reason='client error', detail=str(e))]
        try:
            self.store.apply(seq, payload, contents)
        except Exception as e:
            text = ET.tostring(payload, 'unicode')
            log.error('item %d (%s) could not be applied: %s\n%s', seq,
                      payload.get('type'), e, text[:2000])
            self.store.record_error(seq, '%s: %s' % (type(e).__name__, e), text[:100000])
            self.store.skip(seq, received, 'error: %s' % e)
        self.processed += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug('stored item %d %s', seq, payload.get('type'))

    async def retry_content_gaps(self):
        """Items recorded with content-error attempts='0' (the service had
        not retrieved the message when it wrote the item): ask for each item
        again, a few times over the runs, and take the content if it came."""
        from slixmpp.exceptions import IqError
        db = self.store.db
        rows = db.execute("SELECT DISTINCT seq FROM content_gaps WHERE resolved IS NULL "
                          "AND attempts = 0 AND retries < 3 ORDER BY seq DESC "
                          "LIMIT 50").fetchall()
        if not rows:
            return
        await asyncio.sleep(1.0)
        for (seq,) in rows:
            db.execute('UPDATE content_gaps SET retries = retries + 1 WHERE seq=?', (seq,))
            el = ET.Element('{%s}pubsub' % NS_PUBSUB)
            ET.SubElement(el, '{%s}items' % NS_PUBSUB, node=NODE)
            rsm = ET.SubElement(el, '{%s}set' % NS_RSM)
            ET.SubElement(rsm, '{%s}after' % NS_RSM).text = str(seq - 1)
            ET.SubElement(rsm, '{%s}max' % NS_RSM).text = '1'
            try:
                reply = await self.iq(el, timeout=self.args.page_timeout)
            except IqError as e:
                log.info('item %d asked again: %s', seq, e.condition)
                continue
            for it in reply.iter('{%s}item' % NS_PUBSUB):
                if it.get('id') == str(seq):
                    await self.upgrade(seq, it.find('{%s}mailbox-event' % NS_EV))

    async def upgrade(self, seq, payload):
        """A repeated item with content for a stored item recorded without:
        store the bytes and fill them into the message rows."""
        if payload is None or payload.find('{%s}content' % NS_CT) is None:
            return
        db = self.store.db
        if not db.execute('SELECT 1 FROM content_gaps WHERE seq=? AND resolved IS NULL',
                          (seq,)).fetchone():
            return
        try:
            contents = [await self.content(seq, el)
                        for el in payload.findall('{%s}content' % NS_CT)]
        except Transient:
            raise
        except Exception as e:
            log.error('item %d: content of a repeat failed: %s', seq, e)
            return
        good = [c for c in contents if c.ok]
        if len(good) != 1:
            return
        c = good[0]
        db.execute('BEGIN IMMEDIATE')
        try:
            db.execute('INSERT OR IGNORE INTO blobs(sha256, size, part, first_seq) '
                       'VALUES (?, ?, ?, ?)', (c.sha, c.size, c.part, seq))
            sets = dict(sha256=c.sha, size=c.size, part=c.part,
                        internaldate=c.internaldate, **c.headers)
            keys = list(sets)
            # the first row and every copy/move/rename descending from it
            ids = [r[0] for r in db.execute(
                'SELECT id FROM messages WHERE first_seq=? AND sha256 IS NULL', (seq,))]
            seqs = {(seq, None)}
            while ids:
                db.execute('UPDATE messages SET %s WHERE id IN (%s)' % (
                    ', '.join('%s=?' % k for k in keys), ','.join('?' * len(ids))),
                    [sets[k] for k in keys] + ids)
                rows = db.execute(
                    'SELECT id, first_seq, uid FROM messages WHERE prev_id IN (%s) AND '
                    'sha256 IS NULL' % ','.join('?' * len(ids)), ids).fetchall()
                ids = [r[0] for r in rows]
                seqs.update((r[1], r[2]) for r in rows)
            for s, uid in seqs:
                db.execute('UPDATE content_gaps SET resolved=? WHERE seq=? AND '
                           '(? IS NULL OR uid=?) AND resolved IS NULL',
                           (now_iso(), s, uid, uid))
            db.execute('COMMIT')
        except BaseException:
            db.execute('ROLLBACK')
            raise
        log.warning('CONTENT GAP resolved: item %d repeated with its content', seq)

    async def contents(self, seq, payload):
        out = []
        if payload.get('type') not in CONTENT_EVENTS:
            return out
        for err in payload.findall('{%s}content-error' % NS_CT):
            c = Content(uid=_int(err.get('uid')), reason=err.get('reason') or 'unknown',
                        attempts=_int(err.get('attempts')),
                        detail='content-error from the service')
            # attempts='0': the service had not retrieved it when it wrote
            # the item; a repeat of the item may bring it (see upgrade())
            out.append(c)
        for el in payload.findall('{%s}content' % NS_CT):
            out.append(await self.content(seq, el))
        return out

    async def content(self, seq, el):
        from slixmpp.exceptions import IqError
        c = Content(uid=_int(el.get('uid')), part=el.get('part') or 'full',
                    internaldate=el.get('internaldate'), flags=el.get('flags'),
                    size=_int(el.get('size')))
        want_sha = (el.get('sha256') or '').lower()
        if el.get('fetch') == 'true':
            try:
                data = await self.fetch(seq, c.size)
            except IqError as e:
                c.reason = 'fetch: %s' % e.condition
                c.detail = e.text or None
                return c
            except ValueError as e:
                c.reason = 'fetch: bad chunk'
                c.detail = str(e)
                return c
        else:
            try:
                data = base64.b64decode(''.join((el.text or '').split()), validate=True)
            except (binascii.Error, ValueError) as e:
                c.reason, c.detail = 'bad base64', str(e)
                return c
        return self.store_bytes(c, data, want_sha)

    def store_bytes(self, c, data, want_sha):
        return store_content(self.store, c, data, want_sha, 'item')

    async def fetch(self, seq, size_hint):
        """The content of item seq by chunked IQ fetch; a few requests in
        flight at a time once the server's chunk length is known."""
        chunk_len = self.args.chunk

        async def get(offset, length):
            el = ET.Element('{%s}fetch' % NS_CT, item=str(seq), offset=str(offset),
                            length=str(length))
            reply = await self.iq(el, timeout=60)
            ch = reply.find('{%s}chunk' % NS_CT)
            if ch is None:
                raise ValueError('no <chunk> in the fetch result')
            if _int(ch.get('offset')) != offset:
                raise ValueError('chunk offset %r, asked %d' % (ch.get('offset'), offset))
            total = _int(ch.get('size'))
            if total is None:
                raise ValueError('chunk without size')
            data = base64.b64decode(''.join((ch.text or '').split()), validate=True)
            return total, data

        total, first = await get(0, chunk_len)
        pieces = {0: first}
        step = len(first)
        if step == 0 and total > 0:
            raise ValueError('empty chunk at offset 0 of %d bytes' % total)
        offsets = list(range(step, total, step)) if step else []
        window = self.args.window
        for i in range(0, len(offsets), window):
            batch = offsets[i:i + window]
            results = await asyncio.gather(*(get(o, step) for o in batch))
            for o, (t, d) in zip(batch, results):
                if t != total:
                    raise ValueError('size changed from %d to %d' % (total, t))
                pieces[o] = d
        # assemble; fill any hole a short chunk left, one request at a time
        buf = bytearray()
        for o in sorted(pieces):
            if o != len(buf):
                if o < len(buf):
                    continue
                while len(buf) < o:
                    t, d = await get(len(buf), o - len(buf))
                    if not d:
                        raise ValueError('no progress at offset %d' % len(buf))
                    buf += d
            buf += pieces[o]
        while len(buf) < total:
            t, d = await get(len(buf), chunk_len)
            if not d:
                raise ValueError('no progress at offset %d' % len(buf))
            buf += d
        if len(buf) != total:
            raise ValueError('got %d bytes, size %d' % (len(buf), total))
        return bytes(buf)


def options_form(fields):
    x = ET.Element('{%s}x' % NS_DATA, type='submit')
    f = ET.SubElement(x, '{%s}field' % NS_DATA, var='FORM_TYPE', type='hidden')
    ET.SubElement(f, '{%s}value' % NS_DATA).text = SUBOPTS
    for var, value in fields.items():
        f = ET.SubElement(x, '{%s}field' % NS_DATA, var=var)
        ET.SubElement(f, '{%s}value' % NS_DATA).text = value
    return x


# --------------------------------------------------------------------------
# the bus consumer (AMQP 1.0: RabbitMQ, ActiveMQ Artemis, Qpid, ...)
#
# Several workers may consume one queue and share one archive (db + store):
# the broker hands each message to one of them. A worker writes the content
# (content-addressed, fsynced) and the message into bus_pending in one
# transaction, and accepts the message only after that commit; whichever
# worker commits then applies every pending message that is next in journal
# order, so the state machine sees the events in order although the workers
# receive them interleaved. A message whose seq is already in events or in
# bus_pending (the broker redelivers what a killed worker held, and
# mailpubsubd resends after its own crash with the same message-id) is
# accepted and dropped: every message is stored once.

BUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_pending(seq INTEGER PRIMARY KEY,
    message_id TEXT, body TEXT, contents TEXT, arrived REAL);
"""

# keys mailpubsubd adds to the RFC 5423 event on the bus: not extensions
BUS_KEYS = ('event', 'account', 'node', 'uidvalidity', 'uid', 'seq', 'received',
            'instance', 'source', 'content', 'journaled', 'oldAccount', 'oldNode',
            'oldUidvalidity', 'uri', 'oldMailboxID', 'uidset', 'flagNames')


def bus_received(value):
    """The event's reception time as the firehose writes it (ISO 8601 UTC):
    the bus may carry it as ISO text or as a number of s, ms or us."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        t = float(value)
        if t > 1e14:
            t /= 1e6
        elif t > 1e11:
            t /= 1e3
        return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
            '%Y-%m-%dT%H:%M:%S.%fZ')
    return None


def bus_uid(uri):
    m = re.search(r';UID=(\d+)', uri or '')
    return m.group(1) if m else None


def bus_payload(body):
    """A bus message body (the event as JSON, with account, node, seq...)
    -> the firehose's mailbox-event element, so that Apply serves both."""
    etype = body.get('event')
    if not isinstance(etype, str):
        raise ValueError('no "event" in the message body')
    p = ET.Element('{%s}mailbox-event' % NS_EV, type=etype)
    received = bus_received(body.get('received'))
    if received:
        p.set('received', received)
    if body.get('account') is not None and body.get('node') is not None:
        mb = ET.SubElement(p, '{%s}mailbox' % NS_EV, account=str(body['account']),
                           node=str(body['node']))
        if body.get('uidvalidity') is not None:
            mb.set('uidvalidity', str(body['uidvalidity']))
        uid = body.get('uid') or bus_uid(body.get('uri'))
        if uid is not None:
            mb.set('uid', str(uid))
    old_id = body.get('oldMailboxID')
    if old_id:
        ET.SubElement(p, '{%s}oldMailboxID' % NS_EV).text = str(old_id)
        oacc, onode = body.get('oldAccount'), body.get('oldNode')
        ouv = body.get('oldUidvalidity')
        if oacc is None or onode is None:
            parsed = parse_mailbox_url(old_id)
            if parsed:
                oacc, onode, ouv = parsed
        if oacc is not None and onode is not None:
            old = ET.SubElement(p, '{%s}oldMailbox' % NS_EV, account=str(oacc),
                                node=str(onode))
            if ouv is not None:
                old.set('uidvalidity', str(ouv))
    if body.get('uidset') is not None:
        ET.SubElement(p, '{%s}uidset' % NS_EV).text = str(body['uidset'])
    flags = body.get('flagNames')
    for f in (flags.split() if isinstance(flags, str) else flags or []):
        ET.SubElement(p, '{%s}flag' % NS_EV).text = str(f)
    for k, v in body.items():
        if k in BUS_KEYS or isinstance(v, (dict, list)) or v is None:
            continue
        ET.SubElement(p, '{%s}extension' % NS_EV, name=k).text = str(v)
    return p


def bus_contents(body):
    """The content entries of a bus message body ([bus] content = full or
    headers): "content" is one object (or a list of them) with part, size,
    sha256, internaldate, flags and the bytes in base64 ("data"), or
    "error", or "omitted" (larger than [bus] content_max) with a "fetch"
    hint: no data then."""
    c = body.get('content')
    if c is None:
        return []
    return c if isinstance(c, list) else [c]


def content_to_json(c):
    return dict(uid=c.uid, part=c.part, sha=c.sha, size=c.size,
                internaldate=c.internaldate, flags=c.flags, ok=c.ok,
                reason=c.reason, attempts=c.attempts, detail=c.detail,
                headers=c.headers)


class BusArchiver:
    """One bus worker: an AMQP 1.0 receiver, accepting after storing."""

    def __init__(self, args):
        self.args = args
        self.store = Store(args.db, args.store, fsync=not args.no_fsync)
        self.store.db.executescript(BUS_SCHEMA)
        self.store.expect_content = args.content != 'none'
        self.stopping = False
        self.taken = 0        # messages this worker stored
        self.applied = 0      # pending messages this worker applied (any worker's)
        self.duplicates = 0
        self.container = None
        self.receiver = None

    # ---- one message: store, then accept
    def take(self, msg):
        """Stores msg (or finds it stored). Returns 'stored', 'duplicate' or
        raises ValueError for a message that is not ours."""
        props = msg.properties or {}
        body = msg.body
        if isinstance(body, (bytes, memoryview)):
            body = bytes(body).decode('utf-8', 'replace')
        seq = props.get('seq')
        try:
            data = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            data = None
        if seq is None and isinstance(data, dict):
            seq = data.get('seq')
        try:
            seq = int(seq)
        except (TypeError, ValueError):
            raise ValueError('message %r without a seq' % (msg.id,))
        instance = props.get('instance') or (data or {}).get('instance')
        if self.store_instance(instance) is False:
            raise ValueError('message %r from instance %r; this archive holds %r' % (
                msg.id, instance, self.store.meta('bus_instance')))
        if self.stored(seq):
            return 'duplicate'
        contents = []
        if isinstance(data, dict) and data.get('event') in CONTENT_EVENTS:
            contents = [self.content(seq, e) for e in bus_contents(data)]
        db = self.store.db
        db.execute('BEGIN IMMEDIATE')
        try:
            if self.stored(seq):
                db.execute('ROLLBACK')
                return 'duplicate'
            db.execute('INSERT INTO bus_pending(seq, message_id, body, contents, arrived) '
                       'VALUES (?, ?, ?, ?, ?)', (seq, str(msg.id), body if
                                                  isinstance(body, str) else repr(body),
                                                  json.dumps([content_to_json(c) for c in
                                                              contents]), time.time()))
            self.drain()
            db.execute('COMMIT')
        except BaseException:
            db.execute('ROLLBACK')
            raise
        self.taken += 1
        log.debug('stored seq %d (%s)', seq, msg.id)
        return 'stored'

    def store_instance(self, instance):
        """The first instance seen is the archive's; None: no instance said."""
        if instance is None:
            return None
        have = self.store.meta('bus_instance')
        if have is None:
            self.store.db.execute('INSERT OR IGNORE INTO meta(key, value) VALUES '
                                  "('bus_instance', ?)", (str(instance),))
            have = self.store.meta('bus_instance')
        return have == str(instance)

    def stored(self, seq):
        db = self.store.db
        return db.execute('SELECT 1 FROM events WHERE seq=? UNION ALL SELECT 1 FROM '
                          'bus_pending WHERE seq=?', (seq, seq)).fetchone() is not None

    def content(self, seq, e):
        if not isinstance(e, dict):
            return Content(reason='bad content entry', detail=repr(e)[:200])
        c = Content(uid=_int(e.get('uid')), part=e.get('part') or 'full',
                    internaldate=e.get('internaldate'), flags=e.get('flags'),
                    size=_int(e.get('size')), attempts=_int(e.get('attempts')))
        if e.get('error'):
            c.reason = str(e['error'])
            c.detail = 'content error from the service'
            return c
        if e.get('data') is None:
            c.reason = 'not on the bus'
            c.detail = str(e.get('omitted') or 'no data')
            return c
        try:
            data = base64.b64decode(''.join(str(e['data']).split()), validate=True)
        except (binascii.Error, ValueError) as err:
            c.reason, c.detail = 'bad base64', str(err)
            return c
        return store_content(self.store, c, data, str(e.get('sha256') or '').lower(),
                             'message')

    # ---- in journal order, inside the caller's transaction
    def drain(self):
        db = self.store.db
        while True:
            last = self.store.last_seq
            row = db.execute('SELECT * FROM bus_pending WHERE seq <= ? ORDER BY seq '
                             'LIMIT 1', (last + 1,)).fetchone()
            if row is None:
                return
            self.apply_pending(row)

    def apply_pending(self, row):
        db = self.store.db
        seq = row['seq']
        db.execute('DELETE FROM bus_pending WHERE seq=?', (seq,))
        if seq <= self.store.last_seq:
            log.warning('seq %d arrived after its gap was recorded: applied late', seq)
        contents = [Content(**c) for c in json.loads(row['contents'] or '[]')]
        try:
            payload = bus_payload(json.loads(row['body']))
            db.execute('SAVEPOINT item')
            try:
                Apply(self.store, seq, payload, contents).run()
                db.execute('RELEASE item')
            except BaseException:
                db.execute('ROLLBACK TO item')
                db.execute('RELEASE item')
                raise
        except Exception as e:
            log.error('bus message %s (seq %d) could not be applied: %s',
                      row['message_id'], seq, e)
            self.store.record_error(seq, '%s: %s' % (type(e).__name__, e),
                                    (row['body'] or '')[:100000])
            db.execute('INSERT OR REPLACE INTO events(seq, received, t, type, note) '
                       'VALUES (?, ?, ?, ?, ?)', (seq, now_iso(), time.time(), '?',
                                                  'error: %s' % e))
        if seq > self.store.last_seq:
            self.store.set_meta('last_seq', seq)
        self.applied += 1

    def check_gaps(self):
        """A seq that stays missing while later ones wait (never published,
        or before the archive began) is recorded as lost after
        --gap-timeout seconds; the later ones are applied."""
        db = self.store.db
        db.execute('BEGIN IMMEDIATE')
        try:
            last = self.store.last_seq
            row = db.execute('SELECT seq, arrived FROM bus_pending ORDER BY seq '
                             'LIMIT 1').fetchone()
            if row is not None and row['seq'] > last + 1 and \
                    time.time() - row['arrived'] > self.args.gap_timeout:
                self.store.record_gap(last + 1, row['seq'] - 1, 'lost',
                                      'not on the bus within %d s' % self.args.gap_timeout)
                self.store.set_meta('last_seq', row['seq'] - 1)
                self.drain()
            db.execute('COMMIT')
        except BaseException:
            db.execute('ROLLBACK')
            raise

    # ---- AMQP
    def run(self):
        from proton.handlers import MessagingHandler
        from proton.reactor import Container
        worker = self
        a = self.args

        class Handler(MessagingHandler):
            def __init__(self):
                super().__init__(prefetch=a.prefetch, auto_accept=False)

            def on_start(self, event):
                worker.container = event.container
                opts = dict(sasl_enabled=bool(a.user), allow_insecure_mechs=bool(a.user))
                if a.user:
                    opts.update(user=a.user, password=a.password, allowed_mechs='PLAIN')
                conn = event.container.connect(urls=a.url, **opts)
                worker.receiver = event.container.create_receiver(
                    conn, a.address, options=DurableSource() if a.durable else None)
                event.container.schedule(0.5, self)
                log.info('consuming %s from %s', a.address, ', '.join(a.url))

            def on_timer_task(self, event):
                if worker.stopping:
                    log.info('stopping')
                    if worker.receiver is not None:
                        worker.receiver.connection.close()
                    event.container.stop()
                    return
                try:
                    worker.check_gaps()
                except sqlite3.OperationalError as e:
                    log.warning('gap check: %s', e)
                event.container.schedule(0.5, self)

            def on_message(self, event):
                try:
                    what = worker.take(event.message)
                except ValueError as e:
                    log.error('rejected: %s', e)
                    self.reject(event.delivery)
                    return
                except (sqlite3.OperationalError, OSError) as e:
                    # not stored: the broker gives it to us or another worker again
                    log.error('not stored (%s): released', e)
                    self.release(event.delivery, delivered=True)
                    return
                if what == 'duplicate':
                    worker.duplicates += 1
                self.accept(event.delivery)

            def on_link_error(self, event):
                cond = event.link.remote_condition
                log.error('link error: %s', cond)

            def on_transport_error(self, event):
                cond = event.transport.condition
                log.warning('connection: %s (reconnecting)', cond)

        class DurableSource:
            """RabbitMQ declares a /queue/Q address durable only when the
            source terminus says so (and refuses a mismatch)."""
            def apply(self, link):
                from proton import Terminus
                link.source.durability = Terminus.DELIVERIES

            def test(self, link):
                return link.is_receiver

        def stop(*_):
            worker.stopping = True
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        Container(Handler()).run()
        log.info('stopped at seq %d (%d messages stored this run, %d applied, '
                 '%d duplicates)', self.store.last_seq, self.taken, self.applied,
                 self.duplicates)
        return 0


# --------------------------------------------------------------------------
# restore

def split_mailbox(spec):
    """ACCOUNT/NODE -> (account, node)."""
    account, sep, node = spec.partition('/')
    if not sep or not account or not node:
        raise SystemExit('expected ACCOUNT/NODE (e.g. alice/INBOX/Sub), got %r' % spec)
    return account, node


def split_message(spec):
    """ACCOUNT/NODE/UIDVALIDITY/UID -> (account, node, uidvalidity, uid)."""
    parts = spec.split('/')
    if len(parts) < 4:
        raise SystemExit('expected ACCOUNT/NODE/UIDVALIDITY/UID, got %r' % spec)
    try:
        uv, uid = int(parts[-2]), int(parts[-1])
    except ValueError:
        raise SystemExit('UIDVALIDITY and UID must be numbers in %r' % spec)
    return parts[0], '/'.join(parts[1:-2]), uv, uid


class Imap:
    """An IMAP session as one account (SASL PLAIN with authzid)."""

    def __init__(self, args, account):
        if args.imap_ssl:
            ctx = ssl.create_default_context()
            if args.insecure_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self.m = imaplib.IMAP4_SSL(args.imap_host, args.imap_port, ssl_context=ctx,
                                       timeout=120)
        else:
            self.m = imaplib.IMAP4(args.imap_host, args.imap_port, timeout=120)
            if args.imap_starttls:
                self.m.starttls()
        cred = ('%s\0%s\0%s' % (account, args.admin, args.password)).encode()
        self.m.authenticate('PLAIN', lambda _: cred)
        self.sep = args.separator
        self.created = set()

    def ensure_mailbox(self, node):
        if node in self.created:
            return
        name = node_to_imap(node, self.sep)
        typ, data = self.m.create(name)
        if typ != 'OK':
            typ2, data2 = self.m.list('""', name)
            if typ2 != 'OK' or not [d for d in data2 if d]:
                raise RuntimeError('CREATE %s: %r' % (name, data))
        else:
            log.info('created %s', name)
        self.created.add(node)

    def append(self, node, flags, internaldate, data):
        """APPEND data byte for byte (imaplib's append() would rewrite bare
        CR/LF); returns the new UID if the server says APPENDUID."""
        self.ensure_mailbox(node)
        name = node_to_imap(node, self.sep)
        fl = [f for f in flag_list(flags) if f.lower() not in ('\\recent', '\\deleted')]
        self.m.literal = data
        typ, resp = self.m._simple_command(
            'APPEND', name, '(%s)' % ' '.join(fl),
            '"%s"' % internaldate if internaldate else None)
        if typ != 'OK':
            raise RuntimeError('APPEND to %s: %r' % (name, resp))
        m = re.search(rb'APPENDUID (\d+) (\d+)', b' '.join(
            r for r in resp if isinstance(r, bytes)))
        return (int(m.group(1)), int(m.group(2))) if m else None

    def logout(self):
        try:
            self.m.logout()
        except Exception:
            pass


def restore(args):
    store = Store(args.db, args.store, readonly=True)
    if args.at_seq is not None:
        at_seq = args.at_seq
    elif args.at:
        at_seq = store.seq_at(parse_time(args.at))
        log.info('state at %s = after seq %d', args.at, at_seq)
    else:
        at_seq = None
    rows = []
    if args.mailbox:
        account, node = split_mailbox(args.mailbox)
        if at_seq is None:
            at_seq = store.last_seq
            rows = store.mailbox_at(account, node, at_seq)
            if not rows:
                r = store.db.execute(
                    "SELECT max(end_seq) FROM messages WHERE account=? AND node=? AND "
                    "end_reason IN ('deleted', 'renamed')", (account, node)).fetchone()
                if r[0]:
                    at_seq = r[0] - 1
                    log.info('%s/%s is gone since seq %d: restoring its state before',
                             account, node, r[0])
                    rows = store.mailbox_at(account, node, at_seq)
        else:
            rows = store.mailbox_at(account, node, at_seq)
        if not rows:
            log.error('nothing archived in %s/%s at seq %d', account, node, at_seq)
            return 1
    else:
        account, node, uv, uid = split_message(args.message)
        sql = 'SELECT * FROM messages WHERE account=? AND node=? AND uidvalidity=? AND uid=?'
        a = [account, node, uv, uid]
        if at_seq is not None:
            sql += ' AND first_seq <= ? AND (end_seq IS NULL OR end_seq > ?)'
            a += [at_seq, at_seq]
        r = store.db.execute(sql + ' ORDER BY first_seq DESC LIMIT 1', a).fetchone()
        if r is None:
            log.error('no archived message %s', args.message)
            return 1
        rows = [r]
    if args.into:
        t_account, t_node = split_mailbox(args.into)
    else:
        t_account, t_node = None, None
    sessions = {}
    failed = 0
    try:
        for row in rows:
            acc = t_account or row['account']
            node = t_node or row['node']
            where = '%s/%s/%s/%s' % (row['account'], row['node'], row['uidvalidity'],
                                     row['uid'])
            if row['sha256'] is None:
                log.error('%s: archived without content: cannot restore', where)
                failed += 1
                continue
            if row['part'] not in (None, 'full'):
                log.error('%s: only the %s were archived: cannot restore', where,
                          row['part'])
                failed += 1
                continue
            try:
                data = store.get_blob(row['sha256'])
            except (OSError, ValueError) as e:
                log.error('%s: %s', where, e)
                failed += 1
                continue
            flags = row['flags']
            if at_seq is not None:
                f = store.flags_at(row['id'], at_seq)
                if f is not None:
                    flags = f
            if acc not in sessions:
                sessions[acc] = Imap(args, acc)
            try:
                got = sessions[acc].append(node, flags, row['internaldate'], data)
            except (RuntimeError, imaplib.IMAP4.error) as e:
                log.error('%s: %s', where, e)
                failed += 1
                continue
            print('restored %s -> %s/%s%s (%d bytes, flags (%s), %s)' % (
                where, acc, node, '/%d/%d' % got if got else '', len(data),
                flags, row['internaldate']), flush=True)
    finally:
        for s in sessions.values():
            s.logout()
    print('%d restored, %d failed' % (len(rows) - failed, failed), flush=True)
    return 1 if failed else 0


def stats(args):
    store = Store(args.db, args.store or '.', readonly=True)
    s = store.stats()
    if args.json:
        print(json.dumps(s))
    else:
        for k, v in s.items():
            if isinstance(v, list):
                print('%s: %d' % (k, len(v)))
                for e in v:
                    print('  %s' % ' '.join('%s=%s' % kv for kv in e.items()))
            else:
                print('%s: %s' % (k, v))
    return 0


# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--debug', action='store_true')
    sub = ap.add_subparsers(dest='cmd', required=True)

    r = sub.add_parser('run', help='archive the firehose')
    r.add_argument('--jid', required=True)
    r.add_argument('--password', default=os.environ.get('MPSARCHIVE_PASSWORD'),
                   help='or $MPSARCHIVE_PASSWORD')
    r.add_argument('--server', default='127.0.0.1')
    r.add_argument('--port', type=int, default=5222)
    r.add_argument('--tls', choices=('none', 'starttls', 'direct'), default='starttls')
    r.add_argument('--insecure-tls', action='store_true')
    r.add_argument('--service', required=True, help='the component domain')
    r.add_argument('--db', required=True)
    r.add_argument('--store', required=True)
    r.add_argument('--content', choices=('full', 'headers', 'none'), default='full')
    r.add_argument('--catch-up-only', action='store_true')
    r.add_argument('--page', type=int, default=100, help='RSM max per page')
    r.add_argument('--page-timeout', type=int, default=30,
                   help='seconds to wait for a catch-up page before asking for '
                        'a smaller one')
    r.add_argument('--chunk', type=int, default=65536, help='fetch length')
    r.add_argument('--window', type=int, default=4, help='fetches in flight')
    r.add_argument('--no-fsync', action='store_true')

    s = sub.add_parser('restore', help='APPEND archived messages back')
    s.add_argument('--db', required=True)
    s.add_argument('--store', required=True)
    s.add_argument('--imap-host', default='127.0.0.1')
    s.add_argument('--imap-port', type=int, default=143)
    s.add_argument('--imap-ssl', action='store_true')
    s.add_argument('--imap-starttls', action='store_true')
    s.add_argument('--insecure-tls', action='store_true')
    s.add_argument('--admin', required=True, help='authcid (in admins/proxyservers)')
    s.add_argument('--password', default=os.environ.get('MPSARCHIVE_IMAP_PASSWORD'))
    s.add_argument('--separator', default='/', help="the server's hierarchy separator")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument('--mailbox', help='ACCOUNT/NODE, e.g. alice/INBOX/Sub')
    g.add_argument('--message', help='ACCOUNT/NODE/UIDVALIDITY/UID')
    t = s.add_mutually_exclusive_group()
    t.add_argument('--at', help='ISO 8601 time: the state then')
    t.add_argument('--at-seq', type=int, help='the state after this journal seq')
    s.add_argument('--into', help='ACCOUNT/NODE to restore into')

    b = sub.add_parser('bus', help='archive from a message bus (AMQP 1.0)')
    b.add_argument('--url', action='append', required=True,
                   help='amqp://host:port (repeat for failover)')
    b.add_argument('--address', required=True,
                   help='the queue, e.g. /queue/mailpubsub-archive (RabbitMQ) or archive')
    b.add_argument('--user', help='SASL PLAIN user (else ANONYMOUS)')
    b.add_argument('--password', default=os.environ.get('MPSARCHIVE_BUS_PASSWORD'),
                   help='or $MPSARCHIVE_BUS_PASSWORD')
    b.add_argument('--no-durable', dest='durable', action='store_false',
                   help='a non-durable source terminus')
    b.add_argument('--db', required=True)
    b.add_argument('--store', required=True)
    b.add_argument('--content', choices=('full', 'headers', 'none'), default='full',
                   help="what mailpubsubd's [bus] content is")
    b.add_argument('--prefetch', type=int, default=10, help='credit window')
    b.add_argument('--gap-timeout', type=int, default=30,
                   help='seconds a missing seq may stay missing')
    b.add_argument('--no-fsync', action='store_true')

    st = sub.add_parser('stats', help='counts and gaps')
    st.add_argument('--db', required=True)
    st.add_argument('--store')
    st.add_argument('--json', action='store_true')

    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format='%(asctime)s %(name)s %(levelname)s %(message)s',
                        stream=sys.stderr)
    logging.getLogger('slixmpp').setLevel(logging.DEBUG if args.debug and
                                          os.environ.get('MPSARCHIVE_XMPP_DEBUG')
                                          else logging.WARNING)
    logging.getLogger('slixmpp.stringprep').setLevel(logging.ERROR)
    if args.cmd == 'run':
        if not args.password:
            ap.error('--password or $MPSARCHIVE_PASSWORD is required')
        return asyncio.run(Archiver(args).main())
    if args.cmd == 'bus':
        return BusArchiver(args).run()
    if args.cmd == 'restore':
        if not args.password:
            ap.error('--password or $MPSARCHIVE_IMAP_PASSWORD is required')
        return restore(args)
    return stats(args)


if __name__ == '__main__':
    sys.exit(main())
