#!/usr/bin/env bash
# Fetch the GovCloud RDS CA bundle into the packages of the functions that log in to Aurora
# (pii-matching, db-migrate, review-web) and verify it against the SHA-256
# pinned in config/rds-ca-bundle.sha256; any other content (or no pin) fails the build.
#   bash scripts/fetch_rds_ca.sh                 -> target/lambda/{pii-matching,db-migrate,review-web}/rds-ca/global-bundle.pem
#   bash scripts/fetch_rds_ca.sh --print-digest  -> prints the fetched bundle's digest and certificates
#   bash scripts/fetch_rds_ca.sh --pin           -> checks the bundle (only Amazon RDS CA certificates,
#                                                   no private key) and writes its digest into the pin
#                                                   file: review the listed certificates, then commit
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

# Every certificate's subject and expiry (openssl), one line each.
certificates() {
  local dir
  dir=$(mktemp -d)
  awk -v d="$dir" '/-----BEGIN CERTIFICATE-----/ { n++ } n > 0 { print > sprintf("%s/%03d.pem", d, n) }' "$tmp"
  for c in "$dir"/*.pem; do
    printf '%s | %s\n' "$(openssl x509 -in "$c" -noout -subject -nameopt RFC2253)" "$(openssl x509 -in "$c" -noout -enddate)"
  done
  rm -rf "$dir"
}

case "${1:-}" in
  --print-digest)
    echo "$got"
    if command -v openssl >/dev/null; then certificates; fi
    exit 0
    ;;
  --pin)
    command -v openssl >/dev/null || { echo "fetch_rds_ca: --pin needs openssl to list the certificates" >&2; exit 1; }
    if grep -q 'PRIVATE KEY' "$tmp"; then echo "fetch_rds_ca: the bundle holds a private key; refusing it" >&2; exit 1; fi
    list=$(certificates)
    if grep -v 'O=Amazon Web Services\\, Inc\.' <<<"$list" | grep -q .; then
      echo "fetch_rds_ca: certificates not issued to Amazon Web Services, Inc.; refusing:" >&2
      grep -v 'O=Amazon Web Services\\, Inc\.' <<<"$list" >&2
      exit 1
    fi
    echo "$list"
    sed -i -E "s/^(UNPINNED|[0-9a-f]{64})$/$got/" "$pin_file"
    grep -qx "$got" "$pin_file" || { echo "fetch_rds_ca: $pin_file has no pin line to replace" >&2; exit 1; }
    echo "fetch_rds_ca: pinned $got in $pin_file ($(grep -c . <<<"$list") certificates above): compare them with the RDS user guide, then commit"
    exit 0
    ;;
esac

want=$(grep -v '^#' "$pin_file" | tr -d '[:space:]')
if ! [[ "$want" =~ ^[0-9a-f]{64}$ ]]; then
  echo "fetch_rds_ca: $pin_file holds no SHA-256 pin yet; refusing an unverified CA bundle." >&2
  echo "  To pin, on a machine that reaches $url: bash scripts/fetch_rds_ca.sh --pin (then review and commit)" >&2
  exit 1
fi
if [ "$got" != "$want" ]; then
  echo "fetch_rds_ca: bundle digest $got != pinned $want; refusing it (re-pin after review: bash scripts/fetch_rds_ca.sh --pin)" >&2
  exit 1
fi
for p in "${packages[@]}"; do
  mkdir -p "target/lambda/$p/rds-ca"
  cp "$tmp" "target/lambda/$p/rds-ca/global-bundle.pem"
  echo "fetch_rds_ca: target/lambda/$p/rds-ca/global-bundle.pem verified ($got)"
done
