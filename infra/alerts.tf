# Ops alert topic: the alarms (template.yaml, audit.tf, below), the functions' failure alerts and
# EventBridge rules (GuardDuty findings, AWS Backup failures) publish here.
resource "aws_sns_topic" "alerts" {
  name              = "${local.name}-alerts"
  kms_master_key_id = aws_kms_key.ops.arn
}

data "aws_iam_policy_document" "alerts" {
  statement {
    sid       = "CloudWatchAlarmsOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  statement {
    sid       = "EventBridgeAndSesOfThisAccount"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com", "ses.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
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
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts.json
}

resource "aws_sns_topic_subscription" "alert_email" {
  for_each  = toset(var.alert_emails)
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.key
}

# ---- Aurora: CPU, connections (the cluster), free local storage (each instance) ----
locals {
  aurora_alarms = {
    cpu = { metric = "CPUUtilization", stat = "Average", op = "GreaterThanThreshold", threshold = 80, what = "CPU above 80% for 15 minutes" }
    # pii-matching holds at most 5 (reserved concurrency x 1 pooled connection); more is someone else.
    connections = { metric = "DatabaseConnections", stat = "Maximum", op = "GreaterThanThreshold", threshold = var.db_connections_alarm, what = "more connections than pii-matching opens" }
  }
}

resource "aws_cloudwatch_metric_alarm" "aurora" {
  for_each            = local.aurora_alarms
  alarm_name          = "${local.name}-aurora-${each.key}"
  alarm_description   = "Aurora ${local.name}: ${each.value.what}"
  namespace           = "AWS/RDS"
  metric_name         = each.value.metric
  dimensions          = { DBClusterIdentifier = aws_rds_cluster.lake.cluster_identifier }
  statistic           = each.value.stat
  period              = 300
  evaluation_periods  = 3
  threshold           = each.value.threshold
  comparison_operator = each.value.op
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

# FreeLocalStorage is an instance-level metric (each instance's own temporary storage; the
# Aurora user guide's "Instance-level metrics"): one alarm per instance, by DBInstanceIdentifier.
resource "aws_cloudwatch_metric_alarm" "aurora_free_local_storage" {
  count               = var.db_instance_count
  alarm_name          = "${local.name}-aurora-${count.index}-free-local-storage"
  alarm_description   = "Aurora instance ${aws_rds_cluster_instance.lake[count.index].identifier}: less than 2 GiB free local storage"
  namespace           = "AWS/RDS"
  metric_name         = "FreeLocalStorage"
  dimensions          = { DBInstanceIdentifier = aws_rds_cluster_instance.lake[count.index].identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 3
  threshold           = 2147483648
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
}

# ---- Transfer Family: failed SFTP logins (structured logs, activity-type AUTH_FAILURE) ----
resource "aws_cloudwatch_log_metric_filter" "sftp_auth_failure" {
  name           = "${local.name}-sftp-auth-failure"
  log_group_name = aws_cloudwatch_log_group.transfer.name
  pattern        = "\"AUTH_FAILURE\""
  metric_transformation {
    name      = "sftp-auth-failure"
    namespace = "CountyLake/${var.environment}/Transfer"
    value     = "1"
  }
}

resource "aws_cloudwatch_metric_alarm" "sftp_auth_failure" {
  alarm_name          = "${local.name}-sftp-auth-failures"
  alarm_description   = "SFTP: 5 or more failed logins in 15 minutes (a partner's key problem, or someone guessing)"
  namespace           = "CountyLake/${var.environment}/Transfer"
  metric_name         = "sftp-auth-failure"
  statistic           = "Sum"
  period              = 900
  evaluation_periods  = 1
  threshold           = 5
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  depends_on          = [aws_cloudwatch_log_metric_filter.sftp_auth_failure]
}

# ---- AWS Backup: a failed, aborted or expired backup or copy job ----
resource "aws_cloudwatch_event_rule" "backup_failures" {
  name        = "${local.name}-backup-failures"
  description = "AWS Backup backup/copy jobs that did not complete"
  event_pattern = jsonencode({
    "source" : ["aws.backup"],
    "detail-type" : ["Backup Job State Change", "Copy Job State Change"],
    "detail" : { "state" : ["FAILED", "ABORTED", "EXPIRED"] }
  })
}

resource "aws_cloudwatch_event_target" "backup_failures" {
  rule      = aws_cloudwatch_event_rule.backup_failures.name
  target_id = "alerts"
  arn       = aws_sns_topic.alerts.arn
}
