#!/usr/bin/env python3
"""Fails when a crate declares a dependency its code never names (run by .ci/run).

For each workspace member, every key of [dependencies] must appear as a path (`name::`,
`use name`, `name!`, `extern crate name`, `#[name::...]`) in the crate's shipped code (src/,
examples/, benches/): a dependency only tests use belongs in [dev-dependencies], whose keys must
appear in some target. A dependency needed for its features or links alone (no Rust path names
it) is listed in `ALLOWED` with its reason.
"""
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (crate, dependency) -> why it is declared although no path names it
ALLOWED: dict[tuple[str, str], str] = {}


def members() -> list[pathlib.Path]:
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
    out = []
    for m in ws:
        out += [p for p in ROOT.glob(m) if (p / "Cargo.toml").is_file()]
    return sorted(out)


def sources(crate: pathlib.Path, kinds: tuple[str, ...]) -> str:
    text = []
    for sub in kinds:
        d = crate / sub
        if d.is_dir():
            text += [p.read_text(errors="replace") for p in d.rglob("*.rs")]
    for p in crate.glob("*.rs"):  # crates whose targets sit at the top (tests/lib.rs)
        text.append(p.read_text(errors="replace"))
    return "\n".join(text)


def used(name: str, text: str) -> bool:
    ident = re.escape(name.replace("-", "_"))
    # `name::`, `use name`, `name!`, `extern crate name`, `#[name`, or a macro given the crate as
    # its first argument (`resolve!(aws_sdk_sns)`, which then writes `aws_sdk_sns::...` itself)
    pattern = rf"(\b{ident}::|\buse {ident}\b|\b{ident}!|extern crate {ident}\b|#\[{ident}\b|!\(\s*{ident}\b)"
    return re.search(pattern, text) is not None


def main() -> int:
    bad = []
    for crate in members():
        manifest = tomllib.loads((crate / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        shipped = sources(crate, ("src", "examples", "benches"))
        every = shipped + sources(crate, ("tests",))
        for table, text in (("dependencies", shipped), ("dev-dependencies", every), ("build-dependencies", every)):
            for dep, spec in manifest.get(table, {}).items():
                real = spec.get("package", dep) if isinstance(spec, dict) else dep
                if (name, dep) in ALLOWED or used(real, text):
                    continue
                bad.append(f"{crate.relative_to(ROOT)}/Cargo.toml [{table}] {dep}: no code of the crate names it")
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print(f"{len(bad)} unused dependenc{'y' if len(bad) == 1 else 'ies'}: remove them (or list them in "
              "scripts/check_unused_deps.py ALLOWED with the reason)", file=sys.stderr)
        return 1
    print(f"unused dependencies: none in {len(members())} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
