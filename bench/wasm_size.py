#!/usr/bin/env python3
"""Browser build size: the same minimal client page (open ws://..., send one text, log what
arrives) with unisock and with each browser WebSocket crate, built alike and measured.

Each app in bench/wasm-size/<crate>/ is its own workspace with its own lock file and the
same release profile (opt-level "s", LTO, one codegen unit, panic = "abort"). The script
builds each for wasm32-unknown-unknown, binds it with the wasm-bindgen CLI the repository
pins (`--target web`), and measures the `_bg.wasm` a page would load: raw, gzip -9, and
its code and data sections; then the same after `wasm-opt -Oz`, with binaryen 132 or later
(package.json's, which `npm ci` installs, or the system's; Debian 12's 108 breaks
wasm-bindgen's output; without one those columns say so).

    python3 bench/wasm_size.py                 # print the markdown section
    python3 bench/wasm_size.py --write BENCHMARKS.md
                                               # replace (or append) the section there
"""

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "bench" / "wasm-size"
# unisock first, then the peers.
CRATES = ["unisock", "gloo-net", "ws_stream_wasm", "ewebsock"]
TARGET = "wasm32-unknown-unknown"
HEADING = "## Browser build size: a minimal client page"
# wasm-bindgen's output relies on these (Rust's wasm32 defaults); binaryen must accept them.
WASM_OPT_FEATURES = [
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
]


def run(cmd, cwd=None, env=None):
    result = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(map(str, cmd))}")
    return result.stdout


def locked_version(lock: Path, name: str):
    m = re.search(rf'name = "{re.escape(name)}"\nversion = "([^"]+)"', lock.read_text())
    return m.group(1) if m else None


def leb128(data: bytes, pos: int):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def sections(wasm: bytes):
    """Section sizes by kind: code (10), data (11), custom sections by name, the rest."""
    if wasm[:4] != b"\0asm":
        raise ValueError("not a wasm module")
    sizes = {}
    pos = 8
    while pos < len(wasm):
        kind = wasm[pos]
        size, body = leb128(wasm, pos + 1)
        if kind == 0:
            name_len, name_at = leb128(wasm, body)
            name = "custom:" + wasm[name_at : name_at + name_len].decode("utf-8", "replace")
        else:
            name = {10: "code", 11: "data"}.get(kind, "other")
        sizes[name] = sizes.get(name, 0) + size
        pos = body + size
    return sizes


def measure(path: Path):
    wasm = path.read_bytes()
    s = sections(wasm)
    return {
        "raw": len(wasm),
        # The gzip command line, as a server configured for -9 would send it.
        "gzip": len(run_bytes(["gzip", "-9", "-c", str(path)])),
        "code": s.get("code", 0),
        "data": s.get("data", 0),
    }


def run_bytes(cmd):
    return subprocess.run(cmd, check=True, capture_output=True).stdout


def find_wasm_opt():
    """binaryen's wasm-opt, 132 or later (as build.sh's page_wasm_opt), or None."""
    for opt in [ROOT / "node_modules" / ".bin" / "wasm-opt", shutil.which("wasm-opt")]:
        if not opt or not Path(opt).exists():
            continue
        version = run([str(opt), "--version"]).split()
        if len(version) > 2 and version[2].isdigit() and int(version[2]) >= 132:
            return str(opt), int(version[2])
    return None


def build(crate: str, bindgen_version: str, target_dir: Path, out: Path, wasm_opt):
    app = APPS / crate
    lock = app / "Cargo.lock"
    # The app's wasm-bindgen must be the CLI's: follow the repository's pin.
    if lock.exists() and locked_version(lock, "wasm-bindgen") != bindgen_version:
        run(["cargo", "update", "-p", "wasm-bindgen", "--precise", bindgen_version], cwd=app)
    env = dict(os.environ, CARGO_TARGET_DIR=str(target_dir))
    run(["cargo", "build", "--release", "--target", TARGET], cwd=app, env=env)
    lib = "size_" + crate.replace("-", "_")
    wasm = target_dir / TARGET / "release" / f"{lib}.wasm"
    bound = out / crate
    run(["wasm-bindgen", "--target", "web", "--no-typescript", "--out-dir", str(bound), str(wasm)])
    bg = bound / f"{lib}_bg.wasm"
    result = {"crate": crate, "version": crate_version(app, crate), "bindgen": measure(bg)}
    if wasm_opt:
        opt = bound / f"{lib}_bg.opt.wasm"
        run([wasm_opt[0], "-Oz", *WASM_OPT_FEATURES, "-o", str(opt), str(bg)])
        result["opt"] = measure(opt)
    return result


def crate_version(app: Path, crate: str):
    if crate == "unisock":
        version = locked_version(ROOT / "Cargo.lock", "unisock") or "?"
        commit = git("rev-parse", "--short", "HEAD")
        if git("status", "--porcelain", "--", "src", "Cargo.toml"):
            commit += ", modified"
        return f"{version} ({commit})" if commit else version
    return locked_version(app / "Cargo.lock", crate) or "?"


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, text=True, capture_output=True).stdout.strip()


def kb(n):
    return f"{n:,}"


def table(results, wasm_opt):
    base = next((r for r in results if r["crate"] == "unisock"), results[0])
    lines = [
        HEADING,
        "",
        "From `bench/wasm_size.py` (bench/wasm-size/: the same page with each crate, in its own "
        "API: open a `ws://` URL given by the page, send one text message, log the text "
        "messages that arrive). Release, `opt-level = \"s\"`, LTO, one codegen unit, "
        f"`panic = \"abort\"`; bound by wasm-bindgen {wasm_bindgen_cli()} (`--target web`). "
        "Sizes of the `_bg.wasm` a page loads, in bytes: raw and `gzip -9`, and its code and "
        "data sections (the rest: imports, exports, function names). Lower is better; "
        "a peer's gzip column gives its ratio to unisock (above 1: bigger than unisock). "
        + (
            f"Then the same after binaryen {wasm_opt[1]}'s `wasm-opt -Oz`, as `./build.sh` "
            "builds the chat page (which also strips the function names)."
            if wasm_opt
            else ""
        ),
        "",
        "| Crate | raw | gzip -9 | code | data | after `wasm-opt -Oz`: raw | gzip -9 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        b = r["bindgen"]
        ratio = "" if r is base else f" ({b['gzip'] / base['bindgen']['gzip']:.2f}x)"
        if "opt" in r:
            o = r["opt"]
            oratio = "" if r is base else f" ({o['gzip'] / base['opt']['gzip']:.2f}x)"
            opt_cells = f"{kb(o['raw'])} | {kb(o['gzip'])}{oratio}"
        else:
            opt_cells = "no wasm-opt | no wasm-opt"
        lines.append(
            f"| {r['crate']} {r['version']} | {kb(b['raw'])} | {kb(b['gzip'])}{ratio} | "
            f"{kb(b['code'])} | {kb(b['data'])} | {opt_cells} |"
        )
    if not wasm_opt:
        lines += ["", "No binaryen `wasm-opt` 132 or later was found: `npm ci` installs one."]
    lines += [
        "",
        "What is left in unisock's build, and why it stays: bench/NOTES.md, "
        "\"Browser build size\".",
    ]
    return "\n".join(lines) + "\n"


def wasm_bindgen_cli():
    if not shutil.which("wasm-bindgen"):
        raise SystemExit("wasm-bindgen is not installed: ./build.sh setup")
    return run(["wasm-bindgen", "--version"]).split()[-1]


def write_section(path: Path, section: str):
    """Replaces the section (up to the next `## ` heading) or appends it."""
    text = path.read_text() if path.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(HEADING))
        rest = "" if end < 0 else text[end:]
        text = text[:start] + section + rest
    path.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, help="replace or append the section in this file")
    parser.add_argument("--only", help="comma-separated crates (default: all)")
    args = parser.parse_args()
    bindgen = locked_version(ROOT / "Cargo.lock", "wasm-bindgen")
    cli = wasm_bindgen_cli()
    if cli != bindgen:
        raise SystemExit(f"wasm-bindgen CLI {cli} != the repository's {bindgen}: ./build.sh setup")
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "wasm-size"
    out = target_dir / "pkg"
    crates = args.only.split(",") if args.only else CRATES
    wasm_opt = find_wasm_opt()
    results = []
    for crate in crates:
        print(f"building {crate}", file=sys.stderr)
        results.append(build(crate, bindgen, target_dir, out, wasm_opt))
    section = table(results, wasm_opt)
    print(section)
    if args.write:
        write_section(args.write, section)


if __name__ == "__main__":
    main()
