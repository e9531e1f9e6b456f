#!/usr/bin/env bash
# Refuses a WorkSpaces reaper mode other than dry-run or enforce before a deploy starts, so a typo
# in REAPER_MODE_DEV / REAPER_MODE_PROD fails the job with a clear message instead of midway
# through a CloudFormation change set. usage: scripts/reaper_mode.sh MODE
set -euo pipefail
case "${1-}" in
  dry-run | enforce) echo "WorkSpaces reaper mode: $1" ;;
  *)
    echo "reaper mode must be dry-run or enforce, got '${1-}' (CI variable REAPER_MODE_DEV / REAPER_MODE_PROD)" >&2
    exit 2
    ;;
esac
