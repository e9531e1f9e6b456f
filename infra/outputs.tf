# These feed the SAM template's parameters (docs/DEPLOY.md, "Outputs -> parameters").
output "kms_key_arn" {
  description = "SAM KmsKeyArn"
  value       = aws_kms_key.lake.arn
}

output "alert_topic_arn" {
  description = "SAM AlertTopicArn"
  value       = aws_sns_topic.alerts.arn
}

output "private_subnet_ids" {
  description = "SAM VpcSubnetIds (comma-joined)"
  value       = join(",", aws_subnet.private[*].id)
}

output "lambda_security_group_id" {
  description = "SAM VpcSecurityGroupId"
  value       = aws_security_group.lambda.id
}

output "db_secret_arn" {
  description = "SAM DbSecretArn: the RDS-managed master-user secret"
  value       = aws_rds_cluster.lake.master_user_secret[0].secret_arn
}

output "db_endpoint" {
  description = "Aurora writer endpoint"
  value       = aws_rds_cluster.lake.endpoint
}

output "sftp_server_id" {
  value = aws_transfer_server.sftp.id
}

output "sftp_endpoint" {
  value = aws_transfer_server.sftp.endpoint
}

output "ingestion_bucket_name" {
  description = "The bucket the SFTP users write to: must equal the SAM output IngestionBucketName"
  value       = local.ingestion_bucket_name
}

output "sam_parameter_overrides" {
  description = "Paste into `sam deploy --parameter-overrides` (or samconfig.toml)"
  value = join(" ", [
    "Environment=${var.environment}",
    "KmsKeyArn=${aws_kms_key.lake.arn}",
    "AlertTopicArn=${aws_sns_topic.alerts.arn}",
    "VpcSubnetIds=${join(",", aws_subnet.private[*].id)}",
    "VpcSecurityGroupId=${aws_security_group.lambda.id}",
    "DbSecretArn=${aws_rds_cluster.lake.master_user_secret[0].secret_arn}",
    "DbHost=${aws_rds_cluster.lake.endpoint}",
    "DbName=${aws_rds_cluster.lake.database_name}",
  ])
}
