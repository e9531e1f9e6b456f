environment              = "prod"
region                   = "us-gov-west-1"
vpc_cidr                 = "10.41.0.0/16"
availability_zones       = ["us-gov-west-1a", "us-gov-west-1b", "us-gov-west-1c"]
log_retention_days       = 2192 # six years (HIPAA documentation retention)
alert_emails             = ["lake-oncall@example.gov"]
sftp_allowed_cidrs       = ["203.0.113.0/24"] # placeholder (RFC 5737): the partners' public egress CIDRs
db_min_acu               = 0.5
db_max_acu               = 16
db_instance_count        = 2
db_backup_retention_days = 35

# One entry per partner source; keys are supplied by each hospital during onboarding.
sftp_users = {
  st_marys = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProdPlaceholderKeyForStMarysReplaceMe00000000 st_marys"]
  }
  county_general = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProdPlaceholderKeyForCountyGeneralReplaceMe000 county_general"]
  }
  valley_clinic = {
    ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIProdPlaceholderKeyForValleyClinicReplaceMe0000 valley_clinic"]
  }
}
backup_retention_days = 2192 # six years
audit_lock_mode       = "COMPLIANCE"

# Required in prod (plan stops without it): AWS's HIPAA sample conformance pack, reviewed for
# us-gov-west-1 and uploaded to a bucket of this account (docs/DEPLOY.md, "Detective controls"),
# or hipaa_conformance_pack_provided = true where the organisation deploys it.
# hipaa_conformance_pack_template_s3_uri = "s3://<bucket>/conformance-packs/hipaa-security-us-gov-west-1.yaml"
