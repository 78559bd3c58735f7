//! Where files live: `<data>/files/<id>` (content) beside `<data>/files/<id>.json` (metadata), uploads in
//! progress in `<data>/tmp/`, and damaged files set aside in `<data>/quarantine/`. A file exists for readers if
//! and only if its metadata does; an in-memory index of the metadata, loaded at startup, answers lookups and
//! listings without touching the disk.

pub mod check;
mod filename;
mod id;
mod lock;
mod meta;
mod sink;

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use tempfile::{NamedTempFile, TempPath};

pub use self::{
    filename::{DEFAULT_FILENAME, MAX_FILENAME_BYTES, sanitize as sanitize_filename},
    id::FileId,
    lock::DataDirLock,
    meta::StoredFile,
    sink::{CHUNK, UploadSink, WriteMode},
};
use crate::error::{AppError, IoContext};

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
    files: PathBuf,
    tmp: PathBuf,
    fsync: bool,
    index: RwLock<BTreeMap<FileId, Arc<StoredFile>>>,
    /// Files in `<data>/quarantine/`: only an operator changes that, and never while ferry runs.
    quarantined: usize,
    /// Held while the storage is open: no other ferry may use the directory meanwhile.
    _lock: DataDirLock,
    /// Free bytes the data volume keeps: uploads that would go below are refused with 507.
    min_free: std::sync::atomic::AtomicU64,
}

impl Storage {
    /// Locks the data directory for this process, creates the directories, removes what a crash left behind,
    /// quarantines damaged files and loads the metadata index. Errors name the path and say what is wrong with it,
    /// for a one-line startup failure.
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
        let survey = check::survey(&layout.files, &layout.quarantine, check::Depth::Sizes)?;
        let index = load_index(&layout, survey, fsync)?;
        let quarantined = check::count_quarantined(&layout.quarantine)?;
        let Layout { files, tmp, .. } = layout;
        let index = RwLock::new(index);
        let storage = Storage(Arc::new(Inner {
            files,
            tmp,
            fsync,
            index,
            quarantined,
            _lock: lock,
            min_free: Default::default(),
        }));
        storage.check_writable().context(|| "it is not writable".to_owned())?;
        let files = storage.0.index.read().expect("index lock").len();
        log::info!("storage at {}: {files} files, {quarantined} in quarantine", data_dir.display());
        Ok(storage)
    }

    /// How many files are stored, and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        let index = self.0.index.read().expect("index lock");
        (index.len() as u64, index.values().map(|file| file.size).sum())
    }

    /// Free bytes on the data volume, as the unprivileged see it.
    pub fn free_bytes(&self) -> io::Result<u64> {
        volume(&self.0.tmp).map(|(free, _)| free)
    }

    /// Keeps `bytes` free on the data volume; `None` takes the smaller of 1 GiB and 5% of the volume.
    pub fn keep_free(&self, bytes: Option<u64>) -> io::Result<u64> {
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => volume(&self.0.tmp).map(|(_, total)| (total / 20).min(1 << 30))?,
        };
        self.0.min_free.store(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(bytes)
    }

    /// The free bytes the data volume keeps.
    pub fn min_free(&self) -> u64 {
        self.0.min_free.load(std::sync::atomic::Ordering::Relaxed)
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
        sweep_tmp(&self.0.tmp)
    }

    /// How many stored files are in `<data>/quarantine/`, waiting for an operator.
    pub fn quarantined(&self) -> usize {
        self.0.quarantined
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.0.tmp
    }

    /// Server-made path of a file's content; only ids reach the file system.
    pub fn content_path(&self, id: FileId) -> PathBuf {
        self.0.files.join(id.to_string())
    }

    pub fn get(&self, id: FileId) -> Option<Arc<StoredFile>> {
        self.0.index.read().expect("index lock").get(&id).cloned()
    }

    /// Newest first; `after` continues a previous page from the id it ended with.
    pub fn list(&self, limit: usize, after: Option<FileId>) -> Vec<Arc<StoredFile>> {
        let index = self.0.index.read().expect("index lock");
        match after {
            Some(after) => index.range(..after).rev().take(limit).map(|(_, f)| f.clone()).collect(),
            None => index.values().rev().take(limit).cloned().collect(),
        }
    }

    /// Blocking: moves a finished temp file into place and publishes its metadata, durably when `fsync` is on.
    pub(crate) fn publish(
        &self,
        file: fs::File,
        temp: TempPath,
        new: NewFile,
        size: u64,
        sha256: String,
    ) -> Result<StoredFile, AppError> {
        if self.0.fsync {
            file.sync_all()?;
        }
        drop(file);
        let meta = StoredFile {
            id: FileId::new(),
            filename: new.filename,
            size,
            sha256,
            content_type: new.content_type,
            strategy: new.strategy.to_owned(),
            created_at: SystemTime::now(),
        };
        let content = self.content_path(meta.id);
        temp.persist(&content).map_err(|e| e.error).context(|| format!("publishing {}", content.display()))?;
        if let Err(err) = self.write_metadata(&meta) {
            let _ = fs::remove_file(&content);
            return Err(err.into());
        }
        self.sync_files_dir().context(|| format!("syncing {}", self.0.files.display()))?;
        self.0.index.write().expect("index lock").insert(meta.id, Arc::new(meta.clone()));
        Ok(meta)
    }

    /// Blocking: unpublishes the metadata first, so that no new reader finds the file, then removes the content.
    /// Downloads already under way keep their open file and finish.
    pub(crate) fn delete(&self, id: FileId) -> Result<(), AppError> {
        if self.0.index.write().expect("index lock").remove(&id).is_none() {
            return Err(AppError::NotFound);
        }
        let meta = check::metadata_path(&self.0.files, id);
        fs::remove_file(&meta).context(|| format!("deleting {}", meta.display()))?;
        let content = self.content_path(id);
        fs::remove_file(&content).context(|| format!("deleting {}", content.display()))?;
        self.sync_files_dir().context(|| format!("syncing {}", self.0.files.display()))?;
        Ok(())
    }

    /// Blocking: proves the data directory takes writes.
    pub fn check_writable(&self) -> io::Result<()> {
        let tmp = &self.0.tmp;
        NamedTempFile::new_in(tmp).and_then(|f| f.close()).context(|| format!("creating a file in {}", tmp.display()))
    }

    fn write_metadata(&self, meta: &StoredFile) -> io::Result<()> {
        let path = check::metadata_path(&self.0.files, meta.id);
        let write = || {
            let mut temp = NamedTempFile::new_in(&self.0.tmp)?;
            serde_json::to_writer(&mut temp, meta)?;
            if self.0.fsync {
                temp.as_file().sync_all()?;
            }
            temp.persist(&path)?;
            Ok(())
        };
        write().context(|| format!("writing {}", path.display()))
    }

    fn sync_files_dir(&self) -> io::Result<()> {
        if self.0.fsync {
            fs::File::open(&self.0.files)?.sync_all()?;
        }
        Ok(())
    }
}

/// Where everything lives in a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub files: PathBuf,
    pub tmp: PathBuf,
    pub quarantine: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        Layout { files: data_dir.join("files"), tmp: data_dir.join("tmp"), quarantine: data_dir.join("quarantine") }
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

/// Indexes the sound files of a startup survey after setting the rest aside: damaged files are quarantined
/// (logged as errors: someone has to look at them), leftovers of interrupted publishes removed.
fn load_index(layout: &Layout, survey: check::Survey, fsync: bool) -> io::Result<BTreeMap<FileId, Arc<StoredFile>>> {
    for path in &survey.foreign {
        log::warn!("ignoring {}: not a name ferry stores files under", path.display());
    }
    for path in &survey.unpublished {
        log::info!("removing unpublished content {} (a publish interrupted before its metadata)", path.display());
        fs::remove_file(path).context(|| format!("removing {}", path.display()))?;
    }
    for damaged in &survey.damaged {
        check::quarantine(&layout.quarantine, damaged)?;
        let paths: Vec<String> = damaged.paths.iter().map(|p| p.display().to_string()).collect();
        log::error!(
            "file {} is damaged ({}): moved {} to {}",
            damaged.id,
            damaged.damage,
            paths.join(" and "),
            layout.quarantine.display()
        );
    }
    if fsync && !(survey.damaged.is_empty() && survey.unpublished.is_empty()) {
        check::sync_dirs(layout)?;
    }
    Ok(survey.sound.into_iter().map(|file| (file.id, Arc::new(file))).collect())
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
