#!/usr/bin/env python3
"""Evaluates the WorkSpaces reaper role's policies (template.yaml, WorkspaceReaperRole) against the
WorkSpaces requests the reaper makes, as IAM would: the exempt-tag guard must refuse
TerminateWorkspaces on a WorkSpace carrying the exempt tag (in any letter case: IAM matches the
tag key of `aws:ResourceTag/<key>` case-insensitively, as it does every condition key name), allow
it on an untagged WorkSpace of this account and region, and never reach another account's or
region's WorkSpaces; the role may not change tags.

The evaluator is scripts/test_bucket_policies.py's (its template resolver and its condition
operators, with their documented semantics), applied to an identity policy: an explicit Deny
wins, else an Allow whose Action, Resource and Condition match, else an implicit deny. Condition
key names are compared ignoring case, as the IAM User Guide documents ("Condition key names are
not case-sensitive"); values with the operator's own case rules. TerminateWorkspaces is
authorised per WorkSpace (resource type `workspaceid`), with the WorkSpace's tags in the request
context as `aws:ResourceTag/<key>` (Service Authorization Reference, Amazon WorkSpaces).

usage: python3 scripts/test_reaper_policy.py [template.yaml]   (exit 1 on any failed case)
"""
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_bucket_policies import (  # noqa: E402
    ACCOUNT, PARTITION, REGION, ROOT, Template, as_list, condition_holds, wild,
)

ROLE = "WorkspaceReaperRole"
OTHER_ACCOUNT = "444455556666"
OTHER_REGION = "us-gov-east-1"


class RoleTemplate(Template):
    """Resolves the role's policy: resources this test does not model get a placeholder ARN."""

    def arn_of(self, logical):
        try:
            return super().arn_of(logical)
        except (ValueError, KeyError):
            return f"arn:{PARTITION}:placeholder:{REGION}:{ACCOUNT}:{logical}"

    def name_of(self, logical):
        try:
            return super().name_of(logical)
        except (ValueError, KeyError):
            return logical


def role_statements(tpl):
    props = tpl.value(tpl.res[ROLE]["Properties"])
    return [st for p in props["Policies"] for st in as_list(p["PolicyDocument"]["Statement"])]


def statement_matches(st, req):
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in st:
            raise ValueError(f"{unsupported} is not implemented here")
    if not any(wild(a, req["action"], case=False) for a in as_list(st["Action"])):
        return False
    if not any(wild(r, req["resource"]) for r in as_list(st["Resource"])):
        return False
    # Condition key names are case-insensitive: compare them lowercased on both sides.
    cond = {op: {k.lower(): v for k, v in keys.items()} for op, keys in st.get("Condition", {}).items()}
    return condition_holds(cond, {k.lower(): v for k, v in req["context"].items()})


def decide(statements, req):
    """'deny' (explicit), 'allow', or 'implicit-deny'."""
    if any(st["Effect"] == "Deny" and statement_matches(st, req) for st in statements):
        return "deny"
    if any(st["Effect"] == "Allow" and statement_matches(st, req) for st in statements):
        return "allow"
    return "implicit-deny"


def workspace(ws_id, account=ACCOUNT, region=REGION):
    return f"arn:{PARTITION}:workspaces:{region}:{account}:workspace/{ws_id}"


def terminate(arn, tags):
    """TerminateWorkspaces for one WorkSpace, with its tags in the request context."""
    return {"action": "workspaces:TerminateWorkspaces", "resource": arn,
            "context": {f"aws:ResourceTag/{k}": v for k, v in tags.items()}}


def cases(exempt_key):
    upper = exempt_key.upper()
    title = ":".join(p[:1].upper() + p[1:] for p in exempt_key.split(":"))
    return [
        ("terminate an untagged WorkSpace of this account", terminate(workspace("ws-untagged1"), {}), "allow"),
        ("terminate a WorkSpace with other tags", terminate(workspace("ws-othertag1"),
                                                            {"reaper:email": "a@county.gov", "cost-center": "42"}), "allow"),
        (f"terminate a WorkSpace tagged {exempt_key}", terminate(workspace("ws-exempt001"), {exempt_key: "director"}), "deny"),
        (f"terminate a WorkSpace tagged {exempt_key} with an empty value",
         terminate(workspace("ws-exempt002"), {exempt_key: ""}), "deny"),
        (f"terminate a WorkSpace tagged {title} (other letter case)",
         terminate(workspace("ws-exempt003"), {title: "yes"}), "deny"),
        (f"terminate a WorkSpace tagged {upper}", terminate(workspace("ws-exempt004"), {upper: "yes"}), "deny"),
        ("terminate another account's WorkSpace", terminate(workspace("ws-foreign01", account=OTHER_ACCOUNT), {}),
         "implicit-deny"),
        ("terminate another account's exempt WorkSpace",
         terminate(workspace("ws-foreign02", account=OTHER_ACCOUNT), {exempt_key: "x"}), "implicit-deny"),
        ("terminate a WorkSpace in another region", terminate(workspace("ws-east0001", region=OTHER_REGION), {}),
         "implicit-deny"),
        ("describe the fleet", {"action": "workspaces:DescribeWorkspaces", "resource": "*", "context": {}}, "allow"),
        ("remove the exempt tag", {"action": "workspaces:DeleteTags", "resource": workspace("ws-exempt001"),
                                   "context": {f"aws:ResourceTag/{exempt_key}": "director"}}, "implicit-deny"),
        ("add a tag", {"action": "workspaces:CreateTags", "resource": workspace("ws-untagged1"), "context": {}},
         "implicit-deny"),
    ]


def self_test():
    """Key names match in any case; values keep the operator's rules; a Deny wins over an Allow."""
    allow = {"Effect": "Allow", "Action": "a:B", "Resource": "*"}
    deny = {"Effect": "Deny", "Action": "a:*", "Resource": "*", "Condition": {"Null": {"aws:ResourceTag/K:x": "false"}}}
    req = lambda ctx: {"action": "a:B", "resource": "r", "context": ctx}  # noqa: E731
    assert decide([allow, deny], req({})) == "allow"
    assert decide([allow, deny], req({"aws:resourcetag/k:X": "1"})) == "deny"
    assert decide([deny], req({})) == "implicit-deny"
    strict = {"Effect": "Allow", "Action": "a:B", "Resource": "*", "Condition": {"StringEquals": {"k": "V"}}}
    assert decide([strict], req({"K": "V"})) == "allow" and decide([strict], req({"k": "v"})) == "implicit-deny"


def main():
    self_test()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    tpl = RoleTemplate(path)
    statements = role_statements(tpl)
    exempt_key = tomllib.loads((ROOT / "config/reaper.toml").read_text())["exempt_tag_key"]
    failed = 0
    all_cases = cases(exempt_key)
    for name, req, want in all_cases:
        got = decide(statements, req)
        ok = got == want
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got}" + ("" if ok else f" (want {want})"))
    print(f"reaper role policy: {len(all_cases) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
