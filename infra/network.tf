# The lake VPC. Private subnets (every PHI function, Aurora) have no route out: no NAT, and every
# AWS API they use is reached through an endpoint. With sftp_internet_facing an internet gateway
# serves only the public subnets that hold the SFTP endpoint (below).
resource "aws_vpc" "lake" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = local.name }
}

# Lock the default security group down to nothing.
resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.lake.id
  tags   = { Name = "${local.name}-default-unused" }
}

resource "aws_subnet" "private" {
  count             = local.az_count
  vpc_id            = aws_vpc.lake.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  availability_zone = local.azs[count.index]
  tags              = { Name = "${local.name}-private-${local.azs[count.index]}", Tier = "private" }
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.lake.id
  tags   = { Name = "${local.name}-private" }
}

resource "aws_route_table_association" "private" {
  count          = local.az_count
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

# ---- flow logs ----
resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/county-lake/${var.environment}/vpc-flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

resource "aws_flow_log" "lake" {
  vpc_id               = aws_vpc.lake.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
}

data "aws_iam_policy_document" "flow_logs_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name_prefix        = "${local.name}-flow-logs-"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_trust.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.flow_logs.arn,
      "${aws_cloudwatch_log_group.flow_logs.arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

# ---- security groups ----
resource "aws_security_group" "lambda" {
  # checkov:skip=CKV2_AWS_5:Attached outside terraform: template.yaml puts pii-matching and db-migrate in it (SAM parameter VpcSecurityGroupId).
  name_prefix = "${local.name}-lambda-"
  description = "pii-matching Lambda: out to the VPC endpoints and Aurora only"
  vpc_id      = aws_vpc.lake.id
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_endpoints" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "HTTPS to the interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_s3" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_dynamodb" {
  security_group_id = aws_security_group.lambda.id
  description       = "HTTPS to DynamoDB through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.dynamodb.prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "lambda_to_db" {
  security_group_id            = aws_security_group.lambda.id
  description                  = "PostgreSQL to Aurora"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.db.id
}

# The router, both workflows and the guard: PHI in memory, no database; out to the endpoints only.
resource "aws_security_group" "pipeline" {
  # checkov:skip=CKV2_AWS_5:Attached outside terraform: template.yaml puts the router, both workflows and the guard in it (SAM parameter PipelineSecurityGroupId).
  name_prefix = "${local.name}-pipeline-"
  description = "Router and workflow Lambdas: out to the VPC endpoints only"
  vpc_id      = aws_vpc.lake.id
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "pipeline_to_endpoints" {
  security_group_id            = aws_security_group.pipeline.id
  description                  = "HTTPS to the interface endpoints"
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443
  referenced_security_group_id = aws_security_group.endpoints.id
}

resource "aws_vpc_security_group_egress_rule" "pipeline_to_s3" {
  security_group_id = aws_security_group.pipeline.id
  description       = "HTTPS to S3 through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.s3.prefix_list_id
}

resource "aws_vpc_security_group_egress_rule" "pipeline_to_dynamodb" {
  security_group_id = aws_security_group.pipeline.id
  description       = "HTTPS to DynamoDB through the gateway endpoint"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  prefix_list_id    = aws_vpc_endpoint.dynamodb.prefix_list_id
}

resource "aws_security_group" "endpoints" {
  name_prefix = "${local.name}-endpoints-"
  description = "Interface VPC endpoints: HTTPS from inside the VPC"
  vpc_id      = aws_vpc.lake.id
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_https" {
  security_group_id = aws_security_group.endpoints.id
  description       = "HTTPS from the lake VPC"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_security_group" "db" {
  name_prefix = "${local.name}-aurora-"
  description = "Aurora PostgreSQL: 5432 from the database functions (pii-matching, db-migrate, review-web)"
  vpc_id      = aws_vpc.lake.id
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_lambda" {
  security_group_id            = aws_security_group.db.id
  description                  = "PostgreSQL from the functions in the lambda group (pii-matching, db-migrate, review-web)"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.lambda.id
}

# ---- endpoints ----
# Interface endpoints for what the VPC-attached functions call (xray: Tracing: Active; sts: the
# SDK's credential and region resolution). Each endpoint policy admits only this account's
# principals, and (where the call names a resource) only this account's resources, so a stolen
# session inside the VPC cannot move data to another account through an endpoint.
#
# The functions' SDK calls the host names its endpoint rules resolve, and with
# AWS_USE_FIPS_ENDPOINT=true (template.yaml, in GovCloud) those are FIPS names for some services:
# secretsmanager-fips.<region> and kms-fips.<region> (s3-fips.<region> goes through the S3 gateway;
# DynamoDB, SQS, SNS, STS keep the regional name). infra/sdk_endpoints.json lists the names, the
# layer crate's tests/sdk_endpoints.rs proves them against the SDK in Cargo.lock, and
# scripts/check_template.py proves each is served here (docs/DEPLOY.md, "Network and endpoints").
locals {
  # FIPS exactly where template.yaml turns it on: its condition InGovCloud is the partition.
  fips = var.fips_endpoints == null ? local.partition == "aws-us-gov" : var.fips_endpoints
  # key (the IAM service prefix, used by the endpoint policy) => endpoint service name; private
  # DNS makes the service's host name resolve to the endpoint inside the VPC.
  interface_endpoints = {
    sqs            = "sqs"
    sns            = "sns"
    secretsmanager = local.fips ? "secretsmanager-fips" : "secretsmanager"
    kms            = local.fips ? "kms-fips" : "kms"
    logs           = "logs"
    xray           = "xray"
    sts            = "sts"
  }
  # X-Ray segments and STS calls name no resource of an account: principal check only.
  principal_only_endpoints = toset(["xray", "sts"])
}

data "aws_iam_policy_document" "endpoint" {
  for_each = setunion(toset(keys(local.interface_endpoints)), toset(["s3", "dynamodb"]))
  statement {
    sid       = "OwnAccountOnly"
    actions   = ["${each.key}:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [local.account_id]
    }
    dynamic "condition" {
      for_each = contains(local.principal_only_endpoints, each.key) ? [] : [1]
      content {
        test     = "StringEquals"
        variable = "aws:ResourceAccount"
        values   = [local.account_id]
      }
    }
  }
  # The schema migration function (a CloudFormation custom resource in this VPC) answers
  # CloudFormation by a PUT to a pre-signed URL in CloudFormation's own response bucket of the
  # region: an AWS-owned bucket, signed by CloudFormation's principal, so the statement above
  # would refuse it and the stack operation would wait for an answer that never comes.
  dynamic "statement" {
    for_each = each.key == "s3" ? [1] : []
    content {
      sid       = "CloudFormationCustomResourceResponses"
      actions   = ["s3:PutObject"]
      resources = ["arn:${local.partition}:s3:::cloudformation-custom-resource-response-${replace(local.region, "-", "")}/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
    }
  }
  # review-web verifies each sign-in's claims token with the load balancer's public key, which
  # GovCloud publishes in an AWS-owned bucket (s3-<region>.amazonaws.com/aws-elb-public-keys-prod-
  # <region>/<key id>): read-only, that bucket only, or every sign-in is refused.
  dynamic "statement" {
    for_each = each.key == "s3" ? [1] : []
    content {
      sid       = "LoadBalancerPublicKeys"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::aws-elb-public-keys-prod-${local.region}/*"]
      principals {
        type        = "AWS"
        identifiers = ["*"]
      }
    }
  }
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = local.interface_endpoints
  vpc_id              = aws_vpc.lake.id
  service_name        = "com.amazonaws.${local.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  policy              = data.aws_iam_policy_document.endpoint[each.key].json
  tags                = { Name = "${local.name}-${each.key}" }
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.lake.id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.endpoint["s3"].json
  tags              = { Name = "${local.name}-s3" }
}

resource "aws_vpc_endpoint" "dynamodb" {
  vpc_id            = aws_vpc.lake.id
  service_name      = "com.amazonaws.${local.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
  policy            = data.aws_iam_policy_document.endpoint["dynamodb"].json
  tags              = { Name = "${local.name}-dynamodb" }
}

# ---- internet-facing SFTP (sftp_internet_facing) ----
# Public subnets hold only the Transfer Family endpoint's interfaces and its Elastic IPs; the
# functions and Aurora stay in the private subnets, which have no route to the internet gateway.
resource "aws_internet_gateway" "sftp" {
  count  = var.sftp_internet_facing ? 1 : 0
  vpc_id = aws_vpc.lake.id
  tags   = { Name = "${local.name}-sftp" }
}

resource "aws_subnet" "public" {
  count                   = var.sftp_internet_facing ? local.az_count : 0
  vpc_id                  = aws_vpc.lake.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 240 + count.index)
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false
  tags                    = { Name = "${local.name}-sftp-public-${local.azs[count.index]}", Tier = "public-sftp-only" }
}

resource "aws_route_table" "public" {
  count  = var.sftp_internet_facing ? 1 : 0
  vpc_id = aws_vpc.lake.id
  tags   = { Name = "${local.name}-sftp-public" }
}

resource "aws_route" "public_internet" {
  count                  = var.sftp_internet_facing ? 1 : 0
  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.sftp[0].id
}

resource "aws_route_table_association" "public" {
  count          = var.sftp_internet_facing ? local.az_count : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}
