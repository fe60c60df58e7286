#!/usr/bin/python3
"""Regenerates the derived seed corpora of tests/fuzz/corpus/ from the real
Cyrus captures in tests/data/cyrus/: event/ (the JSON message of each
datagram) and mailbox_uri/ (every uri and oldMailboxID in them, plus edge
cases). cyrus_wire/ is a plain copy of the captures; config/ and stanza/
are written by hand.

Run from anywhere: /usr/bin/python3 tests/fuzz/make_seeds.py
"""
import glob
import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, '..', 'data', 'cyrus'))
CORPUS = os.path.join(HERE, 'corpus')

URI_EDGES = [
    'imap://localhost',
    'imap://localhost/',
    'imap://alice@localhost/',
    'imap://alice;AUTH=*@localhost/',
    'imap://%61lice@localhost',
    'IMAP://LOCALHOST/user/alice',
    'imap://localhost/user/alice/',
    'imap://localhost/user/alice/Sub/;UID=7',
    'imap://localhost/user/alice;uidvalidity=4294967295/;uid=4294967295',
    'imap://localhost/user/alice;UIDVALIDITY=4294967296',
    'imap://localhost/user/alice;UIDVALIDITY=',
    'imap://localhost/user/alice;SECTION=1.2;PARTIAL=0.10',
    'imap://localhost/user.alice.a/b',
    'imap://localhost/user.alice.50%25',
    'imap://localhost/user/alice/a%2Fb',
    'imap://localhost/user/alice/x%2',
    'imap://localhost/user/alice/%zz',
    'imap://localhost/user/alice/%00',
    'imap://localhost/user/alice/%C3',
    'imap://localhost/user/alice/%E2%80%AE',
    'imap://localhost/user//x',
    'imap://localhost/user/',
    'imap://localhost/user',
    'imap://localhost/user.',
    'imap://localhost/Shared/Team',
    'imap://localhost/Shared.Team',
    'imap://localhost/user.x/y',
    'imap://localhost/user/x.y',
    'imap://localhost/INBOX',
    'imap://[::1]:143/user/alice',
    'imap://localhost/user/alice@example.org/Sub',
    'imap://localhost/user/alice/Sub//Deep',
    'imap://localhost/user/alice/Sub;UIDVALIDITY=1/;UID=2/;SECTION=TEXT',
    'http://localhost/user/alice',
]


EVENT_EXTRA = [
    {'event': 'vnd.mailpubsub.MailboxStatus',
     'uri': 'imap://localhost/user/alice;UIDVALIDITY=7', 'messages': 5,
     'vnd.cmu.unseenMessages': 1, 'uidnext': '18446744073709551615',
     'modseq': 9},
    {'event': 'QuotaExceed', 'uri': 'imap://localhost/user/bob',
     'diskQuota': 100, 'diskUsed': '101', 'maxMessages': 10},
    {'event': 'FlagsSet', 'uri': 'imap://h/user/alice/A%26B;UIDVALIDITY=7/;UID=3',
     'uidset': '3', 'flagNames': '\\Flagged $Work', 'messages': 5,
     'vnd.cmu.unseenMessages': 1, 'vnd.cmu.sessionId': 's<1>',
     'vnd.x': [1, 2], 'tags': 'a  b'},
    {'event': 'AclChange', 'uri': 'imap://localhost/Shared/Team',
     'aclSubject': 'anyone', 'aclRights': 'lrs', 'user': 'admin'},
    {'event': 'MailboxRename', 'uri': 'imap://localhost/user.alice.New',
     'oldMailboxID': 'urn:uuid:not-an-imap-url'},
    {'event': 'MessageNew', 'uri': 'imap://localhost/user/alice;UID=1',
     'messageSize': 1234, 'envelope': '("date" "subj" NIL)',
     'bodyStructure': '("TEXT" "PLAIN")', 'messageContent': '\u00fc<&>\'"',
     'clientIP': '::1', 'clientPort': 1, 'serverPort': 143},
]


# fuzz_notification: hostile strings the filter must catch, as raw JSON
# (some are not valid JSON until repaired)
NOTIFICATION_EXTRA = [
    rb'{"event":"MessageNew","uri":"imap://localhost/user/alice;UIDVALIDITY=1/;UID=1",'
    rb'"vnd.cmu.envelope":"(\"hi\u0001there\u000b\" \"\ufffe\uffff\")"}',
    b'{"event":"FlagsSet","uri":"imap://h/user/alice;UIDVALIDITY=1/;UID=2",'
    b'"flagNames":"$a\u0000 \ud800 \udc00x \ud83d\ude00","vnd.k\u0007ey":"\xff\xfe"}',
    b'{"event":"MessageNew","uri":"imap://h/user/alice;UIDVALIDITY=1/;UID=3",'
    b'"vnd.x.big":"' + b'x' * 6000 + b'","vnd.x.list":[1,"\u001f",{"\u0002":null}]}',
    b'{"event":"MailboxCreate","uri":"imap://h/user/alice/Bad%EF%BF%BE;UIDVALIDITY=1"}',
]


def fields(dgram):
    """method, class, priority, user, mailbox, nopt, options..., message"""
    parts = dgram.split(b'\0')
    nopt = int(parts[5])
    return parts[6 + nopt]


def main():
    dst = os.path.join(CORPUS, 'cyrus_wire')
    os.makedirs(dst, exist_ok=True)
    events = os.path.join(CORPUS, 'event')
    uris_dir = os.path.join(CORPUS, 'mailbox_uri')
    os.makedirs(events, exist_ok=True)
    os.makedirs(uris_dir, exist_ok=True)
    uris = set()
    for path in sorted(glob.glob(os.path.join(DATA, '*.dgram'))):
        name = os.path.basename(path)
        shutil.copy(path, os.path.join(dst, name))
        with open(path, 'rb') as f:
            message = fields(f.read())
        with open(os.path.join(events, name[:-len('.dgram')] + '.json'), 'wb') as f:
            f.write(message)
        ev = json.loads(message)
        for key in ('uri', 'oldMailboxID'):
            if isinstance(ev.get(key), str):
                uris.add(ev[key])
    for i, ev in enumerate(EVENT_EXTRA):
        with open(os.path.join(events, 'extra-%02d.json' % i), 'w') as f:
            json.dump(ev, f, ensure_ascii=False)
    # fuzz_notification: the first byte picks the stanza bound (small:
    # items lose values, notifications turn into the notice; 0xff: 17 KiB)
    notes = os.path.join(CORPUS, 'notification')
    os.makedirs(notes, exist_ok=True)
    seeds = [open(p, 'rb').read() for p in sorted(glob.glob(os.path.join(events, '*.json')))]
    for i, raw in enumerate(seeds + NOTIFICATION_EXTRA):
        with open(os.path.join(notes, 'n-%03d' % i), 'wb') as f:
            f.write(bytes([(i * 37) % 256]) + raw)
    for i, uri in enumerate(sorted(uris) + URI_EDGES):
        with open(os.path.join(uris_dir, 'uri-%03d' % i), 'w') as f:
            f.write(uri)


if __name__ == '__main__':
    main()
