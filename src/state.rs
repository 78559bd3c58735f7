//! What every handler shares: storage, limits, the download cache, and who may do what.

use std::sync::Arc;

use crate::{auth::Gate, cache::FileCache, config::Limits, storage::Storage};

pub struct AppState {
    pub storage: Storage,
    pub limits: Limits,
    pub cache: FileCache,
    pub gate: Arc<Gate>,
}
