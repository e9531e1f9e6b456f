# AWS Backup: daily recovery points of Aurora, the SAM stack's DynamoDB tables and its ingestion
# and raw buckets, in a locked vault encrypted with the lake key, each copied to a locked vault in
# the second GovCloud region (replica_region). Kept apart from the resources' own PITR and
# versioning, which die with them. Vault Lock: nobody (root included) deletes a recovery point
# before min_retention, or changes the lock once its grace period (changeable_for_days) is over.
resource "aws_backup_vault" "lake" {
  name        = "${local.name}-vault"
  kms_key_arn = aws_kms_key.lake.arn
}

resource "aws_backup_plan" "lake" {
  name = "${local.name}-daily"

  rule {
    rule_name         = "daily"
    target_vault_name = aws_backup_vault.lake.name
    schedule          = "cron(0 8 * * ? *)"
    start_window      = 60
    completion_window = 360

    lifecycle {
      delete_after = var.backup_retention_days
    }

    copy_action {
      destination_vault_arn = aws_backup_vault.replica.arn
      lifecycle {
        delete_after = var.backup_retention_days
      }
    }
  }
}

resource "aws_backup_vault_lock_configuration" "lake" {
  backup_vault_name   = aws_backup_vault.lake.name
  min_retention_days  = var.backup_min_retention_days
  max_retention_days  = var.backup_retention_days
  changeable_for_days = var.backup_vault_lock_changeable_days
}

# ---- region settings ----
# A backup plan protects only the resource types the region is opted in to, and a DynamoDB
# recovery point can be copied to another region only when AWS Backup's advanced DynamoDB
# features are on (without them the daily copy job of both tables fails). Only the types this
# plan selects are named: UpdateRegionSettings refuses a type the region does not offer
# ("Element present in resource type opt in preference has invalid values").
locals {
  backup_resource_types = concat(["Aurora", "DynamoDB"], var.backup_s3_buckets ? ["S3"] : [])
}

resource "aws_backup_region_settings" "lake" {
  resource_type_opt_in_preference = { for t in local.backup_resource_types : t => true }
  resource_type_management_preference = {
    "DynamoDB" = true
  }
}

# The copies land in replica_region: the same types opted in there, so that a restore from the
# copy vault is possible in that region (and its DynamoDB copies keep the advanced features).
resource "aws_backup_region_settings" "replica" {
  provider                        = aws.replica
  resource_type_opt_in_preference = { for t in local.backup_resource_types : t => true }
  resource_type_management_preference = {
    "DynamoDB" = true
  }
}

# ---- the copy in the second region ----
resource "aws_kms_key" "backup_replica" {
  provider                = aws.replica
  description             = "${local.name} backup copies (PHI) in ${var.replica_region}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms_backup_replica.json
}

data "aws_iam_policy_document" "kms_backup_replica" {
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

resource "aws_backup_vault" "replica" {
  provider    = aws.replica
  name        = "${local.name}-vault-copy"
  kms_key_arn = aws_kms_key.backup_replica.arn
}

resource "aws_backup_vault_lock_configuration" "replica" {
  provider            = aws.replica
  backup_vault_name   = aws_backup_vault.replica.name
  min_retention_days  = var.backup_min_retention_days
  max_retention_days  = var.backup_retention_days
  changeable_for_days = var.backup_vault_lock_changeable_days
}

data "aws_iam_policy_document" "backup_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["backup.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "backup" {
  name_prefix        = "${local.name}-backup-"
  assume_role_policy = data.aws_iam_policy_document.backup_trust.json
}

resource "aws_iam_role_policy_attachment" "backup" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"
}

resource "aws_iam_role_policy_attachment" "restore" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForRestores"
}

resource "aws_iam_role_policy_attachment" "backup_s3" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSBackupServiceRolePolicyForS3Backup"
}

resource "aws_iam_role_policy_attachment" "restore_s3" {
  role       = aws_iam_role.backup.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSBackupServiceRolePolicyForS3Restore"
}

resource "aws_backup_selection" "lake" {
  depends_on   = [aws_backup_region_settings.lake]
  name         = "${local.name}-data"
  plan_id      = aws_backup_plan.lake.id
  iam_role_arn = aws_iam_role.backup.arn
  resources = [
    aws_rds_cluster.lake.arn,
    # Created by the SAM stack (template.yaml DatasetsTable / RunsTable); names are fixed there.
    "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/county-lake-${var.environment}-datasets",
    "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/county-lake-${var.environment}-runs",
  ]
}

# The partners' originals and the datasets (template.yaml IngestionBucket / RawBucket), in their
# own selection so that backup_s3_buckets can leave them out where AWS Backup for S3 is not
# offered (docs/DEPLOY.md, "Backups").
resource "aws_backup_selection" "buckets" {
  count        = var.backup_s3_buckets ? 1 : 0
  depends_on   = [aws_backup_region_settings.lake]
  name         = "${local.name}-buckets"
  plan_id      = aws_backup_plan.lake.id
  iam_role_arn = aws_iam_role.backup.arn
  resources = [
    "arn:${local.partition}:s3:::${local.ingestion_bucket_name}",
    "arn:${local.partition}:s3:::county-lake-${var.environment}-raw-${local.account_id}-${local.region}",
  ]
}
