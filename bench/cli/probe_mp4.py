#!/usr/bin/env python3
"""probe_mp4.py FILE: width, height and frame count of the first video track of an mp4, read from
its boxes (tkhd, the avc1/hvc1 sample entry, stsz) with nothing but the standard library: a check
of what `freeswim generate` wrote that does not go through FFmpeg, for machines without ffprobe.

Prints `mp4: WxH, N frames, codec C, D s` and exits 0, or names what is missing and exits 1.
"""

import struct
import sys

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}


def boxes(data, start, end):
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    p = start
    while p + 8 <= end:
        size, kind = struct.unpack(">I4s", data[p:p + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[p + 8:p + 16])[0]
            header = 16
        elif size == 0:
            size = end - p
        if size < header or p + size > end:
            raise ValueError("malformed box '%s' at byte %d" % (kind.decode("latin-1"), p))
        yield kind, p + header, p + size
        p += size


def probe(path):
    with open(path, "rb") as f:
        data = f.read()
    top = {k: (b, e) for k, b, e in boxes(data, 0, len(data))}
    if b"moov" not in top:
        raise ValueError("no moov box")
    for kind, b, e in boxes(data, *top[b"moov"]):
        if kind != b"trak":
            continue
        info = {}

        def walk(b, e):
            for k, pb, pe in boxes(data, b, e):
                if k in CONTAINERS:
                    walk(pb, pe)
                elif k == b"hdlr":
                    info["handler"] = data[pb + 8:pb + 12]
                elif k == b"mdhd":
                    v = data[pb]
                    scale, dur = (struct.unpack(">IQ", data[pb + 20:pb + 32]) if v == 1 else
                                  struct.unpack(">II", data[pb + 12:pb + 20]))
                    info["seconds"] = dur / scale if scale else 0.0
                elif k == b"stsd":
                    entry = pb + 8  # version/flags, entry count
                    info["codec"] = data[entry + 4:entry + 8].decode("latin-1")
                    # VisualSampleEntry: 8 header, 6 reserved, 2 index, 16 pre-defined, then w, h.
                    info["entry_wh"] = struct.unpack(">HH", data[entry + 32:entry + 36])
                elif k == b"stsz":
                    size, count = struct.unpack(">II", data[pb + 4:pb + 12])
                    info["frames"] = count
                elif k == b"tkhd":
                    v = data[pb]
                    off = pb + (88 if v == 1 else 76)
                    w, h = struct.unpack(">II", data[off:off + 8])
                    info["track_wh"] = (w >> 16, h >> 16)

        walk(b, e)
        if info.get("handler") != b"vide":
            continue
        missing = [k for k in ("track_wh", "entry_wh", "frames", "codec") if k not in info]
        if missing:
            raise ValueError("video track without %s" % ", ".join(missing))
        return info
    raise ValueError("no video track")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    try:
        info = probe(sys.argv[1])
    except (OSError, ValueError, struct.error) as e:
        print("mp4: %s: %s" % (sys.argv[1], e))
        return 1
    w, h = info["track_wh"]
    print("mp4: %dx%d, %d frames, codec %s, %.2f s (sample entry %dx%d)"
          % (w, h, info["frames"], info["codec"], info.get("seconds", 0.0), *info["entry_wh"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
