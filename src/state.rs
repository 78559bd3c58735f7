//! What every handler shares: storage, limits, the download cache, who may do what, and where the server is
//! in its life.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use crate::{auth::Gate, cache::FileCache, config::Limits, metrics::Metrics, storage::Storage};

pub struct AppState {
    pub storage: Storage,
    pub limits: Limits,
    pub cache: FileCache,
    pub gate: Arc<Gate>,
    pub lifecycle: Lifecycle,
    pub metrics: Arc<Metrics>,
}

/// Requests in flight, and whether a stop has begun (readiness turns 503 then).
#[derive(Clone, Default)]
pub struct Lifecycle(Arc<LifecycleInner>);

#[derive(Default)]
struct LifecycleInner {
    in_flight: AtomicUsize,
    stopping: AtomicBool,
}

impl Lifecycle {
    /// Counts a request until the returned guard is dropped.
    pub fn start_request(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::Acquire)
    }

    pub fn begin_stopping(&self) {
        self.0.stopping.store(true, Ordering::Release);
    }

    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::Acquire)
    }
}

/// One request in flight.
pub struct InFlight(Lifecycle);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
