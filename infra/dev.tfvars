environment              = "dev"
region                   = "us-gov-west-1"
vpc_cidr                 = "10.40.0.0/16"
availability_zones       = ["us-gov-west-1a", "us-gov-west-1b"]
log_retention_days       = 365
alert_emails             = ["lake-dev-alerts@example.gov"]
sftp_allowed_cidrs       = ["198.51.100.0/24"] # placeholder (RFC 5737): the partners' public egress CIDRs
db_min_acu               = 0.5
db_max_acu               = 2
db_instance_count        = 1
db_backup_retention_days = 7

sftp_users = {
  st_marys = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevOnlyPlaceholderKeyForStMarysReplaceMe0000 st_marys-dev"]
  }
  county_general = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevOnlyPlaceholderKeyForCountyGeneralReplace00 county_general-dev"]
  }
  valley_clinic = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDevOnlyPlaceholderKeyForValleyClinicReplaceMe0 valley_clinic-dev"]
  }
}
backup_retention_days = 35
