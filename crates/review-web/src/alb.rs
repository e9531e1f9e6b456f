//! The claims token the load balancer forwards (`x-amzn-oidc-data`): an ES256 JWT whose header
//! names the load balancer that signed it (`signer`) and the key it used (`kid`), and whose
//! payload carries the identity provider's userinfo claims.
//!
//! Verification, in this order: three base64url parts (the load balancer pads them with `=`),
//! `alg` ES256, `signer` equal to the configured load balancer's ARN (before anything is
//! fetched), then the signature with that key. The public key comes from the regional Elastic
//! Load Balancing key endpoint, `<base>/<kid>`, as a PEM P-256 key, and is cached per key id:
//! `https://public-keys.auth.elb.<region>.amazonaws.com` in the commercial partition, and in
//! GovCloud the S3-hosted `https://s3-<region>.amazonaws.com/aws-elb-public-keys-prod-<region>`
//! (reached from the private subnets through the S3 gateway endpoint; docs/REVIEW.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::auth::{base64url, Denied};

/// The verified token: its expiry (header or payload `exp`) and the payload's claims.
#[derive(Debug)]
pub struct Claims {
    pub exp: Option<i64>,
    pub payload: serde_json::Value,
}

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// The load balancer's public keys: where to fetch them and those fetched so far.
pub struct AlbKeys {
    /// The key endpoint (`<base>/<kid>`); None: derived from the signer's partition and region.
    base: Option<String>,
    cache: Mutex<HashMap<String, Vec<u8>>>,
    /// Boxed: the client is large and the identity mode is an enum of two.
    http: Box<Https>,
}

/// DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows it.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Keys cached at most (a load balancer rotates rarely; bounds memory against odd key ids).
const MAX_CACHED: usize = 16;

/// The key endpoint of the load balancer `signer` (an ARN): by partition and region.
pub fn key_base_for(signer: &str) -> Option<String> {
    let mut f = signer.split(':');
    let (arn, partition, service, region) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let region_ok = !region.is_empty()
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if arn != "arn" || service != "elasticloadbalancing" || !region_ok {
        return None;
    }
    match partition {
        "aws-us-gov" => Some(format!("https://s3-{region}.amazonaws.com/aws-elb-public-keys-prod-{region}")),
        "aws" => Some(format!("https://public-keys.auth.elb.{region}.amazonaws.com")),
        _ => None,
    }
}

/// The uncompressed P-256 point of a PEM public key (None: not a P-256 SubjectPublicKeyInfo).
pub fn point_from_pem(pem: &str) -> Option<Vec<u8>> {
    let b64: String =
        pem.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("-----")).collect();
    let der = base64url(&b64)?;
    (der.len() == P256_SPKI_PREFIX.len() + 65 && der.starts_with(&P256_SPKI_PREFIX))
        .then(|| der[P256_SPKI_PREFIX.len()..].to_vec())
}

/// A PEM public key for a 65-byte uncompressed P-256 point (the inverse of [`point_from_pem`]).
pub fn pem_for_point(point: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let der: Vec<u8> = P256_SPKI_PREFIX.iter().chain(point).copied().collect();
    let mut b64 = String::new();
    for c in der.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                b64.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

fn denied(why: &'static str) -> Denied {
    Denied::Unauthenticated(why)
}

fn json_part(part: &str) -> Result<serde_json::Value, Denied> {
    let bytes = base64url(part).ok_or(denied("malformed sign-in token"))?;
    serde_json::from_slice(&bytes).map_err(|_| denied("malformed sign-in token"))
}

fn number(v: Option<&serde_json::Value>) -> Option<i64> {
    v.and_then(|e| e.as_i64().or_else(|| e.as_str().and_then(|s| s.parse().ok())))
}

impl AlbKeys {
    /// Keys fetched from `base` (`<base>/<kid>`), or, when None, from the endpoint the signer's
    /// partition and region name.
    pub fn new(base: Option<String>) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .map_err(|e| format!("no native root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let base = base.map(|b| b.trim_end_matches('/').to_string());
        Ok(Self {
            base,
            cache: Mutex::new(HashMap::new()),
            http: Box::new(Client::builder(TokioExecutor::new()).build(https)),
        })
    }

    async fn fetch(&self, url: &str) -> Result<String, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
        let res = tokio::time::timeout(Duration::from_secs(5), self.http.get(uri))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("HTTP {}", res.status()));
        }
        let body = Limited::new(res.into_body(), 4096).collect().await.map_err(|e| e.to_string())?;
        String::from_utf8(body.to_bytes().to_vec()).map_err(|e| e.to_string())
    }

    /// The key `kid` of `signer`, from the cache or its endpoint.
    async fn key(&self, signer: &str, kid: &str) -> Result<Vec<u8>, Denied> {
        if let Some(k) = self.cache.lock().ok().and_then(|c| c.get(kid).cloned()) {
            return Ok(k);
        }
        let base =
            self.base.clone().or_else(|| key_base_for(signer)).ok_or(denied("unknown signer partition"))?;
        let point = match self.fetch(&format!("{base}/{kid}")).await {
            Ok(pem) => point_from_pem(&pem).ok_or_else(|| "not a P-256 public key".to_string()),
            Err(e) => Err(e),
        };
        let point = point.map_err(|e| {
            tracing::warn!(kid, error = %e, "load balancer public key not available");
            denied("the sign-in could not be verified")
        })?;
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.clear();
            }
            c.insert(kid.to_string(), point.clone());
        }
        Ok(point)
    }

    /// Verifies `token` as signed by the load balancer `alb_arn`; its claims.
    pub async fn verify(&self, token: &str, alb_arn: &str) -> Result<Claims, Denied> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(denied("malformed sign-in token"));
        };
        let header = json_part(h)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return Err(denied("unexpected sign-in token algorithm"));
        }
        let signer = header.get("signer").and_then(|s| s.as_str()).unwrap_or_default();
        if alb_arn.is_empty() || signer != alb_arn {
            return Err(denied("the sign-in was not made by this site's load balancer"));
        }
        let kid = header
            .get("kid")
            .and_then(|k| k.as_str())
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .filter(|k| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .ok_or(denied("malformed sign-in token"))?;
        let point = self.key(signer, kid).await?;
        let sig = base64url(s).ok_or(denied("malformed sign-in token"))?;
        let signed = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| denied("the sign-in token's signature is not valid"))?;
        let payload = json_part(p)?;
        let exp = number(header.get("exp")).or_else(|| number(payload.get("exp")));
        Ok(Claims { exp, payload })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_key_endpoint_follows_the_partition() {
        let gov = "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:111122223333:loadbalancer/app/x/1";
        assert_eq!(
            key_base_for(gov).unwrap(),
            "https://s3-us-gov-west-1.amazonaws.com/aws-elb-public-keys-prod-us-gov-west-1"
        );
        let com = "arn:aws:elasticloadbalancing:us-east-1:111122223333:loadbalancer/app/x/1";
        assert_eq!(key_base_for(com).unwrap(), "https://public-keys.auth.elb.us-east-1.amazonaws.com");
        assert!(key_base_for("arn:aws:s3:::bucket").is_none());
        assert!(key_base_for("arn:aws:elasticloadbalancing:us-east-1/../x:1:lb").is_none());
    }

    #[test]
    fn a_pem_key_round_trips_to_its_point() {
        let mut point = vec![4u8];
        point.extend((1..=64).map(|i| i as u8));
        assert_eq!(point_from_pem(&pem_for_point(&point)).unwrap(), point);
        assert!(point_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_none());
    }
}
