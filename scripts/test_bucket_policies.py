#!/usr/bin/env python3
"""Evaluates every S3 bucket policy of the deployment against the requests its real writers make.

The policies are read as deployed: from template.yaml (intrinsics resolved with placeholder
account, region, parameters) and from the terraform bucket policies in infra/ (HCL parsed,
references resolved the same way). Each request is a principal, an action, a resource and the
request-context keys the caller really sends; the test asserts whether the bucket policy lets it
through, as a user of the bucket would notice (an SFTP upload that fails, a log that never
arrives, a put that ends up under the wrong key).

No policy-evaluation library fits: the maintained ones on PyPI either need AWS credentials (IAM
policy simulator) or do not evaluate resource policies with IfExists/Null semantics. So this file
implements exactly the condition operators the policies use, and refuses any other operator, with
the semantics the IAM User Guide documents ("IAM JSON policy elements: Condition operators"):
  - a key absent from the request context makes the condition false, except for the negated
    operators (StringNotEquals, ArnNotEquals, ...), where it makes it true;
  - `...IfExists`: "If the key is not present, evaluate the condition element as true";
  - `Null`: "true" matches when the key is absent, "false" when it is present;
  - several keys under one operator and several operators in one block are ANDed; several values
    for one key are ORed, and for a negated operator NORed ("Conditions with multiple context keys
    or values").
Evaluation of one resource-based policy for a same-account principal: an explicit Deny wins;
otherwise an IAM role of the account is allowed by its own identity policy (the roles' grants are
checked by check_template.py), and a service principal needs an Allow statement here.

usage: python3 scripts/test_bucket_policies.py [template.yaml]   (exit 1 on any failed case)
"""
import fnmatch
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_template import CfnLoader  # noqa: E402

ACCOUNT = "111122223333"
REGION = "us-gov-west-1"
PARTITION = "aws-us-gov"
ENV = "dev"
KEYS = {
    "KmsKeyArn": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/11111111-1111-1111-1111-111111111111",
    "OpsKmsKeyArn": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/22222222-2222-2222-2222-222222222222",
    "ReaperKmsKeyArn": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/33333333-3333-3333-3333-333333333333",
}
OTHER_KEY = f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/99999999-9999-9999-9999-999999999999"
PARAMS = {"Environment": ENV, **KEYS}
PSEUDO = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": f"county-lake-{ENV}"}

NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool", "Null"} | NEGATED


# ------------------------------------------------------------------ CloudFormation intrinsics
NO_VALUE = object()  # AWS::NoValue: the list item or property disappears


class Template:
    def __init__(self, path, params=None):
        self.tpl = yaml.load(path.read_text(), Loader=CfnLoader)
        self.res = self.tpl["Resources"]
        self.params = {k: v.get("Default") for k, v in self.tpl.get("Parameters", {}).items()}
        self.params.update(PARAMS)
        self.params.update(params or {})

    def condition(self, name):
        return self.cond_expr(self.tpl["Conditions"][name])

    def cond_expr(self, e):
        if isinstance(e, dict):
            (k, v), = e.items()
            if k == "Fn::Equals":
                return self.value(v[0]) == self.value(v[1])
            if k == "Fn::Not":
                return not self.cond_expr(v[0])
            if k == "Fn::And":
                return all(self.cond_expr(x) for x in v)
            if k == "Fn::Or":
                return any(self.cond_expr(x) for x in v)
            if k == "Condition":
                return self.condition(v)
        raise ValueError(f"unsupported condition {e!r}")

    def name_of(self, logical):
        r = self.res[logical]
        props = r.get("Properties", {})
        if r["Type"] == "AWS::S3::Bucket":
            return self.value(props["BucketName"])
        if r["Type"] == "AWS::IAM::Role":
            return logical  # no RoleName in the template: CloudFormation generates one
        raise ValueError(f"Ref to {logical} ({r['Type']}) not modelled")

    def arn_of(self, logical):
        r = self.res[logical]
        if r["Type"] == "AWS::S3::Bucket":
            return f"arn:{PARTITION}:s3:::{self.name_of(logical)}"
        if r["Type"] == "AWS::IAM::Role":
            return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{logical}"
        raise ValueError(f"GetAtt {logical}.Arn ({r['Type']}) not modelled")

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        return self.name_of(name)

    def value(self, v):
        if isinstance(v, list):
            return [x for x in (self.value(y) for y in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return self.ref(a)
            if k == "Fn::GetAtt":
                assert a[1] == "Arn", a
                return self.arn_of(a[0])
            if k == "Fn::Sub":
                if isinstance(a, list):  # [string, {name: value}]
                    local = {n: str(self.value(x)) for n, x in a[1].items()}
                    return self.sub(a[0], local)
                return self.sub(a)
            if k == "Fn::FindInMap":
                m, top, second = (self.value(x) for x in a)
                return self.tpl["Mappings"][m][top][second]
            if k == "Fn::If":
                return self.value(a[1] if self.condition(a[0]) else a[2])
        return {k: self.value(x) for k, x in v.items()}

    def sub(self, s, local=None):
        def one(m):
            name = m.group(1)
            if local and name in local:
                return local[name]
            if name.endswith(".Arn"):
                return self.arn_of(name[:-4])
            return str(self.ref(name))
        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", one, s)

    def bucket_policies(self):
        """bucket name -> policy document, for every AWS::S3::BucketPolicy."""
        out = {}
        for r in self.res.values():
            if r["Type"] == "AWS::S3::BucketPolicy":
                p = self.value(r["Properties"])
                out[p["Bucket"]] = p["PolicyDocument"]
        return out


# ------------------------------------------------------------------ terraform bucket policies
def terraform_policies():
    """(bucket name -> policy document, names of the policies read) for each aws_s3_bucket_policy
    in infra/ whose policy is an aws_iam_policy_document data source; references are resolved
    with the same placeholders."""
    import hcl2

    def one(v):  # python-hcl2 wraps attribute values in a list in some versions
        return v[0] if isinstance(v, list) and len(v) == 1 and not isinstance(v[0], dict) else v

    def many(v):
        v = one(v) if isinstance(v, list) and len(v) == 1 and isinstance(v[0], list) else v
        return v if isinstance(v, list) else [v]

    def label(k):  # some parser versions keep the quotes of a block label
        return k[1:-1] if isinstance(k, str) and len(k) > 1 and k[0] == k[-1] == '"' else k

    blocks = {"resource": {}, "data": {}, "locals": {}}
    for f in sorted((ROOT / "infra").glob("*.tf")):
        doc = hcl2.loads(f.read_text())
        for kind in ("resource", "data"):
            for item in doc.get(kind, []):
                for typ, named in item.items():
                    for name, body in named.items():
                        blocks[kind][f"{label(typ)}.{label(name)}"] = body
        for loc in doc.get("locals", []):
            blocks["locals"].update({k: one(v) for k, v in loc.items()})
    buckets = {k.split(".", 1)[1]: v for k, v in blocks["resource"].items() if k.startswith("aws_s3_bucket.")}
    name = f"county-lake-{ENV}"
    known = {
        "local.name": name, "local.partition": PARTITION, "local.account_id": ACCOUNT,
        "local.region": REGION, "local.dns_suffix": "amazonaws.com", "var.environment": ENV,
        "aws_kms_key.lake.arn": KEYS["KmsKeyArn"], "aws_kms_key.ops.arn": KEYS["OpsKmsKeyArn"],
        "aws_kms_key.reaper.arn": KEYS["ReaperKmsKeyArn"],
    }

    def resolve(s):
        if not isinstance(s, str):
            return s
        for _ in range(8):
            def sub(m):
                ref = m.group(1).strip()
                if ref in known:
                    return known[ref]
                if ref.startswith("local.") and isinstance(blocks["locals"].get(ref[6:]), str):
                    return blocks["locals"][ref[6:]]
                mm = re.fullmatch(r"aws_s3_bucket\.(\w+)(?:\[0\])?\.(arn|id|bucket)", ref)
                if mm:
                    b = resolve(one(buckets[mm.group(1)]["bucket"]))
                    return f"arn:{PARTITION}:s3:::{b}" if mm.group(2) == "arn" else b
                raise ValueError(f"terraform reference ${{{ref}}} not modelled in test_bucket_policies.py")
            new = re.sub(r"\$\{([^}]+)\}", sub, s)
            if new == s:
                return new
            s = new
        return s

    out, parsed = {}, set()
    for key, body in blocks["resource"].items():
        if not key.startswith("aws_s3_bucket_policy."):
            continue
        # A count/for_each switch only decides whether it exists: evaluated as if created.
        m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", one(body["policy"]))
        assert m, f"{key}: policy must be an aws_iam_policy_document"
        doc = blocks["data"][f"aws_iam_policy_document.{m.group(1)}"]
        statements = []
        for st in doc.get("statement", []):
            s = {"Sid": one(st.get("sid")), "Effect": one(st.get("effect", "Allow")),
                 "Action": [resolve(a) for a in many(st["actions"])],
                 "Resource": [resolve(r) for r in many(st["resources"])]}
            princ = {}
            for p in st.get("principals", []):
                princ.setdefault(one(p["type"]), []).extend(resolve(i) for i in many(p["identifiers"]))
            s["Principal"] = "*" if princ.get("*") == ["*"] else princ
            cond = {}
            for c in st.get("condition", []):
                cond.setdefault(one(c["test"]), {})[one(c["variable"])] = [resolve(v) for v in many(c["values"])]
            if cond:
                s["Condition"] = cond
            statements.append(s)
        bucket = resolve(one(body["bucket"]))
        out[bucket] = {"Version": "2012-10-17", "Statement": statements}
        parsed.add(key.split(".", 1)[1])
    return out, parsed


def terraform_policy_names():
    """The aws_s3_bucket_policy resources infra/ declares, read from the text without a parser:
    what terraform_policies() must have found, so a parser that returns nothing cannot pass."""
    names = set()
    for f in sorted((ROOT / "infra").glob("*.tf")):
        names |= set(re.findall(r'^resource\s+"aws_s3_bucket_policy"\s+"([\w-]+)"', f.read_text(), re.M))
    return names


# ------------------------------------------------------------------ policy evaluation
def as_list(v):
    return v if isinstance(v, list) else [v]


def wild(pattern, value, case=True):
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def match_one(base, want, got):
    if base in ("StringEquals", "StringNotEquals"):
        return want == got
    if base in ("StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"):
        return wild(want, got)  # ArnEquals and ArnLike behave the same (both take wildcards)
    if base == "Bool":
        return str(want).lower() == str(got).lower()
    raise AssertionError(base)


def condition_holds(cond, ctx):
    for op, keys in cond.items():
        if_exists = op.endswith("IfExists")
        base = op[: -len("IfExists")] if if_exists else op
        if base not in OPERATORS or ":" in op:
            raise ValueError(f"condition operator {op} is not implemented here: add it with its documented semantics")
        for key, wants in keys.items():
            wants = [str(w).lower() if isinstance(w, bool) else str(w) for w in as_list(wants)]
            present = key in ctx
            if base == "Null":
                ok = any((w.lower() == "true") == (not present) for w in wants)
            elif not present:
                ok = if_exists or base in NEGATED
            else:
                hit = any(match_one(base, w, str(ctx[key])) for w in wants)
                ok = not hit if base in NEGATED else hit
            if not ok:
                return False
    return True


def principal_matches(p, who):
    if p == "*":
        return True
    kind, ident = who
    return ident in as_list(p.get(kind, []))


def statement_matches(st, req):
    if not principal_matches(st.get("Principal"), req["principal"]):
        return False
    if not any(wild(a, req["action"], case=False) for a in as_list(st["Action"])):
        return False
    if not any(wild(r, req["resource"]) for r in as_list(st["Resource"])):
        return False
    return condition_holds(st.get("Condition", {}), req["context"])


def decide(policy, req):
    """'deny' (explicit), 'allow', or 'implicit-deny'."""
    sts = as_list(policy["Statement"])
    if any(st["Effect"] == "Deny" and statement_matches(st, req) for st in sts):
        return "deny"
    kind, ident = req["principal"]
    if kind == "AWS" and ident.startswith(f"arn:{PARTITION}:iam::{ACCOUNT}:role/"):
        return "allow"  # same account: the role's identity policy may allow it
    if any(st["Effect"] == "Allow" and statement_matches(st, req) for st in sts):
        return "allow"
    return "implicit-deny"


# ------------------------------------------------------------------ the writers' requests
def role(name):
    return ("AWS", f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}")


def put(principal, bucket, key, *, sse=None, key_id=None, tls=True, extra=None):
    ctx = {"aws:SecureTransport": "true" if tls else "false"}
    if principal[0] == "AWS":
        ctx["aws:PrincipalArn"] = principal[1]
        ctx["aws:PrincipalAccount"] = ACCOUNT
    if sse is not None:
        ctx["s3:x-amz-server-side-encryption"] = sse
    if key_id is not None:
        ctx["s3:x-amz-server-side-encryption-aws-kms-key-id"] = key_id
    ctx.update(extra or {})
    return {"principal": principal, "action": "s3:PutObject",
            "resource": f"arn:{PARTITION}:s3:::{bucket}/{key}", "context": ctx}


def multipart(principal, bucket, key, step, **kw):
    """One call of a multipart upload. CreateMultipartUpload, UploadPart and
    CompleteMultipartUpload are authorised as s3:PutObject; only CreateMultipartUpload carries the
    SSE headers (so the encryption denies are evaluated there), the others send none.
    AbortMultipartUpload is its own action."""
    if step in ("part", "complete") and (kw.get("sse") or kw.get("key_id")):
        raise ValueError("UploadPart and CompleteMultipartUpload carry no SSE-KMS headers")
    req = put(principal, bucket, key, **kw)
    if step == "abort":
        req["action"] = "s3:AbortMultipartUpload"
    return req


def get(principal, bucket, key, *, tls=True):
    ctx = {"aws:SecureTransport": "true" if tls else "false", "aws:PrincipalArn": principal[1]}
    return {"principal": principal, "action": "s3:GetObject",
            "resource": f"arn:{PARTITION}:s3:::{bucket}/{key}", "context": ctx}


def bucket(kind):
    return f"county-lake-{ENV}-{kind}-{ACCOUNT}-{REGION}"


def cases(tpl_buckets):
    ing, raw, quar, logs, rep = (bucket(k) for k in ("ingestion", "raw", "quarantine", "access-logs", "reports"))
    data_key = KEYS["KmsKeyArn"]
    sftp = role(f"county-lake-{ENV}-sftp-user")
    wf_d, wf_j, pii, router = role("WorkflowDelimitedRole"), role("WorkflowJsonRole"), role("PiiMatchingRole"), role("IngestionRouterRole")
    admin = role("CountyAdministrator")
    lam = {"sse": "aws:kms", "key_id": data_key}
    log_delivery = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": f"arn:{PARTITION}:s3:::{ing}"}
    out = [
        # Transfer Family writes with the user's role and no SSE headers: the bucket default applies.
        ("SFTP upload without SSE headers", ing, put(sftp, ing, "st_marys/2026/admissions.csv"), "allow"),
        ("SFTP upload over plain HTTP", ing, put(sftp, ing, "st_marys/a.csv", tls=False), "deny"),
        ("SFTP upload naming SSE-S3 (AES256)", ing, put(sftp, ing, "st_marys/a.csv", sse="AES256"), "deny"),
        ("SFTP upload naming another KMS key", ing, put(sftp, ing, "st_marys/a.csv", sse="aws:kms", key_id=OTHER_KEY), "deny"),
        ("aws:kms without a key id (S3 would use aws/s3)", ing, put(sftp, ing, "st_marys/a.csv", sse="aws:kms"), "deny"),
        ("another same-account role writing an upload", ing, put(admin, ing, "st_marys/a.csv"), "deny"),
        ("router reading an upload", ing, get(router, ing, "st_marys/a.csv"), "allow"),
        ("router reading over plain HTTP", ing, get(router, ing, "st_marys/a.csv", tls=False), "deny"),
        # Lambda puts: aws:kms with the data key (crates/layer/src/aws.rs sends both headers).
        ("delimited workflow writes Parquet", raw, put(wf_d, raw, "dataset=admissions/part-0.parquet", **lam), "allow"),
        ("json workflow writes Parquet", raw, put(wf_j, raw, "dataset=admissions/part-1.parquet", **lam), "allow"),
        ("pii-matching writes completed rows", raw, put(pii, raw, "dataset=admissions/part-2.parquet", **lam), "allow"),
        ("workflow put naming another key", raw, put(wf_d, raw, "dataset=a/p.parquet", sse="aws:kms", key_id=OTHER_KEY), "deny"),
        ("workflow put with SSE-S3", raw, put(wf_d, raw, "dataset=a/p.parquet", sse="AES256"), "deny"),
        ("router (not a raw writer) writing Parquet", raw, put(router, raw, "dataset=a/p.parquet", **lam), "deny"),
        ("another same-account role writing Parquet", raw, put(admin, raw, "dataset=a/p.parquet", **lam), "deny"),
        ("raw put over plain HTTP", raw, put(wf_d, raw, "dataset=a/p.parquet", tls=False, **lam), "deny"),
        # outputs larger than a part: a multipart upload
        ("workflow starts a multipart upload (aws:kms + the data key)", raw,
         multipart(wf_d, raw, "dataset=a/big.parquet", "create", **lam), "allow"),
        ("workflow uploads a part (no SSE headers)", raw, multipart(wf_d, raw, "dataset=a/big.parquet", "part"), "allow"),
        ("workflow completes the upload (no SSE headers)", raw,
         multipart(wf_j, raw, "dataset=a/big.parquet", "complete"), "allow"),
        ("workflow aborts its upload", raw, multipart(wf_d, raw, "dataset=a/big.parquet", "abort"), "allow"),
        ("multipart upload naming another key", raw,
         multipart(wf_d, raw, "dataset=a/big.parquet", "create", sse="aws:kms", key_id=OTHER_KEY), "deny"),
        ("multipart upload with SSE-S3", quar, multipart(wf_d, quar, "bad/x.bad.parquet", "create", sse="AES256"), "deny"),
        ("multipart upload, aws:kms without a key id", quar,
         multipart(wf_d, quar, "bad/x.bad.parquet", "create", sse="aws:kms"), "deny"),
        ("workflow starts a quarantine multipart upload", quar,
         multipart(wf_j, quar, "bad/x.bad.parquet", "create", **lam), "allow"),
        ("another same-account role starting a multipart upload", raw,
         multipart(admin, raw, "dataset=a/big.parquet", "create", **lam), "deny"),
        ("another same-account role uploading a part", raw, multipart(admin, raw, "dataset=a/big.parquet", "part"), "deny"),
        ("workflow writes quarantine rows", quar, put(wf_j, quar, "run=1/rows.jsonl", **lam), "allow"),
        ("pii-matching rewrites quarantine rows", quar, put(pii, quar, "run=1/rows.jsonl", **lam), "allow"),
        ("quarantine put naming another key", quar, put(pii, quar, "run=1/rows.jsonl", sse="aws:kms", key_id=OTHER_KEY), "deny"),
        ("another same-account role writing quarantine", quar, put(admin, quar, "run=1/rows.jsonl", **lam), "deny"),
        # S3 server access log delivery: the logging service principal, no SSE header.
        ("server access log delivery", logs, put(("Service", "logging.s3.amazonaws.com"), logs, "s3/ingestion/2026-12-03-00-00-00-ABC", extra=log_delivery), "allow"),
        ("log delivery for another account's bucket", logs, put(("Service", "logging.s3.amazonaws.com"), logs, "s3/x/log",
                                                                extra={"aws:SourceAccount": "444455556666"}), "implicit-deny"),
        ("log delivery outside s3/", logs, put(("Service", "logging.s3.amazonaws.com"), logs, "other/log", extra=log_delivery), "implicit-deny"),
        ("access-log put naming SSE-S3", logs, put(("Service", "logging.s3.amazonaws.com"), logs, "s3/ingestion/l", sse="AES256", extra=log_delivery), "deny"),
    ]
    # review-web: the reviewer's accept completes a row into the raw bucket; the internal load
    # balancer's access logs are delivered by the region's ELB account, SSE-S3 (the only kind it can).
    albl = bucket("review-alb-logs")
    if albl in tpl_buckets:
        web = role("ReviewWebRole")
        elb = ("AWS", f"arn:{PARTITION}:iam::048591011584:root")  # us-gov-west-1's ELB log account
        alb_key = f"review-alb/AWSLogs/{ACCOUNT}/elasticloadbalancing/{REGION}/2026/12/07/log.gz"
        out += [
            ("review-web writes an accepted row", raw, put(web, raw, "dataset=encounter/part-r.parquet", **lam), "allow"),
            ("review-web put naming another key", raw, put(web, raw, "dataset=a/p.parquet", sse="aws:kms", key_id=OTHER_KEY), "deny"),
            ("ALB access-log delivery", albl, put(elb, albl, alb_key), "allow"),
            ("ALB log delivery naming SSE-S3", albl, put(elb, albl, alb_key, sse="AES256"), "allow"),
            ("ALB log delivery naming a KMS key", albl, put(elb, albl, alb_key, sse="aws:kms", key_id=data_key), "deny"),
            ("ALB log delivery for another account's prefix", albl,
             put(elb, albl, "review-alb/AWSLogs/444455556666/x.log.gz"), "implicit-deny"),
            ("another ELB account delivering", albl,
             put(("AWS", f"arn:{PARTITION}:iam::190560391635:root"), albl, alb_key), "implicit-deny"),
            ("ALB log read over plain HTTP", albl, get(admin, albl, alb_key, tls=False), "deny"),
        ]
    if rep in tpl_buckets:
        rkey = KEYS["ReaperKmsKeyArn"]  # the reports bucket admits only the reaper key
        out += [
            ("reaper writes its CSV report", rep, put(role("WorkspaceReaperRole"), rep, "reports/2026-12-07.csv", sse="aws:kms", key_id=rkey), "allow"),
            ("reports put naming another key", rep, put(role("WorkspaceReaperRole"), rep, "reports/x.csv", sse="aws:kms", key_id=OTHER_KEY), "deny"),
            ("reports over plain HTTP", rep, get(role("WorkspaceReaperRole"), rep, "reports/x.csv", tls=False), "deny"),
        ]
    ath = bucket("athena-results")
    if ath in tpl_buckets:
        # Athena writes an analyst's results with the analyst's credentials, the workgroup's
        # SSE-KMS with the lake key
        analyst = role("county-analyst")
        out += [
            ("Athena writes query results (SSE-KMS)", ath, put(analyst, ath, "results/q.csv", sse="aws:kms", key_id=data_key), "allow"),
            ("results put naming SSE-S3", ath, put(analyst, ath, "results/q.csv", sse="AES256"), "deny"),
            ("results read over plain HTTP", ath, get(analyst, ath, "results/q.csv", tls=False), "deny"),
        ]
    return out


# The operators' role as an SSO permission set names it (a path and a random suffix), admitted by a
# wildcard in OperatorUploadRoleArn; their session's aws:PrincipalArn is the role's ARN.
OPERATOR_PATTERN = f"arn:{PARTITION}:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/{REGION}/AWSReservedSSO_LakeOperator_*"
OPERATOR = role(f"aws-reserved/sso.amazonaws.com/{REGION}/AWSReservedSSO_LakeOperator_0123456789abcdef")


def operator_cases():
    """`lake run DIR --backend aws` puts the files with the operator's credentials: SSE-KMS with the
    data key when LAKE_KMS_KEY_ID is set, else no SSE header (the bucket default applies)."""
    ing = bucket("ingestion")
    lam = {"sse": "aws:kms", "key_id": KEYS["KmsKeyArn"]}
    up = "st_marys/2026/12/st_marys_600.csv"
    with_op = [
        ("operator upload (OperatorUploadRoleArn set, SSE-KMS data key)", ing, put(OPERATOR, ing, up, **lam), "allow"),
        ("operator upload (OperatorUploadRoleArn set, no SSE header)", ing, put(OPERATOR, ing, up), "allow"),
        ("operator upload naming another key", ing, put(OPERATOR, ing, up, sse="aws:kms", key_id=OTHER_KEY), "deny"),
        ("operator upload over plain HTTP", ing, put(OPERATOR, ing, up, tls=False, **lam), "deny"),
        ("another SSO role while the operators' is admitted", ing,
         put(role(f"aws-reserved/sso.amazonaws.com/{REGION}/AWSReservedSSO_Analyst_0123"), ing, up, **lam), "deny"),
        ("SFTP upload while the operators' role is admitted", ing, put(role(f"county-lake-{ENV}-sftp-user"), ing, up), "allow"),
    ]
    without = [("operator upload (OperatorUploadRoleArn empty)", ing, put(OPERATOR, ing, up, **lam), "deny")]
    return with_op, without


def trail_cases(tf_buckets):
    out = []
    for b in tf_buckets:
        if "-audit-" not in b:
            continue
        arn = f"arn:{PARTITION}:cloudtrail:{REGION}:{ACCOUNT}:trail/county-lake-{ENV}"
        ct = ("Service", "cloudtrail.amazonaws.com")
        ctx = {"aws:SourceArn": arn, "s3:x-amz-acl": "bucket-owner-full-control",
               "aws:PrincipalServiceName": "cloudtrail.amazonaws.com"}
        cfg = ("Service", "config.amazonaws.com")
        cfg_ctx = {"aws:SourceAccount": ACCOUNT, "s3:x-amz-acl": "bucket-owner-full-control",
                   "aws:PrincipalServiceName": "config.amazonaws.com"}
        key = f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2026/12/03/file.json.gz"
        acl = {"principal": ct, "action": "s3:GetBucketAcl", "resource": f"arn:{PARTITION}:s3:::{b}",
               "context": {"aws:SecureTransport": "true", "aws:SourceArn": arn}}
        out += [
            ("CloudTrail checks the bucket ACL", b, acl, "allow"),
            ("CloudTrail delivers a log file (SSE-KMS with the trail key)", b,
             put(ct, b, key, sse="aws:kms", key_id=KEYS["OpsKmsKeyArn"], extra=ctx), "allow"),
            ("CloudTrail delivery for another trail", b, put(ct, b, key, extra={**ctx, "aws:SourceArn": arn + "-other"}), "implicit-deny"),
            ("trail log put over plain HTTP", b, put(ct, b, key, tls=False, extra=ctx), "deny"),
            ("a role overwriting trail logs", b, put(role("CountyAdministrator"), b, key), "deny"),
            ("AWS Config delivers a snapshot", b, put(cfg, b, f"config/AWSLogs/{ACCOUNT}/Config/{REGION}/snap.json.gz", extra=cfg_ctx), "allow"),
            ("AWS Config writing outside its prefix", b, put(cfg, b, f"AWSLogs/{ACCOUNT}/CloudTrail/x.json.gz", extra=cfg_ctx), "implicit-deny"),
        ]
    return out


def self_test():
    """The evaluator against the documented examples of absent keys, IfExists and Null."""
    ctx = {"k": "v"}
    assert condition_holds({"StringEquals": {"k": "v"}}, ctx)
    assert not condition_holds({"StringEquals": {"absent": "v"}}, ctx)  # absent: false
    assert condition_holds({"StringNotEquals": {"absent": "v"}}, ctx)  # negated, absent: true
    assert condition_holds({"StringNotEqualsIfExists": {"absent": "v"}}, ctx)  # IfExists, absent: true
    assert not condition_holds({"StringNotEqualsIfExists": {"k": "v"}}, ctx)
    assert condition_holds({"StringNotEquals": {"k": ["a", "b"]}}, ctx)  # NOR over values
    assert not condition_holds({"StringNotEquals": {"k": ["a", "v"]}}, ctx)
    assert condition_holds({"StringEquals": {"k": ["a", "v"]}}, ctx)  # OR over values
    assert condition_holds({"Null": {"absent": "true"}}, ctx) and condition_holds({"Null": {"k": "false"}}, ctx)
    assert not condition_holds({"Null": {"k": "true"}}, ctx)
    assert not condition_holds({"Null": {"k": "false"}, "StringEquals": {"k": "x"}}, ctx)  # AND over operators
    assert condition_holds({"ArnLike": {"k": "v*"}}, ctx) and not condition_holds({"ArnNotLike": {"k": "v*"}}, ctx)
    assert condition_holds({"Bool": {"k": "V"}}, ctx)
    try:
        condition_holds({"NumericEquals": {"k": "1"}}, ctx)
    except ValueError:
        pass
    else:
        raise AssertionError("an unimplemented operator must be refused")


def main():
    self_test()
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    policies = Template(path).bucket_policies()
    op_policies = Template(path, {"OperatorUploadRoleArn": OPERATOR_PATTERN}).bucket_policies()
    tf, parsed = terraform_policies()
    with_op, without_op = operator_cases()
    all_cases = cases(policies) + trail_cases(tf) + without_op
    policies.update(tf)
    failed = 0
    declared = terraform_policy_names()
    if parsed != declared:
        print(f"FAIL infra/ declares bucket policies {sorted(declared)} but the HCL parser yielded "
              f"{sorted(parsed)}: their cases would be skipped (parser version? scripts/check_infra.sh pins it)")
        failed += 1
    covered = set()
    for name, b, req, want in all_cases:
        covered.add(b)
        if b not in policies:
            print(f"FAIL {name}: bucket {b} has no policy")
            failed += 1
            continue
        got = decide(policies[b], req)
        ok = got == want
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {got}" + ("" if ok else f" (want {want})"))
    for name, b, req, want in with_op:
        got = decide(op_policies[b], req)
        failed += got != want
        print(f"{'ok  ' if got == want else 'FAIL'} {name}: {got}" + ("" if got == want else f" (want {want})"))
    all_cases += with_op
    for b in policies:
        if b not in covered:
            print(f"FAIL bucket {b}: its policy is not exercised by any writer's request")
            failed += 1
    if not any("-audit-" in b for b in tf):
        print("note: no CloudTrail bucket in infra/ (the organisation trail is used)")
    print(f"bucket policies: {len(all_cases) - failed} passed, {failed} failed "
          f"({len(tf)} terraform policies evaluated: {', '.join(sorted(parsed)) or 'none'})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
