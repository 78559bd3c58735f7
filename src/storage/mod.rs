//! Where files live, and the seam the next storage backend plugs into.
//!
//! ```text
//! <data>/index.db (+ -wal, -shm)   one row per stored file: the metadata index (SQLite, see `index`)
//! <data>/files/<ab>/<cd>/<id>      content, sharded by the id's last hex digits (see `content`)
//! <data>/tmp/                      uploads in progress
//! <data>/quarantine/               damaged files, set aside for an operator
//! ```
//!
//! A file exists for readers if and only if its row is committed. Publishing writes the content (synced with
//! `--fsync true`), renames it into its shard, then commits the row: a crash in between leaves content with no
//! row, which readers never find and `ferry fsck` reports. Deleting removes the row first (readers stop finding
//! the file), then the content. Startup opens the index and never walks `files/`; a bounded LRU of hot rows
//! serves repeated lookups, and the totals live in the index, kept by the same transactions as the rows.
//!
//! **The seam.** [`Storage`] is what handlers use; behind it are two sides:
//! - the metadata side, the [`Index`] trait (get, list newest first from a cursor, insert = commit, remove,
//!   totals), implemented by [`SqliteIndex`];
//! - the content side, [`LocalContent`]: where an upload's bytes go while written (`stage`), `publish`, the
//!   path a reader opens, `remove`.
//!
//! The nine upload strategies keep their own ways of writing (`sink.rs`: buffered, inline, `tokio::fs`,
//! `web::block`) because on local disk those differences are real; the seam starts where they end, at publish.
//!
//! **How S3 plugs in (issue #17)**, without reshaping this: the two fields of `Inner` become enums,
//! `Content::{Local(LocalContent), S3(S3Content)}` and `AnyIndex::{Sqlite(SqliteIndex), Shared(..)}`, matched
//! in `Storage`'s methods. `S3Content::stage` starts an `object_store` multipart upload (`put_multipart`) and the
//! sink's `Writer` enum gains a `Multipart` variant that feeds it (buffered strategies may do one `put`);
//! `publish` is `complete()` of that upload, and dropping the sink aborts it as the temp file's drop guard does
//! today; readers get a ranged `get` stream instead of a path, which `download/http.rs` already serves through
//! `SizedStream`, and NamedFile strategies fall back to it. The index every replica must see is the shared
//! variant, with the same five operations. Enums rather than `dyn`: the sink already dispatches on an enum per
//! chunk, each side has associated data (a temp file or a multipart id) that a trait object could not name, and
//! a `match` costs nothing on the hot path where a vtable call per chunk would buy nothing.

pub mod check;
mod content;
mod filename;
mod id;
mod index;
mod lock;
mod meta;
mod migrate;
mod s3;
mod sink;

use std::{
    fs, io,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use lru::LruCache;
use tempfile::{NamedTempFile, TempPath};

pub use self::{
    content::{LocalContent, shard_path},
    filename::{DEFAULT_FILENAME, MAX_FILENAME_BYTES, sanitize as sanitize_filename},
    id::FileId,
    index::{Index, SqliteIndex, Totals},
    lock::DataDirLock,
    meta::StoredFile,
    migrate::is_old_layout,
    s3::{ObjectWriter, PART, S3, S3Config},
    sink::{ASYNC_WRITE_BUF, CHUNK, ROOM_CHECK, UploadSink, WriteMode},
};
use crate::error::{AppError, IoContext};

/// Rows kept in memory for repeated lookups: about 300 bytes each, so a few MiB whatever the number of files.
pub const HOT_FILES: usize = 16 * 1024;

/// On S3, how long a replica trusts a row it has read: a file deleted by another replica is found gone by every
/// lookup after this (and at once by every read of its content).
pub const ROW_TTL: Duration = Duration::from_secs(1);

/// A page of the listing, and the cursor of the next one when there may be more.
#[derive(Debug, Clone)]
pub struct Page {
    pub files: Vec<StoredFile>,
    pub next: Option<FileId>,
}

impl Page {
    /// A page of `limit` rows read from the index: full, it may have a next.
    fn of(files: Vec<StoredFile>, limit: usize) -> Page {
        let next = files.last().map(|f| f.id).filter(|_| files.len() == limit);
        Page { files, next }
    }
}

/// What an upload strategy knows about a file besides its bytes.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Already sanitised.
    pub filename: String,
    pub content_type: String,
    pub strategy: &'static str,
    /// From `X-Checksum-Sha256`, lowercase hex.
    pub expected_sha256: Option<String>,
}

#[derive(Clone)]
pub struct Storage(Arc<Inner>);

struct Inner {
    backend: Backend,
    tmp: PathBuf,
    /// Recently looked-up rows, and when they were read; a delete takes its row out.
    hot: Mutex<LruCache<FileId, (Arc<StoredFile>, Instant)>>,
    /// Deletes so far: a lookup that raced one does not put what it read into `hot`.
    removals: AtomicU64,
    /// The index's totals, read at startup and kept in step with every commit, so metrics need no query.
    files: AtomicU64,
    bytes: AtomicU64,
    /// Files in `<data>/quarantine/`: only an operator changes that, and never while ferry runs.
    quarantined: usize,
    /// Held while the storage is open: no other ferry may use the directory meanwhile.
    _lock: DataDirLock,
    /// Free bytes the data volume keeps: uploads that would go below are refused with 507.
    min_free: AtomicU64,
}

/// Where content and rows live.
#[expect(clippy::large_enum_variant, reason = "one per process, never moved")]
enum Backend {
    Local { content: LocalContent, index: SqliteIndex },
    S3(Arc<S3>),
}

impl Storage {
    /// Locks the data directory for this process, creates the directories, removes what a crash left in `tmp/`,
    /// opens the index and migrates files stored in the layout before it. Errors name the path and say what is
    /// wrong with it, for a one-line startup failure.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<Storage> {
        let (lock, layout) = Self::prepare(data_dir)?;
        // an empty new index over stored content would hide every file, and fsck --repair would quarantine them
        if !layout.index.exists() && content::holds_content(&layout.files)? {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing but {} holds stored files: restore the index (with its -wal file) from where the \
                     data directory was copied or backed up",
                    layout.index.display(),
                    layout.files.display()
                ),
            ));
        }
        let index =
            SqliteIndex::open(&layout.index, fsync).context(|| format!("opening {}", layout.index.display()))?;
        let content = LocalContent::new(&layout, fsync);
        migrate::run(&layout, &content, &index)?;
        let totals = index.totals()?;
        let storage = Self::new(Backend::Local { content, index }, &layout, lock, totals)?;
        log::info!(
            "storage at {}: {} files, {} in quarantine",
            data_dir.display(),
            totals.files,
            storage.quarantined()
        );
        Ok(storage)
    }

    /// Files in a bucket of an S3-compatible store; the data directory keeps only uploads in progress (spooled
    /// multipart parts and resumable uploads). Fails unless the bucket takes a write.
    pub fn open_s3(data_dir: &Path, config: &S3Config) -> io::Result<Storage> {
        let (lock, layout) = Self::prepare(data_dir)?;
        let s3 = Arc::new(S3::connect(config)?);
        s3.wait(s3.probe()).context(|| format!("writing to bucket {}", config.bucket))?;
        let storage = Self::new(Backend::S3(s3), &layout, lock, Totals::default())?;
        let endpoint = config.endpoint.as_deref().unwrap_or("AWS");
        log::info!("storage in bucket {} at {endpoint}; uploads in progress in {}", config.bucket, data_dir.display());
        Ok(storage)
    }

    /// The data directory, locked for this process, with its directories made and `tmp/` swept.
    fn prepare(data_dir: &Path) -> io::Result<(DataDirLock, Layout)> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "it is not a directory"));
        }
        fs::create_dir_all(data_dir).context(|| format!("creating {}", data_dir.display()))?;
        // before anything is swept: the temp files may be another ferry's uploads in progress
        let lock = DataDirLock::acquire(data_dir)?;
        let layout = Layout::new(data_dir);
        fs::create_dir_all(&layout.files).context(|| format!("creating {}", layout.files.display()))?;
        fs::create_dir_all(&layout.tmp).context(|| format!("creating {}", layout.tmp.display()))?;
        sweep_tmp(&layout.tmp).context(|| format!("cleaning {}", layout.tmp.display()))?;
        Ok((lock, layout))
    }

    fn new(backend: Backend, layout: &Layout, lock: DataDirLock, totals: Totals) -> io::Result<Storage> {
        let storage = Storage(Arc::new(Inner {
            backend,
            tmp: layout.tmp.clone(),
            hot: Mutex::new(LruCache::new(NonZeroUsize::new(HOT_FILES).expect("not zero"))),
            removals: AtomicU64::new(0),
            files: AtomicU64::new(totals.files),
            bytes: AtomicU64::new(totals.bytes),
            quarantined: check::count_quarantined(&layout.quarantine)?,
            _lock: lock,
            min_free: Default::default(),
        }));
        storage.check_writable().context(|| "it is not writable".to_owned())?;
        Ok(storage)
    }

    /// The bucket, with `--storage s3`.
    pub fn object_store(&self) -> Option<&Arc<S3>> {
        match &self.0.backend {
            Backend::S3(s3) => Some(s3),
            Backend::Local { .. } => None,
        }
    }

    /// How many files are stored, and their bytes. On S3, as the last count of the bucket found them (see
    /// [`Storage::recount`]) plus what this replica has published and deleted since.
    pub fn totals(&self) -> (u64, u64) {
        (self.0.files.load(Ordering::Acquire), self.0.bytes.load(Ordering::Acquire))
    }

    /// On S3: counts the bucket's files and bytes again (every replica's), for [`Storage::totals`].
    pub async fn recount(&self) -> io::Result<()> {
        let Backend::S3(s3) = &self.0.backend else { return Ok(()) };
        let (files, bytes) = s3.count().await?;
        self.0.files.store(files, Ordering::Release);
        self.0.bytes.store(bytes, Ordering::Release);
        Ok(())
    }

    /// Free bytes on the data volume, as the unprivileged see it.
    pub fn free_bytes(&self) -> io::Result<u64> {
        volume(self.tmp_dir()).map(|(free, _)| free)
    }

    /// Keeps `bytes` free on the data volume; `None` takes the smaller of 1 GiB and 5% of the volume.
    pub fn keep_free(&self, bytes: Option<u64>) -> io::Result<u64> {
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => volume(self.tmp_dir()).map(|(_, total)| (total / 20).min(1 << 30))?,
        };
        self.0.min_free.store(bytes, Ordering::Relaxed);
        Ok(bytes)
    }

    /// The free bytes the data volume keeps.
    pub fn min_free(&self) -> u64 {
        self.0.min_free.load(Ordering::Relaxed)
    }

    /// 507 unless `more` bytes can be written and still leave `--min-free-bytes` free. On S3 uploads stream to the
    /// store, which reports its own lack of space when a write fails; only what is written locally is checked
    /// there (spooled parts and resumable uploads, which call [`Storage::ensure_local_room`]).
    pub fn ensure_room(&self, more: u64) -> Result<(), AppError> {
        match self.0.backend {
            Backend::Local { .. } => self.ensure_local_room(more),
            Backend::S3(_) => Ok(()),
        }
    }

    /// 507 unless `more` bytes can be written to the data volume and still leave `--min-free-bytes` free.
    pub fn ensure_local_room(&self, more: u64) -> Result<(), AppError> {
        let free = self.free_bytes()?;
        if free.saturating_sub(more) < self.min_free() {
            log::warn!("refusing {more} more bytes: {free} bytes free, {} kept free", self.min_free());
            return Err(AppError::InsufficientStorage);
        }
        Ok(())
    }

    /// Removes what uploads cut short left in `tmp/`: at startup, and after a stop that had to cut uploads.
    pub fn sweep_tmp(&self) -> io::Result<()> {
        sweep_tmp(self.tmp_dir())
    }

    /// How many stored files are in `<data>/quarantine/`, waiting for an operator.
    pub fn quarantined(&self) -> usize {
        self.0.quarantined
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.0.tmp
    }

    /// Server-made path of a file's content on local disk; only ids reach the file system.
    pub fn content_path(&self, id: FileId) -> PathBuf {
        match &self.0.backend {
            Backend::Local { content, .. } => content.path(id),
            Backend::S3(_) => self.tmp_dir().join("not-on-local-disk").join(id.to_string()),
        }
    }

    /// A stored file's row: from memory when it was looked up lately (on S3: within [`ROW_TTL`]), else one read of
    /// the index or the bucket.
    pub async fn get(&self, id: FileId) -> Result<Option<Arc<StoredFile>>, AppError> {
        let removals = self.0.removals.load(Ordering::Acquire);
        let fresh = |read: Instant| matches!(self.0.backend, Backend::Local { .. }) || read.elapsed() < ROW_TTL;
        if let Some((hot, read)) = self.0.hot.lock().expect("hot rows lock").get(&id)
            && fresh(*read)
        {
            return Ok(Some(hot.clone()));
        }
        let read = Instant::now();
        let found = match &self.0.backend {
            Backend::Local { index, .. } => index.get(id)?,
            Backend::S3(s3) => s3.row(id).await?,
        };
        Ok(self.remember(id, found, read, removals))
    }

    /// Keeps a row just read in memory; a row found gone leaves memory too.
    fn remember(&self, id: FileId, found: Option<StoredFile>, read: Instant, removals: u64) -> Option<Arc<StoredFile>> {
        let mut hot = self.0.hot.lock().expect("hot rows lock");
        let Some(file) = found else {
            hot.pop(&id);
            return None;
        };
        let file = Arc::new(file);
        // a delete since the read may have removed the row: then what was read must not be remembered
        if self.0.removals.load(Ordering::Acquire) == removals {
            hot.put(id, (file.clone(), read));
        }
        Some(file)
    }

    /// The row of a file the bucket has just listed: rows never change, so a row in memory serves whatever its
    /// age; only the others are fetched. (Its age is left as it is: the listing may lag behind a delete, so it
    /// does not renew the trust `get` gives a row.)
    async fn listed(&self, s3: &S3, id: FileId) -> io::Result<Option<Arc<StoredFile>>> {
        if let Some((hot, _)) = self.0.hot.lock().expect("hot rows lock").get(&id) {
            return Ok(Some(hot.clone()));
        }
        let (removals, read) = (self.0.removals.load(Ordering::Acquire), Instant::now());
        let found = match s3.row(id).await {
            // one damaged row must not take the whole listing with it: it is reported, kept, and left out
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                log::error!("{err}; left out of the listing, kept for an operator (ferry fsck names it)");
                return Ok(None);
            }
            other => other?,
        };
        Ok(self.remember(id, found, read, removals))
    }

    /// Forgets a row read earlier: its content was found gone (deleted by another replica).
    pub fn forget(&self, id: FileId) {
        self.0.hot.lock().expect("hot rows lock").pop(&id);
    }

    /// Newest first; `after` continues a previous page from the id it ended with.
    pub async fn list(&self, limit: usize, after: Option<FileId>) -> Result<Page, AppError> {
        match &self.0.backend {
            Backend::Local { index, .. } => Ok(Page::of(index.list(limit, after)?, limit)),
            Backend::S3(s3) => {
                let ids = s3.ids(limit, after).await?;
                // the page ends where the listing did, also when a row deleted since is left out of it
                let next = ids.last().copied().filter(|_| ids.len() == limit);
                let rows = S3::rows_of(ids, |id| self.listed(s3, id)).await?;
                Ok(Page { files: rows.into_iter().map(Arc::unwrap_or_clone).collect(), next })
            }
        }
    }

    /// Blocking: [`Storage::list`] for code on the blocking pool.
    pub fn list_blocking(&self, limit: usize, after: Option<FileId>) -> Result<Page, AppError> {
        match &self.0.backend {
            Backend::Local { index, .. } => Ok(Page::of(index.list(limit, after)?, limit)),
            Backend::S3(s3) => s3.wait(self.list(limit, after)),
        }
    }

    /// Blocking: publishes a finished temp file: on local disk, moves it into place and commits its row, durably
    /// when `fsync` is on; on S3, sends it to the bucket first. The commit is the moment the file exists.
    pub fn publish(
        &self,
        file: fs::File,
        temp: TempPath,
        new: NewFile,
        size: u64,
        sha256: String,
    ) -> Result<StoredFile, AppError> {
        let (content, index) = match &self.0.backend {
            Backend::Local { content, index } => (content, index),
            Backend::S3(s3) => {
                // opened again: the handle given may stand at the end of what was written through it
                drop(file);
                let file = fs::File::open(&temp).context(|| format!("reading {}", temp.display()))?;
                let publish = async {
                    let mut writer = s3.writer(FileId::new(), size);
                    let mut chunks =
                        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), CHUNK);
                    while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                        writer.write(chunk?).await?;
                    }
                    self.publish_object(writer, new, size, sha256).await
                };
                let stored = s3.wait(publish);
                drop(temp);
                return stored;
            }
        };
        let meta = new.stored(FileId::new(), size, sha256);
        content.publish(file, temp, meta.id)?;
        if let Err(err) = index.insert(std::slice::from_ref(&meta)) {
            // never committed, so no reader can have found it: the content is nobody's
            if let Err(also) = content.remove(meta.id) {
                log::error!("{also} (after the commit of {} failed)", meta.id);
            }
            return Err(err.into());
        }
        self.count(1, size);
        Ok(meta)
    }

    /// Completes an object written to the bucket and writes its row: the moment the file exists. If the row
    /// cannot be written, the object is removed again.
    pub async fn publish_object(
        &self,
        writer: ObjectWriter,
        new: NewFile,
        size: u64,
        sha256: String,
    ) -> Result<StoredFile, AppError> {
        let Backend::S3(s3) = &self.0.backend else { unreachable!("objects are written only on S3") };
        let meta = new.stored(writer.id(), size, sha256);
        // on the store's runtime: a request cut from here on leaves neither content without its row nor the reverse
        let (bucket, row) = (s3.clone(), meta.clone());
        s3.spawn(async move { bucket.publish(writer, &row).await }).await.map_err(io::Error::other)??;
        self.count(1, size);
        Ok(meta)
    }

    /// Removes the row first, so that no new reader finds the file, then the content. Downloads already under way
    /// on local disk keep their open file and finish.
    pub async fn delete(&self, id: FileId) -> Result<(), AppError> {
        match &self.0.backend {
            Backend::Local { .. } => {
                let Some(file) = self.get(id).await? else { return Err(AppError::NotFound) };
                let storage = self.clone();
                actix_web::web::block(move || storage.delete_local(id, file.size)).await?
            }
            Backend::S3(s3) => {
                // read afresh: another replica may have deleted it since this one last read its row
                let Some(file) = s3.row(id).await? else { return Err(AppError::NotFound) };
                s3.remove_row(id).await?;
                self.removed(id, file.size);
                Ok(s3.remove_content(id).await?)
            }
        }
    }

    /// Blocking.
    fn delete_local(&self, id: FileId, size: u64) -> Result<(), AppError> {
        let Backend::Local { content, index } = &self.0.backend else { unreachable!("local storage") };
        if !index.remove(id)? {
            return Err(AppError::NotFound); // another delete was first
        }
        self.removed(id, size);
        Ok(content.remove(id)?)
    }

    /// The row is gone: no lookup may keep it, and the totals lose the file, whatever becomes of its content.
    fn removed(&self, id: FileId, size: u64) {
        self.0.removals.fetch_add(1, Ordering::AcqRel);
        self.0.hot.lock().expect("hot rows lock").pop(&id);
        // saturating: on S3 a recount may already have left the file out
        let less = |by: u64| move |n: u64| Some(n.saturating_sub(by));
        let _ = self.0.files.fetch_update(Ordering::AcqRel, Ordering::Acquire, less(1));
        let _ = self.0.bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, less(size));
    }

    fn count(&self, files: u64, bytes: u64) {
        self.0.files.fetch_add(files, Ordering::AcqRel);
        self.0.bytes.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Blocking: proves the data directory takes writes, and on S3 the bucket too.
    pub fn check_writable(&self) -> io::Result<()> {
        let tmp = self.tmp_dir();
        NamedTempFile::new_in(tmp)
            .and_then(|f| f.close())
            .context(|| format!("creating a file in {}", tmp.display()))?;
        match &self.0.backend {
            Backend::Local { .. } => Ok(()),
            Backend::S3(s3) => s3.wait(s3.probe()).context(|| format!("writing to bucket {}", s3.bucket())),
        }
    }
}

impl NewFile {
    fn stored(self, id: FileId, size: u64, sha256: String) -> StoredFile {
        StoredFile {
            id,
            filename: self.filename,
            size,
            sha256,
            content_type: self.content_type,
            strategy: self.strategy.to_owned(),
            created_at: SystemTime::now(),
        }
    }
}

/// Where everything lives in a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub files: PathBuf,
    pub tmp: PathBuf,
    pub quarantine: PathBuf,
    pub index: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout {
            files: data_dir.join("files"),
            tmp: data_dir.join("tmp"),
            quarantine: data_dir.join("quarantine"),
            index: data_dir.join("index.db"),
        }
    }
}

/// Everything in `tmp/` belongs to an upload that never finished.
fn sweep_tmp(tmp: &Path) -> io::Result<()> {
    for entry in fs::read_dir(tmp)? {
        let path = entry?.path();
        log::info!("removing unfinished upload {}", path.display());
        if path.is_dir() { fs::remove_dir_all(&path)? } else { fs::remove_file(&path)? }
    }
    Ok(())
}

/// Free bytes (for unprivileged users) and total bytes of the volume holding `path`.
fn volume(path: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs writes only into the struct it is given, and `path` is a valid C string
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(err.kind(), format!("reading the free space of {}: {err}", path.to_string_lossy())));
    }
    let block = stat.f_frsize as u64;
    Ok((stat.f_bavail as u64 * block, stat.f_blocks as u64 * block))
}
