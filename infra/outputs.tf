# These feed the SAM template's parameters (docs/DEPLOY.md, "Outputs -> parameters").
output "kms_key_arn" {
  description = "SAM KmsKeyArn: the PHI data key"
  value       = aws_kms_key.lake.arn
}

output "ops_kms_key_arn" {
  description = "SAM OpsKmsKeyArn: logs, queues, Lambda environments, access-log bucket"
  value       = aws_kms_key.ops.arn
}

output "reaper_kms_key_arn" {
  description = "The WorkSpaces reaper's key (its reports, notices, DLQ and log group)"
  value       = aws_kms_key.reaper.arn
}

output "pipeline_security_group_id" {
  description = "SAM PipelineSecurityGroupId: the router and both workflows"
  value       = aws_security_group.pipeline.id
}

output "sftp_elastic_ips" {
  description = "Public addresses of the SFTP endpoint (partners allow these in their firewalls); empty when internal"
  value       = aws_eip.sftp[*].public_ip
}

output "alert_topic_arn" {
  description = "SAM AlertTopicArn"
  value       = aws_sns_topic.alerts.arn
}

output "vpc_id" {
  description = "SAM VpcId: the lake VPC (review-web's load balancer security group)"
  value       = aws_vpc.lake.id
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

output "db_cluster_resource_id" {
  description = "SAM DbClusterResourceId: names the database users in the functions' rds-db:connect grants"
  value       = aws_rds_cluster.lake.cluster_resource_id
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
    "OpsKmsKeyArn=${aws_kms_key.ops.arn}",
    "ReaperKmsKeyArn=${aws_kms_key.reaper.arn}",
    "AlertTopicArn=${aws_sns_topic.alerts.arn}",
    "VpcId=${aws_vpc.lake.id}",
    "VpcSubnetIds=${join(",", aws_subnet.private[*].id)}",
    "VpcSecurityGroupId=${aws_security_group.lambda.id}",
    "PipelineSecurityGroupId=${aws_security_group.pipeline.id}",
    "DbSecretArn=${aws_rds_cluster.lake.master_user_secret[0].secret_arn}",
    "DbHost=${aws_rds_cluster.lake.endpoint}",
    "DbClusterResourceId=${aws_rds_cluster.lake.cluster_resource_id}",
    "DbName=${aws_rds_cluster.lake.database_name}",
  ])
}
