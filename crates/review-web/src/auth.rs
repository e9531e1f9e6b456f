//! Who is asking. Two ways in, one rule: every route but `/health` needs an authenticated
//! reviewer or viewer, and every POST a CSRF token bound to that sign-in.
//!
//! - [`Auth::Local`] (`lake review serve`): one local identity; a browser signs in by opening
//!   the login link the server prints. The link works once (its random token is spent by the
//!   first sign-in; restart the server for another), and starts a session (cookie `rw_session`,
//!   HttpOnly, SameSite=Strict) that expires after being idle. The CSRF token is the session's
//!   own random token.
//! - [`Auth::Claims`] (the Lambda behind the authenticating load balancer): the identity and
//!   groups come from the OIDC claims the load balancer forwards (`x-amzn-oidc-data`, an ES256
//!   JWT; see [`alb`]). It is accepted only when its `signer` header is the configured load
//!   balancer's ARN, its signature verifies with that load balancer's regional public key, it has
//!   not expired and its sign-in is no older than the session bound. Members of the reviewer
//!   group decide, members of the viewer group only look. CSRF: a random token in a SameSite=Lax
//!   cookie that every form repeats (double submit). Lax, not Strict: the browser's return from
//!   the identity provider is a cross-site navigation, which carries no Strict cookie, so a new
//!   token would be minted and every open tab's next form refused; a cross-site POST still
//!   carries no Lax cookie, so a forged form is refused as before.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::alb::AlbKeys;

/// May decide, or may only look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reviewer,
    Viewer,
}

/// An authenticated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No identity, or an expired one (401).
    Unauthenticated(&'static str),
    /// Authenticated but in neither group (403).
    NoGroup,
}

/// How identities are established.
pub enum Auth {
    Local(LocalAuth),
    Claims(ClaimsAuth),
}

/// The local server's one identity, its unspent login tokens and sessions.
pub struct LocalAuth {
    pub identity: Identity,
    login_token: String,
    unspent: Mutex<HashSet<String>>,
    idle: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    csrf: String,
    last_seen: Instant,
}

/// Identity from the claims the authenticating load balancer forwards.
pub struct ClaimsAuth {
    /// The header carrying the claims JWT (`x-amzn-oidc-data`).
    pub header: String,
    /// The claim naming the person (`email`, else `sub`).
    pub name_claim: String,
    /// The claim listing the person's groups (`groups`, `cognito:groups`).
    pub groups_claim: String,
    pub reviewer_group: String,
    pub viewer_group: String,
    /// The load balancer that must have signed the claims (the JWT header's `signer`).
    pub alb_arn: String,
    /// Its public keys, by key id.
    pub keys: AlbKeys,
    /// The longest sign-in accepted: a token whose `exp` lies further ahead, or whose
    /// `auth_time` lies further back, is refused.
    pub max_session: Duration,
}

/// The session cookie (local mode) and the CSRF cookie (claims mode).
pub const SESSION_COOKIE: &str = "rw_session";
pub const CSRF_COOKIE: &str = "rw_csrf";

/// 32 random bytes from the operating system, hex.
pub fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
    if !ok {
        // never reached on Linux; still never a predictable token
        let seed = format!("{:?}{:?}", std::time::SystemTime::now(), std::thread::current().id());
        b.copy_from_slice(&Sha256::digest(seed.as_bytes()));
    }
    hex::encode(b)
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl LocalAuth {
    /// The local identity (a reviewer), a fresh login token, sessions expiring after `idle`.
    pub fn new(name: &str, idle: Duration) -> Self {
        let login_token = random_token();
        Self {
            identity: Identity { name: name.to_string(), role: Role::Reviewer },
            unspent: Mutex::new(HashSet::from([login_token.clone()])),
            login_token,
            idle,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The first login token (printed by `lake review serve` as part of the login link); it
    /// signs in once.
    pub fn login_token(&self) -> &str {
        &self.login_token
    }

    /// Another one-time login token (a second browser of the same local reviewer).
    pub fn issue_login_token(&self) -> Option<String> {
        let t = random_token();
        self.unspent.lock().ok()?.insert(t.clone());
        Some(t)
    }

    /// Starts a session when `token` is an unspent login token (spending it): the session id
    /// for the cookie.
    pub fn login(&self, token: &str) -> Option<String> {
        {
            let mut unspent = self.unspent.lock().ok()?;
            let found = unspent.iter().find(|t| same_secret(token, t)).cloned()?;
            unspent.remove(&found);
        }
        let id = random_token();
        let s = Session { csrf: random_token(), last_seen: Instant::now() };
        self.sessions.lock().ok()?.insert(id.clone(), s);
        Some(id)
    }

    /// The session's CSRF token, refreshing its idle timer; an expired session is removed.
    pub fn session(&self, h: &HeaderMap) -> Result<String, Denied> {
        let id = cookie(h, SESSION_COOKIE).ok_or(Denied::Unauthenticated("not signed in"))?;
        let mut g = self.sessions.lock().map_err(|_| Denied::Unauthenticated("session store unavailable"))?;
        let Some(s) = g.get_mut(id) else { return Err(Denied::Unauthenticated("not signed in")) };
        if s.last_seen.elapsed() > self.idle {
            g.remove(id);
            return Err(Denied::Unauthenticated("session expired"));
        }
        s.last_seen = Instant::now();
        Ok(s.csrf.clone())
    }
}

/// Base64 in either alphabet (URL-safe or standard), padding ignored.
pub(crate) fn base64url(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let take = match chunk.len() {
            4 => 3,
            3 => 2,
            2 => 1,
            _ => return None,
        };
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    Some(out)
}

impl ClaimsAuth {
    /// The identity in the claims header: signed by the configured load balancer, unexpired,
    /// within the session bound, in the reviewer or viewer group.
    pub async fn identify(&self, h: &HeaderMap) -> Result<Identity, Denied> {
        let raw = h.get(self.header.as_str()).and_then(|v| v.to_str().ok());
        let raw = raw.ok_or(Denied::Unauthenticated("no identity"))?;
        let claims = self.keys.verify(raw, &self.alb_arn).await?;
        let now = chrono::Utc::now().timestamp();
        let max = i64::try_from(self.max_session.as_secs()).unwrap_or(i64::MAX);
        let exp = claims.exp.ok_or(Denied::Unauthenticated("the sign-in has no expiry"))?;
        if exp <= now {
            return Err(Denied::Unauthenticated("session expired"));
        }
        if exp > now.saturating_add(max) {
            return Err(Denied::Unauthenticated("the sign-in outlasts the session bound"));
        }
        let c = &claims.payload;
        if c.get("auth_time").and_then(|a| a.as_i64()).is_some_and(|a| now.saturating_sub(a) > max) {
            return Err(Denied::Unauthenticated("session expired"));
        }
        let name = c
            .get(self.name_claim.as_str())
            .or_else(|| c.get("sub"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(Denied::Unauthenticated("no identity"))?;
        let groups: Vec<String> = match c.get(self.groups_claim.as_str()) {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(|g| g.as_str().map(String::from)).collect()
            }
            Some(serde_json::Value::String(s)) => {
                s.split([',', ' ']).filter(|g| !g.is_empty()).map(String::from).collect()
            }
            _ => Vec::new(),
        };
        let role = if groups.contains(&self.reviewer_group) {
            Role::Reviewer
        } else if groups.contains(&self.viewer_group) {
            Role::Viewer
        } else {
            return Err(Denied::NoGroup);
        };
        Ok(Identity { name: name.to_string(), role })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base64url_decodes_unpadded_input() {
        assert_eq!(base64url("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert_eq!(base64url("YQ").unwrap(), b"a");
        assert!(base64url("a").is_none());
        assert!(base64url("a$bc").is_none());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
