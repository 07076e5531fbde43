#!/usr/bin/env python3
"""Compares the machine code of the shipped attention kernels between two cubins.

Usage: compare_kernels.py REFERENCE.cubin NEW.cubin

Each kernel's code is the `.text.<mangled name>` section of the cubin (an ELF file); the sections
are compared byte for byte, kernel by kernel, through the table below, which names each shipped
kernel in both builds (the reference is the tag attention-experiments-2026-12, whose kernels had
other names). Line information (-lineinfo) lives in other sections, so moving code between files
does not change `.text`. Prints one line per kernel and exits non-zero when any differs or is
missing. bench/attention/compare_kernels.sh builds both cubins and runs this.
"""
import hashlib
import re
import struct
import subprocess
import sys

# (name in the reference build, name in this build), as `function<template arguments>`.
SHIPPED = []
for d in (128, 64):
    for w in (4, 8, 16):
        SHIPPED.append((f"attention_box_window_kernel<{d}, {w}, 128, 3>",
                        f"box_tiles_kernel<{d}, {w}>"))
    SHIPPED.append((f"attention_tma_dense_kernel<{d}, true, false, 128, 3, 1>",
                    f"dense_tma_kernel<{d}>"))
    for window in ("true", "false"):
        SHIPPED.append((f"attention_ws_kernel<{d}, {window}, false, true, false, 128, 3, 1, false>",
                        f"row_runs_kernel<{d}, {window}>"))


def text_sections(path):
    """{mangled kernel name: bytes of its .text section} of an ELF64 cubin."""
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"{path}: not an ELF64 file (a cubin from nvcc -cubin)")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(shnum):
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data,
                                                                      shoff + i * shentsize)
        headers.append((name, offset, size))
    strtab_off, strtab_size = headers[shstrndx][1], headers[shstrndx][2]
    strtab = data[strtab_off:strtab_off + strtab_size]
    out = {}
    for name, offset, size in headers:
        sname = strtab[name:strtab.index(b"\0", name)].decode()
        if sname.startswith(".text."):
            out[sname[len(".text."):]] = data[offset:offset + size]
    return out


def short_name(mangled):
    """`function<template arguments>` of a demangled kernel name, namespaces dropped."""
    demangled = subprocess.run(["c++filt", mangled], capture_output=True, text=True,
                               check=True).stdout.strip()
    demangled = re.sub(r"^void ", "", demangled)
    demangled = demangled[:demangled.rfind("(")]  # drop the parameter list
    head, _, args = demangled.partition("<")
    return head.split("::")[-1] + ("<" + args if args else "")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ref = {short_name(k): v for k, v in text_sections(sys.argv[1]).items()}
    new = {short_name(k): v for k, v in text_sections(sys.argv[2]).items()}
    print(f"reference: {len(ref)} kernels, this build: {len(new)} kernels")
    bad = 0
    for old_name, new_name in SHIPPED:
        a, b = ref.get(old_name), new.get(new_name)
        if a is None or b is None:
            print(f"MISSING    {new_name} (reference {'ok' if a else 'missing'}, "
                  f"this build {'ok' if b else 'missing'})")
            bad += 1
            continue
        same = a == b
        bad += not same
        diff = "" if same else (f"  {sum(x != y for x, y in zip(a, b))} bytes differ"
                                if len(a) == len(b) else f"  sizes {len(a)} -> {len(b)}")
        print(f"{'IDENTICAL' if same else 'DIFFERENT'}  {new_name:34} {len(b):7} bytes  "
              f"sha256 {hashlib.sha256(b).hexdigest()[:16]}  (was {old_name}){diff}")
    others = sorted(set(new) - {n for _, n in SHIPPED})
    for name in others:
        print(f"NOT SHIPPED {name} (a kernel this build has beyond the table)")
    sys.exit(1 if bad or others else 0)


if __name__ == "__main__":
    main()
