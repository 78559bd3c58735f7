//! The content side of the storage seam, on local disk: an upload's bytes are written to a temp file in
//! `<data>/tmp/` and published by a rename into `<data>/files/<ab>/<cd>/<id>`.
//!
//! The two shard levels are the id's **last** four hex digits (`…-4f0c2b8e1a77` lives in `files/1a/77/`). A UUID
//! v7 begins with its millisecond timestamp, so its leading digits are the same for every upload of the same
//! weeks and would put them all in one directory; its last digits are random, so consecutive uploads spread
//! evenly over 65,536 directories (15 files each at a million files, 150 at ten million) and no directory grows
//! large enough for lookups in it to slow down.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use tempfile::{NamedTempFile, TempPath};

use super::{FileId, Layout};
use crate::error::IoContext;

pub struct LocalContent {
    files: PathBuf,
    tmp: PathBuf,
    fsync: bool,
}

impl LocalContent {
    pub fn new(layout: &Layout, fsync: bool) -> LocalContent {
        LocalContent { files: layout.files.clone(), tmp: layout.tmp.clone(), fsync }
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Where an upload's bytes go while they are written: a fresh temp file, removed when dropped.
    pub fn stage(&self) -> io::Result<NamedTempFile> {
        NamedTempFile::new_in(&self.tmp).context(|| format!("creating a temp file in {}", self.tmp.display()))
    }

    /// Server-made path of a file's content; only ids reach the file system.
    pub fn path(&self, id: FileId) -> PathBuf {
        shard_path(&self.files, id)
    }

    /// Blocking: moves a finished upload into its place, durably when `fsync` is on (the file synced, renamed,
    /// its directory synced). Nothing reads it there before its row is committed.
    pub fn publish(&self, file: fs::File, temp: TempPath, id: FileId) -> io::Result<()> {
        if self.fsync {
            file.sync_all().context(|| format!("syncing {}", temp.display()))?;
        }
        drop(file);
        let target = self.path(id);
        match temp.persist(&target) {
            Ok(()) => {}
            Err(err) if err.error.kind() == io::ErrorKind::NotFound => {
                self.make_shard(&target)?;
                err.path.persist(&target).map_err(|e| e.error).context(|| format!("publishing {}", target.display()))?
            }
            Err(err) => return Err(err.error).context(|| format!("publishing {}", target.display())),
        }
        self.sync_dir_of(&target)
    }

    /// Blocking: moves content from elsewhere on the same file system into its place (a migration).
    pub fn adopt(&self, from: &Path, id: FileId) -> io::Result<()> {
        let target = self.path(id);
        let moved =
            || fs::rename(from, &target).context(|| format!("moving {} to {}", from.display(), target.display()));
        match moved() {
            Err(err) if err.kind() == io::ErrorKind::NotFound && from.exists() => {
                self.make_shard(&target)?;
                moved()?
            }
            other => other?,
        }
        Ok(())
    }

    /// Blocking: removes a file's content (its row is gone already).
    pub fn remove(&self, id: FileId) -> io::Result<()> {
        let path = self.path(id);
        fs::remove_file(&path).context(|| format!("deleting {}", path.display()))?;
        self.sync_dir_of(&path)
    }

    /// Every content file in the shards, for `ferry fsck`: `(id, path)`, and the paths whose names are not ids.
    pub fn walk(&self, mut found: impl FnMut(Option<FileId>, PathBuf) -> io::Result<()>) -> io::Result<()> {
        for first in read_dir(&self.files)? {
            if !is_shard(&first) {
                continue;
            }
            for second in read_dir(&first)? {
                if !is_shard(&second) {
                    found(None, second)?;
                    continue;
                }
                for path in read_dir(&second)? {
                    let id = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok());
                    found(id, path)?;
                }
            }
        }
        Ok(())
    }

    fn make_shard(&self, target: &Path) -> io::Result<()> {
        let dir = target.parent().expect("a shard path has a directory");
        fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        if self.fsync {
            // the new directories' own entries must be durable before a file in them is
            let upper = dir.parent().expect("two shard levels");
            for dir in [upper, &self.files] {
                sync_dir(dir)?;
            }
        }
        Ok(())
    }

    fn sync_dir_of(&self, path: &Path) -> io::Result<()> {
        if self.fsync { sync_dir(path.parent().expect("a shard path has a directory")) } else { Ok(()) }
    }
}

/// `files/<ab>/<cd>/<id>`, from the id's last four hex digits.
pub fn shard_path(files: &Path, id: FileId) -> PathBuf {
    let name = id.to_string();
    let tail = &name[name.len() - 4..];
    files.join(&tail[..2]).join(&tail[2..]).join(name)
}

/// A shard directory's name: two lowercase hex digits.
/// Whether any shard under `files` holds a file: stored content, which a missing index would hide.
pub fn holds_content(files: &Path) -> io::Result<bool> {
    for first in read_dir(files)?.into_iter().filter(|p| is_shard(p)) {
        for second in read_dir(&first)?.into_iter().filter(|p| is_shard(p)) {
            if fs::read_dir(&second).context(|| format!("reading {}", second.display()))?.next().is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

pub fn is_shard(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.len() == 2 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) && path.is_dir()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).context(|| format!("syncing {}", dir.display()))
}

fn read_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).context(|| format!("reading {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.context(|| format!("reading {}", dir.display()))?.path());
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_spread_over_shards() {
        let files = Path::new("files");
        let shards: std::collections::BTreeSet<PathBuf> =
            (0..64).map(|_| shard_path(files, FileId::new()).parent().unwrap().to_owned()).collect();
        assert!(shards.len() > 32, "64 consecutive ids in only {} shards", shards.len());
        let id = FileId::new();
        let path = shard_path(files, id);
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), id.to_string());
        assert_eq!(path.components().count(), 4);
    }
}
