//! Request ids: every request's, and which request the code running on a thread belongs to, so that every line
//! it logs can name it (see [`crate::logging`]).

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::SystemTime,
};

/// The longest request id taken from a client.
const MAX_ID_LEN: usize = 128;

/// A request's id: the client's `X-Request-Id` when well-formed, else a new UUID v7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// The client's id when it is 1 to 128 characters of `A-Z a-z 0-9 . _ : -` (so it is safe in a log line and
    /// a header as it is).
    pub fn accept(value: &[u8]) -> Option<RequestId> {
        let well_formed = (1..=MAX_ID_LEN).contains(&value.len())
            && value.iter().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b));
        well_formed.then(|| RequestId(Arc::from(String::from_utf8_lossy(value))))
    }

    /// A new UUID v7: time-ordered, so ids sort like the log. Its random part comes from a per-thread generator
    /// seeded once from the OS, not a system call per request.
    pub fn generate() -> RequestId {
        let millis = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let (a, b) = (next_random(), next_random());
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&a.to_le_bytes());
        random[8..].copy_from_slice(&b.to_le_bytes()[..2]);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        RequestId(Arc::from(&*id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Makes this the thread's current request until the guard is dropped.
    pub fn enter(&self) -> Entered {
        Entered(CURRENT.with(|current| current.replace(Some(self.clone()))))
    }
}

thread_local! {
    static CURRENT: RefCell<Option<RequestId>> = const { RefCell::new(None) };
    static RANDOM: Cell<u64> = Cell::new(seed());
}

/// Restores the request that was current before [`RequestId::enter`].
pub struct Entered(Option<RequestId>);

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

/// The request whose code runs on this thread now, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.with(|current| current.borrow().clone())
}

/// `f`, run with the current request's id wherever it runs: wrap closures given to `web::block` or
/// `spawn_blocking` that may log, so their lines name the request.
pub fn carry<F: FnOnce() -> R, R>(f: F) -> impl FnOnce() -> R {
    let id = current();
    move || {
        let _entered = id.as_ref().map(RequestId::enter);
        f()
    }
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    // without OS randomness, the clock still makes ids unlikely to repeat
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_le_bytes();
    }
    u64::from_le_bytes(bytes)
}

/// SplitMix64.
fn next_random() -> u64 {
    RANDOM.with(|state| {
        let x = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(x);
        let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_id_is_kept_only_when_well_formed() {
        assert_eq!(RequestId::accept(b"req-1.a_b:c").unwrap().as_str(), "req-1.a_b:c");
        assert!(RequestId::accept(&[b'a'; MAX_ID_LEN]).is_some());
        for bad in [&b""[..], &[b'a'; MAX_ID_LEN + 1], b"a b", b"a\"b", b"caf\xc3\xa9", b"x\r\ny", b"a/b"] {
            assert!(RequestId::accept(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_uuid_v7_and_differ() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
    }

    #[test]
    fn the_current_id_is_restored_and_carried_into_closures() {
        let (outer, inner) = (RequestId::generate(), RequestId::generate());
        assert_eq!(current(), None);
        let _outer = outer.enter();
        {
            let _inner = inner.enter();
            let carried = carry(current);
            assert_eq!(std::thread::spawn(carried).join().unwrap(), Some(inner.clone()));
        }
        assert_eq!(current(), Some(outer));
    }
}
