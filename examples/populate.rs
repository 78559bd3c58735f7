//! Stores N files in a data directory through ferry's own storage code (the content side's publish and the
//! index's commit, as an upload does, but 10,000 rows a transaction), for `wrk/scale.py`:
//! `populate <data-dir> <count> [size, default 16]`. A million HTTP uploads would take hours.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Instant};

use ferry::storage::{DataDirLock, FileId, Index, Layout, LocalContent, SqliteIndex, StoredFile};

const BATCH: usize = 10_000;

fn populate(dir: &PathBuf, count: u64, size: usize) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let _lock = DataDirLock::acquire(dir)?;
    let layout = Layout::new(dir);
    std::fs::create_dir_all(&layout.files)?;
    std::fs::create_dir_all(&layout.tmp)?;
    let (content, index) = (LocalContent::new(&layout, false), SqliteIndex::open(&layout.index, false)?);
    let bytes = vec![b'x'; size];
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let mut rows = Vec::with_capacity(BATCH);
    for n in 0..count {
        let mut temp = content.stage()?;
        temp.write_all(&bytes)?;
        let (file, temp) = temp.into_parts();
        let row = StoredFile {
            id: FileId::new(),
            filename: format!("file-{n}.bin"),
            size: size as u64,
            sha256: sha256.clone(),
            content_type: "application/octet-stream".into(),
            strategy: "populate".into(),
            created_at: std::time::SystemTime::now(),
        };
        content.publish(file, temp, row.id)?;
        rows.push(row);
        if rows.len() == BATCH || n + 1 == count {
            index.insert(&rows)?;
            rows.clear();
        }
    }
    Ok(index.totals()?.files)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(Ok(count))) = (args.first(), args.get(1).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: populate <data-dir> <count> [size in bytes, default 16]");
        return ExitCode::from(2);
    };
    let size = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(16);
    let started = Instant::now();
    match populate(&PathBuf::from(dir), count, size) {
        Ok(files) => {
            println!("stored {count} files in {:.1} s; {files} in the index", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("populate: {err}");
            ExitCode::FAILURE
        }
    }
}
