#!/usr/bin/env python3
"""usage: qemu_cmds.py compile BUILD OBJECT SOURCE OUT [EXTRA_FLAG ...]
       qemu_cmds.py link BUILD OUT [--replace OLD=NEW[,NEW...]] [--group-first LIB]
                    [--trace SYMBOL] [-- EXTRA_LINK_ARG ...]

Prints a command derived from QEMU's own build (run it in BUILD, the meson build directory):
 * compile: the compile command meson uses for OBJECT (from compile_commands.json), with
   SOURCE compiled into OUT instead and EXTRA_FLAGs appended (dependency-file flags dropped);
 * link: ninja's link command for qemu-system-x86_64, writing OUT, with each object OLD
   (which must appear exactly once) replaced by the NEW objects, LIB placed first in the
   link group (so that it resolves symbols before QEMU's archives do), `-Wl,--trace-symbol`
   for every SYMBOL, and the extra arguments appended."""
import json
import shlex
import subprocess
import sys


def compile_cmd(build, obj, source, out, extra):
    with open(f"{build}/compile_commands.json") as f:
        entry = next(e for e in json.load(f) if e["output"] == obj)
    args, drop_next = [], False
    for a in shlex.split(entry["command"]):
        if drop_next:
            drop_next = False
        elif a in ("-MQ", "-MF", "-o", "-c"):
            drop_next = True
        elif a != "-MD":
            args.append(a)
    return args + extra + ["-c", source, "-o", out]


def link_cmd(build, out, replace, group_first, traced, extra):
    commands = subprocess.run(["ninja", "-C", build, "-t", "commands", "qemu-system-x86_64"],
                              check=True, capture_output=True, text=True).stdout.splitlines()
    args = shlex.split(commands[-1])
    if "-Wl,--start-group" not in args or args[args.index("-o") + 1] != "qemu-system-x86_64":
        sys.exit(f"unexpected link command: {commands[-1][:200]}")
    for old, new in replace:
        if args.count(old) != 1:
            sys.exit(f"{old} is not linked exactly once")
        i = args.index(old)
        args[i:i + 1] = new
    args[args.index("-o") + 1] = out
    if group_first:
        args.insert(args.index("-Wl,--start-group") + 1, group_first)
    return args + extra + ["-Wl,--trace-symbol=" + s for s in traced]


def main(argv):
    if len(argv) >= 5 and argv[0] == "compile":
        print(shlex.join(compile_cmd(*argv[1:5], argv[5:])))
        return
    if len(argv) < 3 or argv[0] != "link":
        sys.exit(__doc__)
    build, out, rest = argv[1], argv[2], argv[3:]
    replace, group_first, traced, extra = [], None, [], []
    while rest:
        opt = rest.pop(0)
        if opt == "--":
            extra, rest = rest, []
        elif opt == "--replace":
            old, new = rest.pop(0).split("=", 1)
            replace.append((old, new.split(",")))
        elif opt == "--group-first":
            group_first = rest.pop(0)
        elif opt == "--trace":
            traced.append(rest.pop(0))
        else:
            sys.exit(f"unknown option {opt}\n{__doc__}")
    print(shlex.join(link_cmd(build, out, replace, group_first, traced, extra)))


if __name__ == "__main__":
    main(sys.argv[1:])
