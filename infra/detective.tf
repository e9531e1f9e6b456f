# Detective controls, each with an "already provided" switch for an account whose organisation
# runs it centrally (delegated administrator): GuardDuty with S3 protection and, where the region
# offers it, malware scanning of new uploads; AWS Config with the HIPAA operational-best-practices
# conformance pack; IAM Access Analyzer. Regional differences: docs/DEPLOY.md.

# ---- GuardDuty ----
resource "aws_guardduty_detector" "lake" {
  # checkov:skip=CKV2_AWS_3:Organisation-wide enablement belongs to the organisation's GuardDuty delegated administrator (set guardduty_provided = true there); this detector covers this account in this region.
  count                        = var.guardduty_provided ? 0 : 1
  enable                       = true
  finding_publishing_frequency = "FIFTEEN_MINUTES"
}

resource "aws_guardduty_detector_feature" "s3" {
  count       = var.guardduty_provided ? 0 : 1
  detector_id = aws_guardduty_detector.lake[0].id
  name        = "S3_DATA_EVENTS"
  status      = "ENABLED"
}

# GuardDuty findings -> the ops alert topic.
resource "aws_cloudwatch_event_rule" "guardduty" {
  name        = "${local.name}-guardduty-findings"
  description = "GuardDuty findings of severity 4 (medium) and above, and malware scan results with threats"
  event_pattern = jsonencode({
    "source" : ["aws.guardduty"],
    "$or" : [
      { "detail-type" : ["GuardDuty Finding"], "detail" : { "severity" : [{ "numeric" : [">=", 4] }] } },
      { "detail-type" : ["GuardDuty Malware Protection Object Scan Result"], "detail" : { "scanResultDetails" : { "scanResultStatus" : ["THREATS_FOUND"] } } }
    ]
  })
}

resource "aws_cloudwatch_event_target" "guardduty" {
  rule      = aws_cloudwatch_event_rule.guardduty.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn
}

# Malware Protection for S3 on the ingestion bucket: every new upload is scanned and tagged
# (GuardDutyMalwareScanStatus). Off unless the region offers it (docs/DEPLOY.md).
resource "aws_guardduty_malware_protection_plan" "ingestion" {
  count = var.guardduty_s3_malware_scan ? 1 : 0
  role  = aws_iam_role.malware_scan[0].arn
  protected_resource {
    s3_bucket {
      bucket_name = local.ingestion_bucket_name
    }
  }
  actions {
    tagging {
      status = "ENABLED"
    }
  }
}

data "aws_iam_policy_document" "malware_scan_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["malware-protection-plan.guardduty.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "malware_scan" {
  count              = var.guardduty_s3_malware_scan ? 1 : 0
  name_prefix        = "${local.name}-malware-scan-"
  assume_role_policy = data.aws_iam_policy_document.malware_scan_trust.json
}

# The permissions GuardDuty documents for a Malware Protection plan role, on this bucket only.
data "aws_iam_policy_document" "malware_scan" {
  statement {
    sid       = "ManageScanEventRule"
    actions   = ["events:PutRule", "events:DeleteRule", "events:PutTargets", "events:RemoveTargets", "events:DescribeRule", "events:ListTargetsByRule"]
    resources = ["arn:${local.partition}:events:${local.region}:${local.account_id}:rule/DO-NOT-DELETE-AmazonGuardDutyMalwareProtectionS3*"]
    condition {
      test     = "StringLike"
      variable = "events:ManagedBy"
      values   = ["malware-protection-plan.guardduty.amazonaws.com"]
    }
  }
  statement {
    sid       = "BucketNotificationsAndValidation"
    actions   = ["s3:PutBucketNotification", "s3:GetBucketNotification", "s3:GetBucketLocation", "s3:ListBucket"]
    resources = [local.ingestion_bucket_arn]
  }
  statement {
    sid       = "ReadAndTagUploads"
    actions   = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"]
    resources = ["${local.ingestion_bucket_arn}/*"]
  }
  statement {
    sid       = "ValidationObject"
    actions   = ["s3:PutObject"]
    resources = ["${local.ingestion_bucket_arn}/malware-protection-resource-validation-object"]
  }
  statement {
    sid       = "DecryptUploads"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.lake.arn]
    condition {
      test     = "StringLike"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }
}

resource "aws_iam_role_policy" "malware_scan" {
  count  = var.guardduty_s3_malware_scan ? 1 : 0
  name   = "scan-ingestion-bucket"
  role   = aws_iam_role.malware_scan[0].id
  policy = data.aws_iam_policy_document.malware_scan.json
}

# ---- AWS Config + the HIPAA conformance pack ----
# An account has at most one AWSServiceRoleForConfig, and creating it again fails; an account
# where Config (or anyone) already made it sets config_service_linked_role_exists. Its ARN is
# fixed either way, so the recorder names it directly.
resource "aws_iam_service_linked_role" "config" {
  count            = var.aws_config_provided || var.config_service_linked_role_exists ? 0 : 1
  aws_service_name = "config.amazonaws.com"
}

locals {
  config_role_arn = "arn:${local.partition}:iam::${local.account_id}:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig"
}

resource "aws_config_configuration_recorder" "lake" {
  count      = var.aws_config_provided ? 0 : 1
  name       = local.name
  role_arn   = local.config_role_arn
  depends_on = [aws_iam_service_linked_role.config]
  recording_group {
    all_supported                 = true
    include_global_resource_types = true
  }
}

resource "aws_config_delivery_channel" "lake" {
  count          = var.aws_config_provided ? 0 : 1
  name           = local.name
  s3_bucket_name = aws_s3_bucket.audit[0].id
  s3_key_prefix  = "config"
  s3_kms_key_arn = aws_kms_key.ops.arn
  snapshot_delivery_properties {
    delivery_frequency = "TwentyFour_Hours"
  }
  depends_on = [aws_config_configuration_recorder.lake, aws_s3_bucket_policy.audit]
}

resource "aws_config_configuration_recorder_status" "lake" {
  count      = var.aws_config_provided ? 0 : 1
  name       = aws_config_configuration_recorder.lake[0].name
  is_enabled = true
  depends_on = [aws_config_delivery_channel.lake]
}

# AWS's sample pack "Operational Best Practices for HIPAA Security" is a YAML template AWS
# publishes; it is not kept in this repository (AWS asks to review it against the region's rules
# and amend it; a rule the region lacks fails the whole pack). Upload the reviewed copy and give
# its S3 URI here. prod refuses to plan without it unless the organisation deploys the pack
# (hipaa_conformance_pack_provided); dev may run without (docs/DEPLOY.md, "Detective controls").
resource "terraform_data" "hipaa_conformance_pack_required" {
  lifecycle {
    precondition {
      condition     = var.environment != "prod" || var.hipaa_conformance_pack_provided || var.hipaa_conformance_pack_template_s3_uri != null
      error_message = "prod needs the HIPAA conformance pack: set hipaa_conformance_pack_template_s3_uri (AWS's sample, reviewed for the region; docs/DEPLOY.md) or hipaa_conformance_pack_provided = true when the organisation deploys it."
    }
  }
}

resource "aws_config_conformance_pack" "hipaa" {
  count           = var.hipaa_conformance_pack_template_s3_uri == null ? 0 : 1
  name            = "${local.name}-hipaa-security"
  template_s3_uri = var.hipaa_conformance_pack_template_s3_uri
  depends_on      = [aws_config_configuration_recorder_status.lake]
}

# ---- IAM Access Analyzer ----
resource "aws_accessanalyzer_analyzer" "lake" {
  count         = var.access_analyzer_provided ? 0 : 1
  analyzer_name = "${local.name}-account"
  type          = "ACCOUNT"
}
