//! Partial tus uploads on disk. Each lives in `<data>/uploads/<upload-id>/`: `data` holds the bytes received so
//! far and `state.json` what they are (offset, length, metadata, expiry, and the SHA-256 state of those bytes).
//! `state.json` is replaced atomically (temp file and rename, fsynced with `--fsync`) only after the bytes it
//! counts are written, so after a crash `data` may be longer than the state says, never shorter: the extra
//! bytes belong to a PATCH that was never acknowledged and are cut off before the next one is appended.
//!
//! A finished upload keeps its `state.json` (now naming the stored file) until it expires, so that a client that
//! lost the last answer learns the file's id from HEAD. Expired uploads are swept at startup and periodically.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, digest::common::hazmat::SerializableState};
use tempfile::NamedTempFile;

use crate::{
    error::{AppError, IoContext},
    storage::{FileId, Storage},
};

/// The directory of partial uploads, under the data directory.
pub const UPLOADS_DIR: &str = "uploads";
const DATA: &str = "data";
const STATE: &str = "state.json";
/// Creations not yet complete carry this suffix; startup removes them.
const NEW_SUFFIX: &str = ".new";
/// Stored files looked at per page when a crash left a published upload unrecorded.
const PAGE: usize = 256;

/// What is known about an upload besides its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadState {
    /// `None` while the length is deferred.
    pub length: Option<u64>,
    /// Bytes received and made durable.
    pub offset: u64,
    /// `Upload-Metadata` as the client sent it, echoed by HEAD.
    pub metadata: Option<String>,
    /// Sanitised, for the stored file.
    pub filename: String,
    pub content_type: String,
    /// Milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// The SHA-256 state after the first `offset` bytes, hex (sha2's `SerializableState`).
    pub sha256_state: String,
    /// The stored file, once the last byte has come and the file is published.
    pub file_id: Option<FileId>,
}

impl UploadState {
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.expires_ms)
    }

    pub fn expired(&self) -> bool {
        SystemTime::now() > self.expires_at()
    }

    pub fn complete(&self) -> bool {
        self.length == Some(self.offset)
    }

    pub fn hasher(&self) -> Result<Sha256, AppError> {
        let bytes = hex::decode(&self.sha256_state).map_err(|err| AppError::Internal(Box::new(err)))?;
        let state =
            bytes.as_slice().try_into().map_err(|_| AppError::Internal("sha256 state of the wrong size".into()))?;
        Sha256::deserialize(state).map_err(|_| AppError::Internal("sha256 state does not deserialize".into()))
    }

    pub fn keep_hasher(&mut self, hasher: &Sha256) {
        self.sha256_state = hex::encode(hasher.serialize());
    }
}

/// Where partial uploads live, and how long they are kept.
#[derive(Clone)]
pub struct Uploads {
    dir: PathBuf,
    fsync: bool,
    pub expiry: Duration,
    pub storage: Storage,
}

/// A random, unguessable upload id: 32 lowercase hex digits. Only such ids reach the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    pub fn new() -> Result<UploadId, AppError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|err| AppError::Internal(format!("no randomness: {err}").into()))?;
        Ok(UploadId(hex::encode(bytes)))
    }

    pub fn parse(text: &str) -> Option<UploadId> {
        let valid = text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| UploadId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Uploads {
    /// Creates `<data>/uploads/` and sweeps it; the data directory is already locked by `storage`.
    pub fn open(data_dir: &Path, storage: Storage, fsync: bool, expiry: Duration) -> io::Result<Uploads> {
        let dir = data_dir.join(UPLOADS_DIR);
        fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let uploads = Uploads { dir, fsync, expiry, storage };
        uploads.sweep()?;
        Ok(uploads)
    }

    fn path(&self, id: &UploadId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    pub fn data_path(&self, id: &UploadId) -> PathBuf {
        self.path(id).join(DATA)
    }

    pub fn expires_from_now(&self) -> u64 {
        let at = SystemTime::now() + self.expiry;
        at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    /// Blocking: makes a new upload with an empty data file; it appears whole (directory renamed into place).
    pub fn create(&self, state: &UploadState) -> Result<UploadId, AppError> {
        let id = UploadId::new()?;
        let staging = self.dir.join(format!("{}{NEW_SUFFIX}", id.as_str()));
        let make = || -> io::Result<()> {
            fs::create_dir(&staging)?;
            let data = fs::File::create(staging.join(DATA))?;
            if self.fsync {
                data.sync_all()?;
            }
            write_state(&staging, state, self.fsync)?;
            fs::rename(&staging, self.path(&id))?;
            self.sync_dir(&self.dir)
        };
        if let Err(err) = make().context(|| format!("creating upload {}", self.path(&id).display())) {
            let _ = fs::remove_dir_all(&staging);
            return Err(err.into());
        }
        Ok(id)
    }

    /// Blocking: the upload's state; 404 when there is none or it has expired.
    pub fn load(&self, id: &UploadId) -> Result<UploadState, AppError> {
        let path = self.path(id).join(STATE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(AppError::NoUpload),
            Err(err) => return Err(io::Error::new(err.kind(), format!("reading {}: {err}", path.display())).into()),
        };
        let state: UploadState = serde_json::from_slice(&text).map_err(|err| {
            log::error!("upload state {} is damaged: {err}", path.display());
            AppError::Internal(Box::new(err))
        })?;
        if state.expired() {
            return Err(AppError::NoUpload);
        }
        Ok(state)
    }

    /// Blocking: records `state` for good (after its bytes are durable).
    pub fn save(&self, id: &UploadId, state: &UploadState) -> Result<(), AppError> {
        let dir = self.path(id);
        write_state(&dir, state, self.fsync).context(|| format!("writing {}", dir.join(STATE).display()))?;
        Ok(())
    }

    /// Blocking: opens the data file for appending and takes its advisory lock, which a concurrent PATCH (in
    /// this process or another) holds while it writes: 423 when it is taken.
    pub fn lock(&self, id: &UploadId) -> Result<fs::File, AppError> {
        let path = self.data_path(id);
        let file = match fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(AppError::NoUpload),
            Err(err) => return Err(io::Error::new(err.kind(), format!("opening {}: {err}", path.display())).into()),
        };
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(fs::TryLockError::WouldBlock) => Err(AppError::UploadLocked),
            Err(fs::TryLockError::Error(err)) => Err(err.into()),
        }
    }

    /// Blocking: cuts off bytes an unacknowledged PATCH left past the recorded offset. A data file shorter than
    /// its state is damage (a crash with `--fsync false`): it is reported, and kept.
    pub fn trim(&self, id: &UploadId, file: &fs::File, state: &UploadState) -> Result<(), AppError> {
        let len = file.metadata()?.len();
        if len < state.offset {
            log::error!(
                "upload {} is damaged: {} holds {len} bytes, its state says {}",
                id.as_str(),
                self.data_path(id).display(),
                state.offset
            );
            return Err(AppError::Internal("partial upload shorter than its state".into()));
        }
        if len > state.offset {
            log::info!("upload {}: dropping {} unacknowledged bytes", id.as_str(), len - state.offset);
            file.set_len(state.offset)?;
        }
        Ok(())
    }

    /// Blocking: makes the bytes written so far durable (when `--fsync` is on) and records them.
    pub fn checkpoint(&self, id: &UploadId, file: &fs::File, state: &UploadState) -> Result<(), AppError> {
        if self.fsync {
            file.sync_data()?;
        }
        self.save(id, state)
    }

    /// Blocking: publishes a complete upload through [`Storage::publish`], like every strategy, and records the
    /// stored file's id. The bytes are published through a hard link in `tmp/`, so a publish that fails (its
    /// drop guard removes what it was given) leaves the upload's own data in place for a retry, and a publish
    /// that a crash kept from being recorded is recognised by the inode the data file still shares with it.
    pub fn finish(&self, id: &UploadId, file: &fs::File, state: &mut UploadState) -> Result<FileId, AppError> {
        let hasher = state.hasher()?;
        let sha256 = hex::encode(hasher.finalize());
        let data = self.data_path(id);
        let link = self.storage.tmp_dir().join(format!("tus-{}", id.as_str()));
        let _ = fs::remove_file(&link);
        let size = state.offset;
        let file_id = match self.published_already(&data)? {
            Some(file_id) => {
                log::warn!("tus upload {} was published as {file_id} before a crash; recording it", id.as_str());
                file_id
            }
            None => {
                fs::hard_link(&data, &link).context(|| format!("linking {} to {}", data.display(), link.display()))?;
                let new = crate::storage::NewFile {
                    filename: state.filename.clone(),
                    content_type: state.content_type.clone(),
                    strategy: super::STRATEGY,
                    expected_sha256: None,
                };
                let temp = tempfile::TempPath::try_from_path(link)?;
                let stored = self.storage.publish(file.try_clone()?, temp, new, size, sha256)?;
                log::info!("stored {} ({size} bytes) via tus upload {}", stored.id, id.as_str());
                stored.id
            }
        };
        state.file_id = Some(file_id);
        state.expires_ms = self.expires_from_now();
        self.save(id, state)?;
        // the periodic sweep removes the data files of finished uploads too, and may have come first
        match fs::remove_file(&data) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                return Err(io::Error::new(err.kind(), format!("removing {}: {err}", data.display())).into());
            }
            _ => {}
        }
        Ok(file_id)
    }

    /// The stored file that shares the data file's inode, if any: a publish went through and a crash kept it
    /// from being recorded. Only then is the (rare) look through the stored files made.
    fn published_already(&self, data: &Path) -> io::Result<Option<FileId>> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(data).context(|| format!("reading {}", data.display()))?;
        if meta.nlink() < 2 {
            return Ok(None);
        }
        let same = |id: FileId| {
            fs::metadata(self.storage.content_path(id)).is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
        };
        // the publish came after the data file's last write: only files stored since then are looked at, newest
        // first, a page at a time
        let written = meta.modified().context(|| format!("reading {}", data.display()))?;
        let mut after = None;
        loop {
            let page = self.storage.list_blocking(PAGE, after).map_err(io::Error::other)?;
            for file in &page.files {
                if file.created_at < written {
                    return Ok(None);
                }
                if same(file.id) {
                    return Ok(Some(file.id));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// Blocking: removes an upload (termination). A PATCH under way keeps it (423).
    pub fn remove(&self, id: &UploadId) -> Result<(), AppError> {
        self.load(id)?;
        let _lock = match self.lock(id) {
            Ok(file) => Some(file),
            // a finished upload has no data file left
            Err(AppError::NoUpload) => None,
            Err(err) => return Err(err),
        };
        let dir = self.path(id);
        fs::remove_dir_all(&dir).context(|| format!("removing {}", dir.display()))?;
        self.sync_dir(&self.dir)?;
        Ok(())
    }

    /// Blocking: removes expired uploads (unless a PATCH holds one), half-made creations, and the data files
    /// finished uploads no longer need. A state that cannot be read is reported and kept.
    pub fn sweep(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.ends_with(NEW_SUFFIX) {
                log::info!("removing half-made upload {}", path.display());
                fs::remove_dir_all(&path)?;
                continue;
            }
            let Some(id) = UploadId::parse(&name) else {
                log::warn!("ignoring {}: not a name ferry keeps uploads under", path.display());
                continue;
            };
            let state = match fs::read(path.join(STATE)).map(|text| serde_json::from_slice::<UploadState>(&text)) {
                Ok(Ok(state)) => state,
                Ok(Err(err)) => {
                    log::error!("upload state {} is damaged ({err}); kept for an operator", path.join(STATE).display());
                    continue;
                }
                Err(err) => {
                    log::error!("cannot read {}: {err}; kept for an operator", path.join(STATE).display());
                    continue;
                }
            };
            if state.expired() {
                if matches!(self.lock(&id), Err(AppError::UploadLocked)) {
                    continue;
                }
                log::info!("removing expired upload {} ({} of {:?} bytes)", id.as_str(), state.offset, state.length);
                fs::remove_dir_all(&path)?;
            } else if state.file_id.is_some() && path.join(DATA).exists() {
                fs::remove_file(path.join(DATA))?;
            }
        }
        Ok(())
    }

    /// Sweeps every [`Uploads::sweep_interval`] until dropped (the server aborts it when it stops).
    pub async fn sweep_periodically(self) {
        loop {
            tokio::time::sleep(self.sweep_interval()).await;
            let uploads = self.clone();
            match tokio::task::spawn_blocking(move || uploads.sweep()).await {
                Ok(Err(err)) => log::warn!("sweeping {}: {err}", self.dir.display()),
                Err(err) => log::warn!("sweeping {}: {err}", self.dir.display()),
                Ok(Ok(())) => {}
            }
        }
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fsync {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// How often the periodic sweep runs: often enough that an upload outlives its expiry by at most a quarter
    /// of it (and at most 15 minutes), never more than ten times a second.
    pub fn sweep_interval(&self) -> Duration {
        (self.expiry / 4).clamp(Duration::from_millis(100), Duration::from_secs(15 * 60))
    }
}

/// The SHA-256 state of no bytes, for a new upload.
pub fn empty_hash_state() -> String {
    hex::encode(Sha256::new().serialize())
}

fn write_state(dir: &Path, state: &UploadState, fsync: bool) -> io::Result<()> {
    let mut temp = NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut temp, state)?;
    if fsync {
        temp.as_file().sync_all()?;
    }
    temp.persist(dir.join(STATE)).map_err(|err| err.error)?;
    if fsync {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_state_survives_a_round_trip_through_the_state_file() {
        let mut hasher = Sha256::new();
        hasher.update(b"the first half, ");
        let mut state = UploadState {
            length: Some(32),
            offset: 16,
            metadata: None,
            filename: "a".into(),
            content_type: "text/plain".into(),
            expires_ms: 0,
            sha256_state: empty_hash_state(),
            file_id: None,
        };
        state.keep_hasher(&hasher);
        let text = serde_json::to_string(&state).unwrap();
        let back: UploadState = serde_json::from_str(&text).unwrap();
        let mut resumed = back.hasher().unwrap();
        resumed.update(b"the second half.");
        assert_eq!(resumed.finalize(), Sha256::digest(b"the first half, the second half."));
    }

    #[test]
    fn only_server_made_ids_parse() {
        let id = UploadId::new().unwrap();
        assert_eq!(UploadId::parse(id.as_str()), Some(id.clone()));
        assert!(UploadId::parse(&id.as_str().to_uppercase()).is_none());
        assert!(UploadId::parse("../../etc/passwd").is_none());
        assert!(UploadId::parse("").is_none());
    }
}
