//! The `download/cached` strategy's memory: whole files as `Bytes`, least recently used evicted first, bounded by
//! total bytes. Files never change once stored, so an entry is only ever invalidated by deleting its file.

use std::{path::Path, sync::Mutex};

use bytes::Bytes;
use lru::LruCache;

use crate::storage::FileId;

pub struct FileCache {
    inner: Mutex<Inner>,
    budget: u64,
    max_file: u64,
}

struct Inner {
    entries: LruCache<FileId, Bytes>,
    bytes: u64,
}

impl FileCache {
    /// Holds at most `budget` bytes, and no file larger than `max_file`.
    pub fn new(budget: u64, max_file: u64) -> Self {
        let inner = Inner { entries: LruCache::unbounded(), bytes: 0 };
        FileCache { inner: Mutex::new(inner), budget, max_file: max_file.min(budget) }
    }

    /// The whole file, from memory or read now; `None` when it is too large to cache, or when what was read is
    /// not the `size` recorded (damaged content is never cached: the caller streams it, and cuts it short).
    pub async fn load(&self, id: FileId, size: u64, path: &Path) -> std::io::Result<Option<Bytes>> {
        if size > self.max_file {
            return Ok(None);
        }
        if let Some(bytes) = self.lock().entries.get(&id) {
            return Ok(Some(bytes.clone()));
        }
        let bytes = Bytes::from(tokio::fs::read(path).await?);
        if bytes.len() as u64 != size {
            return Ok(None);
        }
        self.insert(id, bytes.clone());
        Ok(Some(bytes))
    }

    pub fn remove(&self, id: FileId) {
        let mut inner = self.lock();
        if let Some(bytes) = inner.entries.pop(&id) {
            inner.bytes -= bytes.len() as u64;
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.lock().bytes
    }

    fn insert(&self, id: FileId, bytes: Bytes) {
        let mut inner = self.lock();
        let len = bytes.len() as u64;
        if let Some(old) = inner.entries.put(id, bytes) {
            inner.bytes -= old.len() as u64;
        }
        inner.bytes += len;
        while inner.bytes > self.budget {
            let Some((_, evicted)) = inner.entries.pop_lru() else { break };
            inner.bytes -= evicted.len() as u64;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_least_recently_used_file_goes_first_when_the_budget_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(10, 10);
        let ids: Vec<FileId> = (0..3).map(|_| FileId::new()).collect();
        for (i, id) in ids.iter().enumerate() {
            let path = dir.path().join(i.to_string());
            std::fs::write(&path, [i as u8; 4]).unwrap();
            cache.load(*id, 4, &path).await.unwrap();
        }
        assert_eq!(cache.held(), 8);
        let mut inner = cache.lock();
        assert!(!inner.entries.contains(&ids[0]));
        assert!(inner.entries.get(&ids[2]).is_some());
    }

    #[tokio::test]
    async fn content_of_another_size_than_recorded_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, [1; 4]).unwrap();
        let cache = FileCache::new(100, 10);
        assert_eq!(cache.load(FileId::new(), 5, &path).await.unwrap(), None);
        assert_eq!(cache.load(FileId::new(), 3, &path).await.unwrap(), None);
        assert_eq!(cache.held(), 0);
    }

    #[tokio::test]
    async fn large_files_are_not_cached() {
        let cache = FileCache::new(100, 10);
        assert_eq!(cache.load(FileId::new(), 11, Path::new("/nonexistent")).await.unwrap(), None);
        assert_eq!(cache.held(), 0);
    }
}
