# Audit trail: a multi-region CloudTrail with log-file validation, encrypted with the ops key,
# delivered to an Object Lock bucket and to CloudWatch Logs, with S3 data events on the PHI buckets
# and DynamoDB data events on the lake's tables; metric filters and alarms on root use, IAM policy
# changes, KMS key disable/deletion and bucket policy changes.
# Where the county's organisation already runs a trail that covers this account, set
# organization_trail_provided = true: none of this is created (docs/DEPLOY.md says what that trail
# must cover). The audit bucket also receives AWS Config's deliveries (detective.tf).
locals {
  create_trail        = !var.organization_trail_provided
  create_audit_bucket = local.create_trail || !var.aws_config_provided
  audit_bucket_name   = "${local.name}-audit-${local.account_id}-${local.region}"
  trail_name          = local.name
  trail_arn           = "arn:${local.partition}:cloudtrail:${local.region}:${local.account_id}:trail/${local.trail_name}"
  # The PHI buckets, and the access-log bucket (its own reads are not access-logged).
  phi_bucket_arns = [
    for b in ["ingestion", "raw", "quarantine", "access-logs"] : "arn:${local.partition}:s3:::${local.name}-${b}-${local.account_id}-${local.region}/"
  ]
  lake_table_arns = [
    for t in ["datasets", "runs"] : "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${local.name}-${t}"
  ]
  access_logs_bucket_name = "${local.name}-access-logs-${local.account_id}-${local.region}"
}

resource "aws_s3_bucket" "audit" {
  # checkov:skip=CKV2_AWS_62:Only CloudTrail and AWS Config write here (the bucket policy denies every other writer); nothing consumes per-object events, and CloudTrail's log-file validation digests prove the files unchanged.
  # checkov:skip=CKV_AWS_144:Not replicated from here: Object Lock keeps every file for audit_retention_days; a second-region copy is the organisation's log-archive account's job (docs/DEPLOY.md, audit trail).
  count               = local.create_audit_bucket ? 1 : 0
  bucket              = local.audit_bucket_name
  object_lock_enabled = true
}

resource "aws_s3_bucket_object_lock_configuration" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  rule {
    default_retention {
      mode = var.audit_lock_mode
      days = var.audit_retention_days
    }
  }
}

resource "aws_s3_bucket_versioning" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.ops.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "audit" {
  count                   = local.create_audit_bucket ? 1 : 0
  bucket                  = aws_s3_bucket.audit[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# Server access logs of the audit bucket go to the SAM stack's access-log bucket (its policy
# accepts log delivery from this account under s3/).
resource "aws_s3_bucket_logging" "audit" {
  count         = local.create_audit_bucket ? 1 : 0
  bucket        = aws_s3_bucket.audit[0].id
  target_bucket = local.access_logs_bucket_name
  target_prefix = "s3/audit/"
}

resource "aws_s3_bucket_lifecycle_configuration" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  rule {
    id     = "expire-after-retention"
    status = "Enabled"
    filter {}
    expiration {
      days = var.audit_retention_days + 1
    }
    noncurrent_version_expiration {
      noncurrent_days = var.audit_retention_days + 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }
}

# Cross-region replication of the audit log is left to the organisation's log archive; the
# Object Lock retention is what keeps it from being rewritten.
data "aws_iam_policy_document" "audit_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}", "arn:${local.partition}:s3:::${local.audit_bucket_name}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
  statement {
    sid       = "CloudTrailAclCheck"
    actions   = ["s3:GetBucketAcl"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
  statement {
    sid       = "CloudTrailWrite"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}/AWSLogs/${local.account_id}/*"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
  }
  statement {
    sid       = "ConfigAclCheckAndList"
    actions   = ["s3:GetBucketAcl", "s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  statement {
    sid       = "ConfigWrite"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}/config/AWSLogs/${local.account_id}/Config/*"]
    principals {
      type        = "Service"
      identifiers = ["config.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "StringEquals"
      variable = "s3:x-amz-acl"
      values   = ["bucket-owner-full-control"]
    }
  }
  # Only the delivering services write here: no principal of the account can add or overwrite a
  # log object (aws:PrincipalServiceName is present only on a service principal's request).
  statement {
    sid       = "DenyWritesExceptDeliveringServices"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "aws:PrincipalServiceName"
      values   = ["cloudtrail.amazonaws.com", "config.amazonaws.com"]
    }
  }
  statement {
    sid       = "DenyPutWithOtherEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }
  statement {
    sid       = "DenyPutWithOtherKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["arn:${local.partition}:s3:::${local.audit_bucket_name}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.ops.arn]
    }
  }
}

resource "aws_s3_bucket_policy" "audit" {
  count  = local.create_audit_bucket ? 1 : 0
  bucket = aws_s3_bucket.audit[0].id
  policy = data.aws_iam_policy_document.audit_bucket.json
}

# ---- the trail and its CloudWatch Logs delivery ----
resource "aws_cloudwatch_log_group" "trail" {
  count             = local.create_trail ? 1 : 0
  name              = "/county-lake/${var.environment}/cloudtrail"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

data "aws_iam_policy_document" "trail_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["cloudtrail.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceArn"
      values   = [local.trail_arn]
    }
  }
}

resource "aws_iam_role" "trail_logs" {
  count              = local.create_trail ? 1 : 0
  name_prefix        = "${local.name}-trail-logs-"
  assume_role_policy = data.aws_iam_policy_document.trail_trust.json
}

resource "aws_iam_role_policy" "trail_logs" {
  count = local.create_trail ? 1 : 0
  name  = "write-trail-log-group"
  role  = aws_iam_role.trail_logs[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "WriteTrailLogGroup"
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
      Resource = "${aws_cloudwatch_log_group.trail[0].arn}:log-stream:*"
    }]
  })
}

resource "aws_cloudtrail" "lake" {
  # checkov:skip=CKV_AWS_252:Per-file SNS notifications would page ops for every log file delivered; the metric-filter alarms below publish to the alert topic instead.
  count                         = local.create_trail ? 1 : 0
  name                          = local.trail_name
  s3_bucket_name                = aws_s3_bucket.audit[0].id
  is_multi_region_trail         = true
  include_global_service_events = true
  enable_log_file_validation    = true
  kms_key_id                    = aws_kms_key.ops.arn
  cloud_watch_logs_group_arn    = "${aws_cloudwatch_log_group.trail[0].arn}:*"
  cloud_watch_logs_role_arn     = aws_iam_role.trail_logs[0].arn

  advanced_event_selector {
    name = "Management events"
    field_selector {
      field  = "eventCategory"
      equals = ["Management"]
    }
  }
  advanced_event_selector {
    name = "S3 data events on the PHI and access-log buckets"
    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::S3::Object"]
    }
    field_selector {
      field       = "resources.ARN"
      starts_with = local.phi_bucket_arns
    }
  }
  advanced_event_selector {
    name = "DynamoDB data events on the lake tables"
    field_selector {
      field  = "eventCategory"
      equals = ["Data"]
    }
    field_selector {
      field  = "resources.type"
      equals = ["AWS::DynamoDB::Table"]
    }
    field_selector {
      field  = "resources.ARN"
      equals = local.lake_table_arns
    }
  }

  depends_on = [aws_s3_bucket_policy.audit]
}

# ---- metric filters and alarms (CIS CloudWatch patterns) ----
locals {
  trail_alarms = {
    root-use               = "{ $.userIdentity.type = \"Root\" && $.userIdentity.invokedBy NOT EXISTS && $.eventType != \"AwsServiceEvent\" }"
    iam-policy-change      = "{ ($.eventSource = \"iam.amazonaws.com\") && (($.eventName = DeleteGroupPolicy) || ($.eventName = DeleteRolePolicy) || ($.eventName = DeleteUserPolicy) || ($.eventName = PutGroupPolicy) || ($.eventName = PutRolePolicy) || ($.eventName = PutUserPolicy) || ($.eventName = CreatePolicy) || ($.eventName = DeletePolicy) || ($.eventName = CreatePolicyVersion) || ($.eventName = DeletePolicyVersion) || ($.eventName = SetDefaultPolicyVersion) || ($.eventName = AttachRolePolicy) || ($.eventName = DetachRolePolicy) || ($.eventName = AttachUserPolicy) || ($.eventName = DetachUserPolicy) || ($.eventName = AttachGroupPolicy) || ($.eventName = DetachGroupPolicy) || ($.eventName = UpdateAssumeRolePolicy)) }"
    kms-key-disable-delete = "{ ($.eventSource = \"kms.amazonaws.com\") && (($.eventName = DisableKey) || ($.eventName = ScheduleKeyDeletion) || ($.eventName = PutKeyPolicy)) }"
    bucket-policy-change   = "{ ($.eventSource = \"s3.amazonaws.com\") && (($.eventName = PutBucketPolicy) || ($.eventName = DeleteBucketPolicy) || ($.eventName = PutBucketAcl) || ($.eventName = PutBucketPublicAccessBlock) || ($.eventName = DeleteBucketPublicAccessBlock) || ($.eventName = PutBucketEncryption) || ($.eventName = DeleteBucketEncryption) || ($.eventName = PutBucketReplication) || ($.eventName = DeleteBucketReplication) || ($.eventName = PutBucketLifecycle) || ($.eventName = DeleteBucketLifecycle)) }"
  }
}

resource "aws_cloudwatch_log_metric_filter" "trail" {
  for_each       = { for k, v in local.trail_alarms : k => v if local.create_trail }
  name           = "${local.name}-${each.key}"
  log_group_name = aws_cloudwatch_log_group.trail[0].name
  pattern        = each.value
  metric_transformation {
    name      = each.key
    namespace = "CountyLake/${var.environment}/Audit"
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "trail" {
  for_each            = { for k, v in local.trail_alarms : k => v if local.create_trail }
  alarm_name          = "${local.name}-audit-${each.key}"
  alarm_description   = "CloudTrail: ${each.key} (docs/DEPLOY.md, audit trail)"
  namespace           = "CountyLake/${var.environment}/Audit"
  metric_name         = each.key
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  depends_on          = [aws_cloudwatch_log_metric_filter.trail]
}
