#!/usr/bin/python3
"""Capture real Cyrus IMAP 3.6 event datagrams for the unit tests.

Starts a private Cyrus (harness.Cyrus) twice, once with
``unixhierarchysep: yes`` and once with ``no``, binds the notify socket,
runs a scripted IMAP/LMTP session and writes every datagram, raw, to

    tests/data/cyrus/<NN>-<EventName>[-dot].dgram

(NN = order within the run, "-dot" for the unixhierarchysep=no run; only
the first two MailboxModseq datagrams of a run are kept) plus README.md
listing each file and the action that produced it.

Run as root:  /usr/bin/python3 tests/integration/capture_cyrus_events.py
"""

import argparse
import glob
import imaplib
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import imap_quote, make_message  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, '..', 'data', 'cyrus'))
MODSEQ_KEEP = 2
QUIET = 0.4     # seconds without a datagram that end a step


def ok(res):
    typ, data = res
    if typ != 'OK':
        raise RuntimeError('IMAP command failed: %r' % (data,))
    return data


def session(cyrus, step):
    """The scripted session; step(label, fn) runs fn and files the
    datagrams that arrive meanwhile under label."""
    sep = cyrus.sep
    box = lambda *p: sep.join(('INBOX',) + p)          # alice's own view

    admin = []
    step('admin LOGIN (IMAP, user "admin")',
         lambda: admin.append(cyrus.admin_imap()))
    a = admin[0]
    step('admin CREATE %s' % cyrus.mailbox('alice'),
         lambda: ok(a.create(imap_quote(cyrus.mailbox('alice')))))
    step('admin CREATE %s' % cyrus.mailbox('bob'),
         lambda: ok(a.create(imap_quote(cyrus.mailbox('bob')))))
    step('admin CREATE %s' % cyrus.mailbox('alice', 'Sub'),
         lambda: ok(a.create(imap_quote(cyrus.mailbox('alice', 'Sub')))))
    step('admin SETACL %s anyone p (lets LMTP alice+Sub deliver into Sub)'
         % cyrus.mailbox('alice', 'Sub'),
         lambda: ok(a.setacl(imap_quote(cyrus.mailbox('alice', 'Sub')),
                             'anyone', 'p')))

    step('LMTP delivery to alice (INBOX), 1st message',
         lambda: cyrus.deliver('alice', make_message('first message',
                                                     to='alice@localhost')))
    step('LMTP delivery to alice (INBOX), 2nd message (via unix socket)',
         lambda: cyrus.deliver('alice', make_message('second message',
                                                     to='alice@localhost'),
                               via='unix'))
    step('LMTP delivery to alice+Sub (subfolder)',
         lambda: cyrus.deliver('alice', make_message('for the subfolder',
                                                     to='alice+Sub@localhost'),
                               mailbox='Sub', grant_post=False))

    step('LMTP delivery to alice, Subject in raw 8-bit UTF-8 "Grüße 日本"',
         lambda: cyrus.deliver('alice', make_message('Grüße 日本',
                                                     to='alice@localhost')))
    al = []
    step('alice LOGIN (IMAP)', lambda: al.append(cyrus.imap('alice')))
    m = al[0]
    step('alice APPEND to INBOX (flags \\Seen)',
         lambda: ok(m.append('INBOX', '(\\Seen)', None,
                             make_message('appended', to='alice@localhost'))))
    step('alice SELECT INBOX', lambda: ok(m.select('INBOX')))
    step('alice FETCH 1 BODY[] (sets \\Seen)',
         lambda: ok(m.fetch('1', '(BODY[])')))
    step('alice STORE 1 +FLAGS (\\Flagged)',
         lambda: ok(m.store('1', '+FLAGS', '(\\Flagged)')))
    step('alice STORE 1 -FLAGS (\\Flagged)',
         lambda: ok(m.store('1', '-FLAGS', '(\\Flagged)')))
    step('alice STORE 1 -FLAGS (\\Seen)',
         lambda: ok(m.store('1', '-FLAGS', '(\\Seen)')))
    step('alice STORE 1 +FLAGS ($Label1 \\Answered) (keyword + system flag)',
         lambda: ok(m.store('1', '+FLAGS', '($Label1 \\Answered)')))
    step('alice STORE 2 +FLAGS (\\Deleted)',
         lambda: ok(m.store('2', '+FLAGS', '(\\Deleted)')))
    step('alice EXPUNGE (message 2)', lambda: ok(m.expunge()))
    step('alice COPY 1 %s' % box('Sub'),
         lambda: ok(m.copy('1', imap_quote(box('Sub')))))
    step('alice MOVE 1 %s' % box('Sub'),
         lambda: ok(m._simple_command('MOVE', '1', imap_quote(box('Sub')))))

    step('alice CREATE %s (creates the missing %s and %s too)'
         % (box('Projects', 'Alpha', 'Beta'), box('Projects'),
            box('Projects', 'Alpha')),
         lambda: ok(m.create(imap_quote(box('Projects', 'Alpha', 'Beta')))))
    step('alice RENAME %s %s (has children)' % (box('Projects'), box('Archive')),
         lambda: ok(m.rename(imap_quote(box('Projects')),
                             imap_quote(box('Archive')))))
    step('alice DELETE %s' % box('Archive', 'Alpha', 'Beta'),
         lambda: ok(m.delete(imap_quote(box('Archive', 'Alpha', 'Beta')))))

    step('alice SUBSCRIBE %s' % box('Sub'),
         lambda: ok(m.subscribe(imap_quote(box('Sub')))))
    step('alice UNSUBSCRIBE %s' % box('Sub'),
         lambda: ok(m.unsubscribe(imap_quote(box('Sub')))))
    step('alice SETACL %s bob lrs' % box('Sub'),
         lambda: ok(m.setacl(imap_quote(box('Sub')), 'bob', 'lrs')))
    step('alice SETACL %s bob -s (remove a right)' % box('Sub'),
         lambda: ok(m.setacl(imap_quote(box('Sub')), 'bob', '-s')))
    step('alice DELETEACL %s bob' % box('Sub'),
         lambda: ok(m.deleteacl(imap_quote(box('Sub')), 'bob')))

    space = box('My Folder')
    step('alice CREATE "%s" (name with a space)' % space,
         lambda: ok(m.create(imap_quote(space))))
    step('alice APPEND to "%s"' % space,
         lambda: ok(m.append(imap_quote(space), None, None,
                             make_message('into a folder with a space'))))
    utf = box('Entwürfe', '日本語')
    step('alice CREATE "%s" (non-ASCII; on the wire %s)'
         % (utf, harness.imap_utf7_encode(utf)),
         lambda: ok(m.create(imap_quote(utf))))
    step('alice APPEND to "%s"' % utf,
         lambda: ok(m.append(imap_quote(utf), None, None,
                             make_message('into a non-ASCII folder'))))
    renamed = box('Ünïcode & Co')
    step('alice RENAME "%s" "%s" (on the wire %s)'
         % (space, renamed, harness.imap_utf7_encode(renamed)),
         lambda: ok(m.rename(imap_quote(space), imap_quote(renamed))))
    if sep == '/':      # ("INBOX.and/or" is an invalid name with sep ".")
        other = box('release.notes')
        step('alice CREATE "%s" (name containing a dot)' % other,
             lambda: ok(m.create(imap_quote(other))))
    step('alice LOGOUT', lambda: m.logout())

    def proxy_login():
        p = imaplib.IMAP4('127.0.0.1', cyrus.imap_port, timeout=30)
        # SASL PLAIN: authzid bob, authcid proxy (a proxyservers member)
        ok(p.authenticate('PLAIN', lambda _: b'bob\0proxy\0pw'))
        p.logout()
    step('proxy AUTHENTICATE PLAIN as bob (authzid bob, authcid proxy), '
         'LOGOUT', proxy_login)

    step('bob LOGIN (IMAP) and disconnect without LOGOUT',
         lambda: cyrus.imap('bob').shutdown())

    step('admin CREATE %s' % cyrus.mailbox('carol'),
         lambda: ok(a.create(imap_quote(cyrus.mailbox('carol')))))
    step('admin SETACL %s admin x then DELETE %s (delete a user)'
         % (cyrus.mailbox('carol'), cyrus.mailbox('carol')),
         lambda: (ok(a.setacl(imap_quote(cyrus.mailbox('carol')), 'admin', 'x')),
                  ok(a.delete(imap_quote(cyrus.mailbox('carol'))))))
    step('admin LOGOUT', lambda: a.logout())


def capture(unixhierarchysep, keep):
    """Run the session once; return [(label, [datagram, ...]), ...]."""
    wd = tempfile.mkdtemp(prefix='cyrus-capture-', dir='/tmp')
    os.chmod(wd, 0o755)
    sock = os.path.join(wd, 'notify.sock')
    listener = harness.NotifyListener(sock)
    cyrus = harness.Cyrus(wd, sock, unixhierarchysep=unixhierarchysep)
    steps = []

    def step(label, fn):
        fn()
        got = listener.drain(QUIET)
        steps.append((label, got))
        print('%-70s %s' % (label[:70], ' '.join(
            harness.parse_notify(d)['event']['event'] for d in got)))
    try:
        cyrus.start()
        listener.drain(QUIET)
        session(cyrus, step)
    finally:
        cyrus.stop()
        late = listener.drain(QUIET)
        if late:
            steps.append(('(arrived after the session)', late))
        listener.close()
        if keep:
            print('kept', wd)
        else:
            shutil.rmtree(wd, ignore_errors=True)
    return steps


def write(steps, outdir, suffix):
    """Write the datagrams; return README rows (file, event, action)."""
    rows, n, modseq = [], 0, 0
    for label, dgrams in steps:
        for d in dgrams:
            ev = harness.parse_notify(d)['event']['event']
            if ev == 'MailboxModseq':
                modseq += 1
                if modseq > MODSEQ_KEEP:
                    continue
            n += 1
            name = '%02d-%s%s.dgram' % (n, ev, suffix)
            with open(os.path.join(outdir, name), 'wb') as f:
                f.write(d)
            rows.append((name, ev, label, d))
    return rows


README_HEAD = '''# Real Cyrus IMAP event datagrams

Captured from Debian 12's cyrus-imapd 3.6.1 by
`tests/integration/capture_cyrus_events.py` (run as root with
`/usr/bin/python3`); regenerate with that script.  Each `.dgram` file is
one raw datagram exactly as read from the `notifysocket`
(AF_UNIX/SOCK_DGRAM):

    pubsub\\0EVENT\\0\\0\\0\\0 0\\0 <compact JSON>\\0

i.e. `method class priority user mailbox nopt` (nopt = "0", no options)
then the JSON message, every field NUL terminated (`event_notifier: pubsub`).

Server settings: `servername: localhost`, `virtdomains: off`,
`altnamespace: no`, `event_groups: message flags access mailbox
subscription`, `event_extra_params: %(extra)s`.
Files without a suffix come from the `unixhierarchysep: yes` run
(`user/alice/Sub`), files ending in `-dot` from the `unixhierarchysep: no`
run (`user.alice.Sub`).  NN is the order of arrival within a run; only the
first %(keep)d `MailboxModseq` datagrams of each run are kept, the rest were
dropped (so numbers stay contiguous).  Mailbox names below are as the client
sent them, in alice's personal namespace (`INBOX/...`); LMTP delivers as
preauthorized "postman" (lmtpd -a / unix socket).  Timestamps, pids,
session ids, UIDVALIDITYs, mailboxIDs and ports differ between runs.

'''


README_TAIL = '''## What these captures show (Cyrus 3.6.1, settings above)

- Every datagram splits on NUL into exactly 8 fields:
  `pubsub, EVENT, "", "", "", "0", <JSON>, ""`; no trailing fname.
  The JSON is pure ASCII (non-ASCII mailbox names are percent-encoded UTF-8
  in `uri`; raw 8-bit header bytes were munged to `X` by Cyrus'
  default `munge8bit`, see the "Grüße" delivery).
- `MailboxModseq` (user always "") comes with most changes, before the
  event (LMTP, APPEND, EXPUNGE, COPY/MOVE, ACL; its timestamp is still a
  little later) or after it (STORE): do not rely on its position.
- `MessageNew`/`MessageAppend`: `uri` is `...;UIDVALIDITY=v/;UID=n` (note
  the `/` before `;UID=`), `messageSize`, `vnd.cmu.envelope`,
  `vnd.cmu.midset`; no `bodyStructure` (not in `event_extra_params`).
  `MessageAppend` with flags carries `flagNames` in lower case (`\\seen`).
- LMTP: `user` is the recipient for INBOX, "" for `user+Folder`;
  `service` is the cyrus.conf service name (`lmtp`, `lmtpunix`).
  `user+Folder` only lands in Folder if "anyone" has `p` there; otherwise
  Cyrus silently delivers to INBOX.
- `MessageRead` (FETCH BODY[] setting \\Seen), `MessageTrash`,
  `MessageExpunge`, `FlagsSet`, `FlagsClear`: `uri` without UID, `uidset`;
  `flagNames` (space separated, e.g. `\\Answered $Label1`) only on
  FlagsSet/FlagsClear. Clearing `\\Seen` is a plain `FlagsClear`.
- `vnd.cmu.MessageCopy`/`vnd.cmu.MessageMove`: `uri`/`mailboxID`/`uidset`
  of the target, `oldMailboxID` (a URL) and `vnd.cmu.oldUidset` of the
  source; MOVE is followed by a `MessageExpunge` in the source.
- `MailboxRename`: `oldMailboxID` is the old URL, `mailboxID` is kept;
  no `vnd.cmu.oldUidset`. Renaming a parent sends one event (children
  move silently, only `MailboxModseq`s).
- `CREATE a/b/c` sends one `MailboxCreate` per missing ancestor, top down.
- `MailboxSubscribe`/`MailboxUnSubscribe` (capital S): `uri` without
  `;UIDVALIDITY`, no `vnd.cmu.mailboxACL`/`vnd.cmu.mbtype`.
- `AclChange`: `aclRights` without the +/- (SETACL bob -s gives
  `"aclRights":"s"`), DELETEACL has no `aclRights` at all;
  `vnd.cmu.mailboxACL` (tab separated) is the resulting ACL.
- `Login`/`Logout`: `uri` is `imap://localhost`, no `mailboxID`; a proxy
  login (authzid bob, authcid proxy) reports only `bob`; a client that
  just disconnects still produces `Logout`.
- Deleting a user (`user/carol`) sends a single `MailboxDelete`.
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    ap.add_argument('--out', default=DEFAULT_OUT)
    ap.add_argument('--keep', action='store_true',
                    help='keep the Cyrus work directories')
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for old in glob.glob(os.path.join(args.out, '*.dgram')):
        os.unlink(old)

    readme = [README_HEAD % dict(extra=harness.Cyrus.EXTRA_PARAMS,
                                 keep=MODSEQ_KEEP)]
    for unixsep, suffix in ((True, ''), (False, '-dot')):
        print('== unixhierarchysep: %s' % ('yes' if unixsep else 'no'))
        rows = write(capture(unixsep, args.keep), args.out, suffix)
        readme.append('## unixhierarchysep: %s\n\n'
                      % ('yes' if unixsep else 'no'))
        readme.append('| file | bytes | action | uri / user |\n'
                      '|---|---|---|---|\n')
        for name, ev, label, d in rows:
            e = harness.parse_notify(d)['event']
            where = '`%s` / `%s`' % (e.get('uri', ''), e.get('user', ''))
            readme.append('| `%s` | %d | %s | %s |\n'
                          % (name, len(d), label.replace('|', '\\|'),
                             where.replace('|', '\\|')))
        readme.append('\n')
        types = sorted({r[1] for r in rows})
        readme.append('Event types in this run: %s.\n\n'
                      % ', '.join('`%s`' % t for t in types))
    readme.append(README_TAIL)
    with open(os.path.join(args.out, 'README.md'), 'w') as f:
        f.write(''.join(readme))
    print('wrote', args.out)


if __name__ == '__main__':
    main()
