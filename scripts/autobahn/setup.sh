#!/usr/bin/env bash
# Installs the Autobahn|Testsuite fuzzing client `wstest` into a Python 3 venv.
#
# Upstream (autobahntestsuite 25.10.1 + autobahn 0.10.9) is Python 2.7 only. This script
# installs it from PyPI (pinned versions, nothing else downloaded) and ports it to Python 3
# at install time: 2to3 plus the small exact-match patches below, which fail loudly if the
# sources ever differ. Only the fuzzingclient mode is validated. The verdict logic of the
# suite is unchanged; see the notes in the port section for the bytes/str convention.
#
# usage: scripts/autobahn/setup.sh [VENV_DIR]
#   VENV_DIR  default: $AUTOBAHN_VENV, else target/autobahn-venv in the repo (git-ignored)
# env:   PYTHON  interpreter for the venv (default python3; needs 3.8-3.12 with lib2to3)
#
# Idempotent: when the venv holds a port made by this exact version of the script, it
# only runs `wstest --autobahnversion` once and exits (under a second). ~1 min when fresh.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${1:-${AUTOBAHN_VENV:-$REPO/target/autobahn-venv}}
PY=${PYTHON:-python3}
STAMP="$VENV/.autobahn-port"
# the stamp is a hash of this script: editing the pins or the patches re-ports on next use
HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)
# fast path: one `wstest` start proves the installed port still imports and runs
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] \
   && VERSION=$("$VENV/bin/wstest" --autobahnversion 2>/dev/null); then
  echo "autobahn: $VENV is ready ($(echo "$VERSION" | tr -s '\n' ' '))"
  exit 0
fi

"$PY" -c 'import sys, lib2to3; assert sys.version_info[:2] >= (3, 8)' 2>/dev/null \
  || { echo "autobahn: need Python 3.8-3.12 with lib2to3 (tested: 3.11)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pinned from PyPI: build tools for the two sdists (autobahn 0.10.9 needs setuptools < 72), then runtime deps
"${PIP[@]}" install setuptools==69.5.1 wheel==0.43.0
"${PIP[@]}" install Twisted==22.10.0 zope.interface==6.4.post2 attrs==26.1.0 Automat==25.4.16 \
  constantly==23.10.4 hyperlink==21.0.0 idna==3.20 Incremental==24.11.0 packaging==26.3 \
  typing_extensions==4.16.0 six==1.16.0 txaio==2.1.0 wsaccel==0.6.6 Jinja2==3.1.4 MarkupSafe==3.0.4 \
  pyOpenSSL==24.2.1 cryptography==43.0.3 cffi==2.1.1 pycparser==3.12 service-identity==24.2.0 \
  pyasn1==0.6.5 pyasn1_modules==0.4.2
SP=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -rf "$SP/autobahn" "$SP/autobahntestsuite"      # always port from pristine sources
"${PIP[@]}" install --no-deps --no-build-isolation --force-reinstall autobahn==0.10.9 autobahntestsuite==25.10.1

# The port. Python 3 code run by the venv's interpreter on its site-packages.
"$VENV/bin/python" - "$SP" <<'PORT'
import glob, os, re, subprocess, sys
sp = sys.argv[1]
ats, ab = os.path.join(sp, 'autobahntestsuite'), os.path.join(sp, 'autobahn')
rd = lambda f: open(f, encoding='utf-8').read()
wr = lambda f, s: open(f, 'w', encoding='utf-8').write(s)
files = glob.glob(ats + '/**/*.py', recursive=True)

def edit(path, *pairs):               # exact replacements; fail loudly if the sources differ
    s = rd(os.path.join(sp, path))
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in s, ('port: not found', path, old)
        s = s.replace(old, new)
    wr(os.path.join(sp, path), s)

def sub_all(fn):                      # apply fn to the text of every test suite module
    for f in files:
        s = rd(f); t = fn(s)
        if t != s: wr(f, t)

# 1. py2 str literals holding non-ASCII source text are UTF-8 bytes: spell them as \xNN
sub_all(lambda s: re.sub(r'[^\x00-\x7f]', lambda m: ''.join('\\x%02x' % c for c in m.group().encode()), s))
# 2. the mechanical part
subprocess.check_call([sys.executable, '-W', 'ignore', '-m', 'lib2to3', '-w', '-n', '--no-diffs', ats],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# 3. bytes vs. text. Convention: a py3 str in the suite stands for the py2 bytes str (latin-1),
#    converted where it meets bytes APIs; received bytes and expected str compare as bytes.
wr(os.path.join(ats, '_py3.py'), '''import binascii
def b(s):      # py2 str -> bytes
    return s.encode('latin-1') if isinstance(s, str) else s
def s(b):      # bytes -> text for reports
    return b.decode('utf-8', 'replace') if isinstance(b, (bytes, bytearray)) else b
def js(o):     # json.dumps default
    return s(o) if isinstance(o, (bytes, bytearray)) else str(o)
def text(d):   # py2 str holding UTF-8 -> text
    try: return d.encode('latin-1').decode('utf-8')
    except UnicodeError: return d
def hexs(data):
    return binascii.b2a_hex(b(data)).decode('ascii')
def same(x, y):  # type-strict structural equality (was: pickle.dumps(x) == pickle.dumps(y))
    x, y = b(x), b(y)
    if type(x) in (list, tuple):
        return type(x) is type(y) and len(x) == len(y) and all(map(same, x, y))
    return type(x) is type(y) and x == y
''')
sub_all(lambda s: re.sub(r'binascii\.(b2a_hex|hexlify)\(', '_py3.hexs(', s)
        .replace('.tostring()', '.tobytes()')
        .replace('(object, Case, )', '(Case, )'))       # Case is no longer an old-style class
edit('autobahntestsuite/case/case.py', 'return pickle.dumps(obj1) == pickle.dumps(obj2)', 'return _py3.same(obj1, obj2)')
edit('autobahntestsuite/case/case6_x_x.py', 'res = v.validate(vss[:i])', 'res = v.validate(_py3.b(vss[:i]))')
edit('autobahntestsuite/case/case9_9_1.py', 'import implements', 'import implementer',
     'class FrameProducer:\n\n   implements(interfaces.IPushProducer)\n', '@implementer(interfaces.IPushProducer)\nclass FrameProducer:\n')
edit('autobahntestsuite/case/case10_1_1.py', 'len(self.payload) / self', 'len(self.payload) // self')
edit('autobahntestsuite/case/__init__.py', 'CaseSubCategories.update(Case13_X_X_CaseSubCategories)',
     'CaseSubCategories.update(Case13_X_X_CaseSubCategories)\nfor _c in Cases:\n   _c.DESCRIPTION = _py3.text(_c.DESCRIPTION)')
edit('autobahntestsuite/fuzzing.py',
     'def binLogData(data, maxlen = 64):\n', 'def binLogData(data, maxlen = 64):\n   data = _py3.b(data)\n',
     '   ellipses = " ..."\n   try:', '   ellipses = b" ..."\n   data = _py3.b(data)\n   try:',
     "p = ''.join(payload)", "p = b''.join(payload)",
     # cases hand py2-style str payloads to the protocol: convert every str argument on the way out
     'class FuzzingFactory:', '''def _bytes_args(name):
   def send(self, *args, **kw):
      return getattr(super(FuzzingProtocol, self), name)(*map(_py3.b, args), **{k: _py3.b(v) for k, v in kw.items()})
   return send

for _m in ('sendFrame', 'sendMessage', 'sendMessageFrame', 'sendMessageFrameData', 'sendPing', 'sendPong', 'sendCloseFrame'):
   setattr(FuzzingProtocol, _m, _bytes_args(_m))


class FuzzingFactory:''',
     "         caseResult['received'] = cleanBin(caseResult['received'])",
     "         caseResult['received'] = cleanBin(caseResult['received'])\n"
     "         for k in ('httpRequest', 'httpResponse', 'localCloseReason', 'remoteCloseReason'):\n"
     "            caseResult[k] = _py3.s(caseResult[k])",
     "separators = (',', ': ')", "separators = (',', ': '), default = _py3.js",
     ", 'w')", ", 'w', encoding='utf-8')",
     ' % (c[0], case[c[0]], c[1])).encode("utf-8"))', ' % (c[0], case[c[0]], c[1])))',
     "ll.encode('utf8')))", "ll))")
sub_all(lambda s: 'from autobahntestsuite import _py3\n' + s if '_py3.' in s and 'import _py3' not in s else s)
# 4. autobahn 0.10.9 (py2/py3 via six) on 3.11: int division, `async` keyword, unittest2
edit('autobahn/websocket/protocol.py', 'range(payload_len / len(payload))', 'range(payload_len // len(payload))')
edit('autobahn/asyncio/websocket.py', 'asyncio.async(', 'asyncio.ensure_future(')
edit('autobahn/wamp/test/test_serializer.py', 'import unittest2 as unittest', 'import unittest')
subprocess.check_call([sys.executable, '-m', 'compileall', '-q', ats, ab], stdout=subprocess.DEVNULL)
PORT

"$VENV/bin/wstest" --help >/dev/null
echo "$HASH" > "$STAMP"
echo "autobahn: wstest ready in $VENV ($("$VENV/bin/wstest" --autobahnversion 2>/dev/null | tr -s '\n' ' '))"
