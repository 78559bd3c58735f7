//! The S3 backend (`--storage s3`): content and rows in one bucket of an S3-compatible store, so that any number of
//! ferry replicas answer for any file and none holds state the others lack.
//!
//! ```text
//! files/<id>           a file's content
//! index/<!id>          its row (the StoredFile as JSON): the file exists once this is written
//! uploads/<id>         a multipart upload in progress (its multipart id), removed when it completes
//! probe/<uuid>         readiness: written and removed at once
//! ```
//!
//! The key of a row is the id with every bit inverted, in hex: S3 lists keys in ascending order, so the index
//! lists newest first, and a page after a cursor is one `ListObjectsV2` with `start-after`, whatever the number of
//! files. Rows never change once written, so a replica may keep them in memory; a delete on another replica is seen
//! when the row is looked up again (`ROW_TTL`), and at once by anything that reads content.
//!
//! The client is `object_store` (Apache Arrow's; S3 through its `aws` feature): it streams multipart puts, ranged
//! gets and paged listings, signs and retries, sends each part's SHA-256 as `x-amz-checksum-sha256` so the store
//! verifies what it received, and is kept by a project that many data systems depend on. The AWS SDK
//! (`aws-sdk-s3` with `aws-config`) resolves to 189 crates against object_store's 137 for the same five calls,
//! and speaks only S3. Its HTTP runs on a runtime of its own (two threads), so that no connection belongs to an
//! actix worker and every worker can await the store; responses cross over through a bounded channel
//! (`connector`).

use std::{
    future::Future,
    io,
    sync::Arc,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    aws::{AmazonS3, AmazonS3Builder, Checksum},
    list::{PaginatedListOptions, PaginatedListStore},
    multipart::MultipartStore,
    path::Path,
};
use serde::{Deserialize, Serialize};

pub use self::writer::ObjectWriter;
use super::{FileId, StoredFile};

mod connector;
mod writer;

/// Bytes per multipart part, and the most a single PUT carries: S3 wants at least 5 MiB for every part but the
/// last. Two parts may be in flight per upload, so a streaming upload holds at most three parts in memory.
pub const PART: usize = 8 << 20;
/// Parts of one upload on their way to the store at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Rows fetched at once for a page of the listing.
const ROWS_AT_ONCE: usize = 16;
/// Uploads that may stream parts at once: each holds up to three parts in memory (about 24 MiB), so together at
/// most about 384 MiB; one more waits for its turn before it reads more of its body. Files that fit one part
/// hold no more than their size, as the buffered strategies do on disk.
pub const STREAMING_UPLOADS: usize = 16;
/// How long a request to the store may go without a byte before it fails (and is retried).
const STALL: Duration = Duration::from_secs(30);

/// Where the bucket is and how to reach it; credentials come from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of an S3-compatible store; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// `bucket.host` addressing instead of `host/bucket` (path style, what Garage and MinIO take by default).
    pub virtual_hosted: bool,
    /// Keys begin with this, so that several deployments can share a bucket (empty: the whole bucket).
    pub prefix: String,
}

pub struct S3 {
    store: Arc<AmazonS3>,
    io: IoRuntime,
    bucket: String,
    keys: Keys,
    /// Turns for uploads that stream parts (see [`STREAMING_UPLOADS`]).
    streaming: Arc<tokio::sync::Semaphore>,
}

/// Where each kind of object lives: `<prefix>files/<id>`, `<prefix>index/<!id>`, `<prefix>uploads/<id>`.
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

/// The runtime the store's connections live on. A runtime cannot be dropped inside another, so it is shut down in
/// the background.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// What `uploads/<id>` holds.
#[derive(Serialize, Deserialize)]
struct Marker {
    multipart: String,
}

impl S3 {
    pub fn connect(config: &S3Config) -> io::Result<S3> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ferry-s3")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            // a download may take as long as its client reads, so there is no bound on a whole request; a stalled
            // store is one that sends nothing for this long
            .read_timeout(STALL)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(io::Error::other)?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(config.virtual_hosted)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_http_connector(connector::Bounded::new(client, runtime.handle().clone()))
            .with_retry(RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(20), ..Default::default() });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
        let prefix = config.prefix.trim_matches('/');
        let keys = Keys { prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") } };
        let streaming = Arc::new(tokio::sync::Semaphore::new(STREAMING_UPLOADS));
        Ok(S3 { store: Arc::new(store), io: IoRuntime(Some(runtime)), bucket: config.bucket.clone(), keys, streaming })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Blocking: runs `work` on the store's runtime from code that is not async (startup, `fsck`, the blocking
    /// pool), on a thread of its own so that it never blocks inside a runtime.
    pub fn wait<T: Send>(&self, work: impl Future<Output = T> + Send) -> T {
        let handle = self.io.0.as_ref().expect("runtime until dropped").handle();
        std::thread::scope(|scope| scope.spawn(|| handle.block_on(work)).join().expect("no panic in store calls"))
    }

    /// Proves the bucket takes writes: one small object written and removed.
    pub async fn probe(&self) -> io::Result<()> {
        let key = Path::from(format!("probe/{}", FileId::new()));
        self.store.put(&key, PutPayload::from_static(b"ferry")).await.map_err(store)?;
        self.store.delete(&key).await.map_err(store)
    }

    pub async fn row(&self, id: FileId) -> io::Result<Option<StoredFile>> {
        let key = self.keys.row(id);
        let bytes = match self.store.get(&key).await {
            Ok(found) => found.bytes().await.map_err(store)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(store(err)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|err| {
            io::Error::new(io::ErrorKind::InvalidData, format!("row {key} in bucket {} is damaged: {err}", self.bucket))
        })
    }

    /// The ids of up to `limit` files, newest first, after the `after` cursor: one listing request. Fewer than
    /// `limit` means the listing has ended.
    pub async fn ids(&self, limit: usize, after: Option<FileId>) -> io::Result<Vec<FileId>> {
        let options = PaginatedListOptions {
            offset: after.map(|id| self.keys.row(id).to_string()),
            max_keys: Some(limit),
            ..Default::default()
        };
        let page = self.store.list_paginated(Some(&self.keys.rows()), options).await.map_err(store)?;
        let mut ids: Vec<FileId> =
            page.result.objects.iter().filter_map(|o| self.keys.id_of_row(o.location.as_ref())).collect();
        ids.truncate(limit);
        Ok(ids)
    }

    /// Rows for `ids`, fetched a few at once, in the same order; rows gone meanwhile are left out.
    pub async fn rows_of<F, Fut>(ids: Vec<FileId>, get: F) -> io::Result<Vec<Arc<StoredFile>>>
    where
        F: Fn(FileId) -> Fut,
        Fut: Future<Output = io::Result<Option<Arc<StoredFile>>>>,
    {
        let rows: Vec<Option<Arc<StoredFile>>> =
            futures_util::stream::iter(ids).map(get).buffered(ROWS_AT_ONCE).try_collect().await?;
        Ok(rows.into_iter().flatten().collect())
    }

    /// Writing the row is the moment the file exists.
    pub async fn commit(&self, file: &StoredFile) -> io::Result<()> {
        let json = serde_json::to_vec(file).map_err(io::Error::other)?;
        self.store.put(&self.keys.row(file.id), PutPayload::from(json)).await.map_err(store).map(drop)
    }

    /// Completes the content `writer` wrote and writes its row: the moment the file exists. If the row cannot be
    /// written, the content goes again.
    pub async fn publish(&self, writer: ObjectWriter, row: &StoredFile) -> io::Result<()> {
        let marked = writer.finish().await?;
        if let Err(err) = self.commit(row).await {
            match self.remove_content(row.id).await {
                Ok(()) if marked => self.forget_marker(row.id).await,
                Ok(()) => {}
                Err(also) => log::error!("{also} (after the row of {} could not be written)", row.id),
            }
            return Err(err);
        }
        if marked {
            self.forget_marker(row.id).await;
        }
        Ok(())
    }

    /// Deleting starts with the row, so that no new reader finds the file.
    pub async fn remove_row(&self, id: FileId) -> io::Result<()> {
        self.store.delete(&self.keys.row(id)).await.map_err(store)
    }

    pub async fn remove_content(&self, id: FileId) -> io::Result<()> {
        self.store.delete(&self.keys.content(id)).await.map_err(store)
    }

    /// `len` bytes of a file's content from `start`: one ranged GET, or a HEAD when there is nothing to send (so a
    /// deleted file is still found missing). A file that is gone is `NotFound`.
    pub async fn read(&self, id: FileId, start: u64, len: u64) -> io::Result<BoxStream<'static, io::Result<Bytes>>> {
        let key = self.keys.content(id);
        if len == 0 {
            self.check(id).await?;
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(start..start + len)), ..Default::default() };
        let found = self.store.get_opts(&key, options).await.map_err(store)?;
        Ok(found.into_stream().map_err(store).boxed())
    }

    /// Whether a file's content is there: a HEAD request; `NotFound` when it is gone.
    pub async fn check(&self, id: FileId) -> io::Result<()> {
        self.store.head(&self.keys.content(id)).await.map(drop).map_err(store)
    }

    /// A whole file's content, for the download cache.
    pub async fn read_all(&self, id: FileId) -> io::Result<Bytes> {
        self.store.get(&self.keys.content(id)).await.map_err(store)?.bytes().await.map_err(store)
    }

    /// Starts writing the content of a file of at most `limit` bytes: nothing reaches the store until a part is
    /// full or the upload ends.
    pub fn writer(self: &Arc<Self>, id: FileId, limit: u64) -> ObjectWriter {
        ObjectWriter::new(self.clone(), id, limit)
    }

    /// Runs `work` on the store's runtime: it goes on when the request that started it is cut.
    pub fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.io.0.as_ref().expect("runtime until dropped").handle().spawn(work)
    }

    /// Removes what uploads cut short by a crashed replica left, once it is older than `older`: a multipart
    /// upload whose file has no row is aborted, its content (if it completed) removed, and its marker with them;
    /// content with no row and no marker (a single-PUT upload cut between its content and its row, or a delete
    /// cut between its row and its content) is removed. None of it was ever answered 201, or it was deleted: this
    /// is what sweeping `tmp/` is on disk. Returns how many were swept.
    pub async fn sweep(&self, older: Duration) -> io::Result<usize> {
        let cutoff = SystemTime::now() - older;
        let markers: Vec<_> = self.store.list(Some(&self.keys.dir("uploads"))).try_collect().await.map_err(store)?;
        let in_progress: std::collections::HashSet<FileId> =
            markers.iter().filter_map(|m| m.location.filename()?.parse().ok()).collect();
        let mut swept = self.sweep_leftovers(cutoff, &in_progress).await?;
        for marker in markers.into_iter().filter(|m| SystemTime::from(m.last_modified) <= cutoff) {
            let Some(id) = marker.location.filename().and_then(|name| name.parse::<FileId>().ok()) else { continue };
            // one upload that cannot be swept now must not keep the others from it
            match self.sweep_one(id, &marker.location).await {
                Ok(true) => {
                    log::warn!(
                        "swept upload {id}: begun before {}, never published",
                        humantime::format_rfc3339(cutoff)
                    );
                    swept += 1;
                }
                Ok(false) => {}
                Err(err) => log::warn!("sweeping upload {id} failed: {err}; the next sweep tries again"),
            }
        }
        Ok(swept)
    }

    /// Content stored before `cutoff` that has no row and belongs to no upload in progress.
    async fn sweep_leftovers(
        &self,
        cutoff: SystemTime,
        in_progress: &std::collections::HashSet<FileId>,
    ) -> io::Result<usize> {
        let old: Vec<_> = self
            .store
            .list(Some(&self.keys.dir("files")))
            .try_filter(|o| std::future::ready(SystemTime::from(o.last_modified) <= cutoff))
            .try_collect()
            .await
            .map_err(store)?;
        if old.is_empty() {
            return Ok(0);
        }
        let rows: std::collections::HashSet<FileId> = self
            .store
            .list(Some(&self.keys.dir("index")))
            .try_filter_map(|o| std::future::ready(Ok(self.keys.id_of_row(o.location.as_ref()))))
            .try_collect()
            .await
            .map_err(store)?;
        let mut swept = 0;
        for object in old {
            let Some(id) = object.location.filename().and_then(|name| name.parse::<FileId>().ok()) else { continue };
            // looked at once more: a row written since the listing makes it a file
            if rows.contains(&id) || in_progress.contains(&id) || self.row(id).await?.is_some() {
                continue;
            }
            ignore_missing(self.store.delete(&object.location).await)?;
            log::warn!(
                "swept {}: stored before {} and never given a row",
                object.location,
                humantime::format_rfc3339(cutoff)
            );
            swept += 1;
        }
        Ok(swept)
    }

    /// Whether the upload behind `marker` was never published (and is now gone); its marker goes either way.
    async fn sweep_one(&self, id: FileId, marker: &Path) -> io::Result<bool> {
        let unpublished = self.row(id).await?.is_none();
        if unpublished {
            let content = self.keys.content(id);
            let multipart = match self.store.get(marker).await {
                Ok(found) => serde_json::from_slice::<Marker>(&found.bytes().await.map_err(store)?).ok(),
                Err(object_store::Error::NotFound { .. }) => return Ok(false), // another replica swept it
                Err(err) => return Err(store(err)),
            };
            if let Some(Marker { multipart }) = multipart
                && let Err(err) = self.store.abort_multipart(&content, &multipart).await
            {
                // a completed upload has no multipart upload left: its object goes below
                log::debug!("aborting the multipart upload of {id}: {err}");
            }
            ignore_missing(self.store.delete(&content).await)?;
        }
        ignore_missing(self.store.delete(marker).await)?;
        Ok(unpublished)
    }

    /// After the row is written the marker of a multipart upload is no longer needed (a sweep would find the row
    /// and remove it too).
    pub async fn forget_marker(&self, id: FileId) {
        if let Err(err) = self.store.delete(&self.keys.marker(id)).await {
            log::warn!("could not remove the marker of upload {id}: {err}; the sweep will");
        }
    }

    /// How many files the bucket holds (rows) and the bytes of their content: a listing of both, a thousand keys
    /// a request.
    pub async fn count(&self) -> io::Result<(u64, u64)> {
        let rows = self.store.list(Some(&self.keys.dir("index"))).try_fold(0, |n, _| async move { Ok(n + 1) });
        let bytes = self.store.list(Some(&self.keys.dir("files"))).try_fold(0, |n, o| async move { Ok(n + o.size) });
        let (rows, bytes) = futures_util::try_join!(rows, bytes).map_err(store)?;
        Ok((rows, bytes))
    }

    /// The ids of multipart uploads in progress (their markers).
    pub async fn in_progress(&self) -> io::Result<std::collections::HashSet<FileId>> {
        let markers: Vec<_> = self.store.list(Some(&self.keys.dir("uploads"))).try_collect().await.map_err(store)?;
        Ok(markers.iter().filter_map(|m| m.location.filename()?.parse().ok()).collect())
    }

    /// Every row's id and every content object's id and size, for `ferry fsck`.
    pub async fn inventory(&self) -> io::Result<(Vec<FileId>, Vec<(Option<FileId>, String, u64)>)> {
        let rows: Vec<FileId> = self
            .store
            .list(Some(&self.keys.dir("index")))
            .map_ok(|o| self.keys.id_of_row(o.location.as_ref()))
            .try_collect::<Vec<_>>()
            .await
            .map_err(store)?
            .into_iter()
            .flatten()
            .collect();
        let content = self
            .store
            .list(Some(&self.keys.dir("files")))
            .map_ok(|o| (o.location.filename().and_then(|n| n.parse().ok()), o.location.to_string(), o.size))
            .try_collect()
            .await
            .map_err(store)?;
        Ok((rows, content))
    }
}

impl Keys {
    fn content(&self, id: FileId) -> Path {
        Path::from(format!("{}files/{id}", self.prefix))
    }

    fn row(&self, id: FileId) -> Path {
        let inverted: Vec<u8> = id.as_bytes().iter().map(|b| !b).collect();
        Path::from(format!("{}{}", self.rows(), hex::encode(inverted)))
    }

    fn marker(&self, id: FileId) -> Path {
        Path::from(format!("{}uploads/{id}", self.prefix))
    }

    /// The prefix every row key begins with (a trailing `/`, as a paged listing wants).
    fn rows(&self) -> String {
        format!("{}index/", self.prefix)
    }

    fn dir(&self, name: &str) -> Path {
        Path::from(format!("{}{name}", self.prefix))
    }

    fn id_of_row(&self, key: &str) -> Option<FileId> {
        let inverted = hex::decode(key.strip_prefix(&self.rows())?).ok()?;
        let bytes: Vec<u8> = inverted.iter().map(|b| !b).collect();
        FileId::from_bytes(&bytes)
    }
}

/// The store's errors as I/O errors: a missing object stays `NotFound`; anything else means the store could not
/// be used (503).
fn store(err: object_store::Error) -> io::Error {
    match err {
        object_store::Error::NotFound { path, .. } => {
            io::Error::new(io::ErrorKind::NotFound, format!("{path} is gone"))
        }
        other => io::Error::new(io::ErrorKind::NetworkDown, format!("object store: {other}")),
    }
}

fn ignore_missing(result: object_store::Result<()>) -> io::Result<()> {
    match result {
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        other => other.map_err(store),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_list_newest_first_and_name_their_id() {
        let older = FileId::new();
        std::thread::sleep(Duration::from_millis(2));
        let newer = FileId::new();
        for keys in [Keys { prefix: String::new() }, Keys { prefix: "team-a/".into() }] {
            assert!(keys.row(newer).to_string() < keys.row(older).to_string());
            assert_eq!(keys.id_of_row(keys.row(older).as_ref()), Some(older));
            assert_eq!(keys.id_of_row(&format!("{}xyz", keys.rows())), None);
        }
    }
}
