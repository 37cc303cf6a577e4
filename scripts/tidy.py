#!/usr/bin/env python3
"""clang-tidy over the given sources, skipping those it already found clean with the same inputs.

A clean result is remembered under a key made of everything that can change it: clang-tidy's version, the
.clang-tidy file, the file's compile flags, and the name and contents of every file it includes (the compiler's
own dependency list, system headers too). Paths below the checkout are written relative to it, so a fresh clone in
another folder (CI's) reuses the results of this one. Only clean results are kept: a file with findings is checked
again every time, and its findings are printed.

usage: tidy.py BUILD_DIR SOURCE...
"""

import concurrent.futures
import hashlib
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "cohort-tidy")


def relative(text):
    return text.replace(ROOT, "<root>")


def dependencies(entry):
    """Every file the compiler reads for this source, from its -M output."""
    args = shlex.split(entry["command"])
    if "-o" in args:
        at = args.index("-o")
        del args[at : at + 2]
    result = subprocess.run(args + ["-M"], cwd=entry["directory"], capture_output=True, text=True, check=True)
    names = result.stdout.replace("\\\n", " ").split(":", 1)[1].split()
    return {os.path.realpath(os.path.join(entry["directory"], name)) for name in names}


def key(entry, common):
    digest = hashlib.sha256(common)
    digest.update(relative(entry["command"]).encode())
    # Sorted by the relative name: sorted by the absolute one, a checkout under /tmp would list its own headers
    # before /usr's and one under /work after them, and the two would never share a key.
    for path in sorted(dependencies(entry), key=relative):
        digest.update(relative(path).encode())
        with open(path, "rb") as file:
            digest.update(hashlib.sha256(file.read()).digest())
    return digest.hexdigest()


def check(build_dir, entry, common):
    """Returns the findings (empty when clean), using and filling the cache."""
    try:
        marker = os.path.join(CACHE, key(entry, common))
    except subprocess.CalledProcessError as error:
        return f"{entry['file']}: cannot list its dependencies:\n{error.stderr}"
    if os.path.exists(marker):
        return ""
    result = subprocess.run(
        ["clang-tidy", "-quiet", "-p", build_dir, entry["file"]], capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    findings = [line for line in output.splitlines() if "warning:" in line or "error:" in line]
    if result.returncode != 0 or findings:
        return "\n".join(findings) if findings else output
    open(marker, "w").close()
    return ""


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    build_dir = sys.argv[1]
    with open(os.path.join(build_dir, "compile_commands.json")) as file:
        entries = {os.path.realpath(entry["file"]): entry for entry in json.load(file)}
    version = subprocess.run(["clang-tidy", "--version"], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(ROOT, ".clang-tidy"), "rb") as file:
        common = version.encode() + file.read()
    os.makedirs(CACHE, exist_ok=True)

    sources = [os.path.realpath(source) for source in sys.argv[2:]]
    unknown = [source for source in sources if source not in entries]
    if unknown:
        print("tidy: not in compile_commands.json: " + " ".join(unknown), file=sys.stderr)
        return 1
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda source: (source, check(build_dir, entries[source], common)), sources)
        for source, findings in results:
            if findings:
                failed += 1
                print(findings, file=sys.stderr)
    if failed:
        print(f"tidy: {failed} of {len(sources)} files have findings", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
