variable "environment" {
  description = "dev or prod; part of every name and must match the SAM stack's Environment parameter."
  type        = string
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  description = "AWS region (GovCloud)."
  type        = string
  default     = "us-gov-west-1"
}

variable "vpc_cidr" {
  description = "CIDR of the lake VPC (private subnets only, no internet gateway, no NAT)."
  type        = string
}

variable "availability_zones" {
  description = "Availability zones (by name) for the private subnets, one subnet each."
  type        = list(string)
  default     = ["us-gov-west-1a", "us-gov-west-1b"]
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups made here (VPC flow logs, Transfer, Aurora)."
  type        = number
  default     = 365
}

variable "alert_emails" {
  description = "E-mail addresses subscribed to the ops alert topic (each must confirm)."
  type        = list(string)
  default     = []
}

variable "ingestion_bucket_name" {
  description = "Ingestion bucket created by the SAM stack; null derives county-lake-<env>-ingestion-<account>-<region>, the template's name."
  type        = string
  default     = null
}

variable "sftp_users" {
  description = "One SFTP user per hospital/clinic: source id (the contract's `source`, also its S3 prefix) => SSH public keys."
  type = map(object({
    ssh_public_keys = list(string)
  }))
  default = {}
  validation {
    condition     = alltrue([for k in keys(var.sftp_users) : can(regex("^[a-z0-9_]{2,64}$", k))])
    error_message = "SFTP source ids must be lower-case letters, digits and underscores (they are S3 prefixes and user names)."
  }
}

variable "sftp_allowed_cidrs" {
  description = "Partner networks allowed to reach SFTP on port 22: their public egress CIDRs (internet-facing endpoint), or their VPN / Direct Connect ranges (internal endpoint). Never 0.0.0.0/0."
  type        = list(string)
  validation {
    condition     = length(var.sftp_allowed_cidrs) > 0 && alltrue([for c in var.sftp_allowed_cidrs : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "sftp_allowed_cidrs must list the partners' CIDRs (valid IPv4 CIDRs, not 0.0.0.0/0)."
  }
}

variable "sftp_internet_facing" {
  description = "true: the SFTP endpoint gets Elastic IPs in public subnets (reachable from the internet, limited to sftp_allowed_cidrs). false: internal, reachable only over a VPN / Direct Connect route into the VPC that is built elsewhere."
  type        = bool
  default     = true
}

variable "db_engine_version" {
  description = "Aurora PostgreSQL version."
  type        = string
  default     = "16.4"
}

variable "db_min_acu" {
  description = "Aurora Serverless v2 minimum capacity (ACU)."
  type        = number
  default     = 0.5
}

variable "db_max_acu" {
  description = "Aurora Serverless v2 maximum capacity (ACU)."
  type        = number
  default     = 4
}

variable "db_instance_count" {
  description = "Aurora instances (writer + readers); 2 or more in prod for a Multi-AZ failover target."
  type        = number
  default     = 1
}

variable "db_backup_retention_days" {
  description = "Aurora automated backup retention (days, max 35)."
  type        = number
  default     = 7
}

variable "backup_s3_buckets" {
  description = "Back up the ingestion and raw buckets with AWS Backup (and opt the region in to S3). false where the region does not offer AWS Backup for S3 (docs/DEPLOY.md, Backups): the buckets then rely on versioning and their retention rules only."
  type        = bool
  default     = true
}

variable "backup_retention_days" {
  description = "Days AWS Backup keeps each daily recovery point."
  type        = number
  default     = 35
}

# ---- audit and detective controls (each "provided" switch: the organisation runs it already) ----
variable "organization_trail_provided" {
  description = "true when an organisation CloudTrail already covers this account as docs/DEPLOY.md requires (all regions, management events, S3 data events on the PHI buckets, DynamoDB data events, log-file validation, a locked bucket); no trail is created here then."
  type        = bool
  default     = false
}

variable "audit_retention_days" {
  description = "Object Lock retention of the audit bucket (CloudTrail, AWS Config); six years = 2192."
  type        = number
  default     = 2192
}

variable "audit_lock_mode" {
  description = "Object Lock mode of the audit bucket: GOVERNANCE (bypass with s3:BypassGovernanceRetention) or COMPLIANCE (nobody, not even root, can shorten it)."
  type        = string
  default     = "GOVERNANCE"
  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.audit_lock_mode)
    error_message = "audit_lock_mode must be GOVERNANCE or COMPLIANCE."
  }
}

variable "guardduty_provided" {
  description = "true when GuardDuty (with S3 protection) is already enabled for this account by the organisation's delegated administrator."
  type        = bool
  default     = false
}

variable "guardduty_s3_malware_scan" {
  description = "Scan every new upload to the ingestion bucket with GuardDuty Malware Protection for S3; only where the region offers it (docs/DEPLOY.md)."
  type        = bool
  default     = false
}

variable "aws_config_provided" {
  description = "true when AWS Config is already recording this account and region (organisation setup)."
  type        = bool
  default     = false
}

variable "config_service_linked_role_exists" {
  description = "true when the account already has AWSServiceRoleForConfig (AWS Config was set up before, by hand or another stack): it is used, not created (creating it twice fails)."
  type        = bool
  default     = false
}

variable "hipaa_conformance_pack_template_s3_uri" {
  description = "s3:// URI of AWS's 'Operational Best Practices for HIPAA Security' conformance pack template, reviewed for the region (docs/DEPLOY.md); null deploys no pack, which prod refuses unless hipaa_conformance_pack_provided."
  type        = string
  default     = null
  validation {
    condition     = var.hipaa_conformance_pack_template_s3_uri == null || can(regex("^s3://[a-z0-9][a-z0-9.-]+/.+[.](ya?ml)$", var.hipaa_conformance_pack_template_s3_uri))
    error_message = "hipaa_conformance_pack_template_s3_uri must be an s3://bucket/key.yaml URI (or null)."
  }
}

variable "hipaa_conformance_pack_provided" {
  description = "true when the organisation deploys the HIPAA conformance pack to this account (an organization conformance pack); prod then needs no template URI here."
  type        = bool
  default     = false
}

variable "access_analyzer_provided" {
  description = "true when an IAM Access Analyzer (organisation or account zone of trust) already covers this account."
  type        = bool
  default     = false
}

variable "replica_region" {
  description = "Second region for the backup copies (the other GovCloud region)."
  type        = string
  default     = "us-gov-east-1"
}

variable "backup_min_retention_days" {
  description = "Vault Lock minimum retention: no recovery point can be deleted earlier, by anyone."
  type        = number
  default     = 7
}

variable "backup_vault_lock_changeable_days" {
  description = "Vault Lock grace period (days, >= 3); after it the lock itself can no longer be changed or removed."
  type        = number
  default     = 3
}

variable "db_connections_alarm" {
  description = "Aurora DatabaseConnections above this raise an alarm (pii-matching opens at most 5)."
  type        = number
  default     = 10
}

variable "fips_endpoints" {
  description = "Whether the functions call FIPS endpoints (template.yaml sets AWS_USE_FIPS_ENDPOINT=true exactly in the aws-us-gov partition); null (the default) follows the partition. With FIPS, Secrets Manager and KMS get their -fips interface endpoint services, whose private DNS names are the hosts the SDK resolves."
  type        = bool
  default     = null
}
