# The lake's customer managed key: S3 (SSE-KMS), SQS, SNS, DynamoDB, CloudWatch Logs, Lambda
# environment, Aurora storage and its master-user secret all use it.
resource "aws_kms_key" "lake" {
  description             = "${local.name} data lake customer managed key"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "lake" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.lake.key_id
}

# In a key policy, Resource "*" means "this key": it is the only value KMS accepts there.
data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_109:Key policy: Resource "*" is this key only; administration is delegated to IAM in this account (root), as AWS's default key policy does.
  # checkov:skip=CKV_AWS_111:Key policy: Resource "*" is this key only; write actions go to the account root (IAM-delegated) and to named service principals limited by aws:SourceAccount / encryption context.
  # checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only resource KMS accepts in a key policy and means this key.
  statement {
    sid       = "AccountRootIamDelegation"
    effect    = "Allow"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid    = "CloudWatchLogsOfThisAccount"
    effect = "Allow"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:DescribeKey",
    ]
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

  # Services that write into the lake's KMS-encrypted queues, topics and buckets on the account's
  # behalf: S3 event notifications -> ingest queue, S3 access-log delivery, SNS -> SQS, CloudWatch
  # alarms -> alert topic, EventBridge -> reaper DLQ, SES events -> alert topic. Only for resources
  # of this account.
  statement {
    sid       = "AwsServicesForThisAccount"
    effect    = "Allow"
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
