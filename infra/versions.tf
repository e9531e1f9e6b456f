# The foundation the SAM template (../template.yaml) runs in: KMS keys (data, ops, reaper), the VPC
# with endpoints, Aurora PostgreSQL Serverless v2, Transfer Family SFTP, the ops alert topic,
# AWS Backup, the audit trail and the detective controls.
# Only the aws provider; every ARN is built from data.aws_partition so GovCloud (aws-us-gov) works.
terraform {
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.90.0, < 7.0.0"
    }
  }

  # Remote state in S3 (partial configuration):
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="key=county-lake/<env>.tfstate" \
  #     -backend-config="region=us-gov-west-1" -backend-config="encrypt=true" -backend-config="use_lockfile=true"
  backend "s3" {}
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "county-lake"
      Environment = var.environment
      ManagedBy   = "terraform"
      DataClass   = "phi"
    }
  }
}

# The second GovCloud region: the backup copies' vault (backup.tf).
provider "aws" {
  alias  = "replica"
  region = var.replica_region

  default_tags {
    tags = {
      Project     = "county-lake"
      Environment = var.environment
      ManagedBy   = "terraform"
      DataClass   = "phi"
    }
  }
}

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# Pinned by name: the subnets never move when AWS adds a zone.
data "aws_availability_zones" "available" {
  state = "available"
  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}

locals {
  name       = "county-lake-${var.environment}"
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  azs        = sort(data.aws_availability_zones.available.names)
  az_count   = length(var.availability_zones)

  # Must equal the SAM stack's IngestionBucket name (template.yaml: county-lake-<env>-ingestion-<account>-<region>).
  ingestion_bucket_name = coalesce(var.ingestion_bucket_name, "county-lake-${var.environment}-ingestion-${local.account_id}-${local.region}")
  ingestion_bucket_arn  = "arn:${local.partition}:s3:::${local.ingestion_bucket_name}"
}
