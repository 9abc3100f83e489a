//! Access tokens: who may call what.
//!
//! A tokens file holds one token per line as `NAME ROLE SHA256-HEX` (blank
//! lines and `#` comments allowed), so the file never holds a token in the
//! clear. A caller presents `authorization: Bearer TOKEN`; its SHA-256 is
//! compared with every line in constant time. Two roles: `decide` may call
//! `Bandit.Choose` and `Bandit.Reward`; `admin` may call everything.
//!
//! This module decides; the gRPC gate (`api::gate`) asks it and turns the
//! answer into a status.

use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `Bandit.Choose` and `Bandit.Reward` (and reflection).
    Decide,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "decide" => Some(Role::Decide),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Decide => "decide",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Health: open to probes.
    Nothing,
    /// Any valid token (reflection, unknown paths).
    AnyToken,
    /// `decide` or `admin`.
    Decide,
    /// `admin`.
    Admin,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, a malformed header, or a token no line matches.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A valid token whose role does not allow the call.
    #[error("token {name:?} has role {role}, and this call needs admin")]
    PermissionDenied { name: String, role: Role },
}

/// A tokens file that cannot be used, naming the line.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("cannot read tokens file {file}: {message}")]
    Read { file: String, message: String },
    #[error("tokens file {file}, line {line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("tokens file {file} holds no token (every call would be refused)")]
    Empty { file: String },
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The tokens the daemon accepts.
#[derive(Debug, Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Prefix of every generated token (so a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "bdt_";

impl Tokens {
    /// Reads and parses a tokens file.
    pub fn load(path: &std::path::Path) -> Result<Tokens, TokensFileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TokensFileError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&file, &text)
    }

    /// Parses a tokens file's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Tokens, TokensFileError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| TokensFileError::Line {
                file: file.to_string(),
                line: i + 1,
                message,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hex] = fields[..] else {
                return Err(bad(format!(
                    "expected `NAME ROLE SHA256-HEX`, found {} field(s)",
                    fields.len()
                )));
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
                || name.len() > 128
            {
                return Err(bad(format!(
                    "name {name:?}: use at most 128 letters, digits, '-', '_', '.', '@'"
                )));
            }
            let role = Role::parse(role)
                .ok_or_else(|| bad(format!("role {role:?}: expected decide or admin")))?;
            let digest = parse_digest(hex).ok_or_else(|| {
                bad(format!(
                    "{:?} is not a SHA-256 in hex (64 hex digits; `banditd token new` prints one)",
                    truncate(hex, 80)
                ))
            })?;
            if entries.iter().any(|e| e.name == name) {
                return Err(bad(format!("name {name:?} is used twice")));
            }
            if entries.iter().any(|e| e.digest == digest) {
                return Err(bad("the same token digest is listed twice".into()));
            }
            entries.push(Entry {
                name: name.to_string(),
                role,
                digest,
            });
        }
        if entries.is_empty() {
            return Err(TokensFileError::Empty {
                file: file.to_string(),
            });
        }
        Ok(Tokens { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the `authorization` header value allows a call needing `need`.
    /// Returns the token's name when it does.
    pub fn authorize(&self, authorization: Option<&[u8]>, need: Need) -> Result<&str, Denied> {
        if need == Need::Nothing {
            return Ok("");
        }
        let Some(value) = authorization else {
            return Err(Denied::Unauthenticated(
                "this daemon requires a token: send `authorization: Bearer TOKEN`",
            ));
        };
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .ok_or(Denied::Unauthenticated(
                "the authorization header must be `Bearer TOKEN`",
            ))?;
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Every entry is compared, matched or not, so the time taken does
        // not tell which (or whether a) digest matched.
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e);
            }
        }
        let entry = found.ok_or(Denied::Unauthenticated("the token is not valid"))?;
        let allowed = match need {
            Need::Nothing | Need::AnyToken | Need::Decide => true,
            Need::Admin => entry.role == Role::Admin,
        };
        if allowed {
            Ok(&entry.name)
        } else {
            Err(Denied::PermissionDenied {
                name: entry.name.clone(),
                role: entry.role,
            })
        }
    }
}

/// A fresh token (256 random bits from the OS) and its tokens-file line.
pub fn new_token(name: &str, role: Role) -> Result<(String, String), TokensFileError> {
    let mut bytes = [0u8; 32];
    rand::TryRngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut bytes).map_err(|e| {
        TokensFileError::Read {
            file: "the OS random source".into(),
            message: e.to_string(),
        }
    })?;
    let token = format!("{TOKEN_PREFIX}{}", to_hex(&bytes));
    let line = format!("{name} {role} {}", digest_hex(&token));
    // The line must parse as the daemon will read it.
    Tokens::parse("(new)", &line)?;
    Ok((token, line))
}

/// SHA-256 of a token, in lowercase hex (the tokens file's third field).
pub fn digest_hex(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()))
}

fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(lines: &[(&str, Role, &str)]) -> Tokens {
        let text: String = lines
            .iter()
            .map(|(n, r, t)| format!("{n} {r} {}\n", digest_hex(t)))
            .collect();
        Tokens::parse("t", &format!("# tokens\n\n{text}")).expect("parse")
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn roles_allow_what_they_name() {
        let t = file(&[
            ("ads", Role::Decide, "d-secret"),
            ("ops", Role::Admin, "a-secret"),
        ]);
        assert_eq!(
            t.authorize(Some(&bearer("d-secret")), Need::Decide),
            Ok("ads")
        );
        assert_eq!(
            t.authorize(Some(&bearer("a-secret")), Need::Decide),
            Ok("ops")
        );
        assert_eq!(
            t.authorize(Some(&bearer("a-secret")), Need::Admin),
            Ok("ops")
        );
        assert_eq!(
            t.authorize(Some(&bearer("d-secret")), Need::Admin),
            Err(Denied::PermissionDenied {
                name: "ads".into(),
                role: Role::Decide
            })
        );
        assert_eq!(t.authorize(None, Need::Nothing), Ok(""));
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthenticated() {
        let t = file(&[("ops", Role::Admin, "a-secret")]);
        for header in [
            None,
            Some(b"a-secret".to_vec()),
            Some(b"Basic a-secret".to_vec()),
            Some(bearer("a-secreT")),
            Some(bearer("")),
            Some(bearer(&digest_hex("a-secret"))),
        ] {
            assert!(
                matches!(
                    t.authorize(header.as_deref(), Need::AnyToken),
                    Err(Denied::Unauthenticated(_))
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn bad_files_name_the_line() {
        let good = digest_hex("x");
        for (text, line, needle) in [
            (format!("a admin {good}\nb root {good}"), 2, "role"),
            (format!("a admin {good} extra"), 1, "4 field"),
            ("a admin 12ab".to_string(), 1, "SHA-256"),
            (format!("# c\n\na admin {}", "g".repeat(64)), 3, "SHA-256"),
            (
                format!("a admin {good}\na decide {}", digest_hex("y")),
                2,
                "twice",
            ),
            (format!("a admin {good}\nb decide {good}"), 2, "twice"),
            (format!("a/b admin {good}"), 1, "name"),
        ] {
            match Tokens::parse("f", &text) {
                Err(TokensFileError::Line {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{text}");
                    assert!(message.contains(needle), "{message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Tokens::parse("f", "# only a comment\n"),
            Err(TokensFileError::Empty { .. })
        ));
    }

    #[test]
    fn new_tokens_are_accepted_by_their_line() {
        let (token, line) = new_token("ad-server-1", Role::Decide).expect("token");
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 4 + 64);
        assert!(!line.contains(&token));
        let t = Tokens::parse("f", &line).expect("parse");
        assert_eq!(
            t.authorize(Some(&bearer(&token)), Need::Decide),
            Ok("ad-server-1")
        );
        let (other, _) = new_token("x", Role::Admin).expect("token");
        assert_ne!(token, other);
    }
}
