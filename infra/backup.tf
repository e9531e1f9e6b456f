# AWS Backup: daily recovery points of Aurora and of the SAM stack's DynamoDB tables, in a vault
# encrypted with the lake key, kept apart from the resources' own PITR (which dies with them).
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
  }
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

resource "aws_backup_selection" "lake" {
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
