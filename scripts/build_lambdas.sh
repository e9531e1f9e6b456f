#!/usr/bin/env bash
# Builds every Lambda the way `cargo lambda build --release` lays them out, and reports the
# zipped sizes: target/lambda/<bin>/bootstrap (+ bootstrap.zip).
#   - with cargo-lambda installed: `cargo lambda build --release` (zig links against the glibc of
#     provided.al2023; what .gitlab-ci.yml's build job runs);
#   - without it (this machine, no zig): the documented equivalent, a native release build copied
#     into the same layout. It is deployable on provided.al2023 only if no binary needs a glibc
#     newer than Amazon Linux 2023's 2.34: checked below, and the script fails if one does.
set -euo pipefail
cd "$(dirname "$0")/.."
bins=(ingestion-router semi-structured-workflow pii-matching workspace-reaper guard review-web)
target_dir=${CARGO_TARGET_DIR:-target}
args=(); for b in "${bins[@]}"; do args+=(-p "$b"); done
if command -v cargo-lambda >/dev/null 2>&1; then
  # the Lambda packages only: a workspace-wide build would also compile the `lake` CLI (polars)
  cargo lambda build --release "${args[@]}"
else
  echo "cargo-lambda not found: native release build (sizes only; see the comment above)" >&2
  cargo build --release "${args[@]}"
  for b in "${bins[@]}"; do
    mkdir -p "$target_dir/lambda/$b"
    cp "$target_dir/release/$b" "$target_dir/lambda/$b/bootstrap"
  done
fi
if command -v objdump >/dev/null 2>&1; then
  for b in "${bins[@]}"; do
    need=$(objdump -T "$target_dir/lambda/$b/bootstrap" | grep -oE 'GLIBC_[0-9.]+' | sort -V | uniq | tail -1)
    if [ "$(printf '%s\nGLIBC_2.34\n' "$need" | sort -V | tail -1)" != "GLIBC_2.34" ]; then
      echo "$b needs $need, newer than provided.al2023's glibc 2.34: build with cargo-lambda (zig)" >&2
      exit 1
    fi
  done
  echo "every bootstrap needs at most GLIBC_2.34 (provided.al2023 has 2.34)"
fi
printf '%-28s %12s %12s\n' function binary zipped
for b in "${bins[@]}"; do
  d="$target_dir/lambda/$b"
  (cd "$d" && rm -f bootstrap.zip && python3 -c "import zipfile; z=zipfile.ZipFile('bootstrap.zip','w',zipfile.ZIP_DEFLATED,compresslevel=9); z.write('bootstrap'); z.close()")
  printf '%-28s %10.1f MB %10.1f MB\n' "$b" "$(echo "$(stat -c %s "$d/bootstrap") / 1000000" | bc -l)" "$(echo "$(stat -c %s "$d/bootstrap.zip") / 1000000" | bc -l)"
done
