//! `ferry fsck [--repair]`: checks every stored file of a data directory that no server is using: every row of
//! the index has its content, of the recorded size and the recorded sha256 (every byte is read), and every
//! content file in the shards has a row. With `--repair` it sets aside what is damaged (see
//! [`crate::storage::check`]): the content and the row, written out as `<id>.json`, go to `quarantine/`, and the
//! row leaves the index; content with no row goes to `quarantine/` too. Nothing is deleted.

use std::{io::Write, path::Path};

use crate::storage::{
    DataDirLock, FileId, Index, Layout, LocalContent, SqliteIndex, StoredFile,
    check::{self, Damage, Damaged, Depth},
    is_old_layout,
};

/// What a check found, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every stored file is sound.
    Clean,
    /// Some were damaged (and, with `--repair`, are now in quarantine).
    Damaged,
}

/// Rows read from the index at a time.
const PAGE: usize = 1000;

/// Checks `data_dir`, writing one line per problem and a summary to `out`. `Err` says, in a sentence, why the check
/// could not run: another ferry holds the directory, or it cannot be read.
pub fn run(data_dir: &Path, repair: bool, out: &mut dyn Write) -> Result<Verdict, String> {
    let cannot = |why: String| format!("cannot use data directory {}: {why}", data_dir.display());
    match std::fs::metadata(data_dir) {
        Ok(stat) if stat.is_dir() => {}
        Ok(_) => return Err(cannot("it is not a directory".into())),
        Err(err) => return Err(cannot(err.to_string())),
    }
    let _lock = DataDirLock::acquire(data_dir).map_err(|err| cannot(err.to_string()))?;
    let layout = Layout::new(data_dir);
    if is_old_layout(&layout.files).map_err(|e| cannot(e.to_string()))? {
        return Err(cannot(
            "it holds files in the layout before the index (files/<id>.json): start ferry once to migrate them".into(),
        ));
    }
    let quarantined = check::count_quarantined(&layout.quarantine).map_err(|e| cannot(e.to_string()))?;
    let mut say = |line: String| writeln!(out, "{line}").map_err(|err| format!("cannot write the report: {err}"));
    let (mut ok, mut damaged) = (0, 0);
    if layout.files.is_dir() || layout.index.exists() {
        let index = SqliteIndex::open(&layout.index, true).map_err(|e| cannot(e.to_string()))?;
        let content = LocalContent::new(&layout, true);
        let mut after: Option<FileId> = None;
        loop {
            let page = index.list(PAGE, after).map_err(|e| cannot(e.to_string()))?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            for file in page {
                let path = content.path(file.id);
                match check::check_content(file.clone(), &path, Depth::Digests) {
                    Ok(_) => ok += 1,
                    Err(damage) => {
                        damaged += 1;
                        let mut line = format!("damaged {}: {damage}", file.id);
                        if repair {
                            set_aside(&layout, &index, file, damage, path).map_err(|e| cannot(e.to_string()))?;
                            line.push_str(&format!("; moved to {}", layout.quarantine.display()));
                        }
                        say(line)?;
                    }
                }
            }
        }
        let mut lines = Vec::new();
        content
            .walk(|id, path| {
                let Some(id) = id else {
                    lines.push(format!("unknown {}: not a name ferry stores files under; left alone", path.display()));
                    return Ok(());
                };
                match index.get(id)? {
                    Some(_) => {}
                    None => {
                        let mut line = format!("leftover {}: {}", path.display(), Damage::NoRow);
                        if repair {
                            let damaged = Damaged { id, damage: Damage::NoRow, paths: vec![path] };
                            check::quarantine(&layout.quarantine, &damaged)?;
                            line.push_str(&format!("; moved to {}", layout.quarantine.display()));
                        }
                        lines.push(line);
                    }
                }
                Ok(())
            })
            .map_err(|e| cannot(e.to_string()))?;
        for line in lines {
            say(line)?;
        }
    }
    if repair {
        check::sync_dirs(&layout).map_err(|err| cannot(err.to_string()))?;
    }
    say(format!("checked {} files: {ok} ok, {damaged} damaged, {quarantined} quarantined already", ok + damaged))?;
    Ok(if damaged == 0 { Verdict::Clean } else { Verdict::Damaged })
}

/// The row is written out beside its content in quarantine before it leaves the index, so that nothing of the
/// file is ever only in memory.
fn set_aside(
    layout: &Layout,
    index: &SqliteIndex,
    file: StoredFile,
    damage: Damage,
    path: std::path::PathBuf,
) -> std::io::Result<()> {
    check::quarantine_record(&layout.quarantine, &file)?;
    if !matches!(damage, Damage::MissingContent) {
        check::quarantine(&layout.quarantine, &Damaged { id: file.id, damage, paths: vec![path] })?;
    }
    index.remove(file.id)?;
    Ok(())
}

/// `ferry fsck --storage s3`: every row of the bucket has its content, of the recorded size, and every content
/// object has a row, unless it belongs to an upload still in progress (its marker is there); content with no row
/// is reported as a leftover, as on disk. The store verified
/// every part's SHA-256 as it was written, so the bytes are not read again. Nothing is changed: `--repair` is for
/// local disk, and on a bucket an operator decides (the report names each object).
pub fn run_s3(config: &crate::storage::S3Config, out: &mut dyn Write) -> Result<Verdict, String> {
    let cannot = |why: String| format!("cannot check bucket {}: {why}", config.bucket);
    let s3 = crate::storage::S3::connect(config).map_err(|e| cannot(e.to_string()))?;
    let (rows, content) = s3.wait(s3.inventory()).map_err(|e| cannot(e.to_string()))?;
    let in_progress = s3.wait(s3.in_progress()).map_err(|e| cannot(e.to_string()))?;
    let sizes: std::collections::HashMap<FileId, u64> =
        content.iter().filter_map(|(id, _, size)| Some(((*id)?, *size))).collect();
    let mut say = |line: String| writeln!(out, "{line}").map_err(|err| format!("cannot write the report: {err}"));
    let (mut ok, mut damaged) = (0, 0);
    let s3 = &s3;
    let unreadable = std::sync::Mutex::new(Vec::new());
    let fetch = |id| {
        let unreadable = &unreadable;
        async move {
            match s3.row(id).await {
                Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                    unreadable.lock().expect("unreadable rows").push(format!("damaged {id}: {err}"));
                    Ok(None)
                }
                other => other.map(|row| row.map(std::sync::Arc::new)),
            }
        }
    };
    let found = s3.wait(crate::storage::S3::rows_of(rows.clone(), fetch)).map_err(|e| cannot(e.to_string()))?;
    for line in unreadable.into_inner().expect("unreadable rows") {
        damaged += 1;
        say(line)?;
    }
    for row in found {
        let id = &row.id;
        let problem = match sizes.get(id) {
            None => Some("its content is missing".to_owned()),
            Some(&size) if size != row.size => Some(format!("its content is {size} bytes, its row says {}", row.size)),
            Some(_) => None,
        };
        // the replicas keep working meanwhile: a file deleted since the listings is not damaged
        let deleted_since = || s3.wait(s3.row(*id)).map(|row| row.is_none()).map_err(|e| cannot(e.to_string()));
        match problem {
            None => ok += 1,
            Some(_) if deleted_since()? => {}
            Some(problem) => {
                damaged += 1;
                say(format!("damaged {id}: {problem}"))?;
            }
        }
    }
    let rows: std::collections::HashSet<FileId> = rows.into_iter().collect();
    for (id, key, _) in &content {
        // and a file published since the listing of rows has its row now
        let published_since = |id| s3.wait(s3.row(id)).map(|row| row.is_some()).map_err(|e| cannot(e.to_string()));
        match id {
            Some(id) if rows.contains(id) || in_progress.contains(id) || published_since(*id)? => {}
            // as on disk: it never got a 201, so it is reported and does not count as damage
            Some(_) => say(format!("leftover {key}: content with no row (a publish cut short); never answered 201"))?,
            None => say(format!("unknown {key}: not a name ferry stores files under; left alone"))?,
        }
    }
    say(format!("checked {} files in bucket {}: {ok} ok, {damaged} damaged", ok + damaged, config.bucket))?;
    Ok(if damaged == 0 { Verdict::Clean } else { Verdict::Damaged })
}
