//! From the layout before the index (`files/<id>` beside `files/<id>.json`, one flat directory) to the index and
//! the sharded layout, on the first start that finds such entries in `files/`.
//!
//! Nothing is lost if it is interrupted at any point, and the next start resumes it: for each batch of sound
//! files the rows are committed first, then each content file is moved into its shard, the file system is synced
//! (with `--fsync false` too: this runs once), and only then is its old `<id>.json` removed. A start that finds a
//! `<id>.json` whose row exists already commits nothing new (rows are inserted only when absent) and finishes the
//! move; content left flat with no `<id>.json` but with a row is moved into its shard too.
//!
//! Damaged old files are quarantined by the rules startup used before the index (see `check`): metadata that
//! cannot be read or parsed, names another id, or has no content, and content of the wrong size, are moved to
//! `quarantine/` with their other half and logged at ERROR. Content with no metadata anywhere, which is what a
//! crash between the two renames of the old publish left, is removed, as it always was.
//!
//! Finding out whether there is anything to migrate reads `files/` itself, which in the new layout holds at most
//! 256 shard directories, never the shards.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    FileId, Index, Layout, LocalContent, StoredFile,
    check::{self, Damaged, Depth},
    content::is_shard,
};
use crate::error::IoContext;

/// Rows committed per transaction.
const BATCH: usize = 1000;

#[derive(Default)]
struct Seen {
    content: bool,
    metadata: bool,
}

/// Whether `files/` holds entries of the layout before the index (a migration to do).
pub fn is_old_layout(files: &Path) -> io::Result<bool> {
    Ok(!old_entries(files)?.0.is_empty())
}

/// Migrates every old entry of `layout.files`; does nothing (one read of `files/`) when there are none.
pub fn run(layout: &Layout, content: &LocalContent, index: &impl Index) -> io::Result<()> {
    let (entries, foreign) = old_entries(&layout.files)?;
    for path in &foreign {
        log::warn!("ignoring {}: not a name ferry stores files under", path.display());
    }
    if entries.is_empty() {
        return Ok(());
    }
    log::info!("migrating {} files to the index and the sharded layout", entries.len());
    let (_, metadata_in_quarantine) = check::look_in_quarantine(&layout.quarantine)?;
    let mut batch = Vec::with_capacity(BATCH);
    let (mut migrated, mut damaged) = (0, 0);
    for (id, seen) in entries {
        let flat = layout.files.join(id.to_string());
        let json = check::metadata_path(&layout.files, id);
        if !seen.metadata {
            if index.get(id)?.is_some() {
                content.adopt(&flat, id)?; // moved back by a power loss after its JSON was removed
            } else if metadata_in_quarantine.contains(&id) {
                damaged += 1;
                set_aside(layout, Damaged { id, damage: check::Damage::MetadataQuarantined, paths: vec![flat] })?;
            } else {
                log::info!(
                    "removing unpublished content {} (a publish interrupted before its metadata)",
                    flat.display()
                );
                fs::remove_file(&flat).context(|| format!("removing {}", flat.display()))?;
            }
            continue;
        }
        // an interrupted migration may have moved the content already
        let sharded = content.path(id);
        let here = if seen.content { flat } else { sharded };
        let has_content = seen.content || here.exists();
        match check::check_json(id, &here, &json, has_content, Depth::Sizes) {
            Ok(file) => {
                batch.push(file);
                if batch.len() == BATCH {
                    migrated += commit(layout, content, index, &mut batch)?;
                }
            }
            Err(damage) => {
                damaged += 1;
                let paths = if has_content { vec![here, json] } else { vec![json] };
                set_aside(layout, Damaged { id, damage, paths })?;
            }
        }
    }
    migrated += commit(layout, content, index, &mut batch)?;
    check::sync_dirs(layout)?;
    log::info!("migrated {migrated} files; {damaged} damaged ones are in {}", layout.quarantine.display());
    Ok(())
}

/// Rows first, then the moves, then the old metadata: each step only once the one before is done.
fn commit(
    layout: &Layout,
    content: &LocalContent,
    index: &impl Index,
    batch: &mut Vec<StoredFile>,
) -> io::Result<usize> {
    index.insert(batch)?;
    for file in batch.iter() {
        let flat = layout.files.join(file.id.to_string());
        if flat.exists() {
            content.adopt(&flat, file.id)?;
        }
    }
    // whatever `--fsync` says: the old metadata is the only record until the rows and the moves are on disk, and
    // without this a power loss could keep the removals and lose what they depend on
    check::sync_dirs(layout)?;
    for file in batch.iter() {
        let json = check::metadata_path(&layout.files, file.id);
        fs::remove_file(&json).context(|| format!("removing {}", json.display()))?;
    }
    let done = batch.len();
    batch.clear();
    Ok(done)
}

fn set_aside(layout: &Layout, damaged: Damaged) -> io::Result<()> {
    check::quarantine(&layout.quarantine, &damaged)?;
    let paths: Vec<String> = damaged.paths.iter().map(|p| p.display().to_string()).collect();
    log::error!(
        "file {} is damaged ({}): moved {} to {}",
        damaged.id,
        damaged.damage,
        paths.join(" and "),
        layout.quarantine.display()
    );
    Ok(())
}

/// The old layout's entries of `files/` by id, and the names that are neither ids nor shard directories.
fn old_entries(files: &Path) -> io::Result<(BTreeMap<FileId, Seen>, Vec<PathBuf>)> {
    let mut seen: BTreeMap<FileId, Seen> = BTreeMap::new();
    let mut foreign = Vec::new();
    let entries = match fs::read_dir(files) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((seen, foreign)),
        entries => entries.context(|| format!("reading {}", files.display()))?,
    };
    for entry in entries {
        let path = entry.context(|| format!("reading {}", files.display()))?.path();
        if is_shard(&path) {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let (stem, metadata) = name.strip_suffix(".json").map_or((name, false), |stem| (stem, true));
        let Ok(id) = stem.parse::<FileId>() else {
            foreign.push(path);
            continue;
        };
        let seen = seen.entry(id).or_default();
        if metadata { seen.metadata = true } else { seen.content = true }
    }
    Ok((seen, foreign))
}
