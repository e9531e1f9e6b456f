# Three customer managed keys, so that one key's grants never open another's data:
#   lake   - PHI data: the ingestion/raw/quarantine buckets, DynamoDB tables, Aurora storage and its
#            master-user secret, the backup vault, and the Lambda environments of every function but
#            the reaper (template.yaml Globals.Function.KmsKeyArn).
#   ops    - operations: log groups, SQS queues and DLQs, the alert topic, CloudTrail, AWS Config
#            and the access-log bucket.
#   reaper - the WorkSpaces reaper's reports, DLQ, log group and environment.
# In a key policy, Resource "*" means "this key": it is the only value KMS accepts there.
resource "aws_kms_key" "lake" {
  description             = "${local.name} PHI data key"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_lake.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.lake.key_id
}

resource "aws_kms_key" "ops" {
  description             = "${local.name} operations key (logs, queues, alerts, audit trail)"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_ops.json
}

resource "aws_kms_alias" "ops" {
  name          = "alias/${local.name}-ops"
  target_key_id = aws_kms_key.ops.key_id
}

resource "aws_kms_key" "reaper" {
  description             = "${local.name} WorkSpaces reaper key"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_reaper.json
}

resource "aws_kms_alias" "reaper" {
  name          = "alias/${local.name}-reaper"
  target_key_id = aws_kms_key.reaper.key_id
}

# PHI data key: IAM in this account only; each role's own policy grants it, limited by
# kms:ViaService and encryption context (template.yaml, infra/transfer.tf). No service principal:
# the reaper's log group, DLQ and reports use the reaper key.
data "aws_iam_policy_document" "kms_lake" {
  # checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only; administration is delegated to IAM in this account (root), as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only; write actions go to the account root only (IAM-delegated).
  # checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only resource KMS accepts in a key policy and means this key.
  statement {
    sid       = "AccountRootIamDelegation"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

# Operations key: CloudWatch Logs (by encryption context), CloudTrail (by trail), and the services
# that write into the lake's encrypted queues, topics and buckets on the account's behalf.
data "aws_iam_policy_document" "kms_ops" {
  # checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only; administration is delegated to IAM in this account (root), as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only; write actions go to the account root (IAM-delegated) and to named service principals limited by aws:SourceAccount / aws:SourceArn / encryption context.
  # checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only resource KMS accepts in a key policy and means this key.
  statement {
    sid       = "AccountRootIamDelegation"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsOfThisAccount"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }
  statement {
    sid       = "CloudTrailOfThisAccount"
    actions   = ["kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:cloudtrail:arn"
      values   = ["arn:${local.partition}:cloudtrail:*:${local.account_id}:trail/*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  # S3 event notifications -> ingest queue, S3 access-log delivery, SNS -> SQS, CloudWatch alarms
  # and EventBridge rules -> alert topic, SES notice events -> alert topic, AWS Config delivery.
  # Only for resources of this account.
  statement {
    sid       = "AwsServicesForThisAccount"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type = "Service"
      identifiers = [
        "s3.amazonaws.com",
        "logging.s3.amazonaws.com",
        "sns.amazonaws.com",
        "sqs.amazonaws.com",
        "cloudwatch.amazonaws.com",
        "events.amazonaws.com",
        "config.amazonaws.com",
        "ses.amazonaws.com",
      ]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# Reaper key: its log group, and EventBridge dead-lettering into its DLQ.
data "aws_iam_policy_document" "kms_reaper" {
  # checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only; administration is delegated to IAM in this account (root), as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only; write actions go to the account root (IAM-delegated) and to named service principals limited by aws:SourceAccount / encryption context.
  # checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only resource KMS accepts in a key policy and means this key.
  statement {
    sid       = "AccountRootIamDelegation"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsOfThisAccount"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/aws/lambda/${local.name}-workspace-reaper"]
    }
  }
  statement {
    sid       = "EventBridgeAndS3ForThisAccount"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "s3.amazonaws.com", "logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}
