#!/usr/bin/env python3
"""Expand a SAM template into plain CloudFormation with the SAM translator (PyPI aws-sam-translator),
so checkov also sees what SAM generates: event source mappings, Lambda permissions, event-invoke
configs. Metadata (checkov skips) is passed through. It calls aws-sam-translator's own API (cfn-lint
1.5x no longer ships the private copy of the translator that older expansion scripts used).

usage: python3 scripts/sam_expand.py template.yaml [region] [out.json]
       -> writes out.json (default: template.transformed.json beside the template), prints its path
"""
import json
import logging
import os
import sys

from samtranslator.parser import parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

logging.getLogger("samtranslator").setLevel(logging.CRITICAL)

path = sys.argv[1]
region = sys.argv[2] if len(sys.argv) > 2 else "us-gov-west-1"
out = sys.argv[3] if len(sys.argv) > 3 else path.rsplit(".", 1)[0] + ".transformed.json"
os.environ["AWS_DEFAULT_REGION"] = region  # the translator derives the partition from it

with open(path) as f:
    tpl = yaml_parse(f.read())

# The translator accepts only S3 locations: a local CodeUri (the prebuilt target/lambda/<bin>/)
# becomes a placeholder, exactly as `sam deploy` replaces it by the uploaded artefact.
for name, res in tpl.get("Resources", {}).items():
    if res.get("Type") == "AWS::Serverless::Function":
        props = res.setdefault("Properties", {})
        if isinstance(props.get("CodeUri"), str) and not props["CodeUri"].startswith("s3://"):
            props["CodeUri"] = {"Bucket": "placeholder-artifacts", "Key": f"{name}.zip"}

# No SAM policy templates or managed policy names are used (each function has an explicit role),
# so the managed-policy map the translator would look names up in can stay empty.
expanded = Translator(managed_policy_map={}, sam_parser=parser.Parser()).translate(
    sam_template=tpl, parameter_values={}, passthrough_metadata=True
)
left = [k for k, v in expanded.get("Resources", {}).items() if v.get("Type", "").startswith("AWS::Serverless::")]
if left:
    sys.exit(f"expansion left SAM resources behind: {left}")
with open(out, "w") as f:
    json.dump(expanded, f, indent=1, default=str)
print(out)
