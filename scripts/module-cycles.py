#!/usr/bin/env python3
"""Import cycles between the engine's modules (docs/ARCHITECTURE.md: nothing
imports in a loop). Exits 1 and prints each cycle as `a -> b -> a`, with where
each of its edges comes from; exits 0 when there is none (or only allowed ones).

usage: scripts/module-cycles.py [--src engine/src] [--allow 'a<->b']... [--graph]
       scripts/module-cycles.py --self-test

The rules (Python 3 standard library only; a reader of the source, not a
compiler, so it errs on the side of seeing an edge):

- Nodes are the modules as declared: each `mod x;` reached from lib.rs (its
  file x.rs or x/mod.rs, or its #[path]) is a node named by its path from the
  crate root (`runtime::tls`, `backend::uring`, `proto::handshake`); the root
  is `crate`. An inline `mod x { .. }` is resolved as a module, then counted
  as part of the file that holds it.
- Test code is not read: items under #[cfg(test)] (a `mod tests` block, a
  #[path = "x_tests.rs"] module, a test helper), any `mod tests`, and files
  named *_tests.rs.
- Comments (doc comments and their intra-doc links included), string and
  char literals and `pub(in path)` visibilities are blanked before reading.
- Edges come from `use` items (grouped `use a::{b, c::{d, self}}` and
  `as` renames included) and from paths in code (`crate::x::y`, `super::x`,
  `self::x`, and paths that start with a child module or an imported name).
  A path is resolved like rustc does, as far as a reader can: `crate`,
  `self`, `super` (repeated), then each segment that names a child module
  descends into it, so `super::x` is the sibling module `x` when `x` is one,
  and otherwise the parent itself (an item of the parent's own file). A
  segment that the crate root re-exports is followed to where it comes
  from, so `crate::Builder` is `server::builder`, not the root; a name taken
  from another module's re-export (`super::worker::Peers`, where `worker`
  has `use super::command::Peers`) is an edge to that module, which the
  path names, and a module's own imports are followed from where it stands.
  Paths into other crates (std, rustls, ...) are not edges.
- A parent and its own children are not a cycle: a module's edges to its own
  descendants (declaring them, re-exporting them, using them) are dropped;
  a child's edges to its parent are kept.
- `--allow 'a<->b'` accepts exactly the cycle `a -> b -> a` (any longer cycle
  through a and b is still reported); an allowance that matches nothing is
  reported as stale, without failing.
"""

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import unittest

ROOT = "crate"


# ---------------------------------------------------------------- reading


def blank(text, start, end):
    """`text` with [start, end) replaced by spaces, newlines kept (so offsets
    and line numbers stay those of the file)."""
    return text[:start] + re.sub(r"[^\n]", " ", text[start:end]) + text[end:]


def strip_comments_and_literals(text):
    """Comments, string, byte-string, raw-string and char literals blanked."""
    out = list(text)
    i, n = 0, len(text)

    def wipe(a, b):
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            wipe(i, j)
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            wipe(i, j)
            i = j
        elif c == "r" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_") or text[i - 1] == "b") \
                and re.match(r'r#*"', text[i:]):
            hashes = len(re.match(r"r(#*)", text[i:]).group(1))
            close = '"' + "#" * hashes
            j = text.find(close, i + 2 + hashes)
            j = n if j < 0 else j + len(close)
            wipe(i, j)
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            wipe(i, j + 1)
            i = j + 1
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}'), else a lifetime or label.
            if i + 1 < n and text[i + 1] == "\\":
                j = text.find("'", i + 3)
                j = n if j < 0 else j
                wipe(i, j + 1)
                i = j + 1
            elif i + 2 < n and text[i + 2] == "'":
                wipe(i, i + 3)
                i += 3
            else:
                i += 1
        else:
            i += 1
    return "".join(out)


def matching_close(text, open_at):
    """The offset just past the brace/bracket/paren that closes text[open_at]."""
    pairs = {"{": "}", "[": "]", "(": ")"}
    stack = []
    for j in range(open_at, len(text)):
        ch = text[j]
        if ch in pairs:
            stack.append(pairs[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
            if not stack:
                return j + 1
    return len(text)


def item_end(text, start):
    """The end of the item starting at `start`: its `;`, or its `{ .. }` block."""
    j = start
    while j < len(text):
        ch = text[j]
        if ch == ";":
            return j + 1
        if ch == "{":
            return matching_close(text, j)
        if ch in "([":
            j = matching_close(text, j)
            continue
        j += 1
    return len(text)


CFG_TEST = re.compile(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]")
ATTRIBUTE = re.compile(r"\s*#\s*!?\s*\[")
MOD_TESTS = re.compile(r"\bmod\s+tests\b")


def strip_test_code(text):
    """Blanks #[cfg(test)] items (with their other attributes) and any
    `mod tests`, declared or inline."""
    while True:
        m = CFG_TEST.search(text)
        if not m:
            break
        j = m.end()
        while True:
            a = ATTRIBUTE.match(text, j)
            if not a:
                break
            j = matching_close(text, a.end() - 1)
        text = blank(text, m.start(), item_end(text, j))
    while True:
        m = MOD_TESTS.search(text)
        if not m:
            break
        text = blank(text, m.start(), item_end(text, m.end()))
    return text


def read_source(path):
    with open(path, encoding="utf-8") as f:
        original = f.read()
    code = strip_test_code(strip_comments_and_literals(original))
    # `pub(in crate::x)` names who may see an item, not what it uses.
    code = re.sub(r"\bpub\s*\(\s*in\s+[^)]*\)", lambda m: " " * len(m.group(0)), code)
    return original, code


# ---------------------------------------------------------------- modules


class Module:
    def __init__(self, name, file, owner):
        self.name = name
        self.file = file  # the file that holds it
        self.owner = owner  # the file module it counts as (itself, unless inline)
        self.children = set()
        self.imports = {}  # name -> path segments, as written in its `use`
        self.globs = []  # path segments of `use x::*`
        self.paths = []  # (segments, offset, text): what it refers to


def parent_of(name):
    return ROOT if "::" not in name else name.rsplit("::", 1)[0]


def child_name(parent, child):
    return child if parent == ROOT else f"{parent}::{child}"


def is_descendant(name, ancestor):
    return ancestor == ROOT or name.startswith(ancestor + "::")


USE_ITEM = re.compile(r"\buse\s+([^;]+);")
MOD_ITEM = re.compile(r"\bmod\s+(r#)?(\w+)\s*([;{])")
PATH_ATTR = re.compile(r'#\s*\[\s*path\s*=\s*"([^"]+)"\s*\]')
INLINE_PATH = re.compile(r"(?<![\w:$#])((?:[a-z_][a-z0-9_]*)(?:\s*::\s*(?:r#)?[A-Za-z_]\w*)+)")


def parse_use_tree(tree):
    """`a::{b, c::{d as e, self}, *}` -> [(segments, local name or None, glob)]."""
    tokens = re.findall(r"::|[{},*]|(?:r#)?\w+", tree)
    pos = 0
    results = []

    def parse(prefix):
        nonlocal pos
        segs = list(prefix)
        while pos < len(tokens):
            t = tokens[pos]
            if t == "::":
                pos += 1
            elif t == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    parse(segs)
                    if pos < len(tokens) and tokens[pos] == ",":
                        pos += 1
                pos += 1
                return
            elif t == "*":
                pos += 1
                results.append((segs, None, True))
                return
            elif t in (",", "}"):
                break
            elif t == "as":
                pos += 1
                alias = tokens[pos] if pos < len(tokens) else "_"
                pos += 1
                results.append((segs, alias, False))
                return
            else:
                pos += 1
                if t == "self" and segs:
                    continue  # `a::{self}` is `a`
                segs = segs + [t.removeprefix("r#")]
        if segs:
            results.append((segs, segs[-1], False))

    parse([])
    return results


class Crate:
    def __init__(self, src):
        self.src = src
        self.modules = {}
        self.sources = {}  # file -> (original, code)
        lib = os.path.join(src, "lib.rs")
        if not os.path.exists(lib):
            lib = os.path.join(src, "main.rs")
        self.load(ROOT, lib)

    def load(self, name, file):
        original, code = read_source(file)
        self.sources[file] = (original, code)
        self.modules[name] = Module(name, file, name)
        base = os.path.basename(file)
        mod_rs = base in ("lib.rs", "main.rs", "mod.rs")
        children_dir = os.path.dirname(file) if mod_rs else os.path.join(
            os.path.dirname(file), base[:-3])
        # Inline modules first: every offset then knows which module it is in.
        spans = []  # (start, end, module name, children dir)
        for m in MOD_ITEM.finditer(code):
            if m.group(3) == "{":
                outer = self.module_at(spans, m.start(), name, children_dir)
                inner = child_name(outer[0], m.group(2))
                spans.append((m.end() - 1, matching_close(code, m.end() - 1), inner,
                              os.path.join(outer[1], m.group(2))))
                self.modules[inner] = Module(inner, file, name)
                self.modules[outer[0]].children.add(m.group(2))
        for m in MOD_ITEM.finditer(code):
            if m.group(3) != ";":
                continue
            outer, outer_dir = self.module_at(spans, m.start(), name, children_dir)
            child = m.group(2)
            attrs_from = max(code.rfind(";", 0, m.start()), code.rfind("}", 0, m.start()),
                             code.rfind("{", 0, m.start())) + 1
            path = PATH_ATTR.search(original, attrs_from, m.start())
            if path:
                target = os.path.join(os.path.dirname(file), path.group(1))
            else:
                target = os.path.join(outer_dir, child + ".rs")
                if not os.path.exists(target):
                    target = os.path.join(outer_dir, child, "mod.rs")
            if target.endswith("_tests.rs") or not os.path.exists(target):
                continue
            self.modules[outer].children.add(child)
            self.load(child_name(outer, child), target)
        for m in USE_ITEM.finditer(code):
            module = self.modules[self.module_at(spans, m.start(), name, children_dir)[0]]
            for segs, local, glob in parse_use_tree(m.group(1)):
                if not segs:
                    continue
                if glob:
                    module.globs.append(segs)
                elif local != "_":
                    module.imports[local] = segs
                module.paths.append((segs, m.start(), "::".join(segs) + ("::*" if glob else "")))
        use_spans = [(m.start(), m.end()) for m in USE_ITEM.finditer(code)]
        for m in INLINE_PATH.finditer(code):
            if any(a <= m.start() < b for a, b in use_spans):
                continue
            segs = [s.strip().removeprefix("r#") for s in m.group(1).split("::")]
            module = self.modules[self.module_at(spans, m.start(), name, children_dir)[0]]
            module.paths.append((segs, m.start(), "::".join(segs)))

    @staticmethod
    def module_at(spans, offset, file_module, children_dir):
        best = (file_module, children_dir, -1)
        for start, end, inner, inner_dir in spans:
            if start <= offset < end and start > best[2]:
                best = (inner, inner_dir, start)
        return best[0], best[1]

    def resolve(self, module, segs, depth=0):
        """The module a path written in `module` leads to, or None (another
        crate, or a local item)."""
        if depth > 16 or not segs:
            return None
        first, rest = segs[0], segs[1:]
        if first == "crate":
            cur = ROOT
        elif first == "self":
            cur = module
        elif first == "super":
            cur = parent_of(module)
            while rest and rest[0] == "super":
                cur, rest = parent_of(cur), rest[1:]
        elif first in self.modules[module].children:
            cur, rest = module, segs
        elif first in self.modules[module].imports:
            return self.resolve(module, self.modules[module].imports[first] + rest, depth + 1)
        else:
            return None
        for i, seg in enumerate(rest):
            m = self.modules[cur]
            if seg in m.children:
                cur = child_name(cur, seg)
            elif seg in m.imports and cur == ROOT:
                # The crate root's re-exports are the API: followed to the
                # module that defines the item.
                via = self.resolve(cur, m.imports[seg] + rest[i + 1:], depth + 1)
                return via if via is not None else cur
            elif seg in m.imports:
                # Another module's re-export: naming it there depends on that
                # module (what it chooses to re-export), not only on the source.
                return cur
            else:
                break
        return cur

    def line_of(self, file, offset):
        return self.sources[file][0].count("\n", 0, offset) + 1

    def edges(self):
        """{(from, to): (file, line, path)}: the first place each edge is seen."""
        found = {}
        for module in self.modules.values():
            for segs, offset, text in module.paths:
                target = self.resolve(module.name, segs)
                if target is None:
                    continue
                a, b = module.owner, self.modules[target].owner
                if a == b or is_descendant(b, a):
                    continue
                found.setdefault((a, b), (module.file, self.line_of(module.file, offset), text))
        return found


# ---------------------------------------------------------------- cycles


def cycles(edges, limit=200):
    """Every elementary cycle (up to `limit`), each starting at its smallest node."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    found = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack and len(found) < limit:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ()), reverse=True):
                if nxt == start:
                    found.append(path + [start])
                elif nxt > start and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return sorted(found, key=lambda c: (len(c), c))


def parse_allow(spec):
    parts = [p.strip() for p in spec.split("<->")]
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"--allow wants 'a<->b', not {spec!r}")
    return frozenset(parts)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", default=os.path.join(here, "..", "engine", "src"))
    parser.add_argument("--allow", action="append", type=parse_allow, default=[],
                        metavar="'a<->b'", help="accept the cycle a -> b -> a")
    parser.add_argument("--graph", action="store_true", help="print every edge too")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
        return 0 if unittest.TextTestRunner(verbosity=1).run(suite).wasSuccessful() else 1

    crate = Crate(os.path.normpath(args.src))
    edges = crate.edges()
    if args.graph:
        for (a, b), (file, line, text) in sorted(edges.items()):
            print(f"{a} -> {b}  ({os.path.relpath(file)}:{line} {text})")
    allowed = set(args.allow)
    used = set()
    failing = []
    for cycle in cycles(edges):
        if len(cycle) == 3 and frozenset(cycle[:2]) in allowed:
            used.add(frozenset(cycle[:2]))
            print(f"allowed: {' -> '.join(cycle)}")
        else:
            failing.append(cycle)
    for stale in allowed - used:
        print(f"note: the allowed cycle {' <-> '.join(sorted(stale))} is gone; drop its --allow")
    if not failing:
        besides = " besides the allowed" if used else ""
        print(f"no module cycles{besides} in {os.path.relpath(crate.src)} ({len(crate.modules)} modules)")
        return 0
    print(f"{len(failing)} module cycle(s) in {os.path.relpath(crate.src)}:")
    for cycle in failing:
        print(" -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            file, line, text = edges[(a, b)]
            print(f"    {a} -> {b}: {os.path.relpath(file)}:{line} {text}")
    return 1


# ---------------------------------------------------------------- self-test


class SelfTest(unittest.TestCase):
    """Tiny crates in a temp dir: the check fails with a cycle, passes without."""

    def crate(self, files):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        for path, text in files.items():
            full = os.path.join(tmp.name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w", encoding="utf-8") as f:
                f.write(text)
        return tmp.name

    def run_check(self, src, *extra):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--src", src, *extra])
        return code, out.getvalue()

    def test_a_cycle_fails_and_is_printed(self):
        src = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use crate::b::{Beta, helpers::{self as h}};\npub struct Alpha;\n",
            "b.rs": "pub struct Beta;\npub mod helpers {}\n"
                    "fn f() { let _ = crate::a::Alpha; }\n",
        })
        code, out = self.run_check(src)
        self.assertEqual(code, 1, out)
        self.assertIn("\na -> b -> a\n", out)
        self.assertIn("b.rs:3 crate::a::Alpha", out)

    def test_no_cycle_passes_and_test_code_comments_strings_are_ignored(self):
        src = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use crate::b::Beta;\npub struct Alpha;\n",
            "b.rs": "//! Not [`crate::a::Alpha`].\npub struct Beta;\n"
                    "// crate::a::Alpha\n/* use crate::a; */\n"
                    "const S: &str = \"crate::a::Alpha\"; const R: &str = r#\"super::a\"#;\n"
                    "const C: char = '\"'; fn g<'x>(v: &'x str) -> &'x str { v }\n"
                    "const Q: char = '\\''; const U: &str = \"crate::a::Alpha\";\n"
                    "pub(in crate::a) struct Seen;\n"
                    "#[cfg(test)]\nfn helper() { crate::a::Alpha; }\n"
                    "#[cfg(test)]\n#[path = \"b_tests.rs\"]\nmod more;\n"
                    "mod tests { use crate::a::Alpha; }\n",
            "b_tests.rs": "use crate::a::Alpha;\n",
        })
        code, out = self.run_check(src)
        self.assertEqual(code, 0, out)
        self.assertIn("no module cycles", out)

    def test_a_parent_and_its_children_are_not_a_cycle(self):
        src = self.crate({
            "lib.rs": "mod p;\npub use p::X;\n",
            "p/mod.rs": "mod x;\nmod y;\npub use self::x::X;\npub(crate) struct Shared;\n"
                        "fn f() { y::g(); }\n",
            "p/x.rs": "use super::Shared;\nuse super::y::Y;\npub struct X;\n",
            "p/y.rs": "use super::Shared;\npub struct Y;\npub fn g() {}\n",
        })
        code, out = self.run_check(src, "--graph")
        self.assertEqual(code, 0, out)
        self.assertIn("p::x -> p::y ", out)  # super::y is the sibling
        self.assertIn("p::x -> p ", out)  # super::Shared is the parent's own item

    def test_siblings_through_super_are_a_cycle(self):
        src = self.crate({
            "lib.rs": "pub(crate) mod p;\n",
            "p/mod.rs": "pub(crate) mod x;\npub(crate) mod y;\n",
            "p/x.rs": "pub fn g() {}\nfn h() { super::y::f() }\n",
            "p/y.rs": "pub fn f() { super::x::g() }\n",
        })
        code, out = self.run_check(src)
        self.assertEqual(code, 1, out)
        self.assertIn("\np::x -> p::y -> p::x\n", out)

    def test_re_exports_are_followed_to_their_module(self):
        src = self.crate({
            "lib.rs": "mod a;\nmod b;\npub use a::Alpha;\n",
            "a.rs": "pub struct Alpha;\nfn f() { crate::b::g(); }\n",
            "b.rs": "pub fn g() { let _ = crate::Alpha; }\n",
        })
        code, out = self.run_check(src)
        self.assertEqual(code, 1, out)
        self.assertIn("\na -> b -> a\n", out)

    def test_a_name_taken_from_a_siblings_re_export_depends_on_the_sibling(self):
        src = self.crate({
            "lib.rs": "mod a;\nmod b;\nmod c;\n",
            "a.rs": "pub struct Alpha;\n",
            "b.rs": "pub use super::a::Alpha;\nfn f() { crate::c::g(); }\n",
            "c.rs": "use super::b::Alpha;\npub fn g() {}\n",
        })
        code, out = self.run_check(src)
        self.assertEqual(code, 1, out)
        self.assertIn("\nb -> c -> b\n", out)

    def test_inline_modules_count_as_their_file(self):
        src = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "pub mod alert { pub const X: u8 = super::Y; }\npub const Y: u8 = 0;\n",
            "b.rs": "use crate::a::alert;\nfn f() -> u8 { alert::X }\n",
        })
        code, out = self.run_check(src, "--graph")
        self.assertEqual(code, 0, out)
        self.assertIn("b -> a ", out)
        self.assertFalse([line for line in out.splitlines() if "a::alert ->" in line], out)

    def test_an_allowance_covers_its_pair_only(self):
        files = {
            "lib.rs": "mod a;\nmod b;\nmod c;\n",
            "a.rs": "use crate::b::B;\npub struct A;\n",
            "b.rs": "use crate::a::A;\npub struct B;\n",
            "c.rs": "pub struct C;\n",
        }
        code, out = self.run_check(self.crate(files), "--allow", "a<->b")
        self.assertEqual(code, 0, out)
        self.assertIn("allowed: a -> b -> a", out)
        code, out = self.run_check(self.crate(files), "--allow", "a<->c")
        self.assertEqual(code, 1, out)
        self.assertIn("the allowed cycle a <-> c is gone", out)
        files["b.rs"] = "use crate::{a::A, c::C};\npub struct B;\n"
        files["c.rs"] = "use crate::a::A;\npub struct C;\n"
        code, out = self.run_check(self.crate(files), "--allow", "a<->b")
        self.assertEqual(code, 1, out)
        self.assertIn("\na -> b -> c -> a\n", out)


if __name__ == "__main__":
    sys.exit(main())
