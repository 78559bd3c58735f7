//! Which stored files can be trusted, and where the others go.
//!
//! A stored file is sound when its record names the id it is stored under and its content exists with the
//! recorded size (and, when asked, the recorded sha256). Anything else is damaged and is moved, content and
//! record together and under their own names, to `<data>/quarantine/`: a damaged file may be the only copy of
//! someone's data, so ferry never deletes it. The migration from the layout before the index reads records from
//! `<id>.json` files by these rules; `ferry fsck` checks the index's rows by them.

use std::{
    collections::BTreeSet,
    fmt, fs, io,
    path::{Path, PathBuf},
};

use super::{FileId, StoredFile, sink::hash_file};
use crate::error::IoContext;

/// What is wrong with a stored file.
#[derive(Debug)]
pub enum Damage {
    /// The metadata file exists but cannot be read.
    UnreadableMetadata(io::Error),
    /// The metadata file is empty, truncated or not a metadata record.
    InvalidMetadata(String),
    /// The record names another id than the one it is stored under.
    WrongId(FileId),
    /// Metadata whose content is missing.
    MissingContent,
    /// The content exists but cannot be read (or is not a regular file).
    UnreadableContent(io::Error),
    /// The content is shorter or longer than recorded (a crash with `--fsync false`, a disk fault).
    WrongSize { recorded: u64, actual: u64 },
    /// The content has the recorded size but other bytes.
    WrongDigest { recorded: String, actual: String },
    /// Content without metadata beside it, whose metadata is in quarantine already.
    MetadataQuarantined,
    /// Content with no row in the index (a publish interrupted before its commit).
    NoRow,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::UnreadableMetadata(err) => write!(f, "metadata cannot be read: {err}"),
            Damage::InvalidMetadata(why) => write!(f, "metadata is not a valid record: {why}"),
            Damage::WrongId(other) => write!(f, "metadata records id {other}, not the id it is stored under"),
            Damage::MissingContent => f.write_str("metadata has no content"),
            Damage::UnreadableContent(err) => write!(f, "content cannot be read: {err}"),
            Damage::WrongSize { recorded, actual } => {
                write!(f, "content is {actual} bytes, metadata says {recorded}")
            }
            Damage::WrongDigest { recorded, actual } => {
                write!(f, "content's sha256 is {actual}, metadata says {recorded}")
            }
            Damage::MetadataQuarantined => f.write_str("content whose metadata is already in quarantine"),
            Damage::NoRow => f.write_str("content with no row in the index (a publish interrupted before its commit)"),
        }
    }
}

/// A damaged file and what of it is on disk.
#[derive(Debug)]
pub struct Damaged {
    pub id: FileId,
    pub damage: Damage,
    /// Its entries on disk: content, metadata, or both.
    pub paths: Vec<PathBuf>,
}

/// How deep a check looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Records and sizes: one stat per file (the migration).
    Sizes,
    /// Sizes, and the sha256 of every byte (`ferry fsck`).
    Digests,
}

pub fn metadata_path(files: &Path, id: FileId) -> PathBuf {
    files.join(format!("{id}.json"))
}

/// Reads an old-layout `<id>.json` record and checks its content.
pub(super) fn check_json(
    id: FileId,
    content: &Path,
    metadata: &Path,
    has_content: bool,
    depth: Depth,
) -> Result<StoredFile, Damage> {
    let bytes = fs::read(metadata).map_err(Damage::UnreadableMetadata)?;
    if bytes.is_empty() {
        return Err(Damage::InvalidMetadata("the file is empty".into()));
    }
    let file: StoredFile = serde_json::from_slice(&bytes).map_err(|err| Damage::InvalidMetadata(err.to_string()))?;
    if file.id != id {
        return Err(Damage::WrongId(file.id));
    }
    // what the index cannot hold is damage too, not a reason to stop the migration of every other file
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    if file.sha256.len() != 64 || !file.sha256.bytes().all(hex) {
        return Err(Damage::InvalidMetadata(format!("sha256 {:?} is not 64 lowercase hex digits", file.sha256)));
    }
    if i64::try_from(file.size).is_err() {
        return Err(Damage::InvalidMetadata(format!("size {} is too large", file.size)));
    }
    if !has_content {
        return Err(Damage::MissingContent);
    }
    check_content(file, content, depth)
}

/// Checks that `content` is what `file` records: present, of its size, and (with `Digests`) of its sha256.
pub fn check_content(file: StoredFile, content: &Path, depth: Depth) -> Result<StoredFile, Damage> {
    let stat = match fs::metadata(content) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Err(Damage::MissingContent),
        stat => stat.map_err(Damage::UnreadableContent)?,
    };
    if !stat.is_file() {
        return Err(Damage::UnreadableContent(io::Error::other("it is not a regular file")));
    }
    if stat.len() != file.size {
        return Err(Damage::WrongSize { recorded: file.size, actual: stat.len() });
    }
    if depth == Depth::Digests {
        let (_, hasher, _) = fs::File::open(content).and_then(hash_file).map_err(Damage::UnreadableContent)?;
        let actual = hex::encode(sha2::Digest::finalize(hasher));
        if actual != file.sha256 {
            return Err(Damage::WrongDigest { recorded: file.sha256, actual });
        }
    }
    Ok(file)
}

/// The stored files in quarantine (an id's content and metadata count once, whatever suffix keeps them apart),
/// and the ids whose metadata is there.
pub(super) fn look_in_quarantine(quarantine: &Path) -> io::Result<(BTreeSet<String>, BTreeSet<FileId>)> {
    let (mut files, mut metadata) = (BTreeSet::new(), BTreeSet::new());
    let entries = match fs::read_dir(quarantine) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((files, metadata)),
        entries => entries.context(|| format!("reading {}", quarantine.display()))?,
    };
    for entry in entries {
        let name = entry.context(|| format!("reading {}", quarantine.display()))?.file_name();
        let name = name.to_string_lossy();
        let (stem, rest) = name.split_once('.').unwrap_or((&name, ""));
        if stem.is_empty() {
            continue; // a hidden file someone left there, not a stored file
        }
        if let (Ok(id), true) = (stem.parse::<FileId>(), rest == "json" || rest.starts_with("json.")) {
            metadata.insert(id);
        }
        files.insert(stem.to_owned());
    }
    Ok((files, metadata))
}

/// How many stored files are in quarantine.
pub fn count_quarantined(quarantine: &Path) -> io::Result<usize> {
    Ok(look_in_quarantine(quarantine)?.0.len())
}

/// Moves a damaged file's entries into `quarantine`, keeping their names; a name already taken there gets `.1`,
/// `.2`… appended, so nothing in quarantine is ever overwritten. Returns where they went.
///
/// The check for a free name and the rename are two steps; the data directory's lock keeps every other ferry
/// out between them.
pub fn quarantine(quarantine: &Path, damaged: &Damaged) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(quarantine).context(|| format!("creating {}", quarantine.display()))?;
    let mut moved = Vec::new();
    for path in &damaged.paths {
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let target = free_name(quarantine, &name)?;
        fs::rename(path, &target).context(|| format!("moving {} to {}", path.display(), target.display()))?;
        moved.push(target);
    }
    Ok(moved)
}

/// Writes a row taken out of the index into `quarantine` as `<id>.json` (the record format of `GET /files/<id>`),
/// beside the content it describes, never over anything there. Returns where it went.
pub fn quarantine_record(quarantine: &Path, file: &StoredFile) -> io::Result<PathBuf> {
    fs::create_dir_all(quarantine).context(|| format!("creating {}", quarantine.display()))?;
    let target = free_name(quarantine, &format!("{}.json", file.id))?;
    let json = serde_json::to_vec(file).map_err(io::Error::other)?;
    fs::write(&target, json).context(|| format!("writing {}", target.display()))?;
    Ok(target)
}

/// Makes the moves and removals of a repair or a migration durable: they touch shard directories all over
/// `files/`, so the whole file system is synced (`syncfs`), then `quarantine/` in case it is on another one.
pub fn sync_dirs(layout: &super::Layout) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for dir in [&layout.files, &layout.quarantine] {
        match fs::File::open(dir) {
            Ok(opened) => {
                // SAFETY: syncfs only reads the descriptor, which `opened` keeps open
                if unsafe { libc::syncfs(opened.as_raw_fd()) } != 0 {
                    return Err(io::Error::last_os_error()).context(|| format!("syncing {}", dir.display()));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).context(|| format!("syncing {}", dir.display())),
        }
    }
    Ok(())
}

fn free_name(dir: &Path, name: &str) -> io::Result<PathBuf> {
    for n in 0u64.. {
        let candidate = if n == 0 { dir.join(name) } else { dir.join(format!("{name}.{n}")) };
        match fs::symlink_metadata(&candidate) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(candidate),
            Err(err) => return Err(err).context(|| format!("looking at {}", candidate.display())),
            Ok(_) => {}
        }
    }
    unreachable!("u64 names run out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_never_overwrites_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let (files, quarantine_dir) = (dir.path().join("files"), dir.path().join("quarantine"));
        fs::create_dir_all(&files).unwrap();
        fs::create_dir_all(&quarantine_dir).unwrap();
        let id = FileId::new();
        fs::write(quarantine_dir.join(id.to_string()), b"first").unwrap();
        fs::write(quarantine_dir.join(format!("{id}.1")), b"second").unwrap();
        fs::write(files.join(id.to_string()), b"third").unwrap();
        let damaged = Damaged { id, damage: Damage::MissingContent, paths: vec![files.join(id.to_string())] };
        let moved = quarantine(&quarantine_dir, &damaged).unwrap();
        assert_eq!(moved, vec![quarantine_dir.join(format!("{id}.2"))]);
        assert_eq!(fs::read(quarantine_dir.join(id.to_string())).unwrap(), b"first");
        assert_eq!(fs::read(&moved[0]).unwrap(), b"third");
        assert_eq!(count_quarantined(&quarantine_dir).unwrap(), 1);
    }
}
