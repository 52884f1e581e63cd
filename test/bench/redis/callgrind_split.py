#!/usr/bin/env python3
"""callgrind_split.py: Ir per request of a server profile, split by ELF object
and between the library and the program's own code (get_instructions.sh).

  callgrind_split.py --program PATH --base FILE N_BASE --run FILE N_RUN [--top K]

FILE are callgrind profiles (--dump-instr=no) of two runs of the same server
that differ only in the number of requests: N_BASE and N_RUN. Every figure is
(run - base) / (N_RUN - N_BASE), so what both runs pay alike (start-up, the
dynamic linker, connecting the clients, the clean stop) drops out.

Each function is one of three kinds:
  lib      the library: every function in libfiberloop*.so and
           libboost_context*.so, and the library's templates instantiated in
           the program (a function of PATH whose name is fiberloop::...);
  program  the program's own functions (the rest of PATH);
  shared   libc, libstdc++, ld.so and any other object: called on behalf of
           one or the other.
A shared function's own Ir is split between lib and program in proportion to
the inclusive Ir of the calls each makes into it, directly or through other
shared functions (malloc called by operator new called by the library counts
for the library). Shared code that neither calls (start-up) is "other".
Inclusive costs are only used on calls into shared code: calls into the
library may switch fibers, which callgrind's call stacks do not follow, but
calls into libc and libstdc++ here never do.
"""
import argparse
import collections
import os
import re
import sys

LIB_OBJECTS = re.compile(r"^lib(fiberloop|boost_context)[^/]*\.so")
# "fiberloop::x", or "void fiberloop::x" (a return type first), but not
# "bool (anonymous namespace)::next_line<fiberloop::net::StreamReader>(...)".
LIB_NAME = re.compile(r"^(?:[\w:]+(?:<[^()]*>)?[\s*&]+)?fiberloop::")
PLT_STUB = re.compile(r"^0x[0-9a-f]+$")


def parse(path):
    """Returns (self costs {(ob, fn): Ir}, calls {(caller, callee): [count, Ir]})."""
    names = {"ob": {}, "fn": {}}
    selfc = collections.Counter()
    calls = collections.defaultdict(lambda: [0, 0])

    def name(space, value):
        m = re.match(r"^\((\d+)\)(?: (.*))?$", value)
        if not m:
            return value
        if m.group(2) is not None:
            names[space][m.group(1)] = m.group(2)
        return names[space].get(m.group(1), value)

    ob = fn = cob = None
    pending_call = None  # (callee, count) awaiting its cost line
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_call:
                    callee, count = pending_call
                    entry = calls[((ob, fn), callee)]
                    entry[0] += count
                    entry[1] += cost
                    pending_call = None
                    cob = None
                else:
                    selfc[(ob, fn)] += cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = os.path.basename(name("ob", value))
            elif key == "cob":
                cob = os.path.basename(name("ob", value))
            elif key == "fn":
                fn = strip_rec(name("fn", value))
            elif key == "cfn":
                cfn = strip_rec(name("fn", value))
            elif key == "calls":
                pending_call = ((cob or ob, cfn), int(value.split()[0]))
    return selfc, calls


def strip_rec(fn):
    return re.sub(r"'\d+$", "", fn)  # callgrind's recursion-depth suffix


def short_object(ob, program):
    if ob == program:
        return ob + " (the sample)"
    return re.sub(r"\.so(\.\d+)+$", ".so", ob)


def analyse(path, program):
    """Returns Counters keyed by (kind, object, function): the Ir of each
    function, split by whom it ran for; and the call counts of each callee,
    keyed the same way by the caller's kind."""
    selfc, calls = parse(path)
    nodes = set(selfc) | {n for pair in calls for n in pair}

    kind = {}
    for n in nodes:
        ob, fn = n
        if LIB_OBJECTS.match(ob):
            kind[n] = "lib"
        elif ob == program:
            kind[n] = "lib" if LIB_NAME.match(fn) else "program"
        else:
            kind[n] = "shared"
    # A PLT stub of the program that jumps into the library is the library's.
    for (caller, callee), _ in calls.items():
        if caller[0] == program and PLT_STUB.match(caller[1]) and kind[callee] == "lib":
            kind[caller] = "lib"

    # inflow[g][k]: inclusive Ir entering shared function g on behalf of k.
    # Iterated to a fixed point: shared code calls shared code (a few levels).
    into = collections.defaultdict(list)
    for (caller, callee), (_, ir) in calls.items():
        if kind[callee] == "shared" and caller != callee:
            into[callee].append((caller, ir))
    frac = {}
    for _ in range(30):
        new = {}
        for g, edges in into.items():
            flow = collections.Counter()
            for caller, ir in edges:
                if kind[caller] != "shared":
                    flow[kind[caller]] += ir
                else:
                    for k, share in frac.get(caller, {}).items():
                        flow[k] += ir * share
            total = sum(flow.values())
            new[g] = {k: v / total for k, v in flow.items()} if total > 0 else {}
        if new == frac:
            break
        frac = new

    ir = collections.Counter()
    for n, cost in selfc.items():
        if kind[n] != "shared":
            ir[(kind[n], n[0], n[1])] += cost
            continue
        shares = frac.get(n) or {"other": 1.0}
        for k, share in shares.items():
            ir[(k, n[0], n[1])] += cost * share
    ncalls = collections.Counter()
    for (caller, callee), (count, _) in calls.items():
        k = kind[caller]
        if k == "shared":
            k = max((frac.get(caller) or {"other": 1}).items(), key=lambda kv: kv[1])[0]
        ncalls[(k, callee[0], callee[1])] += count
    return ir, ncalls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--program", required=True)
    ap.add_argument("--base", nargs=2, required=True, metavar=("FILE", "N"))
    ap.add_argument("--run", nargs=2, required=True, metavar=("FILE", "N"))
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    program = os.path.basename(args.program)
    n = int(args.run[1]) - int(args.base[1])
    if n <= 0:
        sys.exit("callgrind_split: the run must have more requests than the base")
    ir1, calls1 = analyse(args.base[0], program)
    ir2, calls2 = analyse(args.run[0], program)
    ir = {k: (ir2.get(k, 0) - ir1.get(k, 0)) / n for k in set(ir1) | set(ir2)}
    calls = {k: (calls2.get(k, 0) - calls1.get(k, 0)) / n for k in set(calls1) | set(calls2)}

    total = sum(ir.values())
    by_kind = collections.Counter()
    by_object = collections.defaultdict(collections.Counter)
    for (k, ob, _), v in ir.items():
        by_kind[k] += v
        by_object[short_object(ob, program)][k] += v
    print(f"  user-space Ir per request: {total:,.0f}")
    print(f"  fiberloop's share:         {by_kind['lib']:,.0f} ({100 * by_kind['lib'] / total:.0f}%)")
    print(f"  the sample's own:          {by_kind['program']:,.0f}"
          + (f"   (other, unattributed: {by_kind['other']:,.0f})" if abs(by_kind["other"]) >= 0.5 else ""))
    print()
    print(f"  {'ELF object':<34} {'Ir/request':>10} {'fiberloop':>10} {'sample':>10}")
    for ob, ks in sorted(by_object.items(), key=lambda kv: -sum(kv[1].values())):
        if abs(sum(ks.values())) < 0.5:
            continue
        print(f"  {ob:<34} {sum(ks.values()):>10,.0f} {ks['lib']:>10,.0f} {ks['program']:>10,.0f}")
    print(f"  {'total':<34} {total:>10,.0f} {by_kind['lib']:>10,.0f} {by_kind['program']:>10,.0f}")

    def shorten(fn):
        fn = re.sub(r"std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >",
                    "std::string", fn)
        fn = re.sub(r"std::basic_string_view<char, std::char_traits<char> >", "std::string_view", fn)
        fn = fn.replace("[abi:cxx11]", "").replace("fiberloop::", "")
        return fn if len(fn) <= 90 else fn[:87] + "..."

    for k, title in (("lib", "fiberloop's side"), ("program", "the sample's side")):
        print()
        print(f"  top functions, {title}: Ir per request (of shared code, the part run for that side)")
        rows = sorted(((v, ob, fn) for (kk, ob, fn), v in ir.items() if kk == k), reverse=True)
        for v, ob, fn in rows[: args.top]:
            if v < 0.5:
                break
            print(f"  {v:>8,.0f}  {shorten(fn)}  [{short_object(ob, program)}]")

    print()
    print("  calls per request, by the kind of caller (fiberloop / sample):")
    watch = ["malloc", "free", "operator new(unsigned long)", "operator delete(void*, unsigned long)",
             "__memcpy_avx_unaligned_erms", "recv", "send", "sendto", "recvfrom", "epoll_wait",
             "epoll_pwait", "jump_fcontext"]
    for fn in watch:
        lib = sum(v for (k, _, f), v in calls.items() if f == fn and k == "lib")
        prog = sum(v for (k, _, f), v in calls.items() if f == fn and k == "program")
        if lib >= 0.005 or prog >= 0.005:
            print(f"  {fn:<40} {lib:>7.2f} {prog:>7.2f}")


if __name__ == "__main__":
    main()
