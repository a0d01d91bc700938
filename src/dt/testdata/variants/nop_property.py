#!/usr/bin/env python3
"""nop_property.py IN OUT NAME: what libfdt's fdt_nop_property() does to the first
property called NAME (any node): its FDT_PROP header and value become FDT_NOP words."""
import struct
import sys

src, dst, name = sys.argv[1], sys.argv[2], sys.argv[3].encode()
blob = bytearray(open(src, "rb").read())
word = lambda at: struct.unpack_from(">I", blob, at)[0]
off_struct, off_strings = word(8), word(12)
pos = off_struct
while True:
    token = word(pos)
    if token == 1:  # FDT_BEGIN_NODE
        end = blob.index(0, pos + 4)
        pos = (end + 1 + 3) & ~3
    elif token == 3:  # FDT_PROP
        length, name_off = word(pos + 4), word(pos + 8)
        end = (pos + 12 + length + 3) & ~3
        at = off_strings + name_off
        if blob[at:blob.index(0, at)] == name:
            for w in range(pos, end, 4):
                struct.pack_into(">I", blob, w, 4)  # FDT_NOP
            open(dst, "wb").write(blob)
            sys.exit(0)
        pos = end
    elif token == 9:  # FDT_END
        sys.exit(f"no property {name.decode()}")
    else:
        pos += 4
