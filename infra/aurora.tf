# Aurora PostgreSQL Serverless v2: the person index and the review table of proposed matches.
# Encrypted with the lake key, TLS forced, IAM authentication, master password kept by RDS in
# Secrets Manager (encrypted with the lake key, rotated by RDS every 7 days).
resource "aws_db_subnet_group" "lake" {
  name       = "${local.name}-aurora"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_rds_cluster_parameter_group" "lake" {
  name_prefix = "${local.name}-aurora-pg16-"
  family      = "aurora-postgresql16"
  description = "county lake: TLS only, connection and DDL logging (never row values)"

  parameter {
    name         = "rds.force_ssl"
    value        = "1"
    apply_method = "pending-reboot"
  }
  parameter {
    name  = "log_connections"
    value = "1"
  }
  parameter {
    name  = "log_disconnections"
    value = "1"
  }
  # DDL only: statements that carry PHI values (DML) must not reach the logs.
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "-1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_cloudwatch_log_group" "aurora" {
  name              = "/aws/rds/cluster/${local.name}-aurora/postgresql"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

resource "aws_rds_cluster" "lake" {
  cluster_identifier                  = "${local.name}-aurora"
  engine                              = "aurora-postgresql"
  engine_mode                         = "provisioned"
  engine_version                      = var.db_engine_version
  database_name                       = "lake"
  master_username                     = "lake_admin"
  manage_master_user_password         = true
  master_user_secret_kms_key_id       = aws_kms_key.lake.arn
  iam_database_authentication_enabled = true
  storage_encrypted                   = true
  kms_key_id                          = aws_kms_key.lake.arn
  db_subnet_group_name                = aws_db_subnet_group.lake.name
  vpc_security_group_ids              = [aws_security_group.db.id]
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.lake.name
  backup_retention_period             = var.db_backup_retention_days
  preferred_backup_window             = "07:00-08:00"
  copy_tags_to_snapshot               = true
  deletion_protection                 = true
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-aurora-final"
  enabled_cloudwatch_logs_exports     = ["postgresql"]

  serverlessv2_scaling_configuration {
    min_capacity = var.db_min_acu
    max_capacity = var.db_max_acu
  }

  depends_on = [aws_cloudwatch_log_group.aurora]
}

resource "aws_rds_cluster_instance" "lake" {
  count                                 = var.db_instance_count
  identifier                            = "${local.name}-aurora-${count.index}"
  cluster_identifier                    = aws_rds_cluster.lake.id
  engine                                = aws_rds_cluster.lake.engine
  engine_version                        = aws_rds_cluster.lake.engine_version
  instance_class                        = "db.serverless"
  db_subnet_group_name                  = aws_db_subnet_group.lake.name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.lake.arn
  performance_insights_retention_period = 7
  monitoring_interval                   = 60
  monitoring_role_arn                   = aws_iam_role.rds_monitoring.arn
  copy_tags_to_snapshot                 = true
}

data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rds_monitoring" {
  name_prefix        = "${local.name}-rds-mon-"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}
