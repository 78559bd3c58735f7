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
mod sink;

use std::{
    fs, io,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
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
    sink::{ASYNC_WRITE_BUF, CHUNK, ROOM_CHECK, UploadSink, WriteMode},
};
use crate::error::{AppError, IoContext};

/// Rows kept in memory for repeated lookups: about 300 bytes each, so a few MiB whatever the number of files.
pub const HOT_FILES: usize = 16 * 1024;

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
    content: LocalContent,
    index: SqliteIndex,
    /// Recently looked-up rows; a delete takes its row out.
    hot: Mutex<LruCache<FileId, Arc<StoredFile>>>,
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

impl Storage {
    /// Locks the data directory for this process, creates the directories, removes what a crash left in `tmp/`,
    /// opens the index and migrates files stored in the layout before it. Errors name the path and say what is
    /// wrong with it, for a one-line startup failure.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<Storage> {
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
        let quarantined = check::count_quarantined(&layout.quarantine)?;
        let storage = Storage(Arc::new(Inner {
            content,
            index,
            hot: Mutex::new(LruCache::new(NonZeroUsize::new(HOT_FILES).expect("not zero"))),
            removals: AtomicU64::new(0),
            files: AtomicU64::new(totals.files),
            bytes: AtomicU64::new(totals.bytes),
            quarantined,
            _lock: lock,
            min_free: Default::default(),
        }));
        storage.check_writable().context(|| "it is not writable".to_owned())?;
        log::info!("storage at {}: {} files, {quarantined} in quarantine", data_dir.display(), totals.files);
        Ok(storage)
    }

    /// How many files are stored, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        (self.0.files.load(Ordering::Acquire), self.0.bytes.load(Ordering::Acquire))
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

    /// 507 unless `more` bytes can be written and still leave `--min-free-bytes` free.
    pub fn ensure_room(&self, more: u64) -> Result<(), AppError> {
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
        self.0.content.tmp_dir()
    }

    /// Server-made path of a file's content; only ids reach the file system.
    pub fn content_path(&self, id: FileId) -> PathBuf {
        self.0.content.path(id)
    }

    /// A stored file's row: from memory when it was looked up lately, else one read of the index.
    pub fn get(&self, id: FileId) -> Result<Option<Arc<StoredFile>>, AppError> {
        let removals = self.0.removals.load(Ordering::Acquire);
        if let Some(hot) = self.0.hot.lock().expect("hot rows lock").get(&id) {
            return Ok(Some(hot.clone()));
        }
        let Some(file) = self.0.index.get(id)? else { return Ok(None) };
        let file = Arc::new(file);
        let mut hot = self.0.hot.lock().expect("hot rows lock");
        // a delete since the read may have removed the row: then what was read must not be remembered
        if self.0.removals.load(Ordering::Acquire) == removals {
            hot.put(id, file.clone());
        }
        Ok(Some(file))
    }

    /// Newest first; `after` continues a previous page from the id it ended with.
    pub fn list(&self, limit: usize, after: Option<FileId>) -> Result<Vec<StoredFile>, AppError> {
        Ok(self.0.index.list(limit, after)?)
    }

    /// Blocking: moves a finished temp file into place and commits its row, durably when `fsync` is on. The
    /// commit is the moment the file exists.
    pub fn publish(
        &self,
        file: fs::File,
        temp: TempPath,
        new: NewFile,
        size: u64,
        sha256: String,
    ) -> Result<StoredFile, AppError> {
        let meta = StoredFile {
            id: FileId::new(),
            filename: new.filename,
            size,
            sha256,
            content_type: new.content_type,
            strategy: new.strategy.to_owned(),
            created_at: SystemTime::now(),
        };
        self.0.content.publish(file, temp, meta.id)?;
        if let Err(err) = self.0.index.insert(std::slice::from_ref(&meta)) {
            // never committed, so no reader can have found it: the content is nobody's
            if let Err(also) = self.0.content.remove(meta.id) {
                log::error!("{also} (after the commit of {} failed)", meta.id);
            }
            return Err(err.into());
        }
        self.0.files.fetch_add(1, Ordering::AcqRel);
        self.0.bytes.fetch_add(size, Ordering::AcqRel);
        Ok(meta)
    }

    /// Blocking: removes the row first, so that no new reader finds the file, then the content. Downloads
    /// already under way keep their open file and finish.
    pub(crate) fn delete(&self, id: FileId) -> Result<(), AppError> {
        let Some(file) = self.get(id)? else { return Err(AppError::NotFound) };
        if !self.0.index.remove(id)? {
            return Err(AppError::NotFound); // another delete was first
        }
        self.0.removals.fetch_add(1, Ordering::AcqRel);
        self.0.hot.lock().expect("hot rows lock").pop(&id);
        self.0.files.fetch_sub(1, Ordering::AcqRel);
        self.0.bytes.fetch_sub(file.size, Ordering::AcqRel);
        self.0.content.remove(id)?;
        Ok(())
    }

    /// Blocking: proves the data directory takes writes.
    pub fn check_writable(&self) -> io::Result<()> {
        let tmp = self.tmp_dir();
        NamedTempFile::new_in(tmp).and_then(|f| f.close()).context(|| format!("creating a file in {}", tmp.display()))
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
