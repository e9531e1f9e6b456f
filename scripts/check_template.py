#!/usr/bin/env python3
"""Proves template.yaml gives every function what its code needs, and nothing broader.

For every function: the environment variables its code requires are set (and point at the right
resource), each bucket/prefix, table, queue, topic, secret and key it touches is granted by its
execution role with exactly the expected actions, no statement is broader than that, and a
Resource "*" appears only in the statements AWS requires it for, each with its reason written
beside it. Also: queue redrive/visibility rules, KMS on queues/topics/log groups, DLQ alarms,
${AWS::Partition} in every ARN, the reaper's classic EventBridge rule, the reaper's mode switch
(samconfig: dev dry-run, prod enforce), SES notices with bounces/complaints to on-call and its IAM
guard (no TerminateWorkspaces on an exempt-tagged WorkSpace), and that .gitlab-ci.yml
parses and its lint/test jobs run the same commands as .ci/run.

The HIPAA review's findings, each asserted: bucket policies deny only an explicit wrong encryption
and admit writes only from the roles granted them; PHI functions in the VPC; the data / ops keys
where they belong and every KMS grant of a PHI role limited by kms:ViaService; errors, throttles
and queue-age alarms; DLQs and tables retained; FIPS endpoints in GovCloud; the retention
parameter; in infra/: internet-facing SFTP, the audit trail, detective controls with their
"provided" switches, locked and copied backups, endpoint policies; cargo deny and the pinned RDS
CA bundle. scripts/test_bucket_policies.py evaluates the bucket policies themselves.

Ties to the code: each `LAKE_*` name in crates/layer/src/config.rs (`mod names`) must be set by
some function, and a Lambda crate's `REQUIRED_ENV: &[&str] = &[...]` must be set on its function.

usage: python3 scripts/check_template.py [template.yaml]   (exit 1 on any failure)
"""
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
errors: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


# ---------------------------------------------------------------- CloudFormation-aware YAML loader
class CfnLoader(yaml.SafeLoader):
    pass


def _tag(name):
    key = "Ref" if name == "Ref" else f"Fn::{name}"

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _t in ["Ref", "Sub", "GetAtt", "If", "Equals", "Join", "Select", "Split", "FindInMap", "ImportValue",
           "Base64", "GetAZs", "Not", "And", "Or", "Condition", "Cidr", "Transform"]:
    CfnLoader.add_constructor(f"!{_t}", _tag(_t))


# ---------------------------------------------------------------- what each function's code needs
# env: name -> expected value (("Ref", X) = !Ref X; a plain string = that literal).
# grants: (resource logical id or parameter, ARN suffix) -> exact set of actions.
KMS = {"kms:Decrypt", "kms:GenerateDataKey"}
DATA_AND_OPS = {("KmsKeyArn", ""): KMS, ("OpsKmsKeyArn", ""): KMS}
REF = "Ref"
FUNCTIONS = {
    "IngestionRouterFunction": {
        "bin": "ingestion-router", "queue": "IngestQueue", "log_group": "IngestionRouterLogGroup",
        "vpc": "PipelineSecurityGroupId",
        "env": {
            "LAKE_DATASETS_TABLE": (REF, "DatasetsTable"), "LAKE_RUNS_TABLE": (REF, "RunsTable"),
            "LAKE_QUEUE_DELIMITED": (REF, "WorkflowDelimitedQueue"), "LAKE_QUEUE_JSON": (REF, "WorkflowJsonQueue"),
            "LAKE_DLQ_URL": (REF, "PipelineDLQ"), "LAKE_ALERT_TOPIC_ARN": (REF, "AlertTopicArn"),
        },
        "grants": {
            ("IngestionBucket", "/*"): {"s3:GetObject", "s3:GetObjectVersion"},  # HeadObject = s3:GetObject
            ("DatasetsTable", ""): {"dynamodb:GetItem", "dynamodb:Query"},
            ("RunsTable", ""): {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"},
            ("WorkflowDelimitedQueue", ""): {"sqs:SendMessage"},
            ("WorkflowJsonQueue", ""): {"sqs:SendMessage"},
            ("PipelineDLQ", ""): {"sqs:SendMessage"},
            ("AlertTopicArn", ""): {"sns:Publish"},
            **DATA_AND_OPS,
        },
    },
    "PiiMatchingFunction": {
        "bin": "pii-matching", "queue": "PiiQueue", "log_group": "PiiMatchingLogGroup", "vpc": "VpcSecurityGroupId",
        "env": {
            "LAKE_RUNS_TABLE": (REF, "RunsTable"), "LAKE_RAW_BUCKET": (REF, "RawBucket"),
            "LAKE_QUARANTINE_BUCKET": (REF, "QuarantineBucket"), "LAKE_KMS_KEY_ID": (REF, "KmsKeyArn"),
            "LAKE_DB_USER": "lake_matcher", "LAKE_DLQ_URL": (REF, "PipelineDLQ"),
            "LAKE_RULES_TABLE": (REF, "DatasetsTable"),  # the published matching rules
            "LAKE_ALERT_TOPIC_ARN": (REF, "AlertTopicArn"),
            "LAKE_DB_HOST": (REF, "DbHost"), "LAKE_DB_PORT": "5432", "LAKE_DB_NAME": (REF, "DbName"),
            "LAKE_DB_SSLMODE": "verify-full", "LAKE_DB_SSLROOTCERT": "/var/task/rds-ca/global-bundle.pem",
        },
        "grants": {
            ("QuarantineBucket", "/*"): {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"},
            ("RawBucket", "/dataset=*"): {"s3:PutObject"},
            ("RunsTable", ""): {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"},
            # only the rules items (check_rules_read: dynamodb:LeadingKeys rules#matching)
            ("DatasetsTable", ""): {"dynamodb:GetItem"},
            ("PipelineDLQ", ""): {"sqs:SendMessage"},
            ("AlertTopicArn", ""): {"sns:Publish"},
            ("rds-db:dbuser/lake_matcher", ""): {"rds-db:connect"},  # IAM database authentication
            **DATA_AND_OPS,
        },
    },
    # The schema migration (CloudFormation custom resource MatchingSchema): a bin of pii-matching,
    # the only holder of the master secret.
    "DbMigrateFunction": {
        "bin": "db-migrate", "crate": "pii-matching", "queue": None, "custom_resource": "MatchingSchema",
        "log_group": "DbMigrateLogGroup", "vpc": "VpcSecurityGroupId",
        "env": {
            "LAKE_DB_SECRET_ARN": (REF, "DbSecretArn"),
            "LAKE_DB_HOST": (REF, "DbHost"), "LAKE_DB_PORT": "5432", "LAKE_DB_NAME": (REF, "DbName"),
            "LAKE_DB_SSLMODE": "verify-full", "LAKE_DB_SSLROOTCERT": "/var/task/rds-ca/global-bundle.pem",
        },
        "grants": {
            ("DbSecretArn", ""): {"secretsmanager:GetSecretValue"},
            ("KmsKeyArn", ""): {"kms:Decrypt"},  # the secret's key, only via Secrets Manager
        },
    },
    "WorkspaceReaperFunction": {
        "bin": "workspace-reaper", "queue": None, "log_group": "WorkspaceReaperLogGroup",
        "env": {
            "REAPER_REPORTS_BUCKET": (REF, "ReportsBucket"), "REAPER_KMS_KEY_ID": (REF, "ReaperKmsKeyArn"),
            "REAPER_ALERT_TOPIC_ARN": (REF, "AlertTopicArn"),
            "REAPER_EMAIL_FROM": (REF, "ReaperEmailFrom"),
            "REAPER_EMAIL_CONFIGURATION_SET": (REF, "ReaperEmailConfigurationSet"),
            "REAPER_MODE": (REF, "ReaperMode"),
            "REAPER_NOTIFY_IN_DRY_RUN": (REF, "ReaperNotifyInDryRun"),
            "REAPER_EXEMPT_TAG_KEY": "reaper:exempt",  # the IAM guard's key (check_reaper_guard)
            # optional: set only when a Confluence secret is given
            "REAPER_CONFLUENCE_SECRET_ARN": ("If", "HasConfluence", "ConfluenceSecretArn"),
        },
        "grants": {
            ("ReportsBucket", ""): {"s3:ListBucket"},
            ("ReportsBucket", "/*"): {"s3:GetObject", "s3:PutObject"},
            ("AlertTopicArn", ""): {"sns:Publish"},
            ("ses:identity/ReaperEmailIdentity", ""): {"ses:SendEmail", "ses:SendRawEmail"},
            ("ses:configuration-set/ReaperEmailConfigurationSet", ""): {"ses:SendEmail", "ses:SendRawEmail"},
            ("ReaperKmsKeyArn", ""): KMS,
            ("OpsKmsKeyArn", ""): KMS,  # the alert topic's key, only via SNS
            ("ReaperDLQ", ""): {"sqs:SendMessage"},  # async-invocation DLQ uses the execution role
            ("ConfluenceSecretArn", ""): {"secretsmanager:GetSecretValue"},  # only with HasConfluence
            ("workspace/*", ""): {"workspaces:TerminateWorkspaces"},
        },
    },
}
for fam, queue, pfx in (("delimited", "WorkflowDelimitedQueue", "WorkflowDelimited"),
                        ("json", "WorkflowJsonQueue", "WorkflowJson")):
    FUNCTIONS[f"{pfx}Function"] = {
        "bin": "semi-structured-workflow", "queue": queue, "log_group": f"{pfx}LogGroup",
        "vpc": "PipelineSecurityGroupId",
        "env": {
            "LAKE_FORMAT_FAMILY": fam, "LAKE_DATASETS_TABLE": (REF, "DatasetsTable"),
            "LAKE_RUNS_TABLE": (REF, "RunsTable"), "LAKE_RAW_BUCKET": (REF, "RawBucket"),
            "LAKE_QUARANTINE_BUCKET": (REF, "QuarantineBucket"), "LAKE_KMS_KEY_ID": (REF, "KmsKeyArn"),
            "LAKE_PII_QUEUE_URL": (REF, "PiiQueue"), "LAKE_DLQ_URL": (REF, "PipelineDLQ"),
            "LAKE_ALERT_TOPIC_ARN": (REF, "AlertTopicArn"),
        },
        "grants": {
            ("IngestionBucket", "/*"): {"s3:GetObject", "s3:GetObjectVersion"},
            # outputs past a part are multipart uploads (Create/UploadPart/Complete are
            # s3:PutObject); a failed or unwanted one is aborted
            ("RawBucket", "/dataset=*"): {"s3:PutObject", "s3:AbortMultipartUpload"},
            ("QuarantineBucket", "/*"): {"s3:PutObject", "s3:AbortMultipartUpload"},
            # PutItem: the conditional claim of a file's content (duplicate files); UpdateItem on
            # the claim and ConditionCheckItem on the owner's ledger entry: the one-transaction
            # takeover of a FAILED owner's claim
            ("DatasetsTable", ""): {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},
            ("RunsTable", ""): {"dynamodb:ConditionCheckItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"},
            ("PiiQueue", ""): {"sqs:SendMessage"},
            ("PipelineDLQ", ""): {"sqs:SendMessage"},
            ("AlertTopicArn", ""): {"sns:Publish"},
            **DATA_AND_OPS,
        },
    }
FUNCTIONS["GuardFunction"] = {
    "bin": "guard", "queue": None, "log_group": "GuardLogGroup", "vpc": "PipelineSecurityGroupId",
    "async_dlq": "GuardDLQ", "schedule_rule": "GuardScheduleRule",
    "env": {
        "LAKE_DATASETS_TABLE": (REF, "DatasetsTable"), "LAKE_RUNS_TABLE": (REF, "RunsTable"),
        "LAKE_INGEST_BUCKET": (REF, "IngestionBucket"), "LAKE_DLQ_URL": (REF, "PipelineDLQ"),
        "LAKE_STAGE_DLQ_URLS": {"Fn::Join": [",", [{"Ref": "IngestDLQ"}, {"Ref": "WorkflowDelimitedDLQ"},
                                                  {"Ref": "WorkflowJsonDLQ"}, {"Ref": "PiiDLQ"}]]},
        "LAKE_ALERT_TOPIC_ARN": (REF, "AlertTopicArn"), "LAKE_MAX_IN_FLIGHT_SECS": "900",
    },
    "grants": {
        ("IngestionBucket", ""): {"s3:ListBucketVersions"},
        ("RunsTable", ""): {"dynamodb:GetItem", "dynamodb:Scan"},
        ("DatasetsTable", ""): {"dynamodb:GetItem", "dynamodb:Scan", "dynamodb:PutItem", "dynamodb:DeleteItem"},
        # peek: receive and make visible again, never delete
        **{(q, ""): {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"}
           for q in ("PipelineDLQ", "IngestDLQ", "WorkflowDelimitedDLQ", "WorkflowJsonDLQ", "PiiDLQ")},
        ("GuardDLQ", ""): {"sqs:SendMessage"},  # async-invocation DLQ uses the execution role
        ("AlertTopicArn", ""): {"sns:Publish"},
        **DATA_AND_OPS,
    },
}
# ---- review-web: the reviewers' web application behind the internal OIDC load balancer
# (check_review_endpoint below). Invoked by its target group only: no queue, no DLQ.
FUNCTIONS["ReviewWebFunction"] = {
    "bin": "review-web", "queue": None, "log_group": "ReviewWebLogGroup", "vpc": "VpcSecurityGroupId",
    "alb_target_group": "ReviewWebTargetGroup",
    "env": {
        "LAKE_RUNS_TABLE": (REF, "RunsTable"), "LAKE_RAW_BUCKET": (REF, "RawBucket"),
        "LAKE_QUARANTINE_BUCKET": (REF, "QuarantineBucket"), "LAKE_KMS_KEY_ID": (REF, "KmsKeyArn"),
        "LAKE_DB_USER": "lake_reviewer",
        "LAKE_DB_HOST": (REF, "DbHost"), "LAKE_DB_PORT": "5432", "LAKE_DB_NAME": (REF, "DbName"),
        "LAKE_DB_SSLMODE": "verify-full", "LAKE_DB_SSLROOTCERT": "/var/task/rds-ca/global-bundle.pem",
        "LAKE_REVIEW_REVIEWER_GROUP": (REF, "ReviewerGroup"), "LAKE_REVIEW_VIEWER_GROUP": (REF, "ViewerGroup"),
        "LAKE_REVIEW_ALB_ARN": (REF, "ReviewLoadBalancer"), "LAKE_REVIEW_SESSION_SECONDS": "28800",
    },
    "grants": {
        ("QuarantineBucket", "/*"): {"s3:GetObject"},
        ("RawBucket", "/dataset=*"): {"s3:PutObject"},
        ("RunsTable", ""): {"dynamodb:GetItem", "dynamodb:PutItem"},
        ("rds-db:dbuser/lake_reviewer", ""): {"rds-db:connect"},
        ("KmsKeyArn", ""): KMS,  # the data key only (via S3 and DynamoDB); no ops key
    },
}
PHI_FUNCTIONS = {fn for fn, spec in FUNCTIONS.items() if spec.get("vpc")}
# The reaper's resources may use the data key until they move to the reaper key (infra/kms.tf).
REAPER_KEYS = ({"Ref": "ReaperKmsKeyArn"},)
REAPER_RESOURCES = {"WorkspaceReaperLogGroup", "ReaperDLQ", "ReportsBucket"}

# Statements where AWS requires Resource "*": Sid -> (functions allowed to have it, exact actions).
STAR_ALLOWED = {
    "XRayWriteNoResourceLevel": (set(FUNCTIONS), {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
    "DescribeWorkspacesNoResourceLevel": ({"WorkspaceReaperFunction"}, {
        "workspaces:DescribeWorkspaces", "workspaces:DescribeWorkspacesConnectionStatus", "workspaces:DescribeTags"}),
    "VpcNetworkInterfacesNoResourceLevel": (PHI_FUNCTIONS, {
        "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
        "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}),
}
CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"}
LOGS = {"logs:CreateLogStream", "logs:PutLogEvents"}


def as_list(v):
    return v if isinstance(v, list) else [v]


def resource_key(res):
    """A statement Resource -> (logical id / parameter / literal tail, suffix) or '*'."""
    if res == "*":
        return "*"
    if isinstance(res, dict) and "Ref" in res:
        return (res["Ref"], "")
    if isinstance(res, dict) and "Fn::GetAtt" in res:
        name, attr = res["Fn::GetAtt"]
        return (name, "") if attr == "Arn" else (f"{name}.{attr}", "")
    if isinstance(res, dict) and "Fn::Sub" in res:
        s = res["Fn::Sub"]
        if not isinstance(s, str):
            return ("<complex Sub>", "")
        m = re.fullmatch(r"arn:\$\{AWS::Partition\}:s3:::\$\{(\w+)\}(/.*)?", s) or \
            re.fullmatch(r"\$\{(\w+)\.Arn\}(/.*)?", s)
        if m:
            return (m.group(1), m.group(2) or "")
        m = re.fullmatch(r"arn:\$\{AWS::Partition\}:rds-db:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                         r"dbuser:\$\{DbClusterResourceId\}/(\w+)", s)
        if m:
            return (f"rds-db:dbuser/{m.group(1)}", "")
        m = re.fullmatch(r"arn:\$\{AWS::Partition\}:workspaces:\$\{AWS::Region\}:\$\{AWS::AccountId\}:(workspace/\*)", s)
        if m:
            return (m.group(1), "")
        m = re.fullmatch(r"arn:\$\{AWS::Partition\}:ses:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
                         r"(identity|configuration-set)/\$\{(\w+)\}", s)
        if m:
            return (f"ses:{m.group(1)}/{m.group(2)}", "")
        return (f"<Sub {s}>", "")
    return (f"<literal {res!r}>", "")


def check_functions(tpl, raw_text):
    res = tpl.get("Resources", {})
    glob = tpl.get("Globals", {}).get("Function", {})
    found = {k for k, v in res.items() if v.get("Type") == "AWS::Serverless::Function"}
    if found != set(FUNCTIONS):
        fail(f"functions in template {sorted(found)} != expected {sorted(FUNCTIONS)}")
    for fn, spec in FUNCTIONS.items():
        if fn not in res:
            continue
        props = {**glob, **res[fn].get("Properties", {})}
        where = f"{fn}:"
        for k, want in (("Runtime", "provided.al2023"), ("Handler", "bootstrap"), ("Tracing", "Active")):
            if props.get(k) != want:
                fail(f"{where} {k} is {props.get(k)!r}, want {want!r}")
        if props.get("Architectures") not in (["x86_64"], ["arm64"]):
            fail(f"{where} Architectures must be [x86_64] or [arm64]")
        if str(props.get("CodeUri", "")).rstrip("/") != f"target/lambda/{spec['bin']}":
            fail(f"{where} CodeUri {props.get('CodeUri')!r} is not target/lambda/{spec['bin']}/")
        if not isinstance(props.get("ReservedConcurrentExecutions"), int):
            fail(f"{where} no ReservedConcurrentExecutions")
        env_key = "ReaperKmsKeyArn" if fn == "WorkspaceReaperFunction" else "KmsKeyArn"
        if props.get("KmsKeyArn") != {"Ref": env_key}:
            fail(f"{where} environment not encrypted with {env_key}")
        lg = props.get("LoggingConfig", {}).get("LogGroup")
        if lg != {"Ref": spec["log_group"]}:
            fail(f"{where} LoggingConfig.LogGroup is not !Ref {spec['log_group']}")
        lgp = res.get(spec["log_group"], {}).get("Properties", {})
        if "RetentionInDays" not in lgp:
            fail(f"{spec['log_group']}: needs RetentionInDays")
        if spec.get("vpc"):
            vpc = props.get("VpcConfig", {})
            if vpc.get("SubnetIds") != {"Ref": "VpcSubnetIds"} or vpc.get("SecurityGroupIds") != [{"Ref": spec["vpc"]}]:
                fail(f"{where} must run in VpcSubnetIds / {spec['vpc']} (every PHI function is in the lake VPC)")
        elif "VpcConfig" in props:
            fail(f"{where} unexpected VpcConfig")

        # -- environment
        env = props.get("Environment", {}).get("Variables", {})
        for name, want in spec["env"].items():
            got = env.get(name)
            if got is None:
                fail(f"{where} environment variable {name} is not set")
            elif isinstance(want, tuple) and want[0] == "If":
                if got != {"Fn::If": [want[1], {"Ref": want[2]}, {"Ref": "AWS::NoValue"}]}:
                    fail(f"{where} {name} = {got!r}, want !If [{want[1]}, !Ref {want[2]}, !Ref AWS::NoValue]")
            elif isinstance(want, tuple) and got != {"Ref": want[1]}:
                fail(f"{where} {name} = {got!r}, want !Ref {want[1]}")
            elif isinstance(want, dict) and got != want:
                fail(f"{where} {name} = {got!r}, want {want!r}")
            elif isinstance(want, str) and got != want:
                fail(f"{where} {name} = {got!r}, want {want!r}")
        for name in env:
            if name not in spec["env"]:
                fail(f"{where} environment variable {name} is not one its code requires (add it to check_template.py)")

        # -- event source
        timeout = props.get("Timeout")
        events = props.get("Events", {})
        if spec["queue"]:
            sqs = [e for e in events.values() if e.get("Type") == "SQS"]
            if len(sqs) != 1 or sqs[0]["Properties"].get("Queue") != {"Fn::GetAtt": [spec["queue"], "Arn"]}:
                fail(f"{where} must have exactly one SQS event on {spec['queue']}")
            elif "ReportBatchItemFailures" not in sqs[0]["Properties"].get("FunctionResponseTypes", []):
                fail(f"{where} SQS event lacks FunctionResponseTypes: [ReportBatchItemFailures]")
            q = res.get(spec["queue"], {}).get("Properties", {})
            vt = q.get("VisibilityTimeout", 30)
            if not isinstance(timeout, int) or vt < 6 * timeout:
                fail(f"{spec['queue']}: VisibilityTimeout {vt} < 6 x {fn} Timeout {timeout}")
        elif spec.get("custom_resource"):
            cr = res.get(spec["custom_resource"], {})
            cp = cr.get("Properties", {})
            if cp.get("ServiceToken") != {"Ref": f"{fn}.Alias"} or cp.get("CodeVersion") != {"Ref": f"{fn}.Version"}:
                fail(f"{spec['custom_resource']}: ServiceToken must be !Ref {fn}.Alias and CodeVersion "
                     f"!Ref {fn}.Version (new migration code must re-run the resource)")
            if not isinstance(cp.get("ServiceTimeout"), int):
                fail(f"{spec['custom_resource']}: needs ServiceTimeout (a crash must not hold the deploy for an hour)")
            if events:
                fail(f"{where} a custom-resource function has no events")
        elif spec.get("alb_target_group"):
            check_alb_target(res, fn, spec["alb_target_group"], props)
        else:
            dlq = props.get("DeadLetterQueue", {})
            adlq, rule = spec.get("async_dlq", "ReaperDLQ"), spec.get("schedule_rule", "ReaperScheduleRule")
            if dlq.get("Type") != "SQS" or dlq.get("TargetArn") != {"Fn::GetAtt": [adlq, "Arn"]}:
                fail(f"{where} async function needs DeadLetterQueue SQS {adlq}")
            if events:
                fail(f"{where} schedule must be the explicit classic rule {rule}, not a SAM event")

        # -- permissions
        if "Policies" in props:
            fail(f"{where} uses SAM Policies; the execution role must be the explicit one (least privilege)")
        role_ref = props.get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            fail(f"{where} Role must be !GetAtt <Role>.Arn")
            continue
        role_id = role_ref["Fn::GetAtt"][0]
        role = res.get(role_id, {})
        if role.get("Type") != "AWS::IAM::Role":
            fail(f"{where} role {role_id} not found")
            continue
        if role["Properties"].get("ManagedPolicyArns"):
            fail(f"{role_id}: managed policies are broader than the function needs")
        granted: dict = {}
        attached = [r["Properties"] for r in res.values()
                    if r.get("Type") == "AWS::IAM::Policy" and {"Ref": role_id} in r["Properties"].get("Roles", [])]
        for pol in role["Properties"].get("Policies", []) + attached:
            for st in as_list(pol["PolicyDocument"]["Statement"]):
                if "Fn::If" in st:  # a statement that exists only under a condition
                    st = st["Fn::If"][1]
                sid = st.get("Sid", "<no Sid>")
                if st.get("Effect") != "Allow":
                    continue
                if "NotAction" in st or "NotResource" in st:
                    fail(f"{role_id} {sid}: NotAction/NotResource not allowed")
                actions = set(as_list(st.get("Action", [])))
                for a in actions:
                    if "*" in a:
                        fail(f"{role_id} {sid}: wildcard action {a}")
                for r in as_list(st.get("Resource", [])):
                    key = resource_key(r)
                    if key == "*":
                        allowed = STAR_ALLOWED.get(sid)
                        if not allowed or fn not in allowed[0]:
                            fail(f"{role_id} {sid}: Resource \"*\" is not one AWS requires for this function")
                        elif actions != allowed[1]:
                            fail(f"{role_id} {sid}: Resource \"*\" statement has actions {sorted(actions)}, "
                                 f"want exactly {sorted(allowed[1])}")
                        elif not re.search(r'#[^\n]*Resource "\*" is required[^\n]*\n(?:\s*#[^\n]*\n)*\s*- Sid: ' + sid,
                                           raw_text[raw_text.index(f"  {role_id}:"):]):
                            fail(f"{role_id} {sid}: no '# Resource \"*\" is required: <reason>' comment beside it")
                        continue
                    granted.setdefault(key, set()).update(actions)
        expected = {k: set(v) for k, v in spec["grants"].items()}
        expected.setdefault((spec["log_group"], ""), set()).update(LOGS)
        if spec["queue"]:
            expected.setdefault((spec["queue"], ""), set()).update(CONSUME)
        for key, acts in expected.items():
            missing = acts - granted.get(key, set())
            if missing:
                fail(f"{where} {key[0]}{key[1]} lacks {sorted(missing)}")
        for key, acts in granted.items():
            extra = acts - expected.get(key, set())
            if extra:
                fail(f"{where} {key[0]}{key[1]} grants more than the code needs: {sorted(extra)}")


# ---------------------------------------------------------------- review-web's load balancer
FIPS_TLS_POLICIES = {"ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04", "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
                     "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04"}
MAX_SESSION_SECONDS = 28800  # a working day; the ALB default is 7 days


def check_alb_target(res, fn, tg_name, props):
    """A function behind a target group: no events, no DLQ, exactly one invoke permission for
    Elastic Load Balancing naming that group, and the group a lambda group depending on it."""
    where = f"{fn}:"
    if props.get("Events"):
        fail(f"{where} a load-balancer target has no events")
    if "DeadLetterQueue" in props:
        fail(f"{where} a synchronously invoked target has no DeadLetterQueue")
    tg = res.get(tg_name, {})
    tgp = tg.get("Properties", {})
    perms = [(k, v["Properties"]) for k, v in res.items() if v.get("Type") == "AWS::Lambda::Permission"
             and v["Properties"].get("FunctionName") == {"Ref": fn}]
    if len(perms) != 1:
        fail(f"{where} needs exactly one AWS::Lambda::Permission (the load balancer's), has {len(perms)}")
        return
    perm_id, perm = perms[0]
    name = tgp.get("Name", {}).get("Fn::Sub") if isinstance(tgp.get("Name"), dict) else tgp.get("Name")
    want_arn = ("arn:${AWS::Partition}:elasticloadbalancing:${AWS::Region}:${AWS::AccountId}:"
                f"targetgroup/{name}/*")
    if perm.get("Principal") != "elasticloadbalancing.amazonaws.com" or perm.get("Action") != "lambda:InvokeFunction" \
            or perm.get("SourceArn") != {"Fn::Sub": want_arn} or perm.get("SourceAccount") != {"Ref": "AWS::AccountId"}:
        fail(f"{perm_id}: must let only elasticloadbalancing.amazonaws.com invoke {fn}, SourceArn {want_arn}, "
             "SourceAccount this account")
    if tg.get("Type") != "AWS::ElasticLoadBalancingV2::TargetGroup" or tgp.get("TargetType") != "lambda" \
            or tgp.get("Targets") != [{"Id": {"Fn::GetAtt": [fn, "Arn"]}}]:
        fail(f"{tg_name}: must be a lambda target group whose only target is {fn}")
    if perm_id not in as_list(tg.get("DependsOn", [])):
        fail(f"{tg_name}: must DependsOn {perm_id} (registering the target needs the permission)")
    if isinstance(name, str) and len(name.replace("${Environment}", "prod")) > 32:
        fail(f"{tg_name}: name {name} longer than 32 characters")


def check_review_endpoint(tpl):
    """The review site: one internal ALB on the lake's private subnets with access logs, invalid
    headers dropped and deletion protection; only HTTPS:443 listeners with a FIPS policy and the
    county certificate; every request signed in by the county IdP (authenticate-oidc first, the
    client secret a Secrets Manager reference, a bounded session) before it is forwarded; the
    security group admits 443 only from the county prefix list; the access-log bucket is the only
    SSE-S3 bucket and admits only the region's ELB account under this account's prefix."""
    res, params = tpl["Resources"], tpl.get("Parameters", {})
    of = lambda typ: {k: v for k, v in res.items() if v.get("Type") == typ}  # noqa: E731
    lbs = of("AWS::ElasticLoadBalancingV2::LoadBalancer")
    if len(lbs) != 1:
        fail(f"expected exactly one load balancer (review-web), found {sorted(lbs)}")
        return
    lb_id, lb = next(iter(lbs.items()))
    lbp = lb["Properties"]
    if lbp.get("Scheme") != "internal" or lbp.get("Type") != "application":
        fail(f"{lb_id}: must be an internal application load balancer")
    if lbp.get("Subnets") != {"Ref": "VpcSubnetIds"}:
        fail(f"{lb_id}: must sit in the private subnets VpcSubnetIds")
    attrs = {a["Key"]: a["Value"] for a in lbp.get("LoadBalancerAttributes", [])}
    for k, v in (("access_logs.s3.enabled", "true"), ("routing.http.drop_invalid_header_fields.enabled", "true"),
                 ("deletion_protection.enabled", "true")):
        if attrs.get(k) != v:
            fail(f"{lb_id}: attribute {k} must be {v}")
    log_bucket = attrs.get("access_logs.s3.bucket", {}).get("Ref") if isinstance(attrs.get("access_logs.s3.bucket"), dict) else None
    sgs = lbp.get("SecurityGroups", [])
    tg_ids = {k for k, v in res.items() if v.get("Type") == "AWS::ElasticLoadBalancingV2::TargetGroup"}
    listeners = of("AWS::ElasticLoadBalancingV2::Listener")
    if not listeners:
        fail(f"{lb_id}: no listener")
    for lid, lst in listeners.items():
        p = lst["Properties"]
        if p.get("Protocol") != "HTTPS" or p.get("Port") != 443:
            fail(f"{lid}: only HTTPS on 443 (no plain-HTTP listener, not even a redirect)")
        if p.get("SslPolicy") not in FIPS_TLS_POLICIES:
            fail(f"{lid}: SslPolicy {p.get('SslPolicy')!r} is not a FIPS TLS 1.2+ policy {sorted(FIPS_TLS_POLICIES)}")
        if p.get("Certificates") != [{"CertificateArn": {"Ref": "ReviewCertificateArn"}}]:
            fail(f"{lid}: certificate must be !Ref ReviewCertificateArn")
        check_oidc_actions(lid, p.get("DefaultActions", []), tg_ids)
    for rid, rule in of("AWS::ElasticLoadBalancingV2::ListenerRule").items():
        check_oidc_actions(rid, rule["Properties"].get("Actions", []), tg_ids)
    for sg in sgs:
        sgid = sg.get("Ref") if isinstance(sg, dict) else None
        sgp = res.get(sgid, {}).get("Properties", {})
        ing = sgp.get("SecurityGroupIngress", [])
        ok = [r for r in ing if r.get("IpProtocol") == "tcp" and r.get("FromPort") == 443 and r.get("ToPort") == 443
              and r.get("SourcePrefixListId") == {"Ref": "ReviewClientPrefixListId"}]
        if not ing or len(ok) != len(ing):
            fail(f"{sgid}: may admit only tcp/443 from the prefix list ReviewClientPrefixListId")
        if any(r.get("CidrIp") or r.get("CidrIpv6") for r in ing + sgp.get("SecurityGroupEgress", [])
               if r.get("CidrIp") in ("0.0.0.0/0",) or r.get("CidrIpv6") in ("::/0",)):
            fail(f"{sgid}: no rule to or from anywhere (0.0.0.0/0, ::/0)")
        eg = sgp.get("SecurityGroupEgress", [])
        if not eg or any(r.get("DestinationPrefixListId") != {"Ref": "ReviewIdpPrefixListId"} or r.get("FromPort") != 443
                         for r in eg):
            fail(f"{sgid}: egress only tcp/443 to the identity provider's prefix list ReviewIdpPrefixListId")
    if not (isinstance(lb.get("DependsOn"), str) and lb["DependsOn"].endswith("BucketPolicy")) and \
            not any(str(d).endswith("BucketPolicy") for d in as_list(lb.get("DependsOn", []))):
        fail(f"{lb_id}: must DependsOn its log bucket's policy (log delivery is tested when enabled)")
    # the log bucket: SSE-S3 (the only kind ALB log delivery accepts), the only SSE-S3 bucket
    sse_s3 = set()
    for name, v in of("AWS::S3::Bucket").items():
        rules = v["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", [])
        if rules and rules[0]["ServerSideEncryptionByDefault"].get("SSEAlgorithm") == "AES256":
            sse_s3.add(name)
    if sse_s3 != {log_bucket}:
        fail(f"SSE-S3 buckets {sorted(sse_s3)}: only the load balancer's log bucket {log_bucket} may be SSE-S3")
    pol = next((v["Properties"] for v in of("AWS::S3::BucketPolicy").values()
                if v["Properties"].get("Bucket") == {"Ref": log_bucket}), None)
    if not pol:
        fail(f"{log_bucket}: no bucket policy")
        return
    sts = as_list(pol["PolicyDocument"]["Statement"])
    sids = {st.get("Sid") for st in sts}
    for sid in ("DenyInsecureTransport", "DenyPutWithOtherEncryption"):
        if sid not in sids:
            fail(f"{log_bucket} policy: statement {sid} missing")
    allows = [st for st in sts if st.get("Effect") == "Allow"]
    want_principal = {"AWS": {"Fn::Sub": ["arn:${AWS::Partition}:iam::${ElbAccount}:root",
                                          {"ElbAccount": {"Fn::FindInMap": ["ElbLogAccount", {"Ref": "AWS::Region"}, "Id"]}}]}}
    want_res = {"Fn::Sub": f"${{{log_bucket}.Arn}}/{attrs.get('access_logs.s3.prefix')}/AWSLogs/${{AWS::AccountId}}/*"}
    if len(allows) != 1 or allows[0].get("Principal") != want_principal or allows[0].get("Resource") != want_res \
            or as_list(allows[0].get("Action")) != ["s3:PutObject"]:
        fail(f"{log_bucket} policy: the only Allow must be s3:PutObject for the mapped ELB log account on {want_res}")
    elb = tpl.get("Mappings", {}).get("ElbLogAccount", {})
    if elb.get("us-gov-west-1", {}).get("Id") != "048591011584" or elb.get("us-gov-east-1", {}).get("Id") != "190560391635":
        fail("Mappings.ElbLogAccount: the GovCloud ELB log accounts are 048591011584 (west) and 190560391635 (east)")
    for p in ("VpcId", "ReviewCertificateArn", "ReviewClientPrefixListId", "ReviewIdpPrefixListId", "ReviewOidcIssuer",
              "ReviewOidcAuthorizationEndpoint", "ReviewOidcTokenEndpoint", "ReviewOidcUserInfoEndpoint",
              "ReviewOidcClientId", "ReviewOidcClientSecretArn", "ReviewerGroup", "ViewerGroup"):
        if p not in params:
            fail(f"template.yaml: parameter {p} missing (review-web)")
        elif p != "VpcId" and "AllowedPattern" not in params[p]:
            fail(f"parameter {p}: needs an AllowedPattern")
    alarms = [v["Properties"] for v in of("AWS::CloudWatch::Alarm").values()]
    if not any(a.get("MetricName") == "HTTPCode_Target_5XX_Count" and a.get("AlarmActions") == [{"Ref": "AlertTopicArn"}]
               for a in alarms):
        fail(f"{lb_id}: no HTTPCode_Target_5XX_Count alarm to AlertTopicArn")


def check_oidc_actions(where, actions, tg_ids):
    """authenticate-oidc first (authenticate, bounded session, secret by reference), then forward."""
    acts = sorted(actions, key=lambda a: a.get("Order", 0))
    if not acts or acts[0].get("Type") != "authenticate-oidc":
        fail(f"{where}: the first action must be authenticate-oidc (every request signed in)")
        return
    cfg = acts[0].get("AuthenticateOidcConfig", {})
    if cfg.get("OnUnauthenticatedRequest", "authenticate") != "authenticate":
        fail(f"{where}: OnUnauthenticatedRequest must be authenticate")
    st = cfg.get("SessionTimeout")
    if not isinstance(st, int) or st > MAX_SESSION_SECONDS:
        fail(f"{where}: SessionTimeout must be set and at most {MAX_SESSION_SECONDS} s (the default is 7 days)")
    sec = cfg.get("ClientSecret")
    s = sec.get("Fn::Sub") if isinstance(sec, dict) else None
    if not (isinstance(s, str) and s.startswith("{{resolve:secretsmanager:${ReviewOidcClientSecretArn}")):
        fail(f"{where}: ClientSecret must be a {{{{resolve:secretsmanager:...}}}} reference to ReviewOidcClientSecretArn, "
             "never a literal or a parameter")
    for k in ("Issuer", "AuthorizationEndpoint", "TokenEndpoint", "UserInfoEndpoint", "ClientId"):
        if not (isinstance(cfg.get(k), dict) and "Ref" in cfg[k]):
            fail(f"{where}: {k} must be a parameter")
    rest = acts[1:]
    if len(rest) != 1 or rest[0].get("Type") != "forward" or rest[0].get("TargetGroupArn", {}).get("Ref") not in tg_ids:
        fail(f"{where}: after authenticate-oidc, exactly one forward to the review target group")


def check_review_ci():
    """review-web is built, gets the RDS CA bundle, and both environments have its parameters."""
    import tomllib
    build = (ROOT / "scripts/build_lambdas.sh").read_text()
    m = re.search(r"^bins=\((.*?)\)", build, re.M)
    if not m or "review-web" not in m.group(1).split():
        fail("scripts/build_lambdas.sh: review-web is not in bins")
    fetch = (ROOT / "scripts/fetch_rds_ca.sh").read_text()
    m = re.search(r"^packages=\((.*?)\)", fetch, re.M)
    if not m or "review-web" not in m.group(1).split():
        fail("scripts/fetch_rds_ca.sh: review-web is not in packages (verify-full fails at cold start without the bundle)")
    sam = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for envname in ("dev", "prod"):
        po = sam.get(envname, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        for p in ("VpcId", "ReviewCertificateArn", "ReviewClientPrefixListId", "ReviewIdpPrefixListId",
                  "ReviewOidcIssuer", "ReviewOidcAuthorizationEndpoint", "ReviewOidcTokenEndpoint",
                  "ReviewOidcUserInfoEndpoint", "ReviewOidcClientId", "ReviewOidcClientSecretArn",
                  "ReviewerGroup", "ViewerGroup"):
            if f"{p}=" not in po:
                fail(f"samconfig.toml [{envname}]: parameter_overrides must set {p} (review-web)")


def check_queues_topics_alarms(tpl):
    res = tpl["Resources"]
    queues = {k: v.get("Properties", {}) for k, v in res.items() if v["Type"] == "AWS::SQS::Queue"}
    for name, p in queues.items():
        if not key_ok(name, p.get("KmsMasterKeyId")):
            fail(f"{name}: queue not encrypted with OpsKmsKeyArn")
        if name.endswith("DLQ") and res[name].get("DeletionPolicy") != "Retain":
            fail(f"{name}: a DLQ needs DeletionPolicy: Retain")
        rp = p.get("RedrivePolicy")
        if not name.endswith("DLQ"):
            if not rp or rp.get("maxReceiveCount") != 4:
                fail(f"{name}: needs RedrivePolicy with maxReceiveCount 4")
    for name, v in res.items():
        if v["Type"] == "AWS::SNS::Topic" and not key_ok(name, v["Properties"].get("KmsMasterKeyId")):
            fail(f"{name}: topic not encrypted with the reaper's key")
        if v["Type"] == "AWS::Logs::LogGroup" and not key_ok(name, v["Properties"].get("KmsKeyId")):
            fail(f"{name}: log group not encrypted with OpsKmsKeyArn")
    alarmed = set()
    for v in res.values():
        if v["Type"] == "AWS::CloudWatch::Alarm":
            p = v["Properties"]
            for d in p.get("Dimensions", []):
                if d.get("Name") == "QueueName" and isinstance(d.get("Value"), dict) and "Fn::GetAtt" in d["Value"]:
                    if p.get("AlarmActions") == [{"Ref": "AlertTopicArn"}]:
                        alarmed.add(d["Value"]["Fn::GetAtt"][0])
    for name in queues:
        if name.endswith("DLQ") and name not in alarmed:
            fail(f"{name}: no depth alarm to AlertTopicArn")
    rule = res.get("ReaperScheduleRule", {})
    if rule.get("Type") != "AWS::Events::Rule" or not re.match(r"(rate|cron)\(", str(rule["Properties"].get("ScheduleExpression", ""))):
        fail("ReaperScheduleRule: must be a classic AWS::Events::Rule with a rate()/cron() schedule")
    else:
        t = rule["Properties"]["Targets"][0]
        if t.get("Arn") != {"Fn::GetAtt": ["WorkspaceReaperFunction", "Arn"]} or "RetryPolicy" not in t \
                or t.get("DeadLetterConfig", {}).get("Arn") != {"Fn::GetAtt": ["ReaperDLQ", "Arn"]}:
            fail("ReaperScheduleRule: target must be the reaper with RetryPolicy and DeadLetterConfig ReaperDLQ")
    for fn, spec in FUNCTIONS.items():
        name, adlq = spec.get("schedule_rule"), spec.get("async_dlq")
        if not name:
            continue
        rule = res.get(name, {})
        if rule.get("Type") != "AWS::Events::Rule" or not re.match(r"(rate|cron)\(", str(rule["Properties"].get("ScheduleExpression", ""))):
            fail(f"{name}: must be a classic AWS::Events::Rule with a rate()/cron() schedule")
            continue
        t = rule["Properties"]["Targets"][0]
        if t.get("Arn") != {"Fn::GetAtt": [fn, "Arn"]} or "RetryPolicy" not in t \
                or t.get("DeadLetterConfig", {}).get("Arn") != {"Fn::GetAtt": [adlq, "Arn"]}:
            fail(f"{name}: target must be {fn} with RetryPolicy and DeadLetterConfig {adlq}")
        perm = [v for v in res.values() if v["Type"] == "AWS::Lambda::Permission"
                and v["Properties"].get("SourceArn") == {"Fn::GetAtt": [name, "Arn"]}]
        if len(perm) != 1 or perm[0]["Properties"].get("FunctionName") != {"Ref": fn}:
            fail(f"{name}: needs one AWS::Lambda::Permission for {fn} with SourceArn the rule")
    if any(v["Type"] == "AWS::Scheduler::Schedule" for v in res.values()):
        fail("EventBridge Scheduler is not allowed (not on every HIPAA-eligible list)")


def check_reaper_ci_mode():
    """CI's deploys pass the reaper's mode from a CI variable per environment (REAPER_MODE_DEV,
    REAPER_MODE_PROD) whose default is samconfig.toml's and whose choices are the two modes, checked
    by scripts/reaper_mode.sh before `sam deploy` (--parameter-overrides replaces samconfig's line,
    so the mode must be on it). Prod's first-week dry run is then a variable, not an edit."""
    import tomllib
    ci_path = ROOT / ".gitlab-ci.yml"
    if not ci_path.exists():
        return
    sam = tomllib.loads((ROOT / "samconfig.toml").read_text())
    ci = yaml.safe_load(ci_path.read_text()) or {}
    variables = ci.get("variables", {})
    for envname in ("dev", "prod"):
        var = f"REAPER_MODE_{envname.upper()}"
        po = sam.get(envname, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        m = re.search(r'ReaperMode="([a-z-]+)"', po)
        default = m.group(1) if m else None
        spec = variables.get(var)
        if not isinstance(spec, dict) or spec.get("value") != default \
                or sorted(spec.get("options", [])) != ["dry-run", "enforce"] or not spec.get("description"):
            fail(f".gitlab-ci.yml: variables.{var} must have value {default!r} (samconfig.toml [{envname}]), "
                 "options [dry-run, enforce] and a description")
        script = [str(s) for s in (ci.get(f"deploy_{envname}", {}) or {}).get("script", [])]
        deploy = next((i for i, s in enumerate(script) if f"sam deploy --config-env {envname}" in s), None)
        check = next((i for i, s in enumerate(script) if s == f'bash scripts/reaper_mode.sh "${var}"'), None)
        if deploy is None or check is None or check > deploy:
            fail(f".gitlab-ci.yml: deploy_{envname} must run `bash scripts/reaper_mode.sh \"${var}\"` before sam deploy")
        elif "--parameter-overrides" in script[deploy] and f"ReaperMode=${var}" not in script[deploy]:
            fail(f".gitlab-ci.yml: the {envname} deploy overrides parameters without ReaperMode=${var}")


def check_reaper_guard(tpl):
    """The reaper's mode switch, its SES notices and the IAM guard on TerminateWorkspaces."""
    import tomllib
    res, params = tpl.get("Resources", {}), tpl.get("Parameters", {})
    policy = tomllib.loads((ROOT / "config/reaper.toml").read_text())
    key = policy.get("exempt_tag_key")
    env = res.get("WorkspaceReaperFunction", {}).get("Properties", {}).get("Environment", {}).get("Variables", {})
    if env.get("REAPER_EXEMPT_TAG_KEY") != key:
        fail(f"WorkspaceReaperFunction: REAPER_EXEMPT_TAG_KEY must be the policy's exempt_tag_key {key!r}")
    # Mode per environment: a parameter with exactly the two modes, safe default, and samconfig's choice.
    mode = params.get("ReaperMode", {})
    if mode.get("AllowedValues") != ["dry-run", "enforce"] or mode.get("Default") != "dry-run":
        fail("ReaperMode: AllowedValues must be [dry-run, enforce] with Default dry-run")
    sam = tomllib.loads((ROOT / "samconfig.toml").read_text())
    for envname, want in (("dev", "dry-run"), ("prod", "enforce")):
        po = sam.get(envname, {}).get("deploy", {}).get("parameters", {}).get("parameter_overrides", "")
        if f'ReaperMode="{want}"' not in po:
            fail(f"samconfig.toml [{envname}]: parameter_overrides must set ReaperMode=\"{want}\"")
        for p in ("ReaperEmailIdentity", "ReaperEmailFrom", "ReaperEmailConfigurationSetName"):
            if f"{p}=" not in po:
                fail(f"samconfig.toml [{envname}]: parameter_overrides must set {p}")
    check_reaper_ci_mode()
    # The guard: an explicit Deny of TerminateWorkspaces on any WorkSpace carrying the exempt tag,
    # and TerminateWorkspaces allowed on this account's WorkSpaces only (the grants check above).
    role = res.get("WorkspaceReaperRole", {}).get("Properties", {})
    stmts = [st for pol in role.get("Policies", []) for st in as_list(pol["PolicyDocument"]["Statement"])]
    ws_arn = {"Fn::Sub": "arn:${AWS::Partition}:workspaces:${AWS::Region}:${AWS::AccountId}:workspace/*"}
    guard = [st for st in stmts if st.get("Effect") == "Deny"
             and as_list(st.get("Action")) == ["workspaces:TerminateWorkspaces"]
             and st.get("Resource") in (ws_arn, "*")
             and st.get("Condition") == {"Null": {f"aws:ResourceTag/{key}": "false"}}]
    if len(guard) != 1:
        fail(f"WorkspaceReaperRole: needs one Deny of workspaces:TerminateWorkspaces on workspace/* with "
             f"Condition Null aws:ResourceTag/{key} = \"false\" (the exempt-tag guard)")
    for st in stmts:
        acts = set(as_list(st.get("Action", [])))
        if st.get("Effect") == "Allow" and acts & {"workspaces:CreateTags", "workspaces:DeleteTags"}:
            fail("WorkspaceReaperRole: may not change tags (it could remove the exempt tag)")
        if st.get("Effect") == "Allow" and acts & {"ses:SendEmail", "ses:SendRawEmail"}:
            if st.get("Condition") != {"StringEquals": {"ses:FromAddress": {"Ref": "ReaperEmailFrom"}}}:
                fail("WorkspaceReaperRole: SES sending must be limited to ses:FromAddress = !Ref ReaperEmailFrom")
    # Bounces and complaints reach on-call.
    cs = res.get("ReaperEmailConfigurationSet", {})
    if cs.get("Type") != "AWS::SES::ConfigurationSet" or cs.get("Properties", {}).get("Name") != {"Ref": "ReaperEmailConfigurationSetName"}:
        fail("ReaperEmailConfigurationSet: must be an AWS::SES::ConfigurationSet named !Ref ReaperEmailConfigurationSetName")
    if cs.get("Properties", {}).get("DeliveryOptions", {}).get("TlsPolicy") != "REQUIRE":
        fail("ReaperEmailConfigurationSet: DeliveryOptions.TlsPolicy must be REQUIRE")
    dests = [v["Properties"] for v in res.values() if v.get("Type") == "AWS::SES::ConfigurationSetEventDestination"
             and v.get("Properties", {}).get("ConfigurationSetName") == {"Ref": "ReaperEmailConfigurationSet"}]
    ok = [d for d in dests if d["EventDestination"].get("Enabled")
          and {"bounce", "complaint"} <= set(d["EventDestination"].get("MatchingEventTypes", []))
          and d["EventDestination"].get("SnsDestination", {}).get("TopicARN") == {"Ref": "AlertTopicArn"}]
    if not ok:
        fail("ReaperEmailConfigurationSet: needs an enabled event destination sending bounce and complaint to AlertTopicArn")


def key_ok(name, ref):
    """Queues and log groups use the operations key; the reaper's resources the data or reaper key."""
    if name in REAPER_RESOURCES:
        return ref in REAPER_KEYS
    return ref == {"Ref": "OpsKmsKeyArn"}


def check_partition(raw_text, tpl):
    if re.search(r"arn:aws(-us-gov)?:", raw_text.replace("^arn:aws[a-z-]*:", "")):
        fail("template.yaml: a literal arn:aws... ARN; use arn:${AWS::Partition}:")

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "Fn::Sub":
                    s = v if isinstance(v, str) else v[0]
                    if isinstance(s, str) and s.startswith("arn:") and not s.startswith("arn:${AWS::Partition}:"):
                        fail(f"ARN without ${{AWS::Partition}}: {s}")
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(tpl.get("Resources", {}))


def check_code_ties(tpl):
    res = tpl["Resources"]
    all_env = set()
    for fn in FUNCTIONS:
        all_env |= set(res.get(fn, {}).get("Properties", {}).get("Environment", {}).get("Variables", {}))
    cfg = ROOT / "crates/layer/src/config.rs"
    if cfg.exists():
        m = re.search(r"pub mod names \{(.*?)\n\}", cfg.read_text(), re.S)
        for name in re.findall(r'"((?:LAKE|REAPER)_[A-Z0-9_]+)"', m.group(1) if m else ""):
            if name not in all_env:
                fail(f"crates/layer/src/config.rs names {name}, but no function in template.yaml sets it")
    for fn, spec in FUNCTIONS.items():
        src = ROOT / "crates" / spec.get("crate", spec["bin"]) / "src"
        if not src.is_dir():
            print(f"note: crates/{spec['bin']} not in the workspace yet; {fn} checked against this script's list only")
            continue
        env = set(res.get(fn, {}).get("Properties", {}).get("Environment", {}).get("Variables", {}))
        for f in src.rglob("*.rs"):
            for arr in re.findall(r"REQUIRED_ENV\s*:\s*&\[&str\]\s*=\s*&\[(.*?)\]", f.read_text(), re.S):
                for name in re.findall(r'"([A-Z0-9_]+)"', arr):
                    if name not in env:
                        fail(f"{f.relative_to(ROOT)} requires {name}, not set on {fn}")


def check_ci():
    ci_path, run_path = ROOT / ".gitlab-ci.yml", ROOT / ".ci/run"
    try:
        ci = yaml.safe_load(ci_path.read_text())
    except Exception as e:  # noqa: BLE001
        fail(f".gitlab-ci.yml does not parse: {e}")
        return
    want = ["cargo fmt --all --check", "cargo clippy --workspace --all-targets -- -D warnings",
            "bash scripts/test.sh", "bash scripts/check_infra.sh"]
    if run_path.exists():
        for line in run_path.read_text().splitlines():
            line = line.strip()
            if re.match(r"(cargo|bash|python3) ", line) and line not in want:
                want.append(line)
        if "bash scripts/check_infra.sh" not in run_path.read_text():
            print("note: .ci/run does not call `bash scripts/check_infra.sh` yet (the GitLab lint stage does)")
    stages = ci.get("stages", [])
    if stages != ["lint", "test", "build", "deploy_dev", "deploy_prod"]:
        fail(f".gitlab-ci.yml stages {stages} != lint, test, build, deploy_dev, deploy_prod")
    jobs = {k: v for k, v in ci.items() if isinstance(v, dict) and "script" in v and not k.startswith(".")}
    lint_test = [c.strip() for j in jobs.values() if j.get("stage") in ("lint", "test") for c in j["script"]]
    for cmd in want:
        if cmd not in lint_test:
            fail(f".gitlab-ci.yml: no lint/test job runs `{cmd}` (as .ci/run does)")
    build = [j for j in jobs.values() if j.get("stage") == "build"]
    if not build or not any("cargo lambda build --release" in c for j in build for c in j["script"]) \
            or not any("target/lambda/" in p for j in build for p in j.get("artifacts", {}).get("paths", [])):
        fail(".gitlab-ci.yml: build job must run `cargo lambda build --release` and keep target/lambda/")
    dev = [j for j in jobs.values() if j.get("stage") == "deploy_dev"]
    prod = [j for j in jobs.values() if j.get("stage") == "deploy_prod"]
    if not dev or not any("sam deploy --config-env dev" in c for c in dev[0]["script"]) \
            or "main" not in str(dev[0].get("rules")):
        fail(".gitlab-ci.yml: deploy_dev must run `sam deploy --config-env dev` on main")
    if not prod or not any("sam deploy --config-env prod" in c for c in prod[0]["script"]) \
            or "manual" not in str(prod[0].get("rules")) or prod[0].get("environment", {}).get("name") != "prod":
        fail(".gitlab-ci.yml: deploy_prod must be a manual `sam deploy --config-env prod` job on the prod (protected) environment")
    if not any("cache" in j for j in jobs.values()):
        fail(".gitlab-ci.yml: no job caches cargo's registry and target dir")


def lambda_packages(tpl):
    """The cargo package of each binary a function's CodeUri (target/lambda/<bin>/) names."""
    import tomllib
    bin_pkg = {}
    for manifest in (ROOT / "crates").glob("*/Cargo.toml"):
        m = tomllib.loads(manifest.read_text())
        pkg = m["package"]["name"]
        bins = [b["name"] for b in m.get("bin", [])]
        if not bins and (manifest.parent / "src/main.rs").exists():
            bins = [pkg]
        bin_pkg.update({b: pkg for b in bins})
    out = {}
    for name, r in tpl["Resources"].items():
        uri = str(r.get("Properties", {}).get("CodeUri", ""))
        m = re.fullmatch(r"target/lambda/([\w-]+)/?", uri)
        if m:
            if m.group(1) not in bin_pkg:
                fail(f"{name}: CodeUri {uri} names no binary of the workspace")
            else:
                out[m.group(1)] = bin_pkg[m.group(1)]
    return out


def check_ci_build(tpl):
    """The build job compiles the Lambda packages only (never the `lake` CLI and its polars), and
    every function's binary among them."""
    try:
        ci = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())
    except Exception:  # noqa: BLE001 (check_ci reports it)
        return
    cmds = [c for j in ci.values() if isinstance(j, dict) and j.get("stage") == "build"
            for c in j.get("script", []) if "cargo lambda build" in c]
    pkgs = {p for c in cmds for p in re.findall(r"(?:-p|--package)[ =]([\w-]+)", c)}
    if not cmds or not pkgs or any("--workspace" in c for c in cmds):
        fail(".gitlab-ci.yml: the build job's `cargo lambda build` must name the Lambda packages (-p ...), "
             "not build the whole workspace (the `lake` CLI links polars)")
        return
    if "lake" in pkgs:
        fail(".gitlab-ci.yml: the build job must not build the `lake` CLI (polars) into Lambda artefacts")
    for b, pkg in sorted(lambda_packages(tpl).items()):
        if pkg not in pkgs:
            fail(f".gitlab-ci.yml: the build job does not build -p {pkg} (binary {b}, a function's CodeUri)")


# ---------------------------------------------------------------- HIPAA review findings
PHI_BUCKETS = ("IngestionBucket", "RawBucket", "QuarantineBucket")
SSE_KEYS = ("s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id")


def check_rules_read(tpl):
    """pii-matching reads the datasets table for the published matching rules only: every
    statement of its role on DatasetsTable is GetItem limited by dynamodb:LeadingKeys to the
    rules partition (`lake rules publish` writes pk = rules#matching), and the Rust side reads
    exactly that key."""
    role = tpl["Resources"].get("PiiMatchingRole", {}).get("Properties", {})
    found = 0
    for pol in role.get("Policies", []):
        for st in as_list(pol["PolicyDocument"]["Statement"]):
            if {"Fn::GetAtt": ["DatasetsTable", "Arn"]} not in as_list(st.get("Resource", [])):
                continue
            found += 1
            keys = st.get("Condition", {}).get("ForAllValues:StringEquals", {}).get("dynamodb:LeadingKeys")
            if as_list(st.get("Action")) != ["dynamodb:GetItem"] or as_list(keys) != ["rules#matching"]:
                fail(f"PiiMatchingRole {st.get('Sid')}: DatasetsTable only as dynamodb:GetItem with "
                     "ForAllValues:StringEquals dynamodb:LeadingKeys [rules#matching]")
    if not found:
        fail("PiiMatchingRole: no read of the published matching rules (DatasetsTable, rules#matching)")
    src = ROOT / "crates/pii-matching/src/rules_store.rs"
    if src.exists() and 'RULES_PK: &str = "rules#matching"' not in src.read_text():
        fail("crates/pii-matching/src/rules_store.rs: RULES_PK is not rules#matching (the IAM condition's key)")


def statements_of(res, name):
    return as_list(res[name]["Properties"]["PolicyDocument"]["Statement"])


def check_bucket_policies(tpl):
    """Deny only an explicit wrong algorithm/key (a put without headers gets the default), and on
    the PHI buckets admit writes only from the roles whose policies grant s3:PutObject there."""
    res = tpl["Resources"]
    policies = {v["Properties"]["Bucket"]["Ref"]: k for k, v in res.items() if v["Type"] == "AWS::S3::BucketPolicy"}
    writers: dict = {b: set() for b in PHI_BUCKETS}
    for fn in FUNCTIONS:
        for (target, _sfx), acts in FUNCTIONS[fn]["grants"].items():
            if target in writers and "s3:PutObject" in acts:
                writers[target].add(res[fn]["Properties"]["Role"]["Fn::GetAtt"][0])
    for bucket in (*PHI_BUCKETS, "AccessLogsBucket"):
        pol = policies.get(bucket)
        if not pol:
            fail(f"{bucket}: no bucket policy")
            continue
        sts = statements_of(res, pol)
        for st in sts:
            for op, keys in st.get("Condition", {}).items():
                if op.endswith("IfExists") and any(k in SSE_KEYS for k in keys) and st.get("Effect") == "Deny":
                    fail(f"{pol} {st.get('Sid')}: {op} on an SSE header denies puts that send none "
                         "(Transfer Family, log delivery); use Null false + StringNotEquals")
        sids = {st.get("Sid") for st in sts}
        for sid in ("DenyInsecureTransport", "DenyPutWithOtherEncryption", "DenyPutWithOtherKey", "DenyKmsWithoutKeyId"):
            if sid not in sids:
                fail(f"{pol}: statement {sid} missing")
        if bucket not in writers:
            continue
        st = next((x for x in sts if x.get("Sid") == "DenyWritesExceptPipelineRoles"), None)
        if not st:
            fail(f"{pol}: no DenyWritesExceptPipelineRoles (writes only from the pipeline roles)")
            continue
        listed = as_list(st.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn", []))
        got = {x["Fn::GetAtt"][0] for x in listed if isinstance(x, dict) and "Fn::GetAtt" in x}
        if bucket == "IngestionBucket":
            want_sftp = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/county-lake-${Environment}-sftp-user"}
            if want_sftp not in listed:
                fail(f"{pol}: the partners' SFTP role must be the ingestion bucket's writer")
            want_op = {"Fn::If": ["HasOperatorUploadRole", {"Ref": "OperatorUploadRoleArn"}, {"Ref": "AWS::NoValue"}]}
            others = [x for x in listed if x not in (want_sftp, want_op)]
            if want_op not in listed or others or tpl["Parameters"].get("OperatorUploadRoleArn", {}).get("Default") != "":
                fail(f"{pol}: writers must be the SFTP role and, only when OperatorUploadRoleArn (default empty) "
                     f"is set, the operators' role; found also {others}")
        if got != writers[bucket]:
            fail(f"{pol}: writers {sorted(got)} != roles granted s3:PutObject {sorted(writers[bucket])}")


def check_keys(tpl):
    """PHI data key on the PHI buckets and tables; ops key on the access-log bucket; every KMS grant
    of a PHI function's role limited by kms:ViaService."""
    res = tpl["Resources"]

    def bucket_key(name):
        rules = res[name]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        return rules[0]["ServerSideEncryptionByDefault"].get("KMSMasterKeyID"), rules[0].get("BucketKeyEnabled")
    for b in PHI_BUCKETS:
        if bucket_key(b) != ({"Ref": "KmsKeyArn"}, True):
            fail(f"{b}: default encryption must be SSE-KMS with KmsKeyArn and a bucket key")
    if bucket_key("AccessLogsBucket") != ({"Ref": "OpsKmsKeyArn"}, True):
        fail("AccessLogsBucket: default encryption must be SSE-KMS with OpsKmsKeyArn and a bucket key")
    for name, v in res.items():
        if v["Type"] == "AWS::DynamoDB::Table":
            if v["Properties"]["SSESpecification"].get("KMSMasterKeyId") != {"Ref": "KmsKeyArn"}:
                fail(f"{name}: table not encrypted with KmsKeyArn")
            if v.get("DeletionPolicy") != "Retain":
                fail(f"{name}: a table needs DeletionPolicy: Retain")
    for fn in PHI_FUNCTIONS:
        role = res[res[fn]["Properties"]["Role"]["Fn::GetAtt"][0]]
        for pol in role["Properties"]["Policies"]:
            for st in as_list(pol["PolicyDocument"]["Statement"]):
                if any(str(a).startswith("kms:") for a in as_list(st.get("Action", []))):
                    via = st.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
                    if not via:
                        fail(f"{fn}: KMS statement {st.get('Sid')} without a kms:ViaService condition")


def check_alarms_retention_fips(tpl):
    res = tpl["Resources"]
    alarms = [v["Properties"] for v in res.values() if v["Type"] == "AWS::CloudWatch::Alarm"]

    def has(metric, dim, ref):
        return any(a.get("MetricName") == metric and a.get("AlarmActions") == [{"Ref": "AlertTopicArn"}]
                   and {"Name": dim, "Value": ref} in a.get("Dimensions", []) for a in alarms)
    for fn in FUNCTIONS:
        for metric in ("Errors", "Throttles"):
            if not has(metric, "FunctionName", {"Ref": fn}):
                fail(f"{fn}: no {metric} alarm to AlertTopicArn")
    for name, v in res.items():
        if v["Type"] == "AWS::SQS::Queue" and not has("ApproximateAgeOfOldestMessage", "QueueName", {"Fn::GetAtt": [name, "QueueName"]}):
            fail(f"{name}: no oldest-message-age alarm to AlertTopicArn")
    # FIPS endpoints in GovCloud for every function's SDK (Globals are merged into each function).
    genv = tpl.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    if genv.get("AWS_USE_FIPS_ENDPOINT") != {"Fn::If": ["InGovCloud", "true", "false"]}:
        fail("Globals.Function: AWS_USE_FIPS_ENDPOINT must be !If [InGovCloud, \"true\", \"false\"]")
    if tpl.get("Conditions", {}).get("InGovCloud") != {"Fn::Equals": [{"Ref": "AWS::Partition"}, "aws-us-gov"]}:
        fail("Conditions: InGovCloud must be !Equals [!Ref AWS::Partition, aws-us-gov]")
    # EventBridge delivery stays on (GuardDuty Malware Protection / AWS Backup turn it on; a stack
    # update rewriting the notification configuration would turn it off).
    notif = res["IngestionBucket"]["Properties"].get("NotificationConfiguration", {})
    if notif.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") is not True:
        fail("IngestionBucket: NotificationConfiguration.EventBridgeConfiguration.EventBridgeEnabled must be true")
    # Retention of the originals and the quarantined rows.
    if tpl["Parameters"].get("PhiRetentionDays", {}).get("Default") != 2192:
        fail("parameter PhiRetentionDays must default to 2192 days (six years)")
    ref = {"Ref": "PhiRetentionDays"}
    ing = res["IngestionBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    if not any(r.get("ExpirationInDays") == ref and r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == ref for r in ing):
        fail("IngestionBucket: originals (current and noncurrent) must expire after PhiRetentionDays")
    quar = res["QuarantineBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    if not any(r.get("ExpirationInDays") == ref for r in quar):
        fail("QuarantineBucket: quarantined rows must expire after PhiRetentionDays")


# ---------------------------------------------------------------- analysts (Glue, Athena)
ANALYST_POLICY, STEWARD_POLICY = "AnalystQueryPolicy", "StewardQuarantinePolicy"
S3_READS = ("s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectAttributes", "s3:GetObjectTagging",
            "s3:GetObjectAcl", "s3:RestoreObject", "s3:ListBucket", "s3:ListBucketVersions",
            "s3:ListMultipartUploadParts")
GLUE_TABLE_READS = ("glue:GetTable", "glue:GetTables", "glue:GetTableVersion", "glue:GetTableVersions",
                    "glue:GetPartition", "glue:GetPartitions", "glue:BatchGetPartition",
                    "glue:GetColumnStatisticsForTable", "glue:GetColumnStatisticsForPartition",
                    "glue:SearchTables")


def identity_decide(statements, req):
    """An identity policy's answer to one request: 'deny' (explicit), 'allow' or 'implicit-deny';
    actions, resources and conditions matched with test_bucket_policies.py's evaluator."""
    import test_bucket_policies as tbp

    def hit(st):
        for el in ("NotAction", "NotResource", "NotPrincipal"):
            if el in st:
                raise ValueError(f"{el} is not evaluated here: add it with its documented semantics")
        return (any(tbp.wild(a, req["action"], case=False) for a in as_list(st["Action"]))
                and any(tbp.wild(r, req["resource"]) for r in as_list(st["Resource"]))
                and tbp.condition_holds(st.get("Condition", {}), req["context"]))
    if any(st["Effect"] == "Deny" and hit(st) for st in statements):
        return "deny"
    return "allow" if any(st["Effect"] == "Allow" and hit(st) for st in statements) else "implicit-deny"


def analyst_requests(t):
    """(who, what, request, expected) for the analyst and the data steward (analyst policy plus
    the steward's): the calls Athena makes with their credentials, and the reads they must not
    have (ingestion and quarantine buckets, the quarantine table)."""
    import test_bucket_policies as tbp
    arn, P, R, A = t.arn_of, tbp.PARTITION, tbp.REGION, tbp.ACCOUNT
    raw, ing, quar, results = arn("RawBucket"), arn("IngestionBucket"), arn("QuarantineBucket"), arn("AthenaResultsBucket")
    db = t.name_of("GlueDatabase")
    table = f"arn:{P}:glue:{R}:{A}:table/{db}/{t.name_of('GlueTableEncounter')}"
    qtable = f"arn:{P}:glue:{R}:{A}:table/{db}/{t.name_of('GlueTableEncounterQuarantine')}"
    wg = f"arn:{P}:athena:{R}:{A}:workgroup/{t.name_of('AthenaWorkGroup')}"
    part = "dataset=encounter/source=st_marys/ingest_date=2026-12-07"

    def req(action, resource, **ctx):
        return {"action": action, "resource": resource,
                "context": {"aws:SecureTransport": "true", **{k.replace("_", ":", 1): v for k, v in ctx.items()}}}
    via_s3 = {"kms_ViaService": f"s3.{R}.amazonaws.com"}
    out = [
        ("analyst", "Athena query in the workgroup", req("athena:StartQueryExecution", wg), "allow"),
        ("analyst", "lake query reads the workgroup's settings", req("athena:GetWorkGroup", wg), "allow"),
        ("analyst", "a query in another workgroup", req("athena:StartQueryExecution", f"arn:{P}:athena:{R}:{A}:workgroup/primary"), "implicit-deny"),
        ("analyst", "the encounter table", req("glue:GetTable", table), "allow"),
        ("analyst", "raw Parquet", req("s3:GetObject", f"{raw}/{part}/f.parquet"), "allow"),
        ("analyst", "listing a raw partition", req("s3:ListBucket", raw, s3_prefix=f"{part}/"), "allow"),
        ("analyst", "the raw bucket's region (Athena asks)", req("s3:GetBucketLocation", raw), "allow"),
        ("analyst", "listing the whole raw bucket", req("s3:ListBucket", raw, s3_prefix=""), "implicit-deny"),
        ("analyst", "writing a result", req("s3:PutObject", f"{results}/results/q.csv"), "allow"),
        ("analyst", "reading a result", req("s3:GetObject", f"{results}/results/q.csv"), "allow"),
        ("analyst", "the lake key through S3", req("kms:Decrypt", tbp.KEYS["KmsKeyArn"], **via_s3), "allow"),
        ("analyst", "the lake key called directly", req("kms:Decrypt", tbp.KEYS["KmsKeyArn"]), "implicit-deny"),
        ("steward", "the quarantine table", req("glue:GetTable", qtable), "allow"),
        ("steward", "the quarantine table's partitions", req("glue:GetPartitions", qtable), "allow"),
        ("steward", "bad rows", req("s3:GetObject", f"{quar}/bad/{part}/f.bad.parquet"), "allow"),
        ("steward", "listing bad rows", req("s3:ListBucket", quar, s3_prefix=f"bad/{part}/"), "allow"),
        ("steward", "quarantine outside bad/", req("s3:GetObject", f"{quar}/malformed/{part}/f.jsonl"), "implicit-deny"),
        ("steward", "listing the whole quarantine bucket", req("s3:ListBucket", quar, s3_prefix=""), "implicit-deny"),
    ]
    for who in ("analyst", "steward"):
        for a in S3_READS:
            on = ing if a.startswith("s3:ListBucket") else f"{ing}/st_marys/admissions.csv"
            out.append((who, f"{a} on the ingestion bucket", req(a, on, s3_prefix="st_marys/"), "implicit-deny"))
    for a in S3_READS:
        on = quar if a.startswith("s3:ListBucket") else f"{quar}/bad/{part}/f.bad.parquet"
        out.append(("analyst", f"{a} on the quarantine bucket", req(a, on, s3_prefix="bad/"), "implicit-deny"))
    for a in GLUE_TABLE_READS:
        out.append(("analyst", f"{a} on the quarantine table", req(a, qtable), "implicit-deny"))
    return out


def check_analyst_access(path):
    """AnalystQueryPolicy reads the raw table and its results only: no read on the ingestion or
    quarantine buckets nor the quarantine table; StewardQuarantinePolicy adds the quarantine table."""
    import test_bucket_policies as tbp

    class Tpl(tbp.Template):
        def name_of(self, logical):
            r = self.res[logical]
            props = r.get("Properties", {})
            names = {"AWS::Glue::Database": ("DatabaseInput", "Name"), "AWS::Glue::Table": ("TableInput", "Name"),
                     "AWS::Athena::WorkGroup": ("Name",)}
            if r["Type"] in names:
                v = props
                for k in names[r["Type"]]:
                    v = v[k]
                return self.value(v)
            return super().name_of(logical)
    t = Tpl(path)
    if ANALYST_POLICY not in t.res or STEWARD_POLICY not in t.res:
        fail(f"template.yaml: {ANALYST_POLICY} and {STEWARD_POLICY} (docs/ANALYTICS.md) missing")
        return
    docs = {n: as_list(t.value(t.res[n]["Properties"]["PolicyDocument"])["Statement"])
            for n in (ANALYST_POLICY, STEWARD_POLICY)}
    for n, sts in docs.items():
        for st in sts:
            if any("*" in str(a).split(":", 1)[-1] for a in as_list(st.get("Action", []))) or "*" in as_list(st.get("Resource")):
                fail(f"{n}: statement {st.get('Sid')} has a wildcard action or Resource \"*\"")
    policies = {"analyst": docs[ANALYST_POLICY], "steward": docs[ANALYST_POLICY] + docs[STEWARD_POLICY]}
    for who, what, req, want in analyst_requests(t):
        got = identity_decide(policies[who], req)
        if got != want:
            fail(f"{who}: {what} ({req['action']} {req['resource']}): {got}, want {want}")


def tf_text():
    return {f.name: f.read_text() for f in sorted((ROOT / "infra").glob("*.tf"))}


def block(text, kind, typ, name):
    """The body of `<kind> "<typ>" "<name>" { ... }` (brace-matched), or ''."""
    m = re.search(rf'{kind} "{typ}" "{name}" \{{', text)
    if not m:
        return ""
    depth, i = 1, m.end()
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def check_terraform():
    """The foundation's side of the review: SFTP reachable, audit trail, detective controls, locked
    and copied backups, endpoints limited to the account (each assertion names what it proves)."""
    tf = tf_text()
    alltf = "\n".join(tf.values())

    def need(cond, msg):
        if not cond:
            fail(f"infra/: {msg}")
    srv = block(alltf, "resource", "aws_transfer_server", "sftp")
    need('endpoint_type          = "VPC"' in srv or re.search(r'endpoint_type\s*=\s*"VPC"', srv), "SFTP must be a VPC-hosted endpoint")
    need(re.search(r"address_allocation_ids\s*=\s*var\.sftp_internet_facing \? aws_eip\.sftp\[\*\]\.allocation_id", srv),
         "SFTP endpoint must carry the Elastic IPs when internet-facing")
    need(re.search(r"subnet_ids\s*=\s*var\.sftp_internet_facing \? aws_subnet\.public", srv), "internet-facing SFTP must sit in the public subnets")
    need(re.search(r"gateway_id\s*=\s*aws_internet_gateway\.sftp", alltf), "public subnets need a route to the internet gateway")
    need('c != "0.0.0.0/0"' in alltf, "sftp_allowed_cidrs must refuse 0.0.0.0/0")
    need(re.search(r'cidr_ipv4\s*=\s*each\.key', block(alltf, "resource", "aws_vpc_security_group_ingress_rule", "sftp")),
         "SFTP security group must admit only sftp_allowed_cidrs")
    trail = block(alltf, "resource", "aws_cloudtrail", "lake")
    for attr in ("is_multi_region_trail", "enable_log_file_validation", "include_global_service_events"):
        need(re.search(rf"{attr}\s*=\s*true", trail), f"CloudTrail: {attr} = true")
    need(re.search(r"kms_key_id\s*=\s*aws_kms_key\.ops\.arn", trail), "CloudTrail: encrypted with the ops key")
    need("cloud_watch_logs_group_arn" in trail, "CloudTrail: delivered to CloudWatch Logs")
    need('"AWS::S3::Object"' in trail and "local.phi_bucket_arns" in trail, "CloudTrail: S3 data events on the PHI buckets")
    need('"AWS::DynamoDB::Table"' in trail and "local.lake_table_arns" in trail, "CloudTrail: DynamoDB data events on the lake tables")
    need(re.search(r'count\s*=\s*local\.create_trail', trail) and "!var.organization_trail_provided" in alltf, "CloudTrail: organization_trail_provided switch")
    need("object_lock_enabled = true" in block(alltf, "resource", "aws_s3_bucket", "audit"), "audit bucket must be Object Lock enabled")
    for k in ("root-use", "iam-policy-change", "kms-key-disable-delete", "bucket-policy-change"):
        need(re.search(rf"^\s*{k}\s*=", alltf, re.M), f"CloudTrail metric filter + alarm {k}")
    need('name        = "S3_DATA_EVENTS"' in alltf or re.search(r'name\s*=\s*"S3_DATA_EVENTS"', alltf), "GuardDuty S3 protection")
    need("aws_guardduty_malware_protection_plan" in alltf, "GuardDuty Malware Protection for S3 on the ingestion bucket (switch)")
    need("aws_config_configuration_recorder" in alltf and "aws_config_conformance_pack" in alltf, "AWS Config + HIPAA conformance pack")
    need("aws_accessanalyzer_analyzer" in alltf, "IAM Access Analyzer")
    slr = block(alltf, "resource", "aws_iam_service_linked_role", "config")
    need(re.search(r"count\s*=\s*var\.aws_config_provided \|\| var\.config_service_linked_role_exists \? 0 : 1", slr),
         "AWSServiceRoleForConfig created only when it does not exist yet (config_service_linked_role_exists)")
    need("aws_iam_service_linked_role.config[0]" not in alltf, "the Config recorder must not need the SLR resource (it may not exist)")
    pack = block(alltf, "resource", "terraform_data", "hipaa_conformance_pack_required")
    need('var.environment != "prod" || var.hipaa_conformance_pack_provided || var.hipaa_conformance_pack_template_s3_uri != null' in pack,
         "prod must require the HIPAA conformance pack (precondition)")
    for var in ("guardduty_provided", "aws_config_provided", "access_analyzer_provided", "organization_trail_provided"):
        need(f'variable "{var}"' in alltf, f'"already provided" switch {var}')
    need("aws_backup_vault_lock_configuration" in alltf and "copy_action" in alltf, "Backup: vault lock and a cross-region copy")
    for rs in ("lake", "replica"):
        b = block(alltf, "resource", "aws_backup_region_settings", rs)
        mgmt = re.search(r"resource_type_management_preference\s*=\s*\{(.*?)\}", b, re.S)
        need(re.search(r"resource_type_opt_in_preference\s*=\s*\{ for t in local\.backup_resource_types : t => true \}", b)
             and 'backup_resource_types = concat(["Aurora", "DynamoDB"], var.backup_s3_buckets ? ["S3"] : [])' in alltf,
             f"aws_backup_region_settings.{rs}: opt in Aurora, DynamoDB and (with backup_s3_buckets) S3")
        need(mgmt and re.search(r'"DynamoDB"\s*=\s*true', mgmt.group(1)),
             f"aws_backup_region_settings.{rs}: DynamoDB advanced features (cross-region copy of the tables)")
    need(re.search(r'region\s*=\s*var\.replica_region', alltf) and 'default     = "us-gov-east-1"' in alltf, "Backup copy region us-gov-east-1")
    for a in ("aurora", "sftp_auth_failure", "backup_failures"):
        need(re.search(rf'resource "aws_(cloudwatch_metric_alarm|cloudwatch_event_rule)" "{a}"', alltf), f"alarm/rule {a}")
    fls = block(alltf, "resource", "aws_cloudwatch_metric_alarm", "aurora_free_local_storage")
    need('"FreeLocalStorage"' in fls and "DBInstanceIdentifier = aws_rds_cluster_instance.lake[count.index]" in fls
         and "count               = var.db_instance_count" in fls,
         "FreeLocalStorage is per instance: one alarm per aws_rds_cluster_instance by DBInstanceIdentifier")
    need("FreeLocalStorage" not in block(alltf, "resource", "aws_cloudwatch_metric_alarm", "aurora")
         and not re.search(r'free-storage\s*=\s*\{[^}]*FreeLocalStorage', alltf),
         "no cluster-dimension FreeLocalStorage alarm (the metric is per instance)")
    ep = block(alltf, "data", "aws_iam_policy_document", "endpoint")
    need("aws:PrincipalAccount" in ep and "aws:ResourceAccount" in ep, "endpoint policies limited to the account's principals and resources")
    keys = re.search(r'sid\s*=\s*"LoadBalancerPublicKeys"(.*?)\n    \}', ep, re.S)
    need(keys and re.search(r'actions\s*=\s*\["s3:GetObject"\]', keys.group(1))
         and 'aws-elb-public-keys-prod-${local.region}/*"]' in keys.group(1) and 'each.key == "s3"' in ep,
         "the S3 endpoint admits GetObject on the load balancer's public-key bucket only (review-web's sign-in check)")
    for e in ("aws_vpc_endpoint\" \"interface", "aws_vpc_endpoint\" \"s3", "aws_vpc_endpoint\" \"dynamodb"):
        b = block(alltf, "resource", *e.split('" "'))
        need("data.aws_iam_policy_document.endpoint" in b, f"{e.replace(chr(34), '')}: endpoint policy")
    have = set(interface_endpoint_services(alltf, False))
    need({"sqs", "sns", "kms", "secretsmanager", "logs", "sts", "xray"} <= have, f"interface endpoints {sorted(have)} miss some the functions call")
    for key in ("lake", "ops", "reaper"):
        need(f'resource "aws_kms_key" "{key}"' in alltf, f"KMS key {key}")


# ---------------------------------------------------------------- every host a VPC function calls
# The template's parameter of each function's security group -> the terraform group behind it
# (outputs.tf: pipeline_security_group_id, lambda_security_group_id).
SG_OF_PARAM = {"PipelineSecurityGroupId": "pipeline", "VpcSecurityGroupId": "lambda"}
# Grants whose calls leave no function over its own network interface: KMS only kms:ViaService
# (S3 / DynamoDB / Secrets Manager call it, asserted by check_keys); rds-db:connect tokens are
# signed locally (the login goes to Aurora on 5432); logs, X-Ray and EC2 calls are the Lambda
# service's, made outside the function's VPC.
NOT_CALLED_FROM_VPC = {"kms", "rds-db", "logs", "xray", "ec2"}
# Calls beyond the role's grants: db-migrate answers CloudFormation by a PUT to a pre-signed S3
# URL (the regional S3 name of CloudFormation's response bucket).
EXTRA_CALLS = {"DbMigrateFunction": {"s3"}}


def sdk_hosts():
    import json
    return json.loads((ROOT / "infra/sdk_endpoints.json").read_text())


def interface_endpoint_services(alltf, fips):
    """infra/network.tf's local.interface_endpoints evaluated with local.fips = fips."""
    body = re.search(r"interface_endpoints\s*=\s*\{(.*?)\n\s*\}", alltf, re.S)
    out = {}
    for line in (body.group(1).splitlines() if body else []):
        m = re.fullmatch(r'\s*([\w-]+)\s*=\s*local\.fips \? "([\w-]+)" : "([\w-]+)"\s*', line) or \
            re.fullmatch(r'\s*([\w-]+)\s*=\s*"([\w-]+)"\s*', line)
        if m:
            out[m.group(1)] = m.group(2) if (fips or m.lastindex == 2) else m.group(3)
    return out


def check_vpc_endpoints(tpl):
    """Every AWS host name a VPC function's SDK resolves (infra/sdk_endpoints.json, FIPS on as in
    GovCloud and off) is served inside the VPC: an interface endpoint with private DNS for that
    name, or the S3 / DynamoDB gateway on the private route table; and the function's security
    group may reach it. Else the call times out in a subnet with no route out."""
    res = tpl["Resources"]
    alltf = "\n".join(tf_text().values())
    table = sdk_hosts()
    region = table["region"]
    iface = block(alltf, "resource", "aws_vpc_endpoint", "interface")
    if not (re.search(r"private_dns_enabled\s*=\s*true", iface) and
            re.search(r'service_name\s*=\s*"com\.amazonaws\.\$\{local\.region\}\.\$\{each\.value\}"', iface) and
            re.search(r"for_each\s*=\s*local\.interface_endpoints", iface)):
        fail("infra/: aws_vpc_endpoint.interface must be for_each local.interface_endpoints, service "
             "com.amazonaws.${local.region}.${each.value}, private_dns_enabled = true")
    gateways = {g: block(alltf, "resource", "aws_vpc_endpoint", g) for g in ("s3", "dynamodb")}
    for g, b in gateways.items():
        if not (re.search(r'vpc_endpoint_type\s*=\s*"Gateway"', b) and "aws_route_table.private.id" in b):
            fail(f"infra/: aws_vpc_endpoint.{g} must be a Gateway endpoint on the private route table")
    if not re.search(r'fips\s*=\s*var\.fips_endpoints == null \? local\.partition == "aws-us-gov"', alltf):
        fail("infra/: local.fips must follow the partition like template.yaml's InGovCloud (unless fips_endpoints is set)")
    egress = [block(alltf, "resource", "aws_vpc_security_group_egress_rule", n)
              for n in re.findall(r'resource "aws_vpc_security_group_egress_rule" "(\w+)"', alltf)]

    def sg_reaches(sg, target):
        return any(f"aws_security_group.{sg}.id" in e and target in e and re.search(r"from_port\s*=\s*443", e)
                   for e in egress)
    for mode, fips in (("fips", True), ("plain", False)):
        services = set(interface_endpoint_services(alltf, fips).values())
        for fn, spec in FUNCTIONS.items():
            vpc = res[fn]["Properties"].get("VpcConfig")
            if not vpc:
                continue
            sg = SG_OF_PARAM.get(vpc["SecurityGroupIds"][0].get("Ref"))
            calls = {a.split(":")[0] for acts in spec["grants"].values() for a in acts} - NOT_CALLED_FROM_VPC
            for svc in sorted(calls | EXTRA_CALLS.get(fn, set())):
                host = table[mode].get(svc)
                if host is None:
                    fail(f"{fn} calls {svc}: no host name for it in infra/sdk_endpoints.json")
                    continue
                name = host.removesuffix(f".{region}.amazonaws.com")
                if name in ("s3", "s3-fips", "dynamodb"):
                    gw = "s3" if name.startswith("s3") else "dynamodb"
                    ok = bool(gateways[gw]) and sg_reaches(sg, f"aws_vpc_endpoint.{gw}.prefix_list_id")
                    where = f"the {gw} gateway endpoint"
                else:
                    ok = name in services and sg_reaches(sg, "aws_security_group.endpoints.id")
                    where = f"an interface endpoint com.amazonaws.{region}.{name}"
                if not ok:
                    fail(f"{fn} ({mode}): its SDK calls {host}, which needs {where} its security group "
                         f"({sg}) reaches on 443")


def check_supply_chain():
    run = (ROOT / ".ci/run").read_text()
    if "cargo deny --offline check licenses bans sources" not in run:
        fail(".ci/run: no `cargo deny --offline check licenses bans sources`")
    deny = (ROOT / "deny.toml").read_text() if (ROOT / "deny.toml").exists() else ""
    if "private = { ignore = true }" not in deny:
        fail("deny.toml: the workspace's UNLICENSED, unpublished crates need private = { ignore = true }")
    ci = (ROOT / ".gitlab-ci.yml").read_text()
    if "bash scripts/fetch_rds_ca.sh" not in ci or "truststore.pki" in ci:
        fail(".gitlab-ci.yml: the build must fetch the RDS CA bundle only through scripts/fetch_rds_ca.sh (SHA-256 pinned)")
    fetch = (ROOT / "scripts/fetch_rds_ca.sh").read_text()
    if "config/rds-ca-bundle.sha256" not in fetch or "sha256sum" not in fetch:
        fail("scripts/fetch_rds_ca.sh must compare the bundle's SHA-256 with config/rds-ca-bundle.sha256")


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    raw = path.read_text()
    tpl = yaml.load(raw, Loader=CfnLoader)
    params = set(tpl.get("Parameters", {}))
    for p in ("Environment", "KmsKeyArn", "AlertTopicArn", "VpcSubnetIds", "VpcSecurityGroupId", "DbSecretArn"):
        if p not in params:
            fail(f"template.yaml: parameter {p} missing")
    check_functions(tpl, raw)
    check_queues_topics_alarms(tpl)
    check_partition(raw, tpl)
    check_code_ties(tpl)
    check_rules_read(tpl)
    check_reaper_guard(tpl)
    check_ci()
    check_ci_build(tpl)
    check_bucket_policies(tpl)
    check_keys(tpl)
    check_alarms_retention_fips(tpl)
    check_terraform()
    check_vpc_endpoints(tpl)
    check_supply_chain()
    check_analyst_access(path)
    check_review_endpoint(tpl)
    check_review_ci()
    if errors:
        print(f"check_template: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        sys.exit(1)
    print(f"check_template: OK ({len(FUNCTIONS)} functions: env, grants, queues, alarms, partition, CI, "
          "bucket policies, keys, FIPS, retention, terraform foundation, supply chain, analyst access)")


if __name__ == "__main__":
    main()
