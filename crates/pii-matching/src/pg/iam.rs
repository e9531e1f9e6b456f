//! IAM database authentication: the password of a Lambda's own database user (`lake_matcher`,
//! `lake_reviewer`) is a SigV4-presigned `connect` URL for the `rds-db` service, signed with the
//! function's role credentials and valid for 15 minutes (RDS checks it only when a connection is
//! opened). [`Db`](super::Db) asks for a fresh one before it is [`IamToken::REFRESH`] old, so every
//! new connection of the pool logs in with a valid token; no secret is read and no password is
//! stored. The token is a credential: it is never logged (`DbSecret`'s Debug hides it).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{DbSecret, SecretSource};
use crate::index::IndexError;

/// How long RDS accepts a token (the maximum it allows).
const VALIDITY: Duration = Duration::from_secs(900);

/// What a query-string value may keep unescaped (RFC 3986 unreserved, as SigV4 encodes).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The endpoint and database user a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub region: String,
}

/// The token for `target` signed with `creds` at `now`: `host:port/?Action=connect&DBUser=...`
/// with the SigV4 query parameters (what `aws rds generate-db-auth-token` prints).
pub fn auth_token(target: &IamTarget, creds: Credentials, now: SystemTime) -> Result<String, IndexError> {
    let identity: Identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.expires_in = Some(VALIDITY);
    settings.signature_location = SignatureLocation::QueryParams;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name("rds-db")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| IndexError::Secret(format!("IAM auth token: {e}")))?;
    let user = utf8_percent_encode(&target.user, QUERY);
    let url = format!("https://{}:{}/?Action=connect&DBUser={user}", target.host, target.port);
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| IndexError::Secret(format!("IAM auth token: {e}")))?;
    let (instructions, _) = sign(signable, &params.into())
        .map_err(|e| IndexError::Secret(format!("IAM auth token: {e}")))?
        .into_parts();
    let mut token = url["https://".len()..].to_string();
    for (name, value) in instructions.params() {
        token.push('&');
        token.push_str(name);
        token.push('=');
        token.extend(utf8_percent_encode(value, QUERY));
    }
    Ok(token)
}

/// Credentials for the pool: the database user and a token signed with the role's credentials.
pub struct IamToken {
    pub target: IamTarget,
    pub credentials: SharedCredentialsProvider,
}

impl IamToken {
    /// A token is replaced when it is this old (it stays valid for 15 minutes).
    pub const REFRESH: Duration = Duration::from_secs(600);
}

#[async_trait]
impl SecretSource for IamToken {
    async fn fetch(&self) -> Result<DbSecret, IndexError> {
        let creds = self.credentials.provide_credentials().await.map_err(|e| {
            IndexError::Secret(format!(
                "IAM auth token: no role credentials: {}",
                e.to_string().chars().take(200).collect::<String>()
            ))
        })?;
        Ok(DbSecret {
            username: self.target.user.clone(),
            password: auth_token(&self.target, creds, SystemTime::now())?,
            host: Some(self.target.host.clone()),
            port: Some(self.target.port),
            dbname: None,
        })
    }

    fn max_age(&self) -> Option<Duration> {
        Some(Self::REFRESH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published vector of AWS's own RDS token generator (aws-sdk-rds auth_token tests).
    #[test]
    fn token_matches_the_aws_sdk_vector() {
        let target = IamTarget {
            host: "prod-instance.us-east-1.rds.amazonaws.com".into(),
            port: 3306,
            user: "peccy".into(),
            region: "us-east-1".into(),
        };
        let creds = Credentials::new("akid", "secret", None, None, "test");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        assert_eq!(
            auth_token(&target, creds, at).unwrap(),
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    #[test]
    fn govcloud_token_is_scoped_to_its_region_and_carries_the_session() {
        let target = IamTarget {
            host: "lake.cluster-abc.us-gov-west-1.rds.amazonaws.com".into(),
            port: 5432,
            user: "lake_matcher".into(),
            region: "us-gov-west-1".into(),
        };
        let creds = Credentials::new("ASIAEXAMPLE", "secret", Some("session/token+x".into()), None, "test");
        let t = auth_token(&target, creds, SystemTime::now()).unwrap();
        assert!(t.starts_with(
            "lake.cluster-abc.us-gov-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=lake_matcher&"
        ));
        assert!(t.contains("%2Fus-gov-west-1%2Frds-db%2Faws4_request"), "{t}");
        assert!(t.contains("X-Amz-Security-Token=session%2Ftoken%2Bx"), "{t}");
        assert!(t.contains("X-Amz-Expires=900"));
    }
}
