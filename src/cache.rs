//! The `download/cached` strategy's memory: whole files as `Bytes`, least recently used evicted first. Files never
//! change once stored, so an entry is only ever invalidated by deleting its file.
//!
//! The budget (`--cache-bytes`) bounds every cached byte still alive, not only those the LRU holds: a response
//! holds a [`Lease`] on its entry until it has sent its last byte, and an evicted entry's bytes count until its
//! last lease is gone. A file that does not fit the budget is streamed from disk instead, so slow readers can
//! never make the cache hold more than its budget.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use lru::LruCache;

use crate::storage::FileId;

pub struct FileCache {
    entries: Mutex<LruCache<FileId, Arc<Entry>>>,
    /// Bytes of every entry alive: in the LRU, or evicted and still leased.
    held: Arc<AtomicU64>,
    budget: u64,
    max_file: u64,
}

/// One cached file; its bytes leave the budget when the last `Arc` to it is dropped.
struct Entry {
    bytes: Bytes,
    held: Arc<AtomicU64>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.held.fetch_sub(self.bytes.len() as u64, Ordering::AcqRel);
    }
}

/// A cached file, kept in the budget for as long as this lives.
#[derive(Clone)]
pub struct Lease(Arc<Entry>);

impl Lease {
    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }
}

impl FileCache {
    /// Holds at most `budget` bytes, and no file larger than `max_file`.
    pub fn new(budget: u64, max_file: u64) -> Self {
        FileCache {
            entries: Mutex::new(LruCache::unbounded()),
            held: Arc::new(AtomicU64::new(0)),
            budget,
            max_file: max_file.min(budget),
        }
    }

    /// The whole file, from memory or read now; `None` when it is too large to cache, when the budget is spent
    /// by files that responses still hold, or when what was read is not the `size` recorded (damaged content is
    /// never cached: the caller streams it, and cuts it short). Then the caller streams it from disk.
    pub async fn load(&self, id: FileId, size: u64, path: &Path) -> std::io::Result<Option<Lease>> {
        self.load_with(id, size, Self::read(path)).await
    }

    /// A whole file from disk, as [`FileCache::load_with`] takes it.
    pub async fn read(path: &Path) -> std::io::Result<Bytes> {
        tokio::fs::read(path).await.map(Bytes::from)
    }

    /// [`FileCache::load`] from wherever `read` reads the whole file (the bucket, on S3).
    pub async fn load_with(
        &self,
        id: FileId,
        size: u64,
        read: impl Future<Output = std::io::Result<Bytes>>,
    ) -> std::io::Result<Option<Lease>> {
        if size > self.max_file {
            return Ok(None);
        }
        let Some(reservation) = self.lookup_or_reserve(id, size) else { return Ok(None) };
        let reservation = match reservation {
            Ok(lease) => return Ok(Some(lease)),
            Err(reservation) => reservation,
        };
        let bytes = read.await?;
        if bytes.len() as u64 != size {
            return Ok(None);
        }
        Ok(Some(self.insert(id, bytes, reservation)))
    }

    /// A hit's lease; else room for `size` more bytes, made by evicting least recently used entries; `None`
    /// when leased entries leave no room.
    fn lookup_or_reserve(&self, id: FileId, size: u64) -> Option<Result<Lease, Reservation>> {
        let mut entries = self.lock();
        if let Some(entry) = entries.get(&id) {
            return Some(Ok(Lease(entry.clone())));
        }
        while self.held.load(Ordering::Acquire) + size > self.budget {
            // evicted entries still leased keep counting until their responses end
            entries.pop_lru()?;
        }
        self.held.fetch_add(size, Ordering::AcqRel);
        Some(Err(Reservation { held: self.held.clone(), size }))
    }

    fn insert(&self, id: FileId, bytes: Bytes, reservation: Reservation) -> Lease {
        // the reservation becomes the entry's share of the budget, whatever the file's size turned out to be
        self.held.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        drop(reservation);
        let entry = Arc::new(Entry { bytes, held: self.held.clone() });
        self.lock().put(id, entry.clone());
        Lease(entry)
    }

    /// Whether the file is in memory now.
    pub fn contains(&self, id: FileId) -> bool {
        self.lock().contains(&id)
    }

    pub fn remove(&self, id: FileId) {
        self.lock().pop(&id);
    }

    /// Bytes held now, by the LRU and by responses.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<FileId, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Room taken in the budget for a file being read; given back if the read fails.
struct Reservation {
    held: Arc<AtomicU64>,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.held.fetch_sub(self.size, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, count: usize, size: usize) -> Vec<(FileId, std::path::PathBuf)> {
        (0..count)
            .map(|i| {
                let path = dir.join(i.to_string());
                std::fs::write(&path, vec![i as u8; size]).unwrap();
                (FileId::new(), path)
            })
            .collect()
    }

    #[tokio::test]
    async fn the_least_recently_used_file_goes_first_when_the_budget_is_spent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(10, 10);
        let files = files(dir.path(), 3, 4);
        for (id, path) in &files {
            drop(cache.load(*id, 4, path).await.unwrap().unwrap());
        }
        assert_eq!(cache.held(), 8);
        let mut entries = cache.lock();
        assert!(!entries.contains(&files[0].0));
        assert!(entries.get(&files[2].0).is_some());
    }

    #[tokio::test]
    async fn leased_files_count_until_their_responses_end_and_then_the_rest_streams_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(10, 10);
        let files = files(dir.path(), 3, 4);
        let first = cache.load(files[0].0, 4, &files[0].1).await.unwrap().unwrap();
        let second = cache.load(files[1].0, 4, &files[1].1).await.unwrap().unwrap();
        // both are leased: evicting them from the LRU would free nothing, so the third is not cached
        assert!(cache.load(files[2].0, 4, &files[2].1).await.unwrap().is_none());
        assert_eq!(cache.held(), 8);
        drop((first, second));
        let third = cache.load(files[2].0, 4, &files[2].1).await.unwrap().unwrap();
        assert_eq!(third.bytes().as_ref(), [2; 4]);
        assert!(cache.held() <= 10);
    }

    #[tokio::test]
    async fn content_of_another_size_than_recorded_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        std::fs::write(&path, [1; 4]).unwrap();
        let cache = FileCache::new(100, 10);
        assert!(cache.load(FileId::new(), 5, &path).await.unwrap().is_none());
        assert!(cache.load(FileId::new(), 3, &path).await.unwrap().is_none());
        assert_eq!(cache.held(), 0);
    }

    #[tokio::test]
    async fn large_files_are_not_cached() {
        let cache = FileCache::new(100, 10);
        assert!(cache.load(FileId::new(), 11, Path::new("/nonexistent")).await.unwrap().is_none());
        assert_eq!(cache.held(), 0);
    }

    #[tokio::test]
    async fn a_failed_read_gives_its_reservation_back() {
        let cache = FileCache::new(100, 10);
        assert!(cache.load(FileId::new(), 5, Path::new("/nonexistent")).await.is_err());
        assert_eq!(cache.held(), 0);
    }
}
