//! Where files live: `<data>/files/<id>` (content) beside `<data>/files/<id>.json` (metadata), and uploads in
//! progress in `<data>/tmp/`. A file exists for readers if and only if its metadata does; an in-memory index of
//! the metadata, loaded at startup, answers lookups and listings without touching the disk.

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
    /// Held while the storage is open: no other ferry may use the directory meanwhile.
    _lock: DataDirLock,
}

impl Storage {
    /// Locks the data directory for this process, creates the directories, removes what a crash left behind
    /// and loads the metadata index. Errors name the path and say what is wrong with it, for a one-line startup
    /// failure.
    pub fn open(data_dir: &Path, fsync: bool) -> io::Result<Storage> {
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, "it is not a directory"));
        }
        fs::create_dir_all(data_dir).context(|| format!("creating {}", data_dir.display()))?;
        // before anything is swept: the temp files may be another ferry's uploads in progress
        let lock = DataDirLock::acquire(data_dir)?;
        let files = data_dir.join("files");
        let tmp = data_dir.join("tmp");
        fs::create_dir_all(&files).context(|| format!("creating {}", files.display()))?;
        fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
        sweep_tmp(&tmp).context(|| format!("cleaning {}", tmp.display()))?;
        let index = load_index(&files).context(|| format!("reading {}", files.display()))?;
        let storage = Storage(Arc::new(Inner { files, tmp, fsync, index: RwLock::new(index), _lock: lock }));
        storage.check_writable().context(|| format!("it is not writable ({})", storage.0.tmp.display()))?;
        log::info!("storage at {}: {} files", data_dir.display(), storage.0.index.read().expect("index lock").len());
        Ok(storage)
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
        let meta = metadata_path(&self.0.files, id);
        fs::remove_file(&meta).context(|| format!("deleting {}", meta.display()))?;
        let content = self.content_path(id);
        fs::remove_file(&content).context(|| format!("deleting {}", content.display()))?;
        self.sync_files_dir().context(|| format!("syncing {}", self.0.files.display()))?;
        Ok(())
    }

    /// Blocking: proves the data directory takes writes.
    pub fn check_writable(&self) -> io::Result<()> {
        NamedTempFile::new_in(&self.0.tmp)?.close()
    }

    fn write_metadata(&self, meta: &StoredFile) -> io::Result<()> {
        let path = metadata_path(&self.0.files, meta.id);
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

fn metadata_path(files: &Path, id: FileId) -> PathBuf {
    files.join(format!("{id}.json"))
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

/// Loads every metadata record whose content exists, and removes content without metadata (a crash between
/// the two renames) and metadata without content.
fn load_index(files: &Path) -> io::Result<BTreeMap<FileId, Arc<StoredFile>>> {
    let mut index = BTreeMap::new();
    let mut contents = Vec::new();
    for entry in fs::read_dir(files)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        if let Some(stem) = name.strip_suffix(".json") {
            match read_metadata(&path) {
                Ok(meta) if stem.parse() == Ok(meta.id) => {
                    index.insert(meta.id, Arc::new(meta));
                }
                _ => log::warn!("ignoring unreadable metadata {}", path.display()),
            }
        } else if let Ok(id) = name.parse::<FileId>() {
            contents.push(id);
        }
    }
    for id in contents {
        if !index.contains_key(&id) {
            log::info!("removing unpublished content {id}");
            fs::remove_file(files.join(id.to_string()))?;
        }
    }
    index.retain(|id, _| {
        let present = files.join(id.to_string()).is_file();
        if !present {
            log::warn!("metadata {id} has no content; removing it");
            let _ = fs::remove_file(metadata_path(files, *id));
        }
        present
    });
    Ok(index)
}

fn read_metadata(path: &Path) -> io::Result<StoredFile> {
    Ok(serde_json::from_slice(&fs::read(path)?)?)
}
