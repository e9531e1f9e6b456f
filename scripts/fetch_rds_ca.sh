#!/usr/bin/env bash
# Fetch the GovCloud RDS CA bundle into the packages of the functions that log in to Aurora
# (pii-matching, db-migrate, review-web) and verify it against the SHA-256
# pinned in config/rds-ca-bundle.sha256; any other content (or no pin) fails the build.
#   bash scripts/fetch_rds_ca.sh                 -> target/lambda/{pii-matching,db-migrate,review-web}/rds-ca/global-bundle.pem
#   bash scripts/fetch_rds_ca.sh --print-digest  -> prints the fetched bundle's digest and subjects (to pin)
set -euo pipefail
cd "$(dirname "$0")/.."
url=https://truststore.pki.us-gov-west-1.rds.amazonaws.com/global/global-bundle.pem
pin_file=config/rds-ca-bundle.sha256
packages=(pii-matching db-migrate review-web)
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
curl -fsSL --proto '=https' --tlsv1.2 "$url" -o "$tmp"
grep -q 'BEGIN CERTIFICATE' "$tmp" || { echo "fetch_rds_ca: $url holds no PEM certificate" >&2; exit 1; }
got=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "${1:-}" = "--print-digest" ]; then
  echo "$got"
  if command -v openssl >/dev/null; then openssl storeutl -noout -text -certs "$tmp" | grep 'Subject:'; fi
  exit 0
fi
want=$(grep -v '^#' "$pin_file" | tr -d '[:space:]')
if ! [[ "$want" =~ ^[0-9a-f]{64}$ ]]; then
  echo "fetch_rds_ca: $pin_file holds no SHA-256 pin yet (see its header); refusing an unverified CA bundle" >&2
  exit 1
fi
if [ "$got" != "$want" ]; then
  echo "fetch_rds_ca: bundle digest $got != pinned $want; refusing it (re-pin after review, see $pin_file)" >&2
  exit 1
fi
for p in "${packages[@]}"; do
  mkdir -p "target/lambda/$p/rds-ca"
  cp "$tmp" "target/lambda/$p/rds-ca/global-bundle.pem"
  echo "fetch_rds_ca: target/lambda/$p/rds-ca/global-bundle.pem verified ($got)"
done
