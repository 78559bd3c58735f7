//! `ferry fsck [--repair]`: checks every stored file of a data directory that no server is using: metadata parses
//! and names its file, content exists, has the recorded size and the recorded sha256 (every byte is read). With
//! `--repair` it sets aside what is damaged by the rules startup uses (see [`crate::storage::check`]).

use std::{io::Write, path::Path};

use crate::storage::{
    DataDirLock, Layout,
    check::{self, Depth},
};

/// What a check found, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every stored file is sound.
    Clean,
    /// Some were damaged (and, with `--repair`, are now in quarantine).
    Damaged,
}

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
    let survey = check::survey(&layout.files, &layout.quarantine, Depth::Digests).map_err(|e| cannot(e.to_string()))?;
    let mut say = |line: String| writeln!(out, "{line}").map_err(|err| format!("cannot write the report: {err}"));
    for path in &survey.foreign {
        say(format!("unknown {}: not a name ferry stores files under; left alone", path.display()))?;
    }
    for path in &survey.unpublished {
        let mut line = format!("leftover {}: content that never had metadata (an interrupted publish)", path.display());
        if repair {
            std::fs::remove_file(path).map_err(|err| cannot(format!("removing {}: {err}", path.display())))?;
            line.push_str("; removed");
        }
        say(line)?;
    }
    for damaged in &survey.damaged {
        let mut line = format!("damaged {}: {}", damaged.id, damaged.damage);
        if repair {
            check::quarantine(&layout.quarantine, damaged).map_err(|err| cannot(err.to_string()))?;
            line.push_str(&format!("; moved to {}", layout.quarantine.display()));
        }
        say(line)?;
    }
    if repair {
        check::sync_dirs(&layout).map_err(|err| cannot(err.to_string()))?;
    }
    let (ok, damaged) = (survey.sound.len(), survey.damaged.len());
    say(format!(
        "checked {} files: {ok} ok, {damaged} damaged, {} quarantined already",
        ok + damaged,
        survey.quarantined
    ))?;
    Ok(if damaged == 0 { Verdict::Clean } else { Verdict::Damaged })
}
