#!/usr/bin/env bash
# Static checks of the deployment files (no AWS account needed). Called by .ci/run and GitLab's lint stage.
#   cfn-lint   template.yaml (default region, then us-gov-west-1)
#   check_template.py   env vars, least-privilege grants, queues, alarms, partition, CI parity,
#                       bucket policies, keys, FIPS, retention, the terraform foundation, supply chain
#   test_bucket_policies.py   every bucket policy evaluated against its real writers' requests
#   test_reaper_policy.py   the reaper role's exempt-tag guard evaluated against TerminateWorkspaces
#   terraform  infra/*.tf, *.tfvars parse (HCL2); the terraform binary is not needed
#   checkov    template.yaml, the SAM-expanded template, infra/: zero failed checks, with checks/
# Every checkov skip is written beside its resource with its reason (docs/DEPLOY.md lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
work=$(mktemp -d /tmp/check-infra.XXXXXX)
trap 'rm -rf "$work"' EXIT
t0=$SECONDS
step() { printf '== %s\n' "$*"; }

# ---- tools (installed only when missing) ----
need=()
python3 -c 'import cfnlint' 2>/dev/null || need+=('cfn-lint>=1.20,<2')
python3 -c 'import samtranslator' 2>/dev/null || need+=('aws-sam-translator>=1.90,<2')
python3 -c 'import checkov' 2>/dev/null || need+=('checkov>=3.2,<4')
python3 -c 'import yaml' 2>/dev/null || need+=('PyYAML')
if [ ${#need[@]} -gt 0 ]; then
  step "installing ${need[*]}"
  python3 -m pip install --quiet "${need[@]}"
fi
# The HCL parser: exactly the one checkov pins (bc-python-hcl2, importable as `hcl2`). Another
# distribution of the same module (python-hcl2; 8.x returns quoted block keys) would overwrite it,
# so its presence is an error rather than a guess about which one Python imports.
hcl2_pin=0.4.3
if python3 -c 'import importlib.metadata as m; m.version("python-hcl2")' 2>/dev/null; then
  echo "check_infra: python-hcl2 is installed and shadows bc-python-hcl2==$hcl2_pin (checkov's parser);" \
       "run: python3 -m pip uninstall -y python-hcl2 && python3 -m pip install --force-reinstall 'bc-python-hcl2==$hcl2_pin'" >&2
  exit 1
fi
python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('bc-python-hcl2') != '$hcl2_pin')" 2>/dev/null \
  || python3 -m pip install --quiet "bc-python-hcl2==$hcl2_pin"
python3 -c "import importlib.metadata as m, sys; sys.exit('bc-python-hcl2==$hcl2_pin' not in m.requires('checkov'))" || {
  echo "check_infra: the installed checkov pins another bc-python-hcl2 than $hcl2_pin; set hcl2_pin to checkov's" >&2
  exit 1
}

# ---- cfn-lint ---- (through python3, so the same interpreter that pip installed into is used)
cfnlint() { python3 -c 'import sys; from cfnlint.runner import main; sys.exit(main())' "$@"; }
step "cfn-lint template.yaml"
cfnlint template.yaml
step "cfn-lint --regions us-gov-west-1 template.yaml"
cfnlint --regions us-gov-west-1 -- template.yaml

# ---- template <-> code ----
step "check_template.py"
python3 scripts/check_template.py template.yaml

# ---- bucket policies against the writers' requests ----
step "test_bucket_policies.py"
python3 scripts/test_bucket_policies.py template.yaml

# ---- the reaper's IAM guard against its TerminateWorkspaces requests ----
step "test_reaper_policy.py"
python3 scripts/test_reaper_policy.py template.yaml

# ---- terraform syntax ----
step "terraform files parse"
python3 - <<'PY'
import glob, sys, hcl2
files = sorted(glob.glob("infra/*.tf") + glob.glob("infra/*.tfvars"))
if not files:
    sys.exit("no terraform files under infra/")
for f in files:
    with open(f) as fh:
        try:
            hcl2.load(fh)
        except Exception as e:
            sys.exit(f"{f}: {e}")
print(f"{len(files)} files parse")
PY

# ---- checkov ----
ck=(python3 -m checkov.main --skip-download --compact --quiet --external-checks-dir checks)
step "checkov -f template.yaml"
"${ck[@]}" --framework cloudformation -f template.yaml
step "checkov on the SAM-expanded template"
python3 scripts/sam_expand.py template.yaml us-gov-west-1 "$work/template.expanded.json" >/dev/null
"${ck[@]}" --framework cloudformation -f "$work/template.expanded.json"
step "checkov -d infra"
"${ck[@]}" --framework terraform -d infra

# ---- terraform formatting (where the terraform binary is installed; no provider needed) ----
if command -v terraform >/dev/null 2>&1; then
  step "terraform fmt -check infra"
  terraform -chdir=infra fmt -check -diff
fi

echo "check_infra: OK ($((SECONDS - t0)) s)"
