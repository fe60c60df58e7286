#!/usr/bin/python3
"""The dependency rule of src/ (README "Architecture"), checked.

Each folder of src/ is one stage of the data path. A module may include
headers of its own folder and of folders below it, never above; the
#include "folder/module.h" graph between modules has no cycle; and no
sqlite3_ call is made outside src/store/. Prints every violation and exits
1 if there is one, so the test command keeps the rule.

Usage: check-layers.py [SRC_DIR]   (default: src/ beside this script)
"""
import os
import re
import sys

# Top of the data path first. A folder may use the folders after it.
LAYERS = ["cmd", "ops", "handlers", "downstream", "publish", "ingest",
          "authz", "xmpp", "amqp", "imap", "store", "model", "base"]

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SQLITE_CALL = re.compile(r"\bsqlite3_[a-z_0-9]+\s*\(")


def modules(src):
    """(folder, module) -> list of file paths."""
    found = {}
    for folder in sorted(os.listdir(src)):
        path = os.path.join(src, folder)
        if not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            if name.endswith((".c", ".h")):
                found.setdefault((folder, name[:-2]), []).append(
                    os.path.join(path, name))
    return found


def strongly_connected(graph):
    """Tarjan's algorithm; returns the components of more than one node
    (and self-loops)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "src")
    mods = modules(src)
    problems = []
    graph = {}
    for (folder, mod), paths in mods.items():
        if folder not in LAYERS:
            problems.append("src/%s/: folder not in the layer list of %s"
                            % (folder, os.path.basename(__file__)))
            continue
        me = "%s/%s" % (folder, mod)
        graph.setdefault(me, set())
        for path in paths:
            text = open(path, encoding="utf-8").read()
            rel = os.path.relpath(path, os.path.join(src, ".."))
            if folder != "store" and SQLITE_CALL.search(text):
                line = text[:SQLITE_CALL.search(text).start()].count("\n") + 1
                problems.append("%s:%d: sqlite3_ call outside src/store/"
                                % (rel, line))
            for inc in INCLUDE.findall(text):
                if "/" not in inc:
                    if (folder, inc[:-2]) in mods or any(
                            m == inc[:-2] for _, m in mods):
                        problems.append("%s: #include \"%s\" without its folder"
                                        % (rel, inc))
                    continue
                dep_folder, dep_file = inc.split("/", 1)
                dep = "%s/%s" % (dep_folder, dep_file[:-2])
                if dep_folder not in LAYERS:
                    continue
                if dep != me:
                    graph[me].add(dep)
                if LAYERS.index(dep_folder) < LAYERS.index(folder):
                    problems.append("%s: includes %s: %s/ is above %s/"
                                    % (rel, inc, dep_folder, folder))
    for comp in strongly_connected(graph):
        problems.append("include cycle between %d modules: %s"
                        % (len(comp), " ".join(comp)))
    for p in problems:
        print(p)
    edges = sum(len(v) for v in graph.values())
    print("check-layers: %d modules, %d include edges, %d problem(s)"
          % (len(graph), edges, len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
