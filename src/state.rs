//! What every handler shares: storage, limits and the download cache.

use crate::{cache::FileCache, config::Limits, storage::Storage};

pub struct AppState {
    pub storage: Storage,
    pub limits: Limits,
    pub cache: FileCache,
}
