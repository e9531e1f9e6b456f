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
  description = "Partner networks (site-to-site VPN / Direct Connect) allowed to reach the internal SFTP endpoint on port 22."
  type        = list(string)
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

variable "backup_retention_days" {
  description = "Days AWS Backup keeps each daily recovery point."
  type        = number
  default     = 35
}
