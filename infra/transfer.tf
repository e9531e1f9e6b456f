# Transfer Family SFTP: a VPC-hosted endpoint. With sftp_internet_facing (the default) it is
# internet-facing as AWS documents it: Elastic IPs on the endpoint in the public subnets, and a
# security group that admits port 22 only from the partners' public CIDRs (sftp_allowed_cidrs).
# Without it, the endpoint is internal and partners need a VPN / Direct Connect route into the
# VPC, which this foundation does not build. Each hospital is one service-managed user whose home
# is its own <source>/ prefix of the ingestion bucket, and whose session (scope-down) policy
# allows nothing outside that prefix.
resource "aws_security_group" "sftp" {
  name_prefix = "${local.name}-sftp-"
  description = "Transfer Family SFTP endpoint: port 22 from the partners' CIDRs only"
  vpc_id      = aws_vpc.lake.id
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "sftp" {
  for_each          = toset(var.sftp_allowed_cidrs)
  security_group_id = aws_security_group.sftp.id
  description       = "SFTP from partner network ${each.key}"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.key
}

resource "aws_cloudwatch_log_group" "transfer" {
  name              = "/aws/transfer/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.ops.arn
}

resource "aws_transfer_server" "sftp" {
  endpoint_type          = "VPC"
  protocols              = ["SFTP"]
  identity_provider_type = "SERVICE_MANAGED"
  domain                 = "S3"
  # FIPS endpoints in GovCloud; checkov CKV_AWS_380 fails a policy older than 24 months, so this
  # must move to the newest FIPS policy at least every two years.
  security_policy_name = "TransferSecurityPolicy-FIPS-2025-03"
  logging_role         = aws_iam_role.transfer_logging.arn
  structured_log_destinations = [
    "${aws_cloudwatch_log_group.transfer.arn}:*",
  ]

  endpoint_details {
    vpc_id                 = aws_vpc.lake.id
    subnet_ids             = var.sftp_internet_facing ? aws_subnet.public[*].id : aws_subnet.private[*].id
    address_allocation_ids = var.sftp_internet_facing ? aws_eip.sftp[*].allocation_id : null
    security_group_ids     = [aws_security_group.sftp.id]
  }

  tags = { Name = "${local.name}-sftp" }
}

# One Elastic IP per endpoint subnet: the fixed addresses partners allow in their firewalls.
resource "aws_eip" "sftp" {
  # checkov:skip=CKV2_AWS_19:These addresses are attached to the Transfer Family server's VPC endpoint (endpoint_details.address_allocation_ids), not to EC2 instances.
  count  = var.sftp_internet_facing ? local.az_count : 0
  domain = "vpc"
  tags   = { Name = "${local.name}-sftp-${count.index}" }
}

# ---- logging role ----
data "aws_iam_policy_document" "transfer_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["transfer.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "transfer_logging" {
  name_prefix        = "${local.name}-sftp-log-"
  assume_role_policy = data.aws_iam_policy_document.transfer_trust.json
}

data "aws_iam_policy_document" "transfer_logging" {
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = [
      aws_cloudwatch_log_group.transfer.arn,
      "${aws_cloudwatch_log_group.transfer.arn}:*",
    ]
  }
}

resource "aws_iam_role_policy" "transfer_logging" {
  name   = "write-transfer-logs"
  role   = aws_iam_role.transfer_logging.id
  policy = data.aws_iam_policy_document.transfer_logging.json
}

# ---- the users' role: the ingestion bucket; each user's session policy narrows it to one prefix ----
# Fixed name: the ingestion bucket policy (template.yaml) admits writes only from this role.
resource "aws_iam_role" "sftp_user" {
  name               = "${local.name}-sftp-user"
  assume_role_policy = data.aws_iam_policy_document.transfer_trust.json
}

data "aws_iam_policy_document" "sftp_user" {
  statement {
    sid       = "ListIngestionBucket"
    actions   = ["s3:ListBucket"]
    resources = [local.ingestion_bucket_arn]
  }
  # No DeleteObject: uploads are versioned originals; a partner re-sends, it never removes.
  statement {
    sid       = "UploadObjects"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.ingestion_bucket_arn}/*"]
  }
  statement {
    sid       = "EncryptWithLakeKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = [local.ingestion_bucket_arn]
    }
  }
}

resource "aws_iam_role_policy" "sftp_user" {
  name   = "ingestion-bucket"
  role   = aws_iam_role.sftp_user.id
  policy = data.aws_iam_policy_document.sftp_user.json
}

# Scope-down (session) policy of one hospital: its own <source>/ prefix, nothing else.
data "aws_iam_policy_document" "sftp_scope_down" {
  for_each = var.sftp_users

  statement {
    sid       = "ListOwnPrefixOnly"
    actions   = ["s3:ListBucket"]
    resources = [local.ingestion_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${each.key}/", "${each.key}/*"]
    }
  }
  statement {
    sid       = "UploadToOwnPrefixOnly"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${local.ingestion_bucket_arn}/${each.key}/*"]
  }
  statement {
    sid       = "EncryptWithLakeKey"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.lake.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }
}

resource "aws_transfer_user" "hospital" {
  for_each            = var.sftp_users
  server_id           = aws_transfer_server.sftp.id
  user_name           = each.key
  role                = aws_iam_role.sftp_user.arn
  policy              = data.aws_iam_policy_document.sftp_scope_down[each.key].json
  home_directory_type = "LOGICAL"

  # The user sees "/" and it is <bucket>/<source>: no path outside its prefix exists for it.
  home_directory_mappings {
    entry  = "/"
    target = "/${local.ingestion_bucket_name}/${each.key}"
  }

  tags = { Source = each.key }
}

locals {
  sftp_keys = merge([
    for source, user in var.sftp_users : {
      for i, key in user.ssh_public_keys : "${source}-${i}" => { source = source, key = key }
    }
  ]...)
}

resource "aws_transfer_ssh_key" "hospital" {
  for_each  = local.sftp_keys
  server_id = aws_transfer_server.sftp.id
  user_name = aws_transfer_user.hospital[each.value.source].user_name
  body      = each.value.key
}
