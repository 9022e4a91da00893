"""Content identity of a local dataset folder: hashing every file cold vs with the digest cache warm.

    .venv/bin/python bench/content_hash.py [--files 2000] [--size 110000] [--folders 10]

Writes ``--files`` synthetic files of ``--size`` random bytes (about an ImageNet JPEG each) into
``--folders`` class folders of a temporary directory and times
:func:`harness.contenthash.content_fingerprint` three ways: cold without a cache (every byte read
and hashed, as with ``--no-cache``), cold filling the digest cache, and warm (one ``stat`` per
file and one sqlite query). The files are fresh, so the "racy" guard (files changed in the last
seconds are not remembered) is switched off here. The OS page cache stays warm throughout, so "cold"
measures hashing, not the disk. 50,000 images: multiply the per-file times.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=110_000, help="bytes per file")
    parser.add_argument("--folders", type=int, default=10)
    args = parser.parse_args()

    from harness import contenthash

    contenthash.RACY_NS = 0
    with tempfile.TemporaryDirectory(prefix="harness-bench-hash-") as tmp:
        data, cache = Path(tmp) / "data", Path(tmp) / "cache"
        for i in range(args.files):
            folder = data / f"class{i % args.folders:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}.jpg").write_bytes(os.urandom(args.size))

        def timed(cache_root: Path | None) -> tuple[float, str]:
            start = time.perf_counter()
            fingerprint = contenthash.content_fingerprint(data, "imagefolder", cache_root)
            return time.perf_counter() - start, fingerprint

        none_s, a = timed(None)
        fill_s, b = timed(cache)
        warm_s, c = timed(cache)
        assert a == b == c
        mb = args.files * args.size / 2**20
        print(f"{args.files} files, {mb:.0f} MiB, {contenthash.HASH_THREADS} hashing threads, {os.cpu_count()} CPUs")
        print(f"cold, no cache:      {none_s:8.3f} s  ({mb / none_s:7.0f} MiB/s, "
              f"{1e6 * none_s / args.files:7.1f} us/file)")
        print(f"cold, filling cache: {fill_s:8.3f} s  ({1e6 * fill_s / args.files:7.1f} us/file)")
        print(f"warm cache:          {warm_s:8.3f} s  ({1e6 * warm_s / args.files:7.1f} us/file; "
              f"{none_s / warm_s:.0f}x faster than cold)")
        print(f"50,000 files: cold ~{50_000 * none_s / args.files:.1f} s, warm ~{50_000 * warm_s / args.files:.1f} s")


if __name__ == "__main__":
    main()
