//! Who is asking. Two ways in, one rule: every route but `/health` needs an authenticated
//! reviewer or viewer, and every POST a CSRF token bound to that sign-in.
//!
//! - [`Auth::Local`] (`lake review serve`): one local identity; a browser signs in by opening
//!   the one-time login link the server prints (a random token), which starts a session (cookie
//!   `rw_session`, HttpOnly, SameSite=Strict) that expires after being idle. The CSRF token is
//!   the session's own random token.
//! - [`Auth::Claims`] (the Lambda behind the authenticating load balancer): the identity and
//!   groups come from the OIDC claims the load balancer forwards (`x-amzn-oidc-data`, a JWT whose
//!   payload is read; its `exp` bounds the session). Members of the reviewer group decide, members
//!   of the viewer group only look. CSRF: a random token in a SameSite=Strict cookie that every
//!   form repeats (double submit).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

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

/// The local server's one identity, its login token and sessions.
pub struct LocalAuth {
    pub identity: Identity,
    login_token: String,
    idle: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    csrf: String,
    last_seen: Instant,
}

/// Identity from the claims an authenticating proxy forwards.
pub struct ClaimsAuth {
    /// The header carrying the claims JWT (`x-amzn-oidc-data`).
    pub header: String,
    /// The claim naming the person (`email`, else `sub`).
    pub name_claim: String,
    /// The claim listing the person's groups (`groups`, `cognito:groups`).
    pub groups_claim: String,
    pub reviewer_group: String,
    pub viewer_group: String,
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
        Self {
            identity: Identity { name: name.to_string(), role: Role::Reviewer },
            login_token: random_token(),
            idle,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The one-time login token (printed by `lake review serve` as part of the login link).
    pub fn login_token(&self) -> &str {
        &self.login_token
    }

    /// Starts a session when `token` is the login token: the session id for the cookie.
    pub fn login(&self, token: &str) -> Option<String> {
        if !same_secret(token, &self.login_token) {
            return None;
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

/// The payload of a JWT (not its signature: the load balancer in front verified the sign-in and
/// only it can invoke the function).
fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&base64url(payload)?).ok()
}

fn base64url(s: &str) -> Option<Vec<u8>> {
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
    /// The identity in the claims header (its `exp`, when present, must be in the future).
    pub fn identify(&self, h: &HeaderMap) -> Result<Identity, Denied> {
        let raw = h.get(self.header.as_str()).and_then(|v| v.to_str().ok());
        let claims = raw.and_then(jwt_claims).ok_or(Denied::Unauthenticated("no identity"))?;
        if let Some(exp) = claims.get("exp").and_then(|e| e.as_i64()) {
            if exp <= chrono::Utc::now().timestamp() {
                return Err(Denied::Unauthenticated("session expired"));
            }
        }
        let name = claims
            .get(self.name_claim.as_str())
            .or_else(|| claims.get("sub"))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or(Denied::Unauthenticated("no identity"))?;
        let groups: Vec<String> = match claims.get(self.groups_claim.as_str()) {
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
