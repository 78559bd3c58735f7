//! The metadata index: one row per stored file in an embedded SQLite database, `<data>/index.db`. Committing a
//! file's row is the moment the file exists; removing it is the moment it stops existing.
//!
//! Why SQLite (rusqlite, bundled) and not redb: ferry promises that a SIGKILL never loses a file that got a 201,
//! even with `--fsync false`. SQLite in WAL mode with `synchronous=OFF` writes each commit into the WAL with
//! plain `write`s before the commit returns, so a process crash keeps it and only a power loss can take it back;
//! redb's non-durable commits (`Durability::None`) are rolled back after a crash unless a durable commit followed,
//! so redb could keep the promise only by syncing every commit, which is what `--fsync false` is there to avoid.
//! With `--fsync true` the WAL is synced at every commit (`synchronous=FULL`). The measurements behind the choice
//! are in the README ("How files are stored").
//!
//! Readers never wait for the writer: WAL gives each read a snapshot, and reads go through a small pool of
//! connections of their own while the one writing connection sits behind a mutex.

use std::{
    io,
    path::Path,
    sync::Mutex,
    time::{Duration, SystemTime},
};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{FileId, StoredFile};

/// Files and bytes stored, kept in the index by triggers in the same transaction as each row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: u64,
    pub bytes: u64,
}

/// The metadata side of the storage seam: what the next backend (a database every replica shares) implements.
/// `insert` is the commit that makes a file exist; `list` is newest first (ids are UUID v7, so id order is
/// creation order) and continues after the `after` cursor.
pub trait Index: Send + Sync {
    fn get(&self, id: FileId) -> io::Result<Option<StoredFile>>;
    fn list(&self, limit: usize, after: Option<FileId>) -> io::Result<Vec<StoredFile>>;
    /// Commits every row at once (one transaction); a row whose id is there already is left as it is (a
    /// migration that resumes inserts some rows twice).
    fn insert(&self, files: &[StoredFile]) -> io::Result<()>;
    /// Whether there was such a row.
    fn remove(&self, id: FileId) -> io::Result<bool>;
    fn totals(&self) -> io::Result<Totals>;
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS files (
        id BLOB PRIMARY KEY NOT NULL,
        filename TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        content_type TEXT NOT NULL,
        strategy TEXT NOT NULL,
        created_at_ns INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS totals (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        files INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
    CREATE TRIGGER IF NOT EXISTS files_added AFTER INSERT ON files BEGIN
        UPDATE totals SET files = files + 1, bytes = bytes + NEW.size;
    END;
    CREATE TRIGGER IF NOT EXISTS files_removed AFTER DELETE ON files BEGIN
        UPDATE totals SET files = files - 1, bytes = bytes - OLD.size;
    END;
    PRAGMA user_version = 1;
";

const COLUMNS: &str = "id, filename, size, sha256, content_type, strategy, created_at_ns";

/// Read connections kept open; more are opened when more readers come at once, and closed afterwards.
const IDLE_READERS: usize = 4;

pub struct SqliteIndex {
    path: std::path::PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    queue: Mutex<Queue>,
}

/// Rows waiting for a commit. Whoever holds the writer commits every row queued so far in one transaction (a
/// group commit): with `--fsync true` one sync of the log then makes a whole batch of concurrent uploads
/// durable, where one commit each would cap uploads at one per sync (about 250 a second on this machine's disk).
#[derive(Default)]
struct Queue {
    rows: Vec<StoredFile>,
    /// The ticket of the last rows queued, and of the last rows committed (or failed).
    queued: u64,
    settled: u64,
    /// The outcome of settled tickets whose owners have not yet looked.
    outcomes: std::collections::HashMap<u64, Result<(), (io::ErrorKind, String)>>,
}

impl SqliteIndex {
    /// Opens (or creates) the index at `path`. With `fsync`, every commit is on stable storage before it returns;
    /// without, it survives a crash of the process but not of the machine.
    pub fn open(path: &Path, fsync: bool) -> io::Result<SqliteIndex> {
        let writer = Connection::open(path).map_err(sql)?;
        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(sql)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(io::Error::other(format!("metadata index: journal mode {mode}, not WAL")));
        }
        writer.pragma_update(None, "synchronous", if fsync { "FULL" } else { "OFF" }).map_err(sql)?;
        writer.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        writer.execute_batch(SCHEMA).map_err(sql)?;
        Ok(SqliteIndex {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            queue: Mutex::default(),
        })
    }

    fn read<T>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> io::Result<T> {
        let idle = self.readers.lock().expect("readers lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = Connection::open(&self.path).map_err(sql)?;
                conn.pragma_update(None, "query_only", true).map_err(sql)?;
                conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
                conn
            }
        };
        let result = read(&conn).map_err(sql);
        let mut idle = self.readers.lock().expect("readers lock");
        if idle.len() < IDLE_READERS {
            idle.push(conn);
        }
        result
    }
}

impl Index for SqliteIndex {
    fn get(&self, id: FileId) -> io::Result<Option<StoredFile>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ?1"))?;
            stmt.query_row([&id.as_bytes()[..]], from_row).optional()
        })
    }

    fn list(&self, limit: usize, after: Option<FileId>) -> io::Result<Vec<StoredFile>> {
        self.read(|conn| {
            // the maximal UUID, which ferry never makes, stands for "from the newest"
            let after = after.map_or([0xff; 16], |id| *id.as_bytes());
            let sql = format!("SELECT {COLUMNS} FROM files WHERE id < ?1 ORDER BY id DESC LIMIT ?2");
            let mut stmt = conn.prepare_cached(&sql)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![&after[..], limit], from_row)?;
            rows.collect()
        })
    }

    fn insert(&self, files: &[StoredFile]) -> io::Result<()> {
        let ticket = {
            let mut queue = self.queue.lock().expect("index queue lock");
            queue.rows.extend_from_slice(files);
            queue.queued += 1;
            queue.queued
        };
        let mut conn = self.writer.lock().expect("index writer lock");
        let mut queue = self.queue.lock().expect("index queue lock");
        if let Some(outcome) = queue.outcomes.remove(&ticket) {
            // committed with others while this one waited for the writer
            return outcome.map_err(|(kind, message)| io::Error::new(kind, message));
        }
        let (rows, first, last) = (std::mem::take(&mut queue.rows), queue.settled + 1, queue.queued);
        drop(queue);
        let outcome = commit(&mut conn, &rows);
        let mut queue = self.queue.lock().expect("index queue lock");
        let shared = outcome.as_ref().map(|_| ()).map_err(|err| (err.kind(), err.to_string()));
        queue.outcomes.extend((first..=last).filter(|&t| t != ticket).map(|t| (t, shared.clone())));
        queue.settled = last;
        outcome
    }

    fn remove(&self, id: FileId) -> io::Result<bool> {
        let conn = self.writer.lock().expect("index writer lock");
        let removed = conn.execute("DELETE FROM files WHERE id = ?1", [&id.as_bytes()[..]]).map_err(sql)?;
        Ok(removed > 0)
    }

    fn totals(&self) -> io::Result<Totals> {
        self.read(|conn| {
            conn.query_row("SELECT files, bytes FROM totals", [], |row| {
                Ok(Totals { files: row.get::<_, i64>(0)? as u64, bytes: row.get::<_, i64>(1)? as u64 })
            })
        })
    }
}

/// One transaction for `rows`.
fn commit(conn: &mut Connection, rows: &[StoredFile]) -> io::Result<()> {
    let tx = conn.transaction().map_err(sql)?;
    {
        let sql_text =
            format!("INSERT INTO files ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING");
        let mut stmt = tx.prepare_cached(&sql_text).map_err(sql)?;
        for file in rows {
            let sha256 = hex::decode(&file.sha256).map_err(io::Error::other)?;
            stmt.execute(params![
                &file.id.as_bytes()[..],
                file.filename,
                i64::try_from(file.size).map_err(io::Error::other)?,
                sha256,
                file.content_type,
                file.strategy,
                nanos(file.created_at),
            ])
            .map_err(sql)?;
        }
    }
    tx.commit().map_err(sql)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<StoredFile> {
    let id: Vec<u8> = row.get(0)?;
    let id = FileId::from_bytes(&id).ok_or_else(|| invalid(0, "an id of 16 bytes"))?;
    let sha256: Vec<u8> = row.get(3)?;
    let created_at_ns: i64 = row.get(6)?;
    Ok(StoredFile {
        id,
        filename: row.get(1)?,
        size: row.get::<_, i64>(2)? as u64,
        sha256: hex::encode(sha256),
        content_type: row.get(4)?,
        strategy: row.get(5)?,
        created_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(created_at_ns as u64),
    })
}

fn invalid(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, format!("not {what}").into())
}

fn nanos(time: SystemTime) -> i64 {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// SQLite's errors as I/O errors: a full disk stays a full disk (507), a read-only one stays read-only (503).
fn sql(err: rusqlite::Error) -> io::Error {
    use rusqlite::ErrorCode;
    let kind = match &err {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::DiskFull => io::ErrorKind::StorageFull,
            ErrorCode::ReadOnly => io::ErrorKind::ReadOnlyFilesystem,
            ErrorCode::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorCode::CannotOpen => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        },
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("metadata index: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> StoredFile {
        StoredFile {
            id: FileId::new(),
            filename: "a.bin".into(),
            size,
            sha256: hex::encode([7u8; 32]),
            content_type: "application/octet-stream".into(),
            strategy: "test".into(),
            created_at: SystemTime::now(),
        }
    }

    #[test]
    fn rows_come_back_as_they_went_in_newest_first_with_totals_kept() {
        let dir = tempfile::tempdir().unwrap();
        let index = SqliteIndex::open(&dir.path().join("index.db"), false).unwrap();
        let files: Vec<StoredFile> = (0..5).map(file).collect();
        index.insert(&files[..2]).unwrap();
        index.insert(&files[2..]).unwrap();
        assert_eq!(index.get(files[3].id).unwrap().as_ref(), Some(&files[3]));
        let newest: Vec<FileId> = files.iter().rev().map(|f| f.id).collect();
        let ids = |page: Vec<StoredFile>| page.into_iter().map(|f| f.id).collect::<Vec<_>>();
        assert_eq!(ids(index.list(3, None).unwrap()), newest[..3]);
        assert_eq!(ids(index.list(3, Some(newest[2])).unwrap()), newest[3..]);
        assert_eq!(index.totals().unwrap(), Totals { files: 5, bytes: 10 });
        assert!(index.remove(files[4].id).unwrap());
        assert!(!index.remove(files[4].id).unwrap());
        assert_eq!(index.get(files[4].id).unwrap(), None);
        assert_eq!(index.totals().unwrap(), Totals { files: 4, bytes: 6 });
    }

    #[test]
    fn concurrent_inserts_are_committed_together_and_each_one_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let index = std::sync::Arc::new(SqliteIndex::open(&dir.path().join("index.db"), false).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let index = index.clone();
                std::thread::spawn(move || {
                    let files: Vec<StoredFile> = (0..50).map(|_| file(1)).collect();
                    for one in &files {
                        index.insert(std::slice::from_ref(one)).unwrap();
                        assert_eq!(index.get(one.id).unwrap().as_ref(), Some(one), "visible once insert returns");
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(index.totals().unwrap(), Totals { files: 400, bytes: 400 });
        assert!(index.queue.lock().unwrap().outcomes.is_empty(), "every outcome was collected");
    }
}
