//! Access control: bearer tokens with scopes, kept as SHA-256 hashes in a tokens file that the server re-reads
//! when it changes, and the one decision every request goes through ([`Gate::authorize`]): the request handlers'
//! middleware and the connection's `Expect: 100-continue` handler both call it, so a refused upload never sends
//! a body byte.
//!
//! The tokens file has one line per token: `name scopes sha256-hex` (scopes comma-separated), never the token.

use std::{
    fs, io,
    io::Write,
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::http::header::{self, HeaderMap};
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{error::AppError, links::LinkSigner};

/// What a token may do. Every operation needs at most one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scope {
    /// Every upload, tus included.
    Upload,
    /// Downloads, metadata, listing, signed links.
    Read,
    /// Deleting files.
    Delete,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Upload, Scope::Read, Scope::Delete];

    pub const fn name(self) -> &'static str {
        match self {
            Scope::Upload => "upload",
            Scope::Read => "read",
            Scope::Delete => "delete",
        }
    }

    fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.name() == name)
    }
}

/// What an operation asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, the docs, the spec, and anything undocumented (which answers 404 or 405 anyway).
    Open,
    /// A token holding this scope.
    Token(Scope),
    /// A token with the `read` scope, or a valid signed link (downloads).
    TokenOrLink,
}

impl Access {
    /// The access an operation needs, from its OpenAPI tag and method: the tags come from the endpoint tables,
    /// so a new upload or download strategy is protected without being listed here.
    pub fn for_operation(tag: &str, method: &str) -> Access {
        match (tag, method) {
            ("upload" | "tus", _) => Access::Token(Scope::Upload),
            ("download", _) => Access::TokenOrLink,
            ("files", "DELETE") => Access::Token(Scope::Delete),
            ("files", _) => Access::Token(Scope::Read),
            _ => Access::Open,
        }
    }

    /// The scope a token needs, if any.
    pub const fn scope(self) -> Option<Scope> {
        match self {
            Access::Open => None,
            Access::Token(scope) => Some(scope),
            Access::TokenOrLink => Some(Scope::Read),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub scopes: Vec<Scope>,
    hash: [u8; 32],
}

impl TokenEntry {
    fn line(&self) -> String {
        let scopes: Vec<&str> = self.scopes.iter().map(|s| s.name()).collect();
        format!("{} {} {}\n", self.name, scopes.join(","), hex::encode(self.hash))
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses a tokens file; lines that do not parse are skipped with a warning naming their line number.
pub fn parse_tokens(text: &str) -> Vec<TokenEntry> {
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parsed = match fields.as_slice() {
            [name, scopes, digest] => {
                let scopes: Option<Vec<Scope>> = scopes.split(',').map(Scope::parse).collect();
                let hash = hex::decode(digest).ok().and_then(|bytes| <[u8; 32]>::try_from(bytes).ok());
                scopes.zip(hash).map(|(scopes, hash)| TokenEntry { name: (*name).to_owned(), scopes, hash })
            }
            _ => None,
        };
        match parsed {
            Some(entry) => entries.push(entry),
            None => log::warn!("tokens file: line {} is not `name scopes sha256`; ignored", number + 1),
        }
    }
    entries
}

/// Reads the tokens at `path`; a missing file holds none.
pub fn list_tokens(path: &Path) -> io::Result<Vec<TokenEntry>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(parse_tokens(&text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// Creates a token named `name` with `scopes`, appends its hash to the tokens file (created with mode 0600)
/// and returns the token, which is stored nowhere.
pub fn create_token(path: &Path, name: &str, scopes: &[Scope]) -> io::Result<String> {
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a token name is letters, digits, `-`, `_`, `.` or `@`",
        ));
    }
    if scopes.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "a token needs at least one scope"));
    }
    if list_tokens(path)?.iter().any(|entry| entry.name == name) {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("a token named {name} exists already")));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|err| io::Error::other(format!("no randomness: {err}")))?;
    let token = format!("ferry_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    let mut scopes = scopes.to_vec();
    scopes.dedup();
    let entry = TokenEntry { name: name.to_owned(), scopes, hash: hash(&token) };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    let mut file = fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.write_all(entry.line().as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// Removes the token named `name`; returns whether there was one. The file is replaced by rename, so a
/// server reading it sees the old or the new list, never half of one.
pub fn revoke_token(path: &Path, name: &str) -> io::Result<bool> {
    let entries = list_tokens(path)?;
    let kept: Vec<&TokenEntry> = entries.iter().filter(|entry| entry.name != name).collect();
    if kept.len() == entries.len() {
        return Ok(false);
    }
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new().permissions(fs::Permissions::from_mode(0o600)).tempfile_in(dir)?;
    for entry in kept {
        temp.write_all(entry.line().as_bytes())?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(true)
}

/// How often the server looks at the tokens file: a `stat` at most this often, a read only when it changed.
pub const RELOAD_INTERVAL: Duration = Duration::from_millis(250);

/// Identifies a version of the tokens file without reading it.
type Stamp = Option<(u64, u64, i64, i64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = fs::metadata(path).ok()?;
    Some((meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()))
}

/// The tokens the server accepts, re-read when the file changes.
pub struct Tokens {
    path: PathBuf,
    /// Whether tokens are required: `--auth token`, or the file existed at start or has appeared since (auth
    /// never turns itself off: removing the file revokes every token instead).
    enabled: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` of the last look at the file.
    checked: AtomicU64,
    loaded: RwLock<(Stamp, Arc<Vec<TokenEntry>>)>,
}

impl Tokens {
    pub fn open(path: PathBuf, required: bool) -> Tokens {
        let tokens = Tokens {
            enabled: AtomicBool::new(required),
            started: Instant::now(),
            checked: AtomicU64::new(0),
            loaded: RwLock::new((None, Arc::new(Vec::new()))),
            path,
        };
        tokens.reload();
        tokens
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether requests need a token (after a look at the file, if one is due).
    pub fn enabled(&self) -> bool {
        self.refresh();
        self.enabled.load(Ordering::Relaxed)
    }

    fn refresh(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.checked.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= RELOAD_INTERVAL.as_millis() as u64;
        // one thread looks; the others use what is loaded
        if due && self.checked.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.reload();
        }
    }

    fn reload(&self) {
        let current = stamp(&self.path);
        if current.is_some() {
            self.enabled.store(true, Ordering::Relaxed);
        }
        if self.loaded.read().unwrap_or_else(|p| p.into_inner()).0 == current {
            return;
        }
        let entries = match list_tokens(&self.path) {
            Ok(entries) => entries,
            Err(err) => {
                log::warn!(
                    "cannot read the tokens file {}: {err}; keeping the tokens read before",
                    self.path.display()
                );
                return;
            }
        };
        log::info!("tokens file {}: {} token(s)", self.path.display(), entries.len());
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = (current, Arc::new(entries));
    }

    /// The entry whose hash is the presented token's: every entry is compared, each in constant time.
    fn find(&self, presented: &str) -> Option<TokenEntry> {
        let presented = hash(presented);
        let entries = self.loaded.read().unwrap_or_else(|p| p.into_inner()).1.clone();
        let mut found = None;
        for entry in entries.iter() {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        found.cloned()
    }
}

/// The name of the token a request was let in with, in the request's extensions (for the access log).
#[derive(Debug, Clone)]
pub struct TokenName(pub Arc<str>);

/// Who may do what: the tokens and the link signer.
pub struct Gate {
    pub tokens: Tokens,
    pub links: LinkSigner,
}

/// How a request got in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// Auth is off, or the operation is open.
    Open,
    /// With the token of this name.
    Token(Arc<str>),
    /// With a signed link.
    Link,
}

impl Gate {
    /// Decides whether a request may run `access`: 401 without a known token, 403 with a token that lacks the
    /// scope or with a signed link that does not hold (on a download, a link may stand in for a token).
    pub fn authorize(
        &self,
        access: Access,
        method: &str,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<Admitted, AppError> {
        let Some(scope) = access.scope() else { return Ok(Admitted::Open) };
        if !self.tokens.enabled() {
            return Ok(Admitted::Open);
        }
        let bearer = headers.get(header::AUTHORIZATION).map(|value| {
            let value = value.to_str().unwrap_or_default().trim();
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => "",
            }
        });
        match bearer {
            Some(token) => {
                let entry = self.tokens.find(token).ok_or(AppError::Unauthorized("the token is not valid"))?;
                if entry.scopes.contains(&scope) {
                    Ok(Admitted::Token(entry.name.into()))
                } else {
                    log::info!("token {} lacks the {} scope for {method} {path}", entry.name, scope.name());
                    Err(AppError::Forbidden(format!("the token lacks the `{}` scope", scope.name())))
                }
            }
            None if access == Access::TokenOrLink && crate::links::is_signed(query) => {
                let id = path.rsplit('/').next().unwrap_or_default();
                let method = if method == "HEAD" { "GET" } else { method };
                self.links.verify(method, id, query)?;
                Ok(Admitted::Link)
            }
            None => Err(AppError::Unauthorized("this operation needs `Authorization: Bearer <token>`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_hashes_and_revocation_removes_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let ci = create_token(&path, "ci", &[Scope::Upload, Scope::Read]).unwrap();
        let ops = create_token(&path, "ops", &[Scope::Delete]).unwrap();
        assert!(ci.starts_with("ferry_") && ci.len() == 6 + 43);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&ci) && !text.contains(&ci[6..]), "{text}");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(create_token(&path, "ci", &[Scope::Read]).is_err(), "names are unique");
        let tokens = Tokens::open(path.clone(), false);
        assert_eq!(tokens.find(&ci).map(|e| e.name), Some("ci".to_owned()));
        assert_eq!(tokens.find(&ops).map(|e| e.scopes), Some(vec![Scope::Delete]));
        assert!(tokens.find("ferry_nope").is_none());
        assert!(revoke_token(&path, "ci").unwrap());
        assert!(!revoke_token(&path, "ci").unwrap());
        assert_eq!(list_tokens(&path).unwrap().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["ops"]);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn access_follows_the_tags() {
        assert_eq!(Access::for_operation("upload", "POST"), Access::Token(Scope::Upload));
        assert_eq!(Access::for_operation("download", "HEAD"), Access::TokenOrLink);
        assert_eq!(Access::for_operation("files", "DELETE"), Access::Token(Scope::Delete));
        assert_eq!(Access::for_operation("files", "GET"), Access::Token(Scope::Read));
        assert_eq!(Access::for_operation("health", "GET"), Access::Open);
    }
}
