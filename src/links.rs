//! Signed download links: `?expires=<unix seconds>&signature=<hex>`, where the signature is an HMAC-SHA256 over
//! the method, the file id and the expiry, with a server secret (`--link-secret`, or one made once in
//! `<data>/link-secret`). The strategy's path is not signed, so one link works on every download strategy.
//! Rotating the secret invalidates every link.

use std::{
    fs, io,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::AppError;

/// The link secret's file in the data directory.
pub const SECRET_FILE: &str = "link-secret";

pub struct LinkSigner {
    key: Vec<u8>,
    pub max_ttl: Duration,
}

impl LinkSigner {
    pub fn new(key: Vec<u8>, max_ttl: Duration) -> LinkSigner {
        LinkSigner { key, max_ttl }
    }

    /// The secret given, or the one in `<data>/link-secret`, made (32 random bytes, hex, mode 0600) when there
    /// is none.
    pub fn load(given: Option<&str>, data_dir: &Path, max_ttl: Duration) -> io::Result<LinkSigner> {
        if let Some(secret) = given {
            return Ok(LinkSigner::new(secret.as_bytes().to_vec(), max_ttl));
        }
        let path = data_dir.join(SECRET_FILE);
        match fs::read_to_string(&path) {
            Ok(secret) if !secret.trim().is_empty() => {
                return Ok(LinkSigner::new(secret.trim().as_bytes().to_vec(), max_ttl));
            }
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|err| io::Error::other(format!("no randomness: {err}")))?;
        let secret = hex::encode(secret);
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
        file.write_all(secret.as_bytes())?;
        file.sync_all()?;
        Ok(LinkSigner::new(secret.into_bytes(), max_ttl))
    }

    fn mac(&self, method: &str, id: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(format!("{method}\n{id}\n{expires}").as_bytes());
        mac
    }

    /// The query string of a link to `id` for `method`, valid for `ttl` (capped at `max_ttl`), and its expiry.
    pub fn sign(&self, method: &str, id: &str, ttl: Duration) -> (String, SystemTime) {
        let expires = now_secs() + ttl.min(self.max_ttl).as_secs().max(1);
        let signature = hex::encode(self.mac(method, id, expires).finalize().into_bytes());
        (format!("expires={expires}&signature={signature}"), UNIX_EPOCH + Duration::from_secs(expires))
    }

    /// 403 unless `query` carries a signature of `method`, `id` and its expiry, and the expiry has not passed.
    pub fn verify(&self, method: &str, id: &str, query: &str) -> Result<(), AppError> {
        let invalid = || AppError::Forbidden("the link is not valid".to_owned());
        let (mut expires, mut signature) = (None, None);
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match key {
                "expires" => expires = value.parse::<u64>().ok(),
                "signature" => signature = hex::decode(value).ok(),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else { return Err(invalid()) };
        self.mac(method, id, expires).verify_slice(&signature).map_err(|_| invalid())?;
        if expires < now_secs() {
            return Err(AppError::Forbidden("the link has expired".to_owned()));
        }
        Ok(())
    }
}

/// Whether a query string carries a link signature.
pub fn is_signed(query: &str) -> bool {
    query.split('&').any(|pair| pair.starts_with("signature="))
}

/// `query` with the signature's value hidden, for the access log.
pub fn redact(query: &str) -> String {
    let pairs: Vec<&str> =
        query.split('&').map(|pair| if pair.starts_with("signature=") { "signature=…" } else { pair }).collect();
    pairs.join("&")
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_holds_for_its_method_id_and_expiry_only() {
        let signer = LinkSigner::new(b"k".to_vec(), Duration::from_secs(3600));
        let (query, _) = signer.sign("GET", "abc", Duration::from_secs(60));
        assert!(signer.verify("GET", "abc", &query).is_ok());
        assert!(signer.verify("DELETE", "abc", &query).is_err());
        assert!(signer.verify("GET", "abd", &query).is_err());
        let later = query.replacen("expires=", "expires=1", 1);
        assert!(signer.verify("GET", "abc", &later).is_err());
        assert!(LinkSigner::new(b"other".to_vec(), Duration::from_secs(60)).verify("GET", "abc", &query).is_err());
        assert!(!redact(&query).contains(&query[query.find("signature=").unwrap() + 10..]));
    }

    #[test]
    fn the_lifetime_is_capped() {
        let signer = LinkSigner::new(b"k".to_vec(), Duration::from_secs(60));
        let (_, expires) = signer.sign("GET", "abc", Duration::from_secs(86_400));
        assert!(expires <= SystemTime::now() + Duration::from_secs(61));
    }
}
